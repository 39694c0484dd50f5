"""Helpers for the members tests: people in teams, and browsers-without-a-browser signed in as them."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import httpx
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from api.services import users
from schemas.enums import Role
from schemas.tables import Team

WEB = {"X-Steward-Web": "1"}
PASSWORD = "correct horse battery"


@dataclass
class Person:
    user_id: str
    email: str
    name: str
    password: str = PASSWORD


async def add_person(
    sessions: async_sessionmaker[AsyncSession], team_id: str, role: Role, name: str = "Pat Doe"
) -> Person:
    email = f"p-{uuid.uuid4().hex[:10]}@example.test"
    async with sessions() as session:
        team = await session.get(Team, team_id)
        assert team is not None
        user = await users.ensure_person(session, team, email, name, PASSWORD, role)
        await session.commit()
        return Person(user.id, email, name)


def web_client(app: FastAPI, ip: str | None = None) -> httpx.AsyncClient:
    """A client with its own cookie jar, from its own IP (the sign-in limit counts per IP)."""
    ip = ip or f"10.{uuid.uuid4().int % 250}.{uuid.uuid4().int % 250}.{uuid.uuid4().int % 250}"
    transport = httpx.ASGITransport(app=app, client=(ip, 40000))
    return httpx.AsyncClient(transport=transport, base_url="http://steward.test", timeout=60)


async def sign_in(web: httpx.AsyncClient, email: str, password: str = PASSWORD) -> httpx.Response:
    return await web.post("/login", data={"email": email, "password": password, "next": "/inbox"})
