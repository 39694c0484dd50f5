"""Long conversations continue-as-new and keep numbering, dedupe keys and small histories."""

from __future__ import annotations

from temporalio.api.enums.v1 import EventType
from temporalio.client import Client

from tests.conftest import CONTINUE_AS_NEW_EVENTS
from tests.fakes.openai_server import FakeOpenAI
from tests.support import TeamClient
from workflows.contract import conversation_workflow_id


async def test_a_long_conversation_continues_as_new_and_keeps_working(
    team: TeamClient, fake_llm: FakeOpenAI, model: str, temporal: Client
) -> None:
    agent = await team.create_agent(model)
    conversation = await team.start_conversation(agent["slug"])
    turns = 25

    for n in range(1, turns + 1):
        response = await team.send(conversation, f"message {n}", key=f"key-{n}")
        assert response.status_code == 200, response.text
        assert response.json()["turn"] == n
        assert response.json()["reply"]["content"] == f"echo: message {n}"

    handle = temporal.get_workflow_handle(conversation_workflow_id(conversation))
    first_run = temporal.get_workflow_handle(
        handle.id, run_id=(await handle.describe()).raw_description.workflow_execution_info.first_run_id
    )
    first_history = await first_run.fetch_history()
    assert first_history.events[-1].event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW
    assert len(first_history.events) <= CONTINUE_AS_NEW_EVENTS + 30
    current = await handle.fetch_history()
    assert len(current.events) <= CONTINUE_AS_NEW_EVENTS + 30

    # Keys sent before continue-as-new are still recognised; numbering goes on.
    repeat = await team.send(conversation, "message 1", key="key-1", wait=False)
    assert repeat.json() == {"turn": 1, "status": "completed", "duplicate": True}
    # Turn 1's outcome has aged out of the workflow's memory (it keeps 20); the store answers.
    waited = await team.send(conversation, "message 1", key="key-1")
    assert waited.status_code == 200
    assert waited.json()["reply"]["content"] == "echo: message 1"
    nxt = await team.send(conversation, "one more")
    assert nxt.json()["turn"] == turns + 1
    assert len(fake_llm.requests(model)) == turns + 1
    state = await team.conversation(conversation)
    assert state["turns"] == turns + 1
