"""Keys: created with a role, name and expiry (shown once), listed with last use, revoked for real.

Revocation reaches everything within 10 s: REST, pages, and SSE streams and WebSockets
opened before it.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta

import httpx
from fastapi import FastAPI
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from websockets.asyncio.client import connect

from schemas.enums import Role
from schemas.tables import ApiKey
from tests.members import WEB, add_person, sign_in, web_client
from tests.sse import events
from tests.support import TeamClient, add_key

WITHIN = 10.0
"""The issue's bound for a revocation to reach every open stream."""


async def test_keys_are_created_with_an_expiry_shown_once_listed_with_last_use_and_revoked(
    team: TeamClient, app: FastAPI, sessions: async_sessionmaker[AsyncSession]
) -> None:
    later = (datetime.now(UTC) + timedelta(days=30)).isoformat()
    created = await team.request(
        "POST", "/v1/keys", json={"name": "billing sync", "role": "client", "expires_at": later}
    )
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["key"].startswith("stw_") and body["role"] == "client" and body["created_by"] == "admin key"
    assert body["last_used_at"] is None

    used = await team.http.get("/v1/agents", headers={"Authorization": f"Bearer {body['key']}"})
    assert used.status_code == 200
    listed = (await team.request("GET", "/v1/keys")).json()["items"]
    mine = next(k for k in listed if k["id"] == body["id"])
    assert "key" not in mine and mine["prefix"] == body["key"][:10] and mine["last_used_at"] is not None

    past = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
    refused = await team.request("POST", "/v1/keys", json={"name": "x", "role": "viewer", "expires_at": past})
    assert refused.status_code == 422 and refused.json()["error"]["details"][0]["field"] == "expires_at"
    naive = await team.request(
        "POST", "/v1/keys", json={"name": "x", "role": "viewer", "expires_at": "2030-01-01T00:00:00"}
    )
    assert naive.status_code == 422

    client = await add_key(sessions, team, Role.CLIENT)
    assert (await client.request("GET", "/v1/keys")).status_code == 403
    assert (await client.request("DELETE", f"/v1/keys/{body['id']}")).status_code == 403

    revoked = await team.request("DELETE", f"/v1/keys/{body['id']}")
    assert revoked.status_code == 200 and revoked.json()["revoked_at"] is not None
    gone = await team.http.get("/v1/agents", headers={"Authorization": f"Bearer {body['key']}"})
    assert gone.status_code == 401
    assert (await team.request("DELETE", "/v1/keys/nope")).status_code == 404
    changes = (await team.request("GET", "/v1/members/audit")).json()["items"]
    mine = [(c["action"], c["actor"]) for c in changes if c["subject"].startswith("billing sync")]
    assert mine == [("key.revoked", "admin key"), ("key.created", "admin key")]


async def test_an_expired_key_answers_401(
    team: TeamClient, app: FastAPI, sessions: async_sessionmaker[AsyncSession]
) -> None:
    soon = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    made = (
        await team.request("POST", "/v1/keys", json={"name": "brief", "role": "viewer", "expires_at": soon})
    ).json()
    headers = {"Authorization": f"Bearer {made['key']}"}
    assert (await team.http.get("/v1/agents", headers=headers)).status_code == 200
    async with sessions() as session:
        past = datetime.now(UTC) - timedelta(seconds=1)
        await session.execute(update(ApiKey).where(ApiKey.id == made["id"]).values(expires_at=past))
        await session.commit()
    app.state.key_cache.clear()  # as after the cache's few seconds
    assert (await team.http.get("/v1/agents", headers=headers)).status_code == 401


async def _revoke_elsewhere(sessions: async_sessionmaker[AsyncSession], key_id: str) -> None:
    """Revoke the way another API process would: in the database only, this process's cache untouched."""
    async with sessions() as session:
        await session.execute(update(ApiKey).where(ApiKey.id == key_id).values(revoked_at=datetime.now(UTC)))
        await session.commit()


