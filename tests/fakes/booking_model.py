"""A fake model that books like the offline demo model and reads its system prompt.

It answers as `activities.demo_model.demo_reply` does (check availability, "book it",
tickets, handoffs: the demo tools' whole loop), but over the real Chat Completions
protocol of `FakeOpenAI`, so it can run slowly (`delay`) and can be told by its prompt
not to book: a system prompt holding `REFUSE_BOOKINGS` makes it answer a booking request
with `REFUSAL` instead of calling `book_appointment`.

    fake_llm.respond(BOOKER, booking_model())
    agent = await team.create_agent(f"{BOOKER}{uuid}", tools=[...])
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from activities.demo_model import demo_reply
from tests.fakes.openai_server import Step, ToolCallSpec

BOOKER = "booker-"
"""Models whose name starts so are answered by the booking model."""
REFUSE_BOOKINGS = "Never book appointments."
REFUSAL = "I'm sorry, I can't book appointments here. Please call the front desk."


def booking_model(delay: float = 0.0) -> Callable[[dict[str, Any]], Step]:
    """The responder: one answer per request, after `delay` seconds."""

    def answer(body: dict[str, Any]) -> Step:
        messages: list[dict[str, Any]] = body.get("messages") or []
        system = next((str(m.get("content") or "") for m in messages if m.get("role") == "system"), "")
        tools = [t["function"]["name"] for t in body.get("tools") or []]
        chat = [
            {"role": m["role"], "content": m.get("content") or ""}
            for m in messages
            if m.get("role") != "system"
        ]
        text, calls = demo_reply(chat, tools, "call")
        if REFUSE_BOOKINGS in system and any(c.name == "book_appointment" for c in calls):
            return Step(text=REFUSAL, delay=delay)
        return Step(
            text=text,
            tool_calls=[ToolCallSpec(c.name, json.loads(c.arguments)) for c in calls],
            delay=delay,
        )

    return answer
