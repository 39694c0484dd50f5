"""The codec endpoint for Temporal's Web UI and CLI: `/codec/decode` and `/codec/encode`.

Histories hold encrypted payloads (`activities/infra/codec.py`); an operator reads them in
the Temporal UI by pointing its codec server setting here. The UI calls from its own origin,
so these routes answer CORS for the origins in `STEWARD_CODEC_CORS_ORIGINS` (and only those),
on successes and errors alike, so the UI can show why it was refused.

Who may call: an admin or operator, by `Authorization: Bearer <key>` (the CLI's
`--codec-auth`) or by the console's session cookie, which the UI sends when "include
cross-origin credentials" is on. A cookie counts only from Steward's own pages or an allowed
UI origin: another site's page cannot have payloads decoded with a signed-in operator's cookie.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute

from api.deps import (
    Principal,
    SessionDep,
    SettingsDep,
    admitted,
    presented_token,
    principal_of,
    same_origin,
)
from api.errors import ApiError, checked_beyond_schema
from api.services import codec
from schemas.api import CodecPayloads, ErrorBody
from schemas.enums import Role
from schemas.settings import Settings

READERS = (Role.ADMIN, Role.OPERATOR)
MAX_AGE_SECONDS = 600


def allowed_origins(settings: Settings) -> frozenset[str]:
    return frozenset(o.strip().rstrip("/") for o in settings.codec_cors_origins.split(",") if o.strip())


def _cors_headers(request: Request) -> dict[str, str]:
    origin = request.headers.get("origin", "")
    if origin not in allowed_origins(request.app.state.settings):
        return {}
    return {
        "Access-Control-Allow-Origin": origin,
        "Access-Control-Allow-Credentials": "true",
        "Vary": "Origin",
    }


class CorsRoute(APIRoute):
    """A route whose every answer (errors too) carries the CORS headers for an allowed origin."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def with_cors(request: Request) -> Response:
            try:
                response = await handler(request)
            except (ApiError, RequestValidationError) as err:
                response = await request.app.exception_handlers[type(err)](request, err)
            response.headers.update(_cors_headers(request))
            return response

        return with_cors


async def codec_caller(request: Request, session: SessionDep, settings: SettingsDep) -> Principal:
    """An admin or operator, by bearer key or by the session cookie from an allowed origin."""
    origin = request.headers.get("origin", "").rstrip("/")
    token = presented_token(
        request,
        cookie_allowed=same_origin(request) or origin in allowed_origins(settings),
        cookie_refusal="a cookie may call the codec only from Steward or an allowed Temporal UI",
        missing="send an API key as 'Authorization: Bearer <key>', or sign in to the console",
    )
    return admitted(await principal_of(request, session, token), READERS)


Caller = Annotated[Principal, Depends(codec_caller)]
CHECKED = checked_beyond_schema(
    payloads="each base64 value must decode; a sealed payload must open with a configured key"
)

router = APIRouter(
    prefix="/codec",
    tags=["codec"],
    route_class=CorsRoute,
    responses={401: {"model": ErrorBody}, 403: {"model": ErrorBody}, **CHECKED},
)


@router.post("/decode", response_model=CodecPayloads)
async def decode(body: CodecPayloads, _: Caller, settings: SettingsDep) -> CodecPayloads:
    """Open payloads sealed with this deployment's keys; others come back unchanged."""
    return codec.decode(settings, body)


@router.post("/encode", response_model=CodecPayloads)
async def encode(body: CodecPayloads, _: Caller, settings: SettingsDep) -> CodecPayloads:
    """Seal payloads with the current key, as a worker would (unchanged when none is set)."""
    return codec.encode(settings, body)


@router.options("/{operation}", include_in_schema=False)
async def preflight(operation: str, request: Request) -> Response:
    """The browser's CORS preflight: allowed only for a configured UI origin."""
    headers = _cors_headers(request)
    if headers and operation in ("decode", "encode"):
        requested = request.headers.get("access-control-request-headers", "")[:512]
        headers |= {
            "Access-Control-Allow-Methods": "POST",
            "Access-Control-Allow-Headers": requested or "authorization, content-type, x-namespace",
            "Access-Control-Max-Age": str(MAX_AGE_SECONDS),
        }
        return Response(status_code=204, headers=headers)
    return Response(status_code=403)
