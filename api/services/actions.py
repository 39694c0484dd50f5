"""Custom actions: import an OpenAPI document, choose its operations, and check the service.

The document (given, or fetched once from `spec_url` under the outbound rules) is validated
by `openapi-spec-validator`; a bad one is 422 `invalid_spec` with the validator's message and
the place it points at. The chosen operations' tools are worked out here, once, and stored
on the row. The auth's secret parts are sealed with `SecretBox` and never shown.
"""

from __future__ import annotations

import time
from typing import Any

import aiohttp
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from yarl import URL

from activities import catalogue
from activities.actions import openapi
from activities.actions.calls import CallFailed, Tokens, call, config_of
from activities.actions.outbound import AddressRefused, Outgoing, checked, new_session, send
from activities.infra.secrets import SecretBox, SecretsUnavailable
from api.errors import ApiError
from schemas.api import (
    ActionCheck,
    ActionCheckRequest,
    ActionCreate,
    ActionPublic,
    ActionTool,
    ActionUpdate,
    AuthPublic,
)
from schemas.api.actions import ApiKeyAuth, Auth, BasicAuth, BearerAuth, OAuth2Auth
from schemas.settings import Settings
from schemas.tables import Action, utcnow
from schemas.tools import argument_problems

SPEC_FETCH_TIMEOUT = 10.0
SPEC_MAX_BYTES = 1024 * 1024
_SECRET_FIELDS = {"api_key": "key", "bearer": "token", "basic": "password", "oauth2": "client_secret"}


def _invalid(field: str, message: str) -> ApiError:
    return ApiError(422, "validation_error", f"{field}: {message}", [{"field": field, "message": message}])


def _spec_refused(err: openapi.SpecInvalid, field: str = "spec") -> ApiError:
    detail: dict[str, Any] = {"field": field, "location": err.location, "message": err.message}
    if err.detail:
        detail["validator"] = err.detail
    return ApiError(
        422, "invalid_spec", f"invalid OpenAPI document at {err.location}: {err.message}", [detail]
    )


def public(action: Action) -> ActionPublic:
    """The action as the API shows it: its auth's kind and where it goes, never its secret."""
    auth = dict(action.auth)
    info = action.spec.get("info")
    return ActionPublic(
        id=action.id,
        name=action.name,
        spec_url=action.spec_url,
        base_url=action.base_url,
        title=str(info.get("title", "")) if isinstance(info, dict) else "",
        operations=list(action.operations),
        tools=[ActionTool.model_validate(t) for t in action.tools],
        auth=AuthPublic(
            kind=auth.get("kind", "none"),
            header=auth.get("header"),
            query=auth.get("query"),
            username=auth.get("username"),
            token_url=auth.get("token_url"),
            client_id=auth.get("client_id"),
            scopes=list(auth.get("scopes") or []),
            has_secret=action.secret is not None,
        ),
        timeout_seconds=action.timeout_seconds,
        max_response_bytes=action.max_response_bytes,
        follow_redirects=action.follow_redirects,
        check_operation=action.check_operation,
        last_check=ActionCheck.model_validate(action.last_check) if action.last_check else None,
        created_at=action.created_at,
        updated_at=action.updated_at,
    )


async def find_action(session: AsyncSession, team_id: str, action_id: str) -> Action:
    """The team's live action with this id, or 404."""
    action = (
        await session.execute(
            select(Action).where(
                Action.id == action_id, Action.team_id == team_id, Action.deleted_at.is_(None)
            )
        )
    ).scalar_one_or_none()
    if action is None:
        raise ApiError(404, "action_not_found", f"no action '{action_id}' in this team")
    return action


async def list_actions(session: AsyncSession, team_id: str) -> list[Action]:
    rows = await session.execute(
        select(Action).where(Action.team_id == team_id, Action.deleted_at.is_(None)).order_by(Action.name)
    )
    return list(rows.scalars())


