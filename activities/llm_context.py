"""What a turn shows the model: the definition it runs on, and the transcript as chat messages."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from activities.prompts import system_prompt
from activities.transcript import Entry
from schemas.enums import MessageRole
from schemas.keys import inbound_key
from schemas.payloads import LlmRequest
from schemas.tables import DEFINITION_FIELDS, FROZEN_DEFAULTS, PROMPT_FIELDS, Agent, Conversation


@dataclass
class Definition:
    """What answers a turn: one agent version's frozen fields (or the draft's), and the agent."""

    id: str
    """The agent's id."""
    version_id: str | None
    """The version (None: the agent's draft)."""
    model: str
    system_prompt: str
    tools: list[str]
    tool_policies: dict[str, Any]
    approvals: dict[str, Any]
    temperature: float
    max_tool_rounds: int
    provider_id: str | None = None
    """The team LLM provider that answers (None: the built-in one, `OPENAI_*`)."""
    timezone: str = "UTC"
    variables: dict[str, Any] = field(default_factory=dict)
    templates: dict[str, str] = field(default_factory=dict)
    """The prompt templates `system_prompt` may include, by name."""
    default_template: str | None = None
    budgets: dict[str, Any] = field(default_factory=dict)
    """Token and cost budgets (schemas/budgets.py AgentBudgets); checked before each model call."""
    guardrails: dict[str, Any] | None = None
    """Its rails (schemas/guardrails.py); None: the team's defaults."""
    slug: str = ""
    """The agent's slug (metrics label guardrail trips by it)."""
    literal: bool = False
    """Frozen before prompts were templates: its prompt is shown as written, never rendered."""
    client_tools: list[dict[str, Any]] = field(default_factory=list)
    """Tools the caller runs: the version's own, and (`with_caller_tools`) a chat completion's."""
    client_tool_timeout: float = 300.0
    team_id: str = ""
    """The agent's team (whose tool catalogue the turn sees)."""

    @classmethod
    def of(cls, agent: Agent, version_id: str | None, frozen: dict[str, Any] | None) -> Definition:
        """Version `version_id`'s `frozen` fields, or (both None) the agent's draft's columns.

        A version frozen before a field existed gets its default (`FROZEN_DEFAULTS`); one frozen
        before templates (no `templates`) keeps its prompt literal, as it was written and shown.
        """
        source = frozen if frozen is not None else {f: getattr(agent, f) for f in DEFINITION_FIELDS}
        fields: dict[str, Any] = {
            f: source.get(f, FROZEN_DEFAULTS.get(f)) for f in (*DEFINITION_FIELDS, *PROMPT_FIELDS)
        }
        literal = frozen is not None and "templates" not in frozen
        return cls(
            id=agent.id,
            version_id=version_id,
            literal=literal,
            team_id=agent.team_id,
            slug=agent.slug,
            **fields,
        )

    async def rendered(self, session: AsyncSession, conversation: Conversation) -> Definition:
        """This definition with its system prompt rendered for the conversation (`activities/prompts.py`)."""
        if self.literal:
            return self
        text = await system_prompt(
            session,
            conversation,
            prompt=self.system_prompt,
            templates=self.templates,
            default_template=self.default_template,
            timezone=self.timezone,
            variables=self.variables,
        )
        return replace(self, system_prompt=text)


def to_chat_messages(system_prompt: str, transcript: list[Entry]) -> list[dict[str, Any]]:
    """Chat Completions messages for a transcript window.

    Drops tool results whose request fell outside the window, and answers any tool
    call left without a result (a turn interrupted mid-tools), since the API
    rejects both.
    """
    messages: list[dict[str, Any]] = []
    if system_prompt:
        messages.append({"role": "system", "content": system_prompt})
    open_calls: list[str] = []

    def close_open_calls() -> None:
        for call_id in open_calls:
            messages.append({"role": "tool", "tool_call_id": call_id, "content": '{"error": "not run"}'})
        open_calls.clear()

    for row in transcript:
        if row.role == MessageRole.TOOL:
            if row.tool_call_id in open_calls:
                open_calls.remove(row.tool_call_id)
                messages.append({"role": "tool", "tool_call_id": row.tool_call_id, "content": row.content})
            continue
        if row.role not in (MessageRole.USER, MessageRole.ASSISTANT, MessageRole.OPERATOR):
            # System rows record failures for people and notices speak to the user (a holding
            # message while a call waits for approval, between the call and its result): the
            # model sees neither.
            continue
        close_open_calls()
        if row.role == MessageRole.USER:
            messages.append({"role": "user", "content": row.content})
        elif row.role == MessageRole.OPERATOR:
            # A person spoke for the agent while they held the conversation: once it is handed
            # back, the model must know what the user was told, as its own side of the talk.
            messages.append({"role": "assistant", "content": row.content})
        elif row.role == MessageRole.ASSISTANT:
            entry: dict[str, Any] = {"role": "assistant", "content": row.content or None}
            if row.tool_calls:
                entry["tool_calls"] = [
                    {
                        "id": c["id"],
                        "type": "function",
                        "function": {"name": c["name"], "arguments": c["arguments"]},
                    }
                    for c in row.tool_calls
                ]
                open_calls.extend(c["id"] for c in row.tool_calls)
            messages.append(entry)
    close_open_calls()
    return messages


def with_inbound(transcript: list[Entry], req: LlmRequest) -> list[Entry]:
    """The transcript plus this turn's inbound messages that are not in it yet."""
    stored = {row.dedupe_key for row in transcript}
    fresh = [
        Entry(role=MessageRole.USER, content=m.text, dedupe_key=inbound_key(m.number))
        for m in req.inbound
        if inbound_key(m.number) not in stored
    ]
    return transcript + fresh
