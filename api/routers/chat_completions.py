"""An OpenAI-compatible front door: any OpenAI-speaking tool can talk to a Steward agent.

`model` names the agent (its slug; `slug@N` pins version N, `slug@draft` runs the draft, for
admins). The last message of the request becomes a turn of a
conversation: the one named by the `X-Steward-Conversation` header, or the one kept for
the request's `user`, or a new one seeded with the request's earlier messages. The
conversation's id comes back in the `X-Steward-Conversation` response header. The agent's
own tools run inside Steward, so callers see only their results in its text; client tools (the
agent's `client_tools` and the request's `tools`) come back as OpenAI's `tool_calls`, and the
request carrying their `role: "tool"` messages continues the same turn.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from activities.store import live_pin
from api.deps import CurrentKey, SessionDep, SettingsDep, TemporalDep, Writer
from api.errors import ApiError, checked_beyond_schema
from api.services import chat
from api.services.agents import find_agent, list_agents
from api.services.chat import Broke, CallsRequested, EarlierMessage, Piece, caller_conversation
from api.services.conversations import find_conversation
from schemas.api import MAX_TEXT_BYTES, NO_NUL, ClientTool, ErrorBody
from schemas.api.client_tools import MAX_OUTPUT_CHARS
from schemas.enums import MessageRole, Role
from schemas.keys import client_call_of
from schemas.payloads import ToolOutput, ToolRequested
from schemas.tools import TOOLS

router = APIRouter(prefix="/v1", tags=["openai-compatible"], responses={401: {"model": ErrorBody}})

WAIT_SECONDS = 300.0
CONVERSATION_HEADER = "X-Steward-Conversation"
TURN_HEADER = "X-Steward-Turn"
DUPLICATE_HEADER = "X-Steward-Duplicate"


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: str
    content: str | list[dict[str, Any]] | None = None
    tool_call_id: str | None = Field(None, max_length=200, pattern=NO_NUL)
    """A `role: "tool"` message's call: the `id` of a `tool_calls` entry Steward answered with."""

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


class ChatFunction(BaseModel):
    model_config = ConfigDict(extra="allow")

    name: str = Field(max_length=64)
    description: str | None = Field(None, max_length=1024)
    parameters: dict[str, Any] | None = None


class ChatTool(BaseModel):
    """One of OpenAI's `tools`: a function the caller runs (a client tool of this request)."""

    model_config = ConfigDict(extra="allow")

    type: Literal["function"] = "function"
    function: ChatFunction