async def _fetched(settings: Settings, spec_url: str) -> dict[str, Any]:
    """The document at `spec_url`, fetched under the same rules as a call."""
    async with new_session(settings.allow_http_actions) as http:
        try:
            answer = await send(
                http,
                Outgoing("GET", URL(spec_url), {"Accept": "application/json, application/yaml, text/yaml"}),
                allow_http=settings.allow_http_actions,
                timeout=SPEC_FETCH_TIMEOUT,
                max_bytes=SPEC_MAX_BYTES,
            )
        except AddressRefused as err:
            raise _invalid("spec_url", f"refused: {err}") from None
        except (aiohttp.ClientError, TimeoutError) as err:
            raise _invalid("spec_url", f"could not be fetched: {type(err).__name__}") from None
    if answer.status != 200:
        raise _invalid("spec_url", f"answered HTTP {answer.status}")
    if answer.truncated:
        raise _invalid("spec_url", f"the document is larger than {SPEC_MAX_BYTES} bytes")
    try:
        return openapi.parse(answer.body.decode("utf-8", errors="replace"))
    except openapi.SpecInvalid as err:
        raise _spec_refused(err, "spec_url") from None


async def _document(
    settings: Settings, spec: dict[str, Any] | str | None, spec_url: str | None
) -> dict[str, Any]:
    field = "spec" if spec is not None else "spec_url"
    try:
        if spec is not None:
            document = openapi.parse(spec) if isinstance(spec, str) else spec
        else:
            assert spec_url is not None  # the body's validator wants one of them
            document = await _fetched(settings, spec_url)
        return openapi.validated(document)
    except openapi.SpecInvalid as err:
        raise _spec_refused(err, field) from None


def _tools(document: dict[str, Any], name: str, operations: list[str]) -> list[dict[str, Any]]:
    try:
        tools = openapi.tools_of(document, name, operations)
    except openapi.SpecInvalid as err:
        raise _invalid("operations", err.message) from None
    return [t.model_dump(mode="json", by_alias=True) for t in tools]


def _base_url(settings: Settings, given: str | None, document: dict[str, Any]) -> str:
    base = given or openapi.default_server(document)
    if base is None:
        raise _invalid("base_url", "needed: the document names no absolute server URL")
    try:
        checked(base, settings.allow_http_actions)
    except AddressRefused as err:
        raise _invalid("base_url", str(err)) from None
    return base.rstrip("/")


def _check_operation(tools: list[dict[str, Any]], chosen: str | None) -> str | None:
    if chosen is None:
        return None
    tool = next((t for t in tools if t["operation_id"] == chosen), None)
    if tool is None:
        raise _invalid("check_operation", f"{chosen!r} is not one of the action's operations")
    if tool["side_effecting"]:
        raise _invalid("check_operation", f"{chosen!r} is {tool['method']}: a check calls GET or HEAD only")
    return chosen


def _seal_auth(action: Action, auth: Auth, settings: Settings) -> None:
    """Split the auth into what is shown (`auth`) and what is sealed (`secret`)."""
    shown = auth.model_dump(
        mode="json", exclude_none=True, exclude={"key", "token", "password", "client_secret"}
    )
    secret: dict[str, str] | None = None
    if isinstance(auth, ApiKeyAuth):
        secret = {"key": auth.key}
    elif isinstance(auth, BearerAuth):
        secret = {"token": auth.token}
    elif isinstance(auth, BasicAuth):
        secret = {"password": auth.password}
    elif isinstance(auth, OAuth2Auth):
        try:
            checked(auth.token_url, settings.allow_http_actions)
        except AddressRefused as err:
            raise _invalid("auth.token_url", str(err)) from None
        secret = {"client_secret": auth.client_secret}
    if secret is not None:
        try:
            action.secret = SecretBox.of(settings).seal(secret)
        except SecretsUnavailable as err:
            raise ApiError(503, "secrets_unavailable", str(err)) from err
    else:
        action.secret = None
    action.auth = shown


async def _commit(session: AsyncSession, action: Action) -> None:
    try:
        await session.commit()
    except IntegrityError as err:
        await session.rollback()
        raise ApiError(409, "action_exists", f"an action named '{action.name}' already exists") from err
    catalogue.forget(action.team_id)


async def create_action(
    session: AsyncSession, settings: Settings, team_id: str, body: ActionCreate
) -> Action:
    """Import an action: validate its document, work out its operations' tools, seal its auth."""
    document = await _document(settings, body.spec, body.spec_url)
    tools = _tools(document, body.name, body.operations)
    action = Action(
        team_id=team_id,
        name=body.name,
        spec=document,
        spec_url=body.spec_url,
        base_url=_base_url(settings, body.base_url, document),
        operations=list(dict.fromkeys(body.operations)),
        tools=tools,
        timeout_seconds=body.timeout_seconds,
        max_response_bytes=body.max_response_bytes,
        follow_redirects=body.follow_redirects,
        check_operation=_check_operation(tools, body.check_operation),
    )
    _seal_auth(action, body.auth, settings)
    session.add(action)
    await _commit(session, action)
    return action


