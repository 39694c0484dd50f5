"""Helpers shared by tests: a database per session, API clients per team, polling."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
import psycopg
import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from api.services.keys import create_key, ensure_team
from schemas.enums import Role
from schemas.settings import Settings
from workers.migrate import alembic_config
from workers.seed import ensure_slots

PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
NO_APPROVALS = {"book_appointment": {"mode": "auto"}, "create_ticket": {"mode": "auto"}}
"""Tool policies for tests about tools themselves: side-effecting calls run without asking."""
T = TypeVar("T")


def create_database() -> str:
    """A fresh, empty PostgreSQL database; returns its SQLAlchemy URL."""
    name = f"steward_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"


def drop_database(url: str) -> None:
    name = url.rsplit("/", 1)[1]
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def eventually(check: Callable[[], Awaitable[T]], timeout: float = 20.0, every: float = 0.1) -> T:
    """Poll `check` until it returns a truthy value (returned) or raise after `timeout`."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = await check()
        if value:
            return value
        if loop.time() > deadline:
            raise AssertionError(f"condition not met within {timeout}s (last value: {value!r})")
        await asyncio.sleep(every)


@dataclass
class TeamClient:
    """An API client acting as one key of one team."""

    http: httpx.AsyncClient
    team_id: str
    key: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}

    async def request(
        self, method: str, path: str, headers: dict[str, str] | None = None, **kwargs: Any
    ) -> httpx.Response:
        return await self.http.request(method, path, headers={**self.headers, **(headers or {})}, **kwargs)

    async def create_agent(self, model: str, **fields: Any) -> dict[str, Any]:
        body = {"slug": f"a-{uuid.uuid4().hex[:8]}", "name": "Test agent", "model": model, **fields}
        response = await self.request("POST", "/v1/agents", json=body)
        assert response.status_code == 201, response.text
        return dict(response.json())

    async def start_conversation(self, agent_slug: str) -> str:
        response = await self.request("POST", "/v1/conversations", json={"agent": agent_slug})
        assert response.status_code == 201, response.text
        return str(response.json()["id"])

    async def send(
        self,
        conversation_id: str,
        text: str,
        *,
        wait: bool = True,
        key: str | None = None,
        timeout: float = 30,
    ) -> httpx.Response:
        body: dict[str, Any] = {"text": text}
        if key is not None:
            body["idempotency_key"] = key
        params = {"wait": "true", "timeout": str(timeout)} if wait else {}
        return await self.request(
            "POST", f"/v1/conversations/{conversation_id}/messages", json=body, params=params
        )

    async def messages(self, conversation_id: str) -> list[dict[str, Any]]:
        response = await self.request("GET", f"/v1/conversations/{conversation_id}/messages")
        assert response.status_code == 200, response.text
        return list(response.json()["items"])

    async def conversation(self, conversation_id: str) -> dict[str, Any]:
        response = await self.request("GET", f"/v1/conversations/{conversation_id}")
        assert response.status_code == 200, response.text
        return dict(response.json())


async def new_team(
    sessions: async_sessionmaker[AsyncSession], http: httpx.AsyncClient, role: Role = Role.ADMIN
) -> TeamClient:
    """A fresh team with appointment slots and one key of `role`."""
    async with sessions() as session:
        team = await ensure_team(session, f"team-{uuid.uuid4().hex[:10]}")
        key = await create_key(session, team, role, f"{role} key")
        await ensure_slots(session, team)
        await session.commit()
        return TeamClient(http=http, team_id=team.id, key=key)


async def add_key(sessions: async_sessionmaker[AsyncSession], team: TeamClient, role: Role) -> TeamClient:
    """Another key, of another role, for the same team."""
    from sqlalchemy import select

    from schemas.tables import Team

    async with sessions() as session:
        row = (await session.execute(select(Team).where(Team.id == team.team_id))).scalar_one()
        key = await create_key(session, row, role, f"{role} key")
        await session.commit()
    return TeamClient(http=team.http, team_id=team.team_id, key=key)


@contextmanager
def migrating(backend: str, tmp_path: Path, revision: str) -> Iterator[tuple[Config, sa.Engine]]:
    """A new database (`sqlite` in `tmp_path`, or `postgresql`) migrated to `revision`, with its
    Alembic config and an engine for raw SQL; disposed of (and a PostgreSQL one dropped) after."""
    url = f"sqlite:///{tmp_path / 'steward.db'}" if backend == "sqlite" else create_database()
    try:
        config = alembic_config(Settings(database_url=url))
        command.upgrade(config, revision)
        engine = sa.create_engine(Settings(database_url=url).sync_database_url)
        try:
            yield config, engine
        finally:
            engine.dispose()
    finally:
        if backend == "postgresql":
            drop_database(url)
