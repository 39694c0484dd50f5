"""One error shape for every failure: {"error": {"code", "message", "details"?}}."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from psycopg.errors import NumericValueOutOfRange
from sqlalchemy.exc import DBAPIError
from starlette.exceptions import HTTPException as StarletteHTTPException

from schemas.api import MAX_DB_INT, ErrorBody, ErrorDetail

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


BODY_PARSE_ERROR = "There was an error parsing the body"
"""FastAPI's 400 for a body its JSON reader could not even decode (not UTF-8, say)."""


def unreadable_body(cause: BaseException | None) -> JSONResponse:
    """A body that cannot be read as JSON text: 422 `validation_error`, like malformed JSON.

    FastAPI answers a JSON syntax error with a validation error but anything else its reader
    raises (bytes that are not UTF-8) with a bare 400; both are the same mistake to a caller.
    """
    reason = "it is not UTF-8 text" if isinstance(cause, UnicodeDecodeError) else "it could not be read"
    detail = {"field": "body", "message": reason, "type": "json_invalid"}
    return error_response(422, "validation_error", f"body is not valid JSON: {reason}", [detail])


def _refused_by_database(exc: DBAPIError) -> str | None:
    """Why the database refused a value the caller sent, when that is the cause; else None."""
    message = str(exc.orig)
    if "cannot contain NUL" in message:
        return "text may not contain NUL (\\u0000) characters"
    if isinstance(exc.orig, NumericValueOutOfRange) or "too large to convert" in message:
        return f"an integer is out of range (at most {MAX_DB_INT})"
    return None


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
        if exc.status_code == 400 and exc.detail == BODY_PARSE_ERROR:
            return unreadable_body(exc.__cause__)
        code = _STATUS_CODES.get(exc.status_code, "error")
        return error_response(exc.status_code, code, str(exc.detail), headers=exc.headers)

    @app.exception_handler(DBAPIError)
    async def _database(request: Request, exc: DBAPIError) -> JSONResponse:
        # A backstop: bounds and patterns in the schemas keep these from the database.
        refused = _refused_by_database(exc)
        if refused is None:
            return await _unexpected(request, exc)
        log.warning("database refused a value on %s %s: %s", request.method, request.url.path, refused)
        return error_response(422, "validation_error", f"a value was refused: {refused}")

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return error_response(500, "internal_error", "internal error; see the server log")


_DECLARED = {
    401: "unauthorized: no API key, or one that is not valid",
    403: "forbidden: the key's role may not do this (or `csrf_failed` for a cross-site cookie)",
    413: "payload_too_large: the body is over the API's limit",
    422: "validation_error: the request does not fit this document; `details` names each field",
    503: "temporal_unavailable: Temporal is not reachable yet; try again shortly",
}


def document(app: FastAPI) -> None:
    """Make the OpenAPI document say what the API answers, in the one error shape.

    FastAPI declares its own `HTTPValidationError` for 422, which the API never sends; each
    operation's statuses that come from shared machinery (the key, the role check, Temporal,
    the body limit, validation) are declared here from its dependencies, so no router can
    forget one.
    """
    original = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            doc = original()
            _one_error_shape(app, doc)
            app.openapi_schema = doc
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def _statuses(route: Any, method: str) -> set[int]:
    """What an operation may answer because of what it depends on."""
    from api.deps import SAFE_METHODS, get_principal, get_temporal

    calls: set[Any] = set()
    pending = list(route.dependant.dependencies)
    while pending:
        dependency = pending.pop()
        calls.add(dependency.call)
        pending.extend(dependency.dependencies)
    found: set[int] = set()
    if get_principal in calls:
        found.add(401)
    role_checked = any(getattr(c, "__qualname__", "").startswith("require.") for c in calls)
    if role_checked or (get_principal in calls and method not in SAFE_METHODS):  # csrf_failed
        found.add(403)
    if get_temporal in calls:
        found.add(503)
    if route.body_field is not None:
        found |= {413, 422}
    typed_path = any(p.field_info.annotation is not str for p in route.dependant.path_params)
    if typed_path or route.dependant.query_params or route.dependant.header_params:
        found.add(422)
    return found


def _one_error_shape(app: FastAPI, doc: dict[str, Any]) -> None:
    from fastapi.routing import APIRoute, iter_route_contexts

    schemas = doc.setdefault("components", {}).setdefault("schemas", {})
    for name in ("HTTPValidationError", "ValidationError"):
        schemas.pop(name, None)
    error_schema = ErrorBody.model_json_schema(ref_template="#/components/schemas/{model}")
    schemas.update(error_schema.pop("$defs", {}))
    schemas["ErrorBody"] = error_schema
    _json_schema_bounds(schemas)
    error_ref = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}
    # Included routers are flattened here as FastAPI flattens them for its own document.
    for route in iter_route_contexts(app.routes):
        if not isinstance(route.original_route, APIRoute) or not route.include_in_schema:
            continue
        for method in route.methods or ():
            operation = doc["paths"].get(route.path_format, {}).get(method.lower())
            if operation is None:
                continue
            responses = operation.setdefault("responses", {})
            statuses = _statuses(route, method)
            if 422 not in statuses and _is_fastapi_error(responses.get("422", {})):
                del responses["422"]  # only plain-string path parameters: nothing to refuse
            for status in statuses:
                responses.setdefault(str(status), {"description": _DECLARED[status]})
            for status, response in responses.items():
                if status.startswith(("4", "5")) and _is_fastapi_error(response):
                    response["content"] = error_ref
                    if response.get("description") in ("Validation Error", "Unprocessable Entity"):
                        response["description"] = _DECLARED[int(status)]
                elif status.startswith(("4", "5")) and "content" not in response:
                    response["content"] = error_ref


_BOUNDS = {"gt": "exclusiveMinimum", "ge": "minimum", "lt": "exclusiveMaximum", "le": "maximum"}


def _json_schema_bounds(node: Any) -> None:
    """Bounds pydantic left under its own names as JSON Schema's, throughout the document.

    A `Field(gt=...)` over a type with a `BeforeValidator` (the durations that also take "30m")
    reaches the schema as `gt`, which no client reads: it would send 0 and be refused.
    """
    if isinstance(node, dict):
        if node.get("type") in ("number", "integer"):
            for ours, theirs in _BOUNDS.items():
                if ours in node:
                    node.setdefault(theirs, node.pop(ours))
        for value in node.values():
            _json_schema_bounds(value)
    elif isinstance(node, list):
        for value in node:
            _json_schema_bounds(value)


def _is_fastapi_error(response: dict[str, Any]) -> bool:
    schema = response.get("content", {}).get("application/json", {}).get("schema", {})
    return bool(schema.get("$ref", "").endswith("/HTTPValidationError"))


CHECKED_KEY = "x-checked-beyond-schema"
"""On an operation's 422: the fields it checks further than its schema can say, and how."""


def checked_beyond_schema(**fields: str) -> dict[int | str, dict[str, Any]]:
    """A route's 422, naming the fields validated beyond their JSON Schema and the rule for each.

    A client (or a fuzzer) reading the document then knows why schema-valid data can be
    refused: a cursor must be one the API gave, a time zone an IANA name, and so on.
    """
    rules = "; ".join(f"`{name}`: {rule}" for name, rule in fields.items())
    return {
        422: {
            "model": ErrorBody,
            "description": f"{_DECLARED[422]}. Checked beyond the schema: {rules}",
            CHECKED_KEY: fields,
        }
    }