async def update_action(
    session: AsyncSession, settings: Settings, team_id: str, action_id: str, body: ActionUpdate
) -> Action:
    """Change an action; the next round of every turn sees the change."""
    action = await find_action(session, team_id, action_id)
    given = body.model_fields_set
    for field in ("name", "operations", "timeout_seconds", "max_response_bytes", "follow_redirects", "auth"):
        if field in given and getattr(body, field) is None:
            raise _invalid(field, "may not be null")
    if body.spec is not None and body.spec_url is not None:
        raise _invalid("spec", "give the document as `spec` or where it is as `spec_url`, not both")
    document = action.spec
    replaced = body.spec is not None or body.spec_url is not None
    if replaced:
        document = await _document(settings, body.spec, body.spec_url)
        action.spec_url = body.spec_url
    name = body.name or action.name
    operations = list(dict.fromkeys(body.operations)) if body.operations else list(action.operations)
    tools = _tools(document, name, operations)
    action.spec, action.name, action.operations, action.tools = document, name, operations, tools
    if "base_url" in given or replaced:
        action.base_url = _base_url(settings, body.base_url, document)
    if body.auth is not None:
        _seal_auth(action, body.auth, settings)
    for field in ("timeout_seconds", "max_response_bytes", "follow_redirects"):
        if getattr(body, field) is not None:
            setattr(action, field, getattr(body, field))
    if "check_operation" in given:
        action.check_operation = _check_operation(tools, body.check_operation)
    elif action.check_operation not in operations:
        action.check_operation = None
    action.updated_at = utcnow()
    await _commit(session, action)
    return action


async def delete_action(session: AsyncSession, team_id: str, action_id: str) -> None:
    """Delete an action and erase its secret; agents that named its tools are no longer offered them."""
    action = await find_action(session, team_id, action_id)
    action.deleted_at = action.updated_at = utcnow()
    action.secret = None
    await session.commit()
    catalogue.forget(team_id)


def _safe_operation(action: Action, chosen: str | None) -> ActionTool:
    tools = [ActionTool.model_validate(t) for t in action.tools]
    name = chosen or action.check_operation
    if name is None:
        usable = [t for t in tools if not t.side_effecting and not t.schema_.get("required")]
        if not usable:
            raise _invalid(
                "operation", "name a GET or HEAD operation to call (the action has none without arguments)"
            )
        return usable[0]
    tool = next((t for t in tools if t.operation_id == name), None)
    if tool is None:
        raise _invalid("operation", f"{name!r} is not one of the action's operations")
    if tool.side_effecting:
        raise _invalid("operation", f"{name!r} is {tool.method}: a check calls GET or HEAD only")
    return tool


async def check_action(
    session: AsyncSession, settings: Settings, team_id: str, action_id: str, body: ActionCheckRequest
) -> ActionCheck:
    """Call a safe operation now and remember the status and latency on the action."""
    action = await find_action(session, team_id, action_id)
    tool = _safe_operation(action, body.operation)
    problems = argument_problems(tool.schema_, body.arguments)
    if problems:
        raise ApiError(422, "validation_error", f"arguments: {problems[0]['message']}", problems)
    config = config_of(action)
    await session.commit()  # no transaction stays open while the service answers
    started = time.perf_counter()
    result: ActionCheck
    try:
        box = SecretBox.of(settings) if config.secret is not None else None
        async with new_session(settings.allow_http_actions) as http:
            answer = await call(
                http,
                config,
                tool,
                body.arguments,
                idempotency_key=None,
                box=box,
                tokens=Tokens(),
                allow_http=settings.allow_http_actions,
            )
        result = ActionCheck(
            ok=answer.status < 400,
            operation=tool.operation_id,
            status=answer.status,
            latency_ms=answer.latency_ms,
            message=None
            if answer.status < 400
            else f"{tool.method} {tool.path} answered HTTP {answer.status}",
            checked_at=utcnow(),
        )
    except (CallFailed, SecretsUnavailable) as err:
        result = ActionCheck(
            ok=False,
            operation=tool.operation_id,
            latency_ms=round((time.perf_counter() - started) * 1000),
            message=str(err),
            checked_at=utcnow(),
        )
    action.last_check = result.model_dump(mode="json")
    await session.commit()
    return result
