"""An OpenAI-compatible front door: any OpenAI-speaking tool can talk to a Steward agent.

`model` names the agent (its slug). The last message of the request becomes a turn of a
conversation: the one named by the `X-Steward-Conversation` header, or the one kept for
the request's `user`, or a new one seeded with the request's earlier messages. The
conversation's id comes back in the `X-Steward-Conversation` response header. Tools run
inside Steward, so callers see only the agent's text.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from api.deps import CurrentKey, SessionDep, SettingsDep, TemporalDep, Writer
from api.errors import ApiError
from api.services.agents import find_agent, list_agents
from api.services.chat import EarlierMessage, caller_conversation, turn_usage
from api.services.conversations import send
from api.streams import LogEvent, follow, last_event_id
from schemas.api import MAX_TEXT_BYTES, ErrorBody, MessageCreate
from schemas.enums import EventKind, MessageRole, TurnStatus

router = APIRouter(prefix="/v1", tags=["openai-compatible"], responses={401: {"model": ErrorBody}})

WAIT_SECONDS = 300.0
CONVERSATION_HEADER = "X-Steward-Conversation"


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: str
    content: str | list[dict[str, Any]] | None = None

    def text(self) -> str:
        if isinstance(self.content, str):
            return self.content
        parts = self.content or []
        return "".join(str(p.get("text", "")) for p in parts if p.get("type") == "text")


class ChatCompletionRequest(BaseModel):
    """The fields Steward reads; the rest of OpenAI's (temperature, tools...) are ignored."""

    model_config = ConfigDict(extra="allow")

    model: str = Field(min_length=1, description="the agent's slug")
    messages: list[ChatMessage] = Field(min_length=1)
    stream: bool = False
    stream_options: dict[str, Any] | None = None
    user: str | None = Field(None, max_length=200, description="continues this caller's conversation")


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "steward"


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


@router.get("/models", response_model=ModelList)
async def list_models(principal: CurrentKey, session: SessionDep) -> ModelList:
    """The team's agents, as OpenAI models (the id is the agent's slug)."""
    return ModelList(
        data=[
            ModelCard(id=a.slug, created=int(a.created_at.timestamp()))
            for a in await list_agents(session, principal.team_id)
        ]
    )


def _usage(prompt: int, completion: int) -> dict[str, int]:
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


@router.post(
    "/chat/completions",
    responses={
        200: {"description": "a chat.completion, or with stream chat.completion.chunk events"},
        404: {"model": ErrorBody},
        502: {"model": ErrorBody, "description": "the turn failed"},
    },
)
async def chat_completions(
    body: ChatCompletionRequest,
    request: Request,
    principal: Writer,
    session: SessionDep,
    temporal: TemporalDep,
    settings: SettingsDep,
    x_steward_conversation: Annotated[str | None, Header()] = None,
) -> Response:
    """Run the last message as a turn of a Steward agent and answer as OpenAI's API does."""
    last = body.messages[-1]
    if last.role != MessageRole.USER or not last.text().strip():
        raise ApiError(
            422,
            "validation_error",
            "the last message must be a non-empty user message",
            [{"field": "messages", "message": "last message is not a user message with text"}],
        )
    if len(last.text().encode()) > MAX_TEXT_BYTES:
        raise ApiError(413, "text_too_large", f"the last message is over {MAX_TEXT_BYTES} bytes")
    agent = await find_agent(session, principal.team_id, body.model)
    conversation_id = await caller_conversation(
        session,
        principal.team_id,
        agent,
        conversation_id=x_steward_conversation,
        user=body.user,
        earlier=[EarlierMessage(m.role, m.text()) for m in body.messages[:-1]],
    )
    start = await last_event_id(session, conversation_id) if body.stream else 0
    message = MessageCreate(text=last.text())
    created = int(time.time())
    headers = {CONVERSATION_HEADER: conversation_id}
    if not body.stream:
        sent = await send(
            session, temporal, settings, principal.team_id, conversation_id, message, WAIT_SECONDS
        )
        outcome = sent.outcome
        if outcome is None or outcome.status in (TurnStatus.RUNNING, TurnStatus.QUEUED):
            late = f"turn {sent.turn} did not finish within {WAIT_SECONDS:.0f} s"
            raise ApiError(504, "turn_timeout", late, headers=headers)
        if outcome.error is not None:
            raise ApiError(502, outcome.error.code, outcome.error.message, headers=headers)
        async with request.app.state.sessions() as reader:
            tokens = await turn_usage(reader, conversation_id, sent.turn)
        completion = {
            "id": f"chatcmpl-{conversation_id}-{sent.turn}",
            "object": "chat.completion",
            "created": created,
            "model": agent.slug,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": outcome.reply or ""},
                    "finish_reason": "stop",
                    "logprobs": None,
                }
            ],
            "usage": _usage(*tokens),
        }
        return JSONResponse(completion, headers=headers)
    sent = await send(session, temporal, settings, principal.team_id, conversation_id, message)
    events = follow(
        request.app.state.event_hub,
        request.app.state.sessions,
        conversation_id,
        after=start,
        heartbeat=settings.sse_heartbeat_seconds,
        turn=sent.turn,
    )
    include_usage = bool((body.stream_options or {}).get("include_usage"))
    base = {
        "id": f"chatcmpl-{conversation_id}-{sent.turn}",
        "object": "chat.completion.chunk",
        "created": created,
        "model": agent.slug,
    }
    return StreamingResponse(
        _chunks(events, base, include_usage),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no", **headers},
    )


async def _chunks(
    events: AsyncIterator[LogEvent | None], base: dict[str, Any], include_usage: bool
) -> AsyncIterator[bytes]:
    """A turn's events as `chat.completion.chunk`s, ending with `[DONE]`."""

    def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> bytes:
        choice = {"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}
        return b"data: " + json.dumps({**base, "choices": [choice], **extra}).encode() + b"\n\n"

    yield chunk({"role": "assistant", "content": ""})
    async for event in events:
        if event is None:
            yield b": keep-alive\n\n"
        elif event.kind == EventKind.MESSAGE_DELTA:
            yield chunk({"content": event.data["text"]})
        elif event.kind == EventKind.TURN_FAILED:
            error = {"code": event.data["code"], "message": event.data["message"], "type": "turn_failed"}
            yield b"data: " + json.dumps({"error": error}).encode() + b"\n\n"
        elif event.kind == EventKind.TURN_COMPLETED:
            usage = _usage(event.data["usage"]["prompt_tokens"], event.data["usage"]["completion_tokens"])
            if include_usage:
                yield chunk({}, "stop")
                yield b"data: " + json.dumps({**base, "choices": [], "usage": usage}).encode() + b"\n\n"
            else:
                yield chunk({}, "stop", usage=usage)
    yield b"data: [DONE]\n\n"
