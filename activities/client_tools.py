"""Client tools inside the LLM and tool activities: what the model is offered beside the
built-in tools, which of its calls the caller runs, and how the caller's output is recorded.

A client tool comes from the agent's version (`client_tools`) or from a chat completion's
`tools` (`conversations.caller_tools`), never from the registry. Its calls get Steward's own
ids (`schemas/keys.py` `client_call_id`) before the answer is persisted, so the transcript, the
`tool.requested` events and the caller all name a call alike, and a call id leads back to its
conversation. The turn's workflow waits for the output (`workflows/turn.py`); the tool activity
then records it as the call's result like any tool's, once.
"""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

from activities.events import PendingEvent
from activities.llm_context import Definition
from schemas.enums import EventKind
from schemas.keys import client_call_id
from schemas.payloads import ClientOutput, LlmRequest, LlmResponse, ToolRequest
from schemas.tables import Conversation


def with_caller_tools(definition: Definition, conversation: Conversation) -> Definition:
    """The definition with the running chat completion's `tools` beside its own client tools
    (a name the version declares stays the version's)."""
    caller = conversation.caller_tools or []
    if not caller:
        return definition
    own = {tool["name"] for tool in definition.client_tools}
    extra = [tool for tool in caller if tool.get("name") not in own]
    return replace(definition, client_tools=[*definition.client_tools, *extra])


def offered(definition: Definition) -> list[dict[str, Any]]:
    """The client tools as Chat Completions `tools` entries."""
    return [
        {
            "type": "function",
            "function": {
                "name": tool["name"],
                "description": tool.get("description") or "",
                "parameters": tool.get("parameters") or {"type": "object", "properties": {}},
            },
        }
        for tool in definition.client_tools
    ]


def mark_client_calls(definition: Definition, req: LlmRequest, response: LlmResponse) -> LlmResponse:
    """Give each call of a client tool its id and the agent's timeout (before it is persisted).

    Deterministic in (conversation, turn, round, index), so a retried round names them alike.
    """
    names = {tool["name"] for tool in definition.client_tools}
    for index, call in enumerate(response.tool_calls):
        if call.name in names:
            call.id = client_call_id(req.conversation_id, req.turn, req.round, index)
            call.client_timeout = definition.client_tool_timeout
    return response


def tool_request_events(req: LlmRequest, response: LlmResponse) -> list[PendingEvent]:
    """`tool.requested` for each client call of the answer, then `turn.awaiting_tool_output`,
    written in the transaction that persists the answer (so a caller never sees one without the
    other)."""
    calls = [
        {"call_id": call.id, "name": call.name, "arguments": call.arguments}
        for call in response.tool_calls
        if call.client_timeout is not None
    ]
    events = [
        PendingEvent(turn=req.turn, kind=EventKind.TOOL_REQUESTED, data={"round": req.round, **call})
        for call in calls
    ]
    if calls:
        events.append(
            PendingEvent(
                turn=req.turn,
                kind=EventKind.TURN_AWAITING_TOOL_OUTPUT,
                data={"round": req.round, "calls": calls},
            )
        )
    return events


def client_result(req: ToolRequest, client: ClientOutput) -> tuple[dict[str, Any], bool, dict[str, Any]]:
    """What a client call recorded: its arguments as the model sent them, and the caller's output
    (`{"output": text}`), or a clear error when nobody answered in time."""
    try:
        arguments = json.loads(req.call.arguments or "{}")
    except json.JSONDecodeError:
        arguments = {"raw": req.call.arguments}
    if not isinstance(arguments, dict):
        arguments = {"value": arguments}
    if client.output is not None:
        return arguments, True, {"output": client.output}
    waited = client.timed_out_after or 0.0
    return (
        arguments,
        False,
        {
            "error": f"client tool '{req.call.name}' timed out: the caller sent no output within "
            f"{waited:g} s (the agent's client_tool_timeout), so its result is unknown",
            "timed_out_after": waited,
        },
    )


def result_text(result: Any) -> str:
    """A tool result as the model reads it: a client tool's output as the caller wrote it, else JSON."""
    if isinstance(result, dict) and set(result) == {"output"} and isinstance(result["output"], str):
        return result["output"]
    return json.dumps(result)
