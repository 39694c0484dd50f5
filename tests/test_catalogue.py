"""The tool catalogue: a team source's tools are offered, gated, validated and run like built-in ones."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Hashable, Iterator
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from activities import catalogue
from activities.catalogue import SourceCall, ToolFailed
from schemas.payloads import ToolCall
from schemas.policy import ToolPolicy, gate, policy_errors
from schemas.settings import Settings
from schemas.tools import TOOLS, SourceTool, Tool
from tests.fakes.openai_server import FakeOpenAI, Step, ToolCallSpec
from tests.support import TeamClient


def _tool(name: str, side_effecting: bool) -> SourceTool:
    return SourceTool(
        name=name,
        description=f"{name} from the test source",
        schema={
            "type": "object",
            "properties": {"text": {"type": "string"}, "times": {"type": "integer"}},
            "required": ["text"],
        },
        side_effecting=side_effecting,
        source="test",
        source_id="src-1",
        target=name.split("__")[-1],
    )


class _Source:
    """A source whose tools every team has; it records calls instead of calling anything."""

    kind = "test"

    def __init__(self) -> None:
        self.version = 1
        self.listed = 0
        self.calls: list[SourceCall] = []

    async def stamp(self, session: AsyncSession, team_id: str) -> Hashable:
        return self.version

    async def specs(self, session: AsyncSession, team_id: str) -> list[SourceTool]:
        self.listed += 1
        return [
            _tool("echo__say", side_effecting=False),
            _tool("echo__shout", side_effecting=True),
            _tool("book_appointment", side_effecting=False),  # a built-in name: never shadows it
        ]

    async def call(self, settings: Settings, call: SourceCall) -> dict[str, Any]:
        self.calls.append(call)
        if call.arguments["text"] == "fail":
            raise ToolFailed("the service said no")
        return {"said": call.arguments["text"]}


@pytest.fixture
def source(monkeypatch: pytest.MonkeyPatch) -> Iterator[_Source]:
    made = _Source()
    monkeypatch.setattr(catalogue, "sources", lambda: (made,))
    catalogue.forget()
    yield made
    catalogue.forget()


async def test_the_catalogue_lists_built_in_tools_first_and_a_source_cannot_shadow_one(
    source: _Source, team: TeamClient, sessions: async_sessionmaker[AsyncSession]
) -> None:
    async with sessions() as session:
        tools = await catalogue.specs(session, team.team_id)
        again = await catalogue.specs(session, team.team_id)
        source.version = 2
        changed = await catalogue.specs(session, team.team_id)

    assert list(tools)[: len(TOOLS)] == list(TOOLS)
    assert tools["book_appointment"] is TOOLS["book_appointment"]
    assert isinstance(tools["echo__say"], SourceTool)
    assert again is tools and source.listed == 2  # listed again only once the stamp changed
    assert changed is not tools


async def test_a_side_effecting_source_tool_is_gated_by_default_and_a_read_only_one_is_not(
    source: _Source,
) -> None:
    known: dict[str, Tool] = {
        **TOOLS,
        "echo__say": _tool("echo__say", False),
        "echo__shout": _tool("echo__shout", True),
    }
    now = dt.datetime.now(dt.UTC)
    offered = ["echo__say", "echo__shout"]

    read = gate(ToolCall(id="1", name="echo__say", arguments="{}"), offered, {}, {}, now, known=known)
    write = gate(ToolCall(id="2", name="echo__shout", arguments="{}"), offered, {}, {}, now, known=known)
    auto = gate(
        ToolCall(id="3", name="echo__shout", arguments="{}"),
        offered,
        {"echo__shout": {"mode": "auto"}},
        {},
        now,
        known=known,
    )

    assert read is None and write is not None and auto is None
    errors = policy_errors({"echo__shout": ToolPolicy(when="volume > 3")}, known)
    assert errors == [
        {
            "field": "tool_policies.echo__shout.when",
            "message": "echo__shout has no argument 'volume'; it has: text, times",
        }
    ]


async def test_an_agent_offered_a_source_tool_calls_it_with_the_calls_idempotency_key(
    source: _Source, team: TeamClient, fake_llm: FakeOpenAI, model: str
) -> None:
    agent = await team.create_agent(model, tools=["echo__say", "check_availability"])
    unknown = await team.request(
        "POST", "/v1/agents", json={"slug": "nope", "name": "n", "model": model, "tools": ["echo__nope"]}
    )
    fake_llm.script(
        model,
        [
            Step(tool_calls=[ToolCallSpec("echo__say", {"text": "hello"}, id="c1")]),
            Step(tool_calls=[ToolCallSpec("echo__say", {"times": "x"}, id="c2")]),
            Step(text="done"),
        ],
    )
    conversation = await team.start_conversation(agent["slug"])

    answer = await team.send(conversation, "say hello")

    assert answer.status_code == 200, answer.text
    assert answer.json()["reply"]["content"] == "done"
    offered = [t["function"]["name"] for t in fake_llm.requests(model)[0].body["tools"]]
    assert offered == ["echo__say", "check_availability"]
    schema = fake_llm.requests(model)[0].body["tools"][0]["function"]["parameters"]
    assert schema["required"] == ["text"]
    assert [(c.idempotency_key, c.arguments) for c in source.calls] == [
        (f"{conversation}/1/0.0", {"text": "hello"})
    ]
    tool_messages = [m for m in await team.messages(conversation) if m["role"] == "tool"]
    assert json.loads(tool_messages[0]["content"]) == {"said": "hello"}
    assert "invalid arguments" in json.loads(tool_messages[1]["content"])["error"]
    assert unknown.status_code == 422 and "echo__nope" in unknown.text
