"""A conversation's live events: server-sent events and a WebSocket, both resumable by event id."""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request, Response, WebSocket, WebSocketDisconnect
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from api.deps import (
    SESSION_COOKIE,
    CurrentKey,
    Principal,
    SessionDep,
    principal_of_token,
    same_origin,
    stream_guard,
)
from api.errors import ApiError
from api.services.conversations import find_conversation, send
from api.streams import RECHECK_SECONDS, follow, sse_response, while_allowed
from schemas.api import MAX_DB_INT, ErrorBody, MessageCreate
from schemas.enums import Role
from schemas.settings import Settings

router = APIRouter(
    prefix="/v1/conversations",
    tags=["events"],
    responses={401: {"model": ErrorBody}, 404: {"model": ErrorBody}},
)

AUTH_SECONDS = 10.0
"""How long a WebSocket client has to send its key in the first frame."""
WRITERS = frozenset({Role.ADMIN, Role.OPERATOR, Role.CLIENT})


def _resume_point(last_event_id: str | None, after: int) -> int:
    """`Last-Event-ID` (sent by a reconnecting EventSource) wins over `?after=`."""
    if last_event_id is None or not last_event_id.strip():
        return after
    if not last_event_id.strip().isdigit() or int(last_event_id) > MAX_DB_INT:
        raise ApiError(
            422,
            "validation_error",
            "Last-Event-ID must be an event id (a whole number)",
            [{"field": "Last-Event-ID", "message": "not an event id"}],
        )
    return int(last_event_id)


@router.get(
    "/{conversation_id}/events",
    response_class=Response,
    responses={200: {"content": {"text/event-stream": {}}, "description": "the event stream"}},
)
async def stream_events(
    conversation_id: str,
    request: Request,
    principal: CurrentKey,
    session: SessionDep,
    after: Annotated[int, Query(ge=0, le=MAX_DB_INT, description="resume after this event id")] = 0,
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID")] = None,
) -> Response:
    """The conversation's events after `after` (or `Last-Event-ID`), then each new one as it happens.

    Every event has `id:` (increasing by one per conversation), `event:` (its kind) and
    `data:` (JSON with at least `turn`). A comment line is sent every 15 s when idle.
    Resume at any time, also long after a turn ended, by passing the last id seen. The
    stream ends within seconds of its key or session being revoked (or its person leaving
    the team); reconnecting then answers 401.
    """
    start = _resume_point(last_event_id, after)
    await find_conversation(session, principal.team_id, conversation_id)
    await session.close()
    settings: Settings = request.app.state.settings
    events = follow(
        request.app.state.event_hub,
        request.app.state.sessions,
        conversation_id,
        after=start,
        heartbeat=settings.sse_heartbeat_seconds,
    )
    return sse_response(while_allowed(events, stream_guard(request.app, principal)))


class _Refused(Exception):
    def __init__(self, close_code: int, code: str, message: str) -> None:
        super().__init__(message)
        self.close_code = close_code
        self.code = code
        self.message = message


def _error_frame(code: str, message: str, details: Any = None) -> str:
    error: dict[str, Any] = {"code": code, "message": message}
    if details is not None:
        error["details"] = details
    return json.dumps({"type": "error", "error": error})


async def _authenticate(websocket: WebSocket, session: AsyncSession, token: str | None) -> Principal:
    """The key from `?token=`, `Authorization`, the session cookie (same origin only) or the first frame."""
    header = websocket.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        token = header[7:]
    cookie = websocket.cookies.get(SESSION_COOKIE)
    if token is None and cookie is not None and same_origin(websocket):
        # Browsers send cookies with cross-site WebSocket handshakes too; only our pages may use it.
        token = cookie
    if token is None:
        try:
            first = json.loads(await asyncio.wait_for(websocket.receive_text(), AUTH_SECONDS))
        except TimeoutError as err:
            raise _Refused(4401, "unauthorized", "send {'type': 'auth', 'key': ...} first") from err
        except json.JSONDecodeError as err:
            raise _Refused(4400, "bad_request", "frames must be JSON objects") from err
        key = first.get("key") if isinstance(first, dict) and first.get("type") == "auth" else None
        if not isinstance(key, str):
            raise _Refused(4401, "unauthorized", "the first frame must be {'type': 'auth', 'key': ...}")
        token = key
    principal = await principal_of_token(websocket, session, token)
    if principal is None:
        raise _Refused(4401, "unauthorized", "API key is not valid")
    return principal


