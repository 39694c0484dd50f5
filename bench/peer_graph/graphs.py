"""The peer's side of `bench/peers.py`: a one-node graph, and the same with one tool.

Each calls the fake OpenAI-compatible server `bench.turn_overhead` uses (`PEERS_LLM_URL`)
with the openai SDK, streaming, with the model's window cut to the last 200 messages as
Steward's is. The tool graph runs `check_availability` (a canned answer) between two model
calls, as the fake's `tool-` models ask. Loaded by `langgraph dev`, never imported by Steward.
"""

from __future__ import annotations

import json
import operator
import os
from typing import Annotated, Any, TypedDict

import openai
from langgraph.graph import END, START, StateGraph

WINDOW = 200
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "check_availability",
            "description": "Free appointment slots in the next days.",
            "parameters": {"type": "object", "properties": {"days": {"type": "integer"}}},
        },
    }
]

# The SDK's own retries (its default, 2) stand in for the retries Temporal gives Steward's
# activity: 50 jobs connecting at once can overflow the fake server's listen backlog.
_client = openai.AsyncOpenAI(base_url=os.environ.get("PEERS_LLM_URL"), api_key="bench", max_retries=2)


class State(TypedDict):
    messages: Annotated[list[dict[str, Any]], operator.add]


async def _ask(messages: list[dict[str, Any]], model: str, tools: bool) -> dict[str, Any]:
    extra: dict[str, Any] = {"tools": TOOLS} if tools else {}
    window: Any = messages[-WINDOW:]  # plain dicts, as the graph's state keeps them
    stream: Any = await _client.chat.completions.create(model=model, messages=window, stream=True, **extra)
    content: list[str] = []
    calls: dict[int, dict[str, Any]] = {}
    async for chunk in stream:
        for choice in chunk.choices:
            if choice.delta.content:
                content.append(choice.delta.content)
            for part in choice.delta.tool_calls or []:
                call = calls.setdefault(part.index, {"id": "", "name": "", "arguments": ""})
                call["id"] = part.id or call["id"]
                if part.function is not None:
                    call["name"] += part.function.name or ""
                    call["arguments"] += part.function.arguments or ""
    message: dict[str, Any] = {"role": "assistant", "content": "".join(content)}
    if calls:
        message["tool_calls"] = [
            {"id": c["id"], "type": "function", "function": {"name": c["name"], "arguments": c["arguments"]}}
            for c in (calls[i] for i in sorted(calls))
        ]
    return message


async def plain_model(state: State) -> dict[str, Any]:
    return {"messages": [await _ask(state["messages"], "plain", tools=False)]}


async def tool_model(state: State) -> dict[str, Any]:
    return {"messages": [await _ask(state["messages"], "tool-bench", tools=True)]}


async def run_tools(state: State) -> dict[str, Any]:
    calls = state["messages"][-1].get("tool_calls") or []
    slots = {"slots": [{"slot_id": "s1", "starts_at": "2026-01-01T09:00:00+00:00", "resource": "room"}]}
    return {
        "messages": [{"role": "tool", "tool_call_id": c["id"], "content": json.dumps(slots)} for c in calls]
    }


def _next(state: State) -> str:
    return "tools" if state["messages"][-1].get("tool_calls") else END


_plain = StateGraph(State)
_plain.add_node("model", plain_model)
_plain.add_edge(START, "model")
_plain.add_edge("model", END)
plain = _plain.compile()

_tool = StateGraph(State)
_tool.add_node("model", tool_model)
_tool.add_node("tools", run_tools)
_tool.add_edge(START, "model")
_tool.add_conditional_edges("model", _next, ["tools", END])
_tool.add_edge("tools", "model")
tool = _tool.compile()