class ChatCompletionRequest(BaseModel):
    """The fields Steward reads; the rest of OpenAI's (temperature, tool_choice...) are ignored."""

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
    tools: list[ChatTool] | None = Field(
        None, max_length=64, description="functions the caller runs; calls come back as `tool_calls`"
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
        413: {"model": ErrorBody, "description": "text_too_large: the last message is over 16 KiB"},
        404: {
            "model": ErrorBody,
            "description": "`agent_not_found`, `version_not_found`, `conversation_not_found`, or "
            '`tool_call_not_found`: a `role: "tool"` message answers no call Steward asked for',
        },
        409: {
            "model": ErrorBody,
            "description": "`X-Steward-Conversation` names another agent's conversation "
            "(`agent_mismatch`) or one on another version than `slug@N`/`slug@draft` (`version_mismatch`)",
        },
        502: {"model": ErrorBody, "description": "the turn failed"},
        504: {"model": ErrorBody, "description": "the turn had no answer within 300 s"},
        **checked_beyond_schema(
            messages='the last one is a user message with text, or `role: "tool"` messages (each with '
            "its `tool_call_id`) answering the calls of Steward's last answer",
            tools="JSON Schema parameters of an object; no built-in tool's name",
        ),
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
    if last.role == MessageRole.TOOL:
        return await _continue(body, request, principal, session, temporal, settings, x_steward_conversation)
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
    await chat.offer_caller_tools(session, conversation_id, _caller_tools(body.tools))
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
        return _completion(body, conversation_id, created, answer, headers)
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
    return _streamed(body, conversation_id, created, stream, headers)


def _caller_tools(tools: list[ChatTool] | None) -> list[dict[str, Any]] | None:
    """The request's `tools` as client tools (422 naming `tools.N...` for one that is not one)."""
    if not tools:
        return None
    found: list[dict[str, Any]] = []
    for i, tool in enumerate(tools):
        function = tool.function
        try:
            client = ClientTool(
                name=function.name,
                description=function.description or "",
                parameters=function.parameters or {"type": "object", "properties": {}},
            )
        except ValidationError as err:
            first = err.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise ApiError(
                422,
                "validation_error",
                f"tools.{i}.function.{where}: {first['msg']}",
                [{"field": f"tools.{i}.function.{where}", "message": first["msg"]}],
            ) from None
        if client.name in TOOLS:
            raise ApiError(
                422,
                "validation_error",
                f"tools.{i}.function.name: '{client.name}' is a built-in tool of Steward's",
                [{"field": f"tools.{i}.function.name", "message": "a built-in tool's name"}],
            )
        found.append(client.model_dump(mode="json"))
    return found


def _outputs(body: ChatCompletionRequest) -> list[ToolOutput]:
    """The trailing `role: "tool"` messages as outputs (422 for one without its call or too long)."""
    trailing: list[ChatMessage] = []
    for message in reversed(body.messages):
        if message.role != MessageRole.TOOL:
            break
        trailing.insert(0, message)
    outputs: dict[str, ToolOutput] = {}
    for message in trailing:
        text = message.text()
        if not message.tool_call_id or len(text) > MAX_OUTPUT_CHARS:
            raise ApiError(
                422,
                "validation_error",
                f"a tool message needs its tool_call_id and at most {MAX_OUTPUT_CHARS} characters of content",
                [{"field": "messages", "message": "tool message without tool_call_id, or too long"}],
            )
        outputs.setdefault(message.tool_call_id, ToolOutput(call_id=message.tool_call_id, output=text))
    return list(outputs.values())


async def _continue(
    body: ChatCompletionRequest,
    request: Request,
    principal: Writer,
    session: SessionDep,
    temporal: TemporalDep,
    settings: SettingsDep,
    named: str | None,
) -> Response:
    """The caller ran the client tools of Steward's last answer: their outputs continue that turn.

    The conversation is the header's, else the one the first call's id names (OpenAI's loop sends
    neither a header nor a `user`).
    """
    outputs = _outputs(body)
    where = client_call_of(outputs[0].call_id)
    conversation_id = named or (where.conversation_id if where is not None else None)
    if conversation_id is None:
        raise ApiError(
            404,
            "tool_call_not_found",
            f"tool_call_id '{outputs[0].call_id}' is not a call Steward asked for",
            [{"field": "messages", "message": "unknown tool_call_id"}],
        )
    slug, target = chat.parse_model(body.model)
    if target == "draft" and principal.role != Role.ADMIN:
        raise ApiError(403, "forbidden", "only an admin key may talk to an agent's draft (slug@draft)")
    agent = await find_agent(session, principal.team_id, slug)
    conversation, owner = await find_conversation(session, principal.team_id, conversation_id)
    if owner.id != agent.id:
        raise ApiError(
            409,
            "agent_mismatch",
            f"conversation {conversation_id} belongs to agent '{owner.slug}', not '{agent.slug}'",
        )
    headers = {CONVERSATION_HEADER: conversation.id}
    created = int(time.time())
    if not body.stream:
        answer = await chat.continue_with_outputs(
            session, temporal, settings, conversation.id, outputs, wait_seconds=WAIT_SECONDS, headers=headers
        )
        return _completion(body, conversation.id, created, answer, headers)
    stream = await chat.stream_with_outputs(
        session,
        temporal,
        settings,
        request.app.state.event_hub,
        request.app.state.sessions,
        conversation.id,
        outputs,
    )
    return _streamed(body, conversation.id, created, stream, headers)


def _openai_calls(calls: list[ToolRequested]) -> list[dict[str, Any]]:
    return [
        {"id": c.call_id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
        for c in calls
    ]


def _completion(
    body: ChatCompletionRequest,
    conversation_id: str,
    created: int,
    answer: chat.ChatAnswer,
    headers: dict[str, str],
) -> JSONResponse:
    """A `chat.completion`: the reply, or (`finish_reason: "tool_calls"`) the client calls to run."""
    message: dict[str, Any] = {"role": "assistant", "content": answer.text}
    if answer.tool_calls:
        message = {
            "role": "assistant",
            "content": answer.text or None,
            "tool_calls": _openai_calls(answer.tool_calls),
        }
    completion = {
        "id": f"chatcmpl-{conversation_id}-{answer.turn}",
        "object": "chat.completion",
        "created": created,
        "model": body.model,
        "choices": [
            {
                "index": 0,
                "message": message,
                "finish_reason": "tool_calls" if answer.tool_calls else "stop",
                "logprobs": None,
            }
        ],
        "usage": _usage(*answer.usage),
    }
    return JSONResponse(completion, headers={**headers, **_turn_headers(answer.turn, answer.duplicate)})


def _streamed(
    body: ChatCompletionRequest,
    conversation_id: str,
    created: int,
    stream: chat.ChatStream,
    headers: dict[str, str],
) -> StreamingResponse:
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
    finish = "stop"
    async for piece in pieces:
        if piece is None:
            yield b": keep-alive\n\n"
        elif isinstance(piece, str):
            yield chunk({"content": piece})
        elif isinstance(piece, CallsRequested):
            calls = [{"index": i, **call} for i, call in enumerate(_openai_calls(piece.calls))]
            yield chunk({"tool_calls": calls})
            finish = "tool_calls"
        elif isinstance(piece, Broke):
            error = {"code": piece.code, "message": piece.message, "type": "turn_failed"}
            yield b"data: " + json.dumps({"error": error}).encode() + b"\n\n"
        else:
            usage = _usage(*piece.usage)
            if include_usage:
                yield chunk({}, finish)
                yield b"data: " + json.dumps({**base, "choices": [], "usage": usage}).encode() + b"\n\n"
            else:
                yield chunk({}, finish, usage=usage)
    yield b"data: [DONE]\n\n"
