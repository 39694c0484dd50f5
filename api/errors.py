"""One error shape for every failure: {"error": {"code", "message", "details"?}}."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from schemas.api import ErrorBody, ErrorDetail

log = logging.getLogger("steward.api")

_STATUS_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    429: "too_many_requests",
    503: "unavailable",
}


class ApiError(Exception):
    """An error the caller can act on, with its HTTP status and a stable code."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        details: list[dict[str, Any]] | dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details
        self.headers = headers


def error_response(
    status: int,
    code: str,
    message: str,
    details: list[dict[str, Any]] | dict[str, Any] | None = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    body = ErrorBody(error=ErrorDetail(code=code, message=message, details=details))
    return JSONResponse(body.model_dump(exclude_none=True), status_code=status, headers=headers)


def field_errors(err: RequestValidationError) -> list[dict[str, Any]]:
    """Pydantic errors as {field, message, type}, with the field as a dotted path."""
    return [
        {
            "field": ".".join(str(p) for p in e["loc"] if p != "body") or "body",
            "message": e["msg"],
            "type": e["type"],
        }
        for e in err.errors()
    ]


def json_error(err: RequestValidationError) -> dict[str, Any] | None:
    """A body that is not JSON at all, as {field, message, type, line, column, position}; else None.

    FastAPI reports it as a validation error whose "field" is the character offset; people
    want the line and column their editor shows.
    """
    problem = next((e for e in err.errors() if e["type"] == "json_invalid"), None)
    if problem is None:
        return None
    position = problem["loc"][-1] if isinstance(problem["loc"][-1], int) else 0
    doc = err.body if isinstance(err.body, str) else ""
    line = doc.count("\n", 0, position) + 1
    column = position - (doc.rfind("\n", 0, position) + 1) + 1
    reason = str(problem.get("ctx", {}).get("error") or problem["msg"])
    return {
        "field": "body",
        "message": f"{reason} at line {line}, column {column} (character {position})",
        "type": "json_invalid",
        "line": line,
        "column": column,
        "position": position,
    }


def install(app: FastAPI) -> None:
    """Register the handlers that turn every exception into the error shape."""

    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc.status, exc.code, exc.message, exc.details, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        malformed = json_error(exc)
        if malformed is not None:
            message = f"body is not valid JSON: {malformed['message']}"
            return error_response(422, "validation_error", message, [malformed])
        details = field_errors(exc)
        problems = "; ".join(
            f"{d['field']}: {d['message'].removeprefix('Value error, ')}" for d in details[:5]
        )
        return error_response(422, "validation_error", f"invalid request: {problems}", details)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _STATUS_CODES.get(exc.status_code, "error")
        return error_response(exc.status_code, code, str(exc.detail), headers=exc.headers)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return error_response(500, "internal_error", "internal error; see the server log")
