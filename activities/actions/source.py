"""Custom actions as a tool source: each offered operation of each live action is a tool.

Listing reads the tools worked out when the action was saved; the stamp is the count and the
latest `updated_at` of the team's action rows (deleted ones included: a delete sets it), so
every process lists a team's actions again at its next round after any change.
"""

from __future__ import annotations

import json
from collections.abc import Hashable
from typing import Any

import aiohttp
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from activities.actions.calls import ActionConfig, CallFailed, Tokens, call, config_of, for_model
from activities.actions.outbound import new_session
from activities.catalogue import SourceCall, ToolFailed
from activities.infra.secrets import SecretBox, SecretsUnavailable
from schemas.api import ActionTool
from schemas.settings import Settings
from schemas.tables import Action
from schemas.tools import SourceTool

KIND = "action"
ERROR_BODY_CHARS = 2000
"""How much of an error answer's body the model reads."""


def tool_of(action: Action, tool: ActionTool) -> SourceTool:
    return SourceTool(
        name=tool.name,
        description=tool.description,
        schema=tool.schema_,
        side_effecting=tool.side_effecting,
        source=KIND,
        source_id=action.id,
        target=tool.operation_id,
        label=f"action {action.name}: {tool.method} {tool.path}",
    )


class ActionSource:
    """The team's custom actions' operations, and how their calls are made."""

    kind = KIND

    def __init__(self) -> None:
        self._sessions: dict[bool, aiohttp.ClientSession] = {}
        """One connection pool per process (and per outbound rule set), made at the first call."""
        self.tokens = Tokens()

    async def stamp(self, session: AsyncSession, team_id: str) -> Hashable:
        row = (
            await session.execute(
                select(func.count(Action.id), func.max(Action.updated_at)).where(Action.team_id == team_id)
            )
        ).one()
        return (row[0], row[1])

    async def specs(self, session: AsyncSession, team_id: str) -> list[SourceTool]:
        rows = await session.execute(
            select(Action).where(Action.team_id == team_id, Action.deleted_at.is_(None)).order_by(Action.name)
        )
        return [
            tool_of(action, ActionTool.model_validate(tool))
            for action in rows.scalars()
            for tool in action.tools
        ]

    async def close(self) -> None:
        """Close the connection pools (a process that ends closes them with it)."""
        for session in self._sessions.values():
            await session.close()
        self._sessions.clear()

    def http(self, allow_http: bool) -> aiohttp.ClientSession:
        known = self._sessions.get(allow_http)
        if known is None or known.closed:
            known = self._sessions[allow_http] = new_session(allow_http)
        return known

    async def call(self, settings: Settings, request: SourceCall) -> dict[str, Any]:
        if request.sessions is None:
            raise ToolFailed("custom actions need the database to be called")
        async with request.sessions() as session:
            action = await session.get(Action, request.tool.source_id)
            config = config_of(action) if action is not None and action.deleted_at is None else None
            tool = _tool_named(action, request.tool.name) if action is not None else None
        if config is None or tool is None:
            raise ToolFailed(f"the action behind {request.tool.name!r} was deleted or changed")
        return await self.run(settings, config, tool, request.arguments, request.idempotency_key)

    async def run(
        self,
        settings: Settings,
        config: ActionConfig,
        tool: ActionTool,
        arguments: dict[str, Any],
        idempotency_key: str | None,
    ) -> dict[str, Any]:
        """Call one operation; an error answer (4xx, 5xx) or a refused call is a `ToolFailed`."""
        try:
            box = SecretBox.of(settings) if config.secret is not None else None
        except SecretsUnavailable as err:
            raise ToolFailed(f"the action's credentials cannot be opened: {err}") from None
        try:
            answer = await call(
                self.http(settings.allow_http_actions),
                config,
                tool,
                arguments,
                idempotency_key=idempotency_key,
                box=box,
                tokens=self.tokens,
                allow_http=settings.allow_http_actions,
            )
        except CallFailed as failure:
            raise ToolFailed(str(failure)) from None
        except SecretsUnavailable as err:
            raise ToolFailed(f"the action's credentials cannot be opened: {err}") from None
        result = for_model(tool, answer)
        if answer.status >= 400:
            body = result["body"]
            text = body if isinstance(body, str) else json.dumps(body) if body is not None else ""
            raise ToolFailed(f"{tool.name} answered HTTP {answer.status}: {text[:ERROR_BODY_CHARS]}")
        return result


def _tool_named(action: Action, name: str) -> ActionTool | None:
    for raw in action.tools:
        tool = ActionTool.model_validate(raw)
        if tool.name == name:
            return tool
    return None
