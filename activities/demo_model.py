"""The offline demo model: deterministic rules that still drive the whole tool loop.

It lets `steward dev` show message -> tool -> reply with no LLM key. Every reply says
what it is, so nobody mistakes it for a real model.
"""

from __future__ import annotations

import json
import re
from typing import Any

from schemas.payloads import ToolCall

LABEL = "[offline demo model]"
PIECES = 6
"""A reply streams in about this many deltas, so the playground shows it arriving."""
_NAME = re.compile(r"\bmy name is ([A-Za-z][\w' -]{0,60})", re.IGNORECASE)


def pieces(text: str, count: int = PIECES) -> list[str]:
    """`text` cut between words into at most `count` parts that join back into it exactly."""
    words = [w for w in re.split(r"(?<=\s)(?=\S)", text) if w]
    size = max(1, -(-len(words) // count))
    return ["".join(words[i : i + size]) for i in range(0, len(words), size)]


def _last(messages: list[dict[str, Any]], role: str) -> dict[str, Any] | None:
    return next((m for m in reversed(messages) if m["role"] == role), None)


def _call(name: str, args: dict[str, Any], call_id: str) -> ToolCall:
    return ToolCall(id=call_id, name=name, arguments=json.dumps(args))


def _after_tool(message: dict[str, Any]) -> str:
    result: dict[str, Any] = json.loads(message["content"])
    if "error" in result:
        return f"{LABEL} That did not work: {result['error']}"
    if result.get("simulated"):  # a test run: say what would have happened
        return f"{LABEL} Simulated, as a test run changes nothing. It would: {result['would']}."
    if "slots" in result:
        if not result["slots"]:
            return f"{LABEL} There are no free slots in the next few days."
        lines = [
            f"- {s['starts_at'][:16].replace('T', ' ')} with {s['resource']}" for s in result["slots"][:3]
        ]
        return (
            f"{LABEL} Free slots:\n" + "\n".join(lines) + "\nSay 'book it, my name is …' to take the first."
        )
    if "booking_id" in result:
        when = result["starts_at"][:16].replace("T", " ")
        return f"{LABEL} Booked for {result['customer_name']} at {when} (booking {result['booking_id'][:8]})."
    if "ticket_id" in result:
        return (
            f"{LABEL} I opened ticket {result['ticket_id'][:8]} ({result['priority']}): {result['subject']}"
        )
    if result.get("handed_off"):
        return f"{LABEL} I've asked a human colleague to take over; they'll reply here."
    return f"{LABEL} Done."


def _first_offered_slot(messages: list[dict[str, Any]]) -> str | None:
    for message in reversed(messages):
        if message["role"] == "tool":
            slots = json.loads(message["content"]).get("slots")
            if slots:
                return str(slots[0]["slot_id"])
    return None


def demo_reply(
    messages: list[dict[str, Any]], tools: list[str], call_id_prefix: str
) -> tuple[str, list[ToolCall]]:
    """The next assistant message for an OpenAI-style message list.

    Args:
        messages: the conversation as Chat Completions messages, oldest first.
        tools: names of the tools this agent may call (empty when tools are not allowed now).
        call_id_prefix: makes tool-call ids stable for a given turn and round.

    Returns:
        The reply text and the tool calls to make (at most one).
    """
    last = messages[-1] if messages else None
    if last is not None and last["role"] == "tool":
        return _after_tool(last), []
    user = _last(messages, "user")
    text = str(user["content"]) if user else ""
    lowered = text.lower()
    call_id = f"{call_id_prefix}-0"
    if "book_appointment" in tools and re.search(r"\bbook (it|that|the first)", lowered):
        slot = _first_offered_slot(messages)
        if slot:
            match = _NAME.search(text)
            name = match.group(1).strip() if match else "Guest"
            return "", [_call("book_appointment", {"slot_id": slot, "customer_name": name}, call_id)]
    if "check_availability" in tools and re.search(r"avail|appointment|slot|book|free", lowered):
        return "", [_call("check_availability", {"days": 3}, call_id)]
    if "create_ticket" in tools and re.search(r"ticket|broken|problem|issue|bug", lowered):
        return "", [_call("create_ticket", {"subject": text[:80], "description": text}, call_id)]
    if "handoff_to_human" in tools and re.search(r"human|person|operator|someone real", lowered):
        return "", [_call("handoff_to_human", {"reason": text[:500]}, call_id)]
    offer = ", ".join(tools) if tools else "chat"
    return (
        f"{LABEL} You said: {text!r}. I can help with: {offer}. "
        "Set OPENAI_API_KEY (or OPENAI_BASE_URL) for a real model.",
        [],
    )
