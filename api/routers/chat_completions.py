"""An OpenAI-compatible front door: any OpenAI-speaking tool can talk to a Steward agent.

`model` names the agent (its slug; `slug@N` pins version N, `slug@draft` runs the draft, for
admins). The last message of the request becomes a turn of a
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
from pydantic import BaseModel, ConfigDict, Field, model_validator

from activities.store import live_pin
from api.deps import CurrentKey, SessionDep, SettingsDep, TemporalDep, Writer
from api.errors import ApiError, checked_beyond_schema
from api.services import chat
from api.services.agents import find_agent, list_agents
from api.services.chat import Broke, EarlierMessage, Piece, caller_conversation
from schemas.api import MAX_TEXT_BYTES, NO_NUL, ErrorBody
from schemas.enums import MessageRole, Role

router = APIRouter(prefix="/v1", tags=["openai-compatible"], responses={401: {"model": ErrorBody}})

WAIT_SECONDS = 300.0
CONVERSATION_HEADER = "X-Steward-Conversation"
TURN_HEADER = "X-Steward-Turn"
DUPLICATE_HEADER = "X-Steward-Duplicate"


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: str
    content: str | list[dict[str, Any]] | None = None

    @model_validator(mode="after")
    def _no_nul(self) -> ChatMessage:
        # PostgreSQL's text and JSON refuse NUL: say so here, not as a failed write later.
        if "\x00" in self.text():
            raise ValueError("content may not contain NUL (\\u0000) characters")
        return self

    def text(self) -> str:
        if isinstance(self.content, str):
            return self.content
        parts = self.content or []
        return "".join(str(p.get("text", "")) for p in parts if p.get("type") == "text")


class ChatCompletionRequest(BaseModel):
    """The fields Steward reads; the rest of OpenAI's (temperature, tools...) are ignored."""

    model_config = ConfigDict(extra="allow")

    model: str = Field(
        min_length=1,
        max_length=200,
        pattern=NO_NUL,
        description="the agent's slug, slug@N (a version) or slug@draft",
    )
    messages: list[ChatMessage] = Field(min_length=1)
    stream: bool = False
    stream_options: dict[str, Any] | None = None
    user: str | None = Field(
        None, max_length=200, pattern=NO_NUL, description="continues this caller's conversation"
    )


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
    """The team's agents, as OpenAI models: each by its slug, and as `slug@N` of its live version."""
    cards = []
    for a in await list_agents(session, principal.team_id):
        cards.append(ModelCard(id=a.slug, created=int(a.created_at.timestamp())))
        if (live := (await live_pin(session, a)).get("version")) is not None:
            cards.append(ModelCard(id=f"{a.slug}@{live}", created=int(a.created_at.timestamp())))
    return ModelList(data=cards)


def _usage(prompt: int, completion: int) -> dict[str, int]:
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


@router.post(
    "/chat/completions",
    responses={
        200: {"description": "a chat.completion, or with stream chat.completion.chunk events"},
        403: {"model": ErrorBody, "description": "`slug@draft` from a key that is not an admin's"},
        404: {"model": ErrorBody},
        409: {
            "model": ErrorBody,
            "description": "`X-Steward-Conversation` names another agent's conversation "
            "(`agent_mismatch`) or one on another version than `slug@N`/`slug@draft` (`version_mismatch`)",
        },
        413: {"model": ErrorBody, "description": "text_too_large: the last message is over 16 KiB"},
        502: {"model": ErrorBody, "description": "the turn failed"},
        **checked_beyond_schema(messages="the last one is a user message with text"),
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
    slug, target = chat.parse_model(body.model)
    if target == "draft" and principal.role != Role.ADMIN:
        raise ApiError(403, "forbidden", "only an admin key may talk to an agent's draft (slug@draft)")
    agent = await find_agent(session, principal.team_id, slug)
    conversation_id = await caller_conversation(
        session,
        principal.team_id,
        agent,
        conversation_id=x_steward_conversation,
        user=body.user,
        earlier=[EarlierMessage(m.role, m.text()) for m in body.messages[:-1]],
        target=target,
    )
    headers = {CONVERSATION_HEADER: conversation_id}
    created = int(time.time())
    if not body.stream:
        answer = await chat.complete(
            session,
            temporal,
            settings,
            principal.team_id,
            conversation_id,
            last.text(),
            wait_seconds=WAIT_SECONDS,
            headers=headers,
        )
        completion = {
            "id": f"chatcmpl-{conversation_id}-{answer.turn}",
            "object": "chat.completion",
            "created": created,
            "model": body.model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": answer.text},
                    "finish_reason": "stop",
                    "logprobs": None,
                }
            ],
            "usage": _usage(*answer.usage),
        }
        return JSONResponse(completion, headers={**headers, **_turn_headers(answer.turn, answer.duplicate)})
    stream = await chat.open_stream(
        session,
        temporal,
        settings,
        request.app.state.event_hub,
        request.app.state.sessions,
        principal.team_id,
        conversation_id,
        last.text(),
    )
    include_usage = bool((body.stream_options or {}).get("include_usage"))
    base = {
        "id": f"chatcmpl-{conversation_id}-{stream.turn}",
        "object": "chat.completion.chunk",
        "created": created,
        "model": body.model,
    }
    return StreamingResponse(
        _chunks(stream.pieces, base, include_usage),
        media_type="text/event-stream",
        headers={
            "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no",
            **headers,
            **_turn_headers(stream.turn, stream.duplicate),
        },
    )


def _turn_headers(turn: int, duplicate: bool) -> dict[str, str]:
    """Which turn answered; `duplicate` when it is the turn awaiting approval, asked again."""
    return {TURN_HEADER: str(turn), DUPLICATE_HEADER: str(duplicate).lower()}


async def _chunks(
    pieces: AsyncIterator[Piece], base: dict[str, Any], include_usage: bool
) -> AsyncIterator[bytes]:
    """An answer's pieces as `chat.completion.chunk`s, ending with `[DONE]`."""

    def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> bytes:
        choice = {"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}
        return b"data: " + json.dumps({**base, "choices": [choice], **extra}).encode() + b"\n\n"

    yield chunk({"role": "assistant", "content": ""})
    async for piece in pieces:
        if piece is None:
            yield b": keep-alive\n\n"
        elif isinstance(piece, str):
            yield chunk({"content": piece})
        elif isinstance(piece, Broke):
            error = {"code": piece.code, "message": piece.message, "type": "turn_failed"}
            yield b"data: " + json.dumps({"error": error}).encode() + b"\n\n"
        else:
            usage = _usage(*piece.usage)
            if include_usage:
                yield chunk({}, "stop")
                yield b"data: " + json.dumps({**base, "choices": [], "usage": usage}).encode() + b"\n\n"
            else:
                yield chunk({}, "stop", usage=usage)
    yield b"data: [DONE]\n\n"