async def test_a_key_revoked_elsewhere_ends_its_open_sse_stream_and_websocket_within_10_s(
    team: TeamClient, model: str, live_url: str, sessions: async_sessionmaker[AsyncSession]
) -> None:
    agent = await team.create_agent(model)
    conversation = await team.start_conversation(agent["slug"])
    made = (await team.request("POST", "/v1/keys", json={"name": "streamer", "role": "operator"})).json()
    key = made["key"]
    ws_url = f"{live_url.replace('http', 'ws', 1)}/v1/conversations/{conversation}/ws?token={key}"
    async with (
        httpx.AsyncClient(base_url=live_url, timeout=30) as client,
        client.stream(
            "GET", f"/v1/conversations/{conversation}/events", headers={"Authorization": f"Bearer {key}"}
        ) as stream,
        connect(ws_url) as ws,
    ):
        assert stream.status_code == 200
        assert json.loads(await ws.recv())["type"] == "ready"
        assert (await client.get("/v1/agents", headers={"Authorization": f"Bearer {key}"})).status_code == 200
        await _revoke_elsewhere(sessions, made["id"])
        loop = asyncio.get_running_loop()
        started = loop.time()

        async def sse_ends() -> None:
            async for _ in events(stream):
                pass

        await asyncio.wait_for(sse_ends(), WITHIN)
        frame = json.loads(await asyncio.wait_for(ws.recv(), WITHIN))
        assert frame["type"] == "error" and frame["error"]["code"] == "unauthorized"
        await asyncio.wait_for(ws.wait_closed(), WITHIN)
        assert ws.close_code == 4401
        await asyncio.sleep(max(0.0, 5.5 - (loop.time() - started)))  # past the other processes' key cache
        assert (await client.get("/v1/agents", headers={"Authorization": f"Bearer {key}"})).status_code == 401
        again = await client.get(
            f"/v1/conversations/{conversation}/events", headers={"Authorization": f"Bearer {key}"}
        )
        assert again.status_code == 401


async def test_a_revoked_session_loses_pages_rest_sse_and_websocket(
    team: TeamClient, model: str, live_url: str, app: FastAPI, sessions: async_sessionmaker[AsyncSession]
) -> None:
    agent = await team.create_agent(model)
    conversation = await team.start_conversation(agent["slug"])
    person = await add_person(sessions, team.team_id, Role.OPERATOR, "Stream Watcher")
    async with httpx.AsyncClient(base_url=live_url, timeout=30) as web:
        signed = await web.post("/login", data={"email": person.email, "password": person.password})
        assert signed.status_code == 303
        token = web.cookies["steward_session"]
        ws_url = f"{live_url.replace('http', 'ws', 1)}/v1/conversations/{conversation}/ws?token={token}"
        async with (
            web.stream("GET", f"/v1/conversations/{conversation}/events") as stream,
            connect(ws_url) as ws,
        ):
            assert stream.status_code == 200
            assert json.loads(await ws.recv())["type"] == "ready"
            assert (await web.get("/inbox")).status_code == 200
            async with web_client(app) as other:  # the person ends this session from another browser
                await sign_in(other, person.email)
                listed = (await other.get("/v1/me/sessions")).json()["items"]
                target = next(s["id"] for s in listed if not s["current"])
                assert (await other.delete(f"/v1/me/sessions/{target}", headers=WEB)).status_code == 204

            async def sse_ends() -> None:
                async for _ in events(stream):
                    pass

            await asyncio.wait_for(sse_ends(), WITHIN)
            frame = json.loads(await asyncio.wait_for(ws.recv(), WITHIN))
            assert frame["error"]["code"] == "unauthorized"
            await asyncio.wait_for(ws.wait_closed(), WITHIN)
            assert ws.close_code == 4401
        assert (await web.get("/v1/me")).status_code == 401
        page = await web.get("/inbox")
        assert page.status_code == 303 and page.headers["location"].startswith("/login")


async def test_a_person_removed_from_the_team_loses_an_open_stream(
    team: TeamClient, model: str, live_url: str, sessions: async_sessionmaker[AsyncSession]
) -> None:
    agent = await team.create_agent(model)
    conversation = await team.start_conversation(agent["slug"])
    person = await add_person(sessions, team.team_id, Role.VIEWER, "Leaving Soon")
    async with httpx.AsyncClient(base_url=live_url, timeout=30) as web:
        await web.post("/login", data={"email": person.email, "password": person.password})
        async with web.stream("GET", f"/v1/conversations/{conversation}/events") as stream:
            assert stream.status_code == 200
            assert (await team.request("DELETE", f"/v1/members/{person.user_id}")).status_code == 204

            async def sse_ends() -> None:
                async for _ in events(stream):
                    pass

            await asyncio.wait_for(sse_ends(), WITHIN)
