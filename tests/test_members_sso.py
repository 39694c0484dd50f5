"""Single sign-on against a local OpenID Connect provider: PKCE, state, nonce, tampered tokens."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from fastapi import FastAPI
from pydantic import SecretStr
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import Client

from api.app import create_app
from schemas.enums import Role
from schemas.settings import Settings
from tests.fakes.oidc_server import FakeOidcProvider
from tests.members import add_person
from tests.support import TeamClient


@pytest.fixture
def provider() -> Iterator[FakeOidcProvider]:
    with FakeOidcProvider() as running:
        yield running


@pytest.fixture
async def sso_app(settings: Settings, temporal: Client, provider: FakeOidcProvider) -> AsyncIterator[FastAPI]:
    configured = settings.model_copy(
        update={
            "oidc_issuer": provider.issuer,
            "oidc_client_id": provider.client_id,
            "oidc_client_secret": SecretStr(provider.client_secret),
        }
    )
    app = create_app(configured, temporal=temporal)
    async with app.router.lifespan_context(app):
        yield app


async def _start(web: httpx.AsyncClient) -> httpx.Response:
    """Steward's redirect to the provider, then the provider's redirect back (not yet followed)."""
    started = await web.get("/login/sso", params={"next": "/inbox"})
    assert started.status_code == 303
    async with httpx.AsyncClient() as outside:
        at_provider = await outside.get(started.headers["location"])
    assert at_provider.status_code == 302
    return at_provider


def _web(app: FastAPI) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://steward.test")


async def test_sso_signs_in_a_member_with_pkce_state_and_nonce(
    sso_app: FastAPI, provider: FakeOidcProvider, team: TeamClient, sessions: async_sessionmaker[AsyncSession]
) -> None:
    person = await add_person(sessions, team.team_id, Role.OPERATOR, "Sally Sso")
    provider.person = {"sub": "sally-1", "email": person.email.upper(), "email_verified": True}
    async with _web(sso_app) as web:
        form = await web.get("/login")
        assert 'id="sso"' in form.text
        back = await _start(web)
        asked = provider.authorize_requests[-1]
        assert asked["code_challenge_method"] == "S256" and len(asked["code_challenge"]) >= 43
        assert asked["client_id"] == provider.client_id and asked["nonce"] and asked["state"]
        assert "openid" in asked["scope"].split()
        done = await web.get(back.headers["location"])
        assert done.status_code == 303 and done.headers["location"] == "/inbox", done.text
        assert len(provider.token_requests[-1]["code_verifier"]) >= 43
        me = (await web.get("/v1/me")).json()
        assert me["name"] == "Sally Sso" and me["role"] == "operator"

    provider.person = {"sub": "sally-1", "email": "changed@example.test", "email_verified": True}
    async with _web(sso_app) as again:  # linked by subject now, whatever the address says
        back = await _start(again)
        assert (await again.get(back.headers["location"])).status_code == 303
        assert (await again.get("/v1/me")).json()["name"] == "Sally Sso"


@pytest.mark.parametrize("tamper", ["signature", "nonce", "audience"])
async def test_a_tampered_id_token_is_refused(
    tamper: str,
    sso_app: FastAPI,
    provider: FakeOidcProvider,
    team: TeamClient,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    person = await add_person(sessions, team.team_id, Role.ADMIN)
    provider.person = {"sub": f"t-{tamper}", "email": person.email, "email_verified": True}
    provider.tamper = tamper
    async with _web(sso_app) as web:
        back = await _start(web)
        refused = await web.get(back.headers["location"])
        assert refused.status_code == 400 and "ID token was refused" in refused.text
        assert (await web.get("/v1/me")).status_code == 401


async def test_a_state_that_is_not_this_browsers_is_refused(
    sso_app: FastAPI, provider: FakeOidcProvider, team: TeamClient, sessions: async_sessionmaker[AsyncSession]
) -> None:
    person = await add_person(sessions, team.team_id, Role.ADMIN)
    provider.person = {"sub": "state-1", "email": person.email, "email_verified": True}
    async with _web(sso_app) as victim, _web(sso_app) as attacker:
        back = await _start(attacker)  # the attacker's own code and state, planted in the victim's browser
        await victim.get("/login/sso")
        refused = await victim.get(back.headers["location"])
        assert refused.status_code == 400 and "state did not match" in refused.text
        assert (await victim.get("/v1/me")).status_code == 401
        query = parse_qs(urlsplit(back.headers["location"]).query)
        assert len(provider.token_requests) == 0 and query["code"]  # no code was exchanged


async def test_an_unknown_person_is_told_to_ask_for_an_invitation(
    sso_app: FastAPI, provider: FakeOidcProvider
) -> None:
    provider.person = {"sub": "stranger", "email": "stranger@example.test", "email_verified": True}
    async with _web(sso_app) as web:
        back = await _start(web)
        refused = await web.get(back.headers["location"])
        assert refused.status_code == 403 and "invitation" in refused.text