@router.websocket("/{conversation_id}/ws")
async def conversation_socket(
    websocket: WebSocket,
    conversation_id: str,
    after: Annotated[int, Query(ge=0, le=MAX_DB_INT)] = 0,
    token: str | None = None,
) -> None:
    """The same events as `/events` as JSON frames `{"type": "event", "id", "event", "data"}`.

    Authenticate with `?token=<key>`, an `Authorization` header, or a first frame
    `{"type": "auth", "key": "<key>"}`. Send `{"type": "message", "text": "...",
    "idempotency_key": "..."}` to start a turn; the answer is `{"type": "accepted", "turn",
    "status", "duplicate"}` or `{"type": "error", "error": {"code", "message"}}`. Within
    seconds of the key or session being revoked the socket gets an `unauthorized` error
    frame and closes with 4401.
    """
    await websocket.accept()
    app = websocket.app
    sessions: async_sessionmaker[AsyncSession] = app.state.sessions
    try:
        async with sessions() as session:
            principal = await _authenticate(websocket, session, token)
            try:
                await find_conversation(session, principal.team_id, conversation_id)
            except ApiError as err:
                raise _Refused(4404, err.code, err.message) from err
    except _Refused as refused:
        await websocket.send_text(_error_frame(refused.code, refused.message))
        await websocket.close(refused.close_code)
        return
    except WebSocketDisconnect:
        return
    await websocket.send_text(json.dumps({"type": "ready", "conversation": conversation_id}))
    settings: Settings = app.state.settings

    async def forward() -> None:
        events = follow(app.state.event_hub, sessions, conversation_id, after, settings.sse_heartbeat_seconds)
        async for event in events:
            if event is not None:
                await websocket.send_text(event.frame)
        # The stream only ends when this process stops: tell the client to come back.
        await websocket.close(1012, "server restarting; reconnect with ?after=<last id>")

    allowed = stream_guard(app, principal)

    async def watch() -> None:
        while True:  # a poll, not an event: revocation may happen in another process
            await asyncio.sleep(RECHECK_SECONDS)
            if not await allowed():
                break
        await websocket.send_text(_error_frame("unauthorized", "access was revoked"))
        await websocket.close(4401, "access was revoked")

    async def receive() -> None:
        while True:
            frame = await websocket.receive_text()
            await websocket.send_text(await _handle(frame))

    async def _handle(frame: str) -> str:
        try:
            message = json.loads(frame)
        except json.JSONDecodeError:
            return _error_frame("bad_request", "frames must be JSON objects")
        if not isinstance(message, dict) or message.get("type") != "message":
            return _error_frame("bad_request", "unknown frame; send {'type': 'message', 'text': ...}")
        if principal.role not in WRITERS:
            return _error_frame("forbidden", f"role '{principal.role.value}' may not send messages")
        try:
            body = MessageCreate.model_validate({k: v for k, v in message.items() if k != "type"})
        except ValidationError as err:
            fields = [{"field": ".".join(map(str, e["loc"])), "message": e["msg"]} for e in err.errors()]
            return _error_frame("validation_error", "invalid message", fields)
        temporal = app.state.temporal
        if temporal is None:
            return _error_frame("temporal_unavailable", "Temporal is not reachable yet; try again shortly")
        try:
            async with sessions() as session:
                sent = await send(session, temporal, settings, principal.team_id, conversation_id, body)
        except ApiError as err:
            return _error_frame(err.code, err.message, err.details)
        return json.dumps(
            {"type": "accepted", "turn": sent.turn, "status": sent.status.value, "duplicate": sent.duplicate}
        )

    tasks = [asyncio.create_task(forward()), asyncio.create_task(receive()), asyncio.create_task(watch())]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            if not isinstance(task.exception(), WebSocketDisconnect | RuntimeError):
                task.result()
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, WebSocketDisconnect, RuntimeError):
                await task
