"""Team LLM providers: CRUD, checks that say precisely why not, turns that reach the named
provider with its key, and that key in no response, log line, event or Temporal payload."""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import ipaddress
import json
import logging
import socket
import ssl
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from alembic import command
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.api.common.v1 import Payload
from temporalio.client import Client

from activities.infra.codec import AesGcmCodec, parse_keys
from api.services.providers import probe
from schemas.enums import CheckReason, Role
from schemas.tables import Event, LlmProvider, utcnow
from tests.conftest import TEST_PAYLOAD_KEYS
from tests.fakes.openai_server import FakeOpenAI, Step
from tests.processes import free_port
from tests.support import TeamClient, add_key, migrating, new_team
from workflows.contract import conversation_workflow_id

KEY = "sk-team-" + "Zq7" * 10 + "WXYZ"
"""A team provider's key: long enough to show its last four characters."""


def _key() -> str:
    """A fresh key per test, so one test's key cannot be found in another's data."""
    return f"sk-test-{uuid.uuid4().hex}{uuid.uuid4().hex[:8]}"


class Seen:
    """Every response body a test got, to search for a key afterwards."""

    def __init__(self, team: TeamClient) -> None:
        self.team = team
        self.bodies: list[str] = []

    async def __call__(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        response = await self.team.request(method, path, **kwargs)
        self.bodies.append(response.text)
        return response


@pytest.fixture
def provider_llm() -> Iterator[FakeOpenAI]:
    """A provider of the test's own, requiring its own key and listing two models."""
    with FakeOpenAI(api_key=KEY, models=["zeta-1", "alpha-2"]) as fake:
        yield fake


async def _add(seen: Seen, **fields: Any) -> dict[str, Any]:
    body = {"name": f"p-{uuid.uuid4().hex[:8]}", "kind": "openai_compatible", **fields}
    response = await seen("POST", "/v1/providers", json=body)
    assert response.status_code == 201, response.text
    return dict(response.json())


async def test_a_provider_is_added_listed_changed_and_deleted_without_its_key_ever_shown(
    team: TeamClient,
) -> None:
    seen = Seen(team)
    created = await _add(seen, base_url="http://127.0.0.1:11434/v1/", api_key=KEY, default_model="llama3")
    assert created["has_key"] is True and created["key_hint"] == "WXYZ"
    assert created["base_url"] == "http://127.0.0.1:11434/v1"  # the trailing slash is dropped
    assert created["default_model"] == "llama3" and created["last_check"] is None
    assert "api_key" not in created

    listed = (await seen("GET", "/v1/providers")).json()["items"]
    assert [p["id"] for p in listed] == [created["id"]]
    fetched = (await seen("GET", f"/v1/providers/{created['id']}")).json()
    assert fetched == created

    short = "ollama"
    changed = await seen("PATCH", f"/v1/providers/{created['id']}", json={"name": "local", "api_key": short})
    assert changed.status_code == 200, changed.text
    assert changed.json()["name"] == "local" and changed.json()["has_key"] is True
    assert changed.json()["key_hint"] is None  # too short to show any of it
    cleared = await seen("PATCH", f"/v1/providers/{created['id']}", json={"api_key": None})
    assert cleared.json()["has_key"] is False

    assert (await seen("DELETE", f"/v1/providers/{created['id']}")).status_code == 204
    assert (await seen("GET", f"/v1/providers/{created['id']}")).status_code == 404
    assert (await seen("GET", "/v1/providers")).json()["items"] == []
    # The name is free again once its provider is deleted.
    again = await _add(seen, name="local", base_url="http://127.0.0.1:11434/v1")
    assert again["name"] == "local" and again["id"] != created["id"]
    assert not [b for b in seen.bodies if KEY in b or '"ollama"' in b]


async def test_the_stored_key_is_encrypted(
    team: TeamClient, sessions: async_sessionmaker[AsyncSession]
) -> None:
    created = await _add(Seen(team), base_url="http://127.0.0.1:1/v1", api_key=KEY)
    async with sessions() as session:
        row = await session.get(LlmProvider, created["id"])
        assert row is not None and row.secret is not None
        assert KEY not in row.secret and KEY[-12:] not in row.secret


@pytest.mark.parametrize(
    ("body", "field", "words"),
    [
        ({"kind": "openai_compatible"}, "base_url", "needs its base URL"),
        (
            {"kind": "azure_openai", "base_url": "https://x.openai.azure.com"},
            "api_version",
            "needs its api_version",
        ),
        ({"kind": "openai", "api_version": "2024-10-21"}, "api_version", "only azure_openai"),
        ({"kind": "openai_compatible", "base_url": "ftp://host/v1"}, "base_url", "http:// or https://"),
        ({"kind": "openai_compatible", "base_url": "http://h/v1?x=1"}, "base_url", "without a query"),
        ({"kind": "anthropic", "base_url": "http://h/v1"}, "kind", "openai"),
        (
            {"kind": "azure_openai", "base_url": "https://x", "api_version": "latest"},
            "api_version",
            "pattern",
        ),
        ({"kind": "openai", "api_key": "has a space"}, "api_key", "pattern"),
        ({"kind": "openai", "name": "Has Caps"}, "name", "lowercase"),
    ],
)
async def test_bad_providers_are_refused_with_422_naming_the_field(
    team: TeamClient, body: dict[str, Any], field: str, words: str
) -> None:
    response = await team.request("POST", "/v1/providers", json={"name": "p", **body})
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    assert [d["field"] for d in error["details"]] == [field]
    assert words in error["message"] + json.dumps(error["details"])
    assert (await team.request("GET", "/v1/providers")).json()["items"] == []  # nothing half-written


async def test_a_change_is_checked_against_what_the_provider_already_is(team: TeamClient) -> None:
    created = await _add(Seen(team), base_url="http://127.0.0.1:1/v1")
    to_azure = await team.request("PATCH", f"/v1/providers/{created['id']}", json={"kind": "azure_openai"})
    assert to_azure.status_code == 422 and to_azure.json()["error"]["details"][0]["field"] == "api_version"
    no_url = await team.request("PATCH", f"/v1/providers/{created['id']}", json={"base_url": None})
    assert no_url.status_code == 422 and no_url.json()["error"]["details"][0]["field"] == "base_url"
    azure = await team.request(
        "PATCH", f"/v1/providers/{created['id']}", json={"kind": "azure_openai", "api_version": "2024-10-21"}
    )
    assert azure.status_code == 200, azure.text
    assert azure.json()["kind"] == "azure_openai" and azure.json()["api_version"] == "2024-10-21"


async def test_names_are_unique_in_a_team_and_only_admins_see_providers(
    team: TeamClient, sessions: async_sessionmaker[AsyncSession]
) -> None:
    await _add(Seen(team), name="shared", base_url="http://127.0.0.1:1/v1")
    duplicate = await team.request(
        "POST",
        "/v1/providers",
        json={"name": "shared", "kind": "openai_compatible", "base_url": "http://h/v1"},
    )
    assert duplicate.status_code == 409 and duplicate.json()["error"]["code"] == "provider_exists"
    operator = await add_key(sessions, team, Role.OPERATOR)
    refused = await operator.request("GET", "/v1/providers")
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "forbidden"


async def test_a_check_lists_the_models_the_provider_serves_and_is_remembered(
    team: TeamClient, provider_llm: FakeOpenAI
) -> None:
    created = await _add(Seen(team), base_url=provider_llm.base_url, api_key=KEY)
    response = await team.request("POST", f"/v1/providers/{created['id']}/check")
    assert response.status_code == 200, response.text
    check = response.json()
    assert check["ok"] is True and check["models"] == ["alpha-2", "zeta-1"]
    assert isinstance(check["latency_ms"], int) and check["reason"] is None
    assert provider_llm.model_listings()[-1]["authorization"] == f"Bearer {KEY}"
    again = (await team.request("GET", f"/v1/providers/{created['id']}")).json()
    assert again["last_check"] == check
    assert again["updated_at"] == created["updated_at"]  # a check changes nothing the client is built from


async def test_a_refused_key_is_unauthorized_and_the_echoed_key_is_masked(
    team: TeamClient, provider_llm: FakeOpenAI
) -> None:
    wrong = _key()
    created = await _add(Seen(team), base_url=provider_llm.base_url, api_key=wrong)
    response = await team.request("POST", f"/v1/providers/{created['id']}/check")
    check = response.json()
    assert check["ok"] is False and check["reason"] == "unauthorized" and check["status"] == 401
    assert "Incorrect API key provided: ***" in check["message"]  # the fake quoted it; we did not
    assert wrong not in response.text
    assert provider_llm.model_listings()[-1]["authorization"] == f"Bearer {wrong}"


async def test_a_closed_port_is_unreachable(team: TeamClient) -> None:
    created = await _add(Seen(team), base_url=f"http://127.0.0.1:{free_port()}/v1")
    check = (await team.request("POST", f"/v1/providers/{created['id']}/check")).json()
    assert check["ok"] is False and check["reason"] == "unreachable" and check["status"] is None
    assert "could not connect to http://127.0.0.1:" in check["message"]
    assert "refused" in check["message"].lower()


async def test_a_url_without_a_models_list_is_not_found(team: TeamClient, provider_llm: FakeOpenAI) -> None:
    created = await _add(Seen(team), base_url=provider_llm.base_url.removesuffix("/v1"), api_key=KEY)
    check = (await team.request("POST", f"/v1/providers/{created['id']}/check")).json()
    assert check["ok"] is False and check["reason"] == "not_found" and check["status"] == 404


def _self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 signed by its own key (so no trust store has it)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False
        )
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_path, key_path


class _Models(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        data = json.dumps({"object": "list", "data": []}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet."""


@pytest.fixture
def https_url(tmp_path: Path) -> Iterator[str]:
    """A real HTTPS server on a free port whose certificate is self-signed."""
    cert, key = _self_signed(tmp_path)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Models)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"https://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()
    server.server_close()


async def test_a_certificate_that_does_not_verify_is_tls(team: TeamClient, https_url: str) -> None:
    created = await _add(Seen(team), base_url=https_url)
    check = (await team.request("POST", f"/v1/providers/{created['id']}/check")).json()
    assert check["ok"] is False and check["reason"] == "tls", check
    assert "TLS handshake" in check["message"] and "certificate" in check["message"]


class _Html(_Models):
    def do_GET(self) -> None:
        data = b"<html><body>It works!</body></html>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def _unsaved(base_url: str) -> LlmProvider:
    return LlmProvider(team_id="t", name="p", kind="openai_compatible", base_url=base_url)


async def test_a_server_that_is_not_an_llm_is_a_bad_response_and_one_that_never_answers_a_timeout() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Html)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    silent = socket.create_server(("127.0.0.1", 0))  # connections complete in the backlog; none is answered
    try:
        html = await probe(_unsaved(f"http://127.0.0.1:{server.server_address[1]}/v1"), None)
        assert html.ok is False and html.reason == CheckReason.BAD_RESPONSE, html
        assert "did not answer with a models list" in (html.message or "")
        mute = await probe(_unsaved(f"http://127.0.0.1:{silent.getsockname()[1]}/v1"), None, timeout=0.5)
        assert mute.ok is False and mute.reason == CheckReason.TIMEOUT, mute
        assert mute.message is not None and "did not answer within 0.5 s" in mute.message
    finally:
        server.shutdown()
        server.server_close()
        silent.close()


async def test_an_azure_provider_is_checked_and_answers_turns_at_its_deployment_with_its_api_key_header(
    team: TeamClient, provider_llm: FakeOpenAI, model: str
) -> None:
    root = provider_llm.base_url.removesuffix("/v1")
    provider = await _add(
        Seen(team), kind="azure_openai", base_url=root, api_version="2024-10-21", api_key=KEY
    )
    check = (await team.request("POST", f"/v1/providers/{provider['id']}/check")).json()
    assert check["ok"] is True and check["models"] == ["alpha-2", "zeta-1"], check
    assert provider_llm.model_listings()[-1]["api-key"] == KEY

    agent = await team.create_agent(model, provider=provider["name"])
    conversation = await team.start_conversation(agent["slug"])
    provider_llm.script(model, [Step(text="hello from azure")])
    reply = (await team.send(conversation, "hi")).json()
    assert reply["reply"]["content"] == "hello from azure", reply
    [request] = provider_llm.requests(model)
    assert request.path == f"/openai/deployments/{model}/chat/completions?api-version=2024-10-21"
    assert request.headers["api-key"] == KEY and "authorization" not in request.headers


SUITE_CODEC = AesGcmCodec(parse_keys(TEST_PAYLOAD_KEYS))
"""Opens the suite's sealed payloads, so the key is looked for in what they hold, not their ciphertext."""


def _opened(value: dict[str, Any]) -> Any:
    """A history payload (`{"metadata", "data"}`, base64) decrypted if it is sealed, else as it is."""
    metadata = {k: base64.b64decode(v) for k, v in value["metadata"].items()}
    payload = Payload(metadata=metadata, data=base64.b64decode(value.get("data", "")))
    opened = SUITE_CODEC.open(payload)
    if opened is payload:
        return value
    return {
        "metadata": {k: base64.b64encode(v).decode() for k, v in opened.metadata.items()},
        "data": base64.b64encode(opened.data).decode(),
    }


def _strings(value: Any) -> Iterator[str]:
    """Every string in a JSON document, with base64 payload data decoded (and decrypted) as well."""
    if isinstance(value, dict):
        if isinstance(value.get("metadata"), dict) and "data" in value:
            value = _opened(value)
        for name, item in value.items():
            if name == "data" and isinstance(item, str):
                with contextlib.suppress(ValueError):
                    yield base64.b64decode(item, validate=True).decode("utf-8", "replace")
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)
    elif isinstance(value, str):
        yield value


async def test_a_conversation_reaches_its_provider_with_its_key_which_leaks_nowhere(
    team: TeamClient,
    provider_llm: FakeOpenAI,
    fake_llm: FakeOpenAI,
    model: str,
    temporal: Client,
    sessions: async_sessionmaker[AsyncSession],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    seen = Seen(team)
    provider = await _add(seen, base_url=provider_llm.base_url, api_key=KEY, default_model=model)
    made = await seen(
        "POST",
        "/v1/agents",
        json={"slug": f"a-{uuid.uuid4().hex[:8]}", "name": "A", "provider": provider["name"]},
    )
    assert made.status_code == 201, made.text
    agent = made.json()
    assert agent["provider"] == provider["name"] and agent["model"] == model  # the provider's default
    conversation = (await seen("POST", "/v1/conversations", json={"agent": agent["slug"]})).json()["id"]
    provider_llm.script(model, [Step(text="from the team provider")])

    reply = await seen(
        "POST", f"/v1/conversations/{conversation}/messages", params={"wait": "true"}, json={"text": "hi"}
    )

    assert reply.json()["reply"]["content"] == "from the team provider", reply.text
    [request] = provider_llm.requests(model)
    assert request.headers["authorization"] == f"Bearer {KEY}"
    assert fake_llm.requests(model) == []  # the built-in provider was not asked

    # A turn whose key the provider refuses, quoting it back: the failure shows no key either.
    await seen("PATCH", f"/v1/providers/{provider['id']}", json={"api_key": KEY[::-1]})
    failed = await seen(
        "POST", f"/v1/conversations/{conversation}/messages", params={"wait": "true"}, json={"text": "again"}
    )
    assert failed.json()["status"] == "failed" and failed.json()["error"]["code"] == "llm_auth_failed"
    assert "***" in failed.json()["error"]["message"]
    assert (
        provider_llm.requests(model)[-1].headers["authorization"] == f"Bearer {KEY[::-1]}"
    )  # the new key, at once
    for path in ("", "/messages"):
        await seen("GET", f"/v1/conversations/{conversation}{path}")
    await seen("GET", f"/v1/agents/{agent['slug']}/versions")

    leaks = [KEY, KEY[::-1]]
    assert not [b for b in seen.bodies for k in leaks if k in b], "a response showed the key"
    assert not [r for r in caplog.records for k in leaks if k in r.getMessage() or k in str(r.__dict__)]
    async with sessions() as session:
        events = (await session.execute(select(Event).where(Event.conversation_id == conversation))).scalars()
        assert not [e for e in events for k in leaks if k in json.dumps(e.data)]
    history = await temporal.get_workflow_handle(conversation_workflow_id(conversation)).fetch_history()
    document = history.to_json_dict()
    texts = list(_strings(document))
    assert any("from the team provider" in t for t in texts)  # the payloads were read
    assert not [t for t in texts for k in leaks if k in t], "a Temporal payload held the key"


async def test_a_turn_on_a_deleted_or_undecryptable_provider_fails_with_a_clear_code(
    team: TeamClient, provider_llm: FakeOpenAI, model: str, sessions: async_sessionmaker[AsyncSession]
) -> None:
    provider = await _add(Seen(team), base_url=provider_llm.base_url, api_key=KEY)
    agent = await team.create_agent(model, provider=provider["name"])
    conversation = await team.start_conversation(agent["slug"])
    async with sessions() as session:
        row = await session.get(LlmProvider, provider["id"])
        assert row is not None
        row.secret, row.updated_at = "not-a-fernet-token", utcnow()
        await session.commit()
    broken = (await team.send(conversation, "hi")).json()
    assert broken["status"] == "failed" and broken["error"]["code"] == "secrets_unavailable", broken
    assert provider["name"] in broken["error"]["message"]

    async with sessions() as session:  # deleted under a running agent: a race the API's 409 cannot see
        row = await session.get(LlmProvider, provider["id"])
        assert row is not None
        row.deleted_at = utcnow()
        await session.commit()
    gone = (await team.send(conversation, "hi again")).json()
    assert gone["status"] == "failed" and gone["error"]["code"] == "provider_not_found", gone
    assert provider_llm.requests(model) == []


async def test_a_provider_in_use_cannot_be_deleted(team: TeamClient, model: str) -> None:
    provider = await _add(Seen(team), base_url="http://127.0.0.1:1/v1", api_key=KEY)
    agent = await team.create_agent(model, provider=provider["name"])
    slug = agent["slug"]
    assert agent["provider"] == provider["name"] and agent["draft_changed"] is False
    listed = (await team.request("GET", "/v1/providers")).json()["items"]
    assert listed[0]["agents"] == [slug]

    refused = await team.request("DELETE", f"/v1/providers/{provider['id']}")
    assert refused.status_code == 409 and refused.json()["error"]["code"] == "provider_in_use"
    assert refused.json()["error"]["details"] == {
        "drafts": [slug],
        "versions": [{"agent": slug, "version": 1}],
    }

    conversation = await team.start_conversation(slug)  # pinned to version 1, which names it
    back = await team.request("PATCH", f"/v1/agents/{slug}", json={"provider": None})
    assert back.json()["provider"] is None and back.json()["draft_changed"] is True
    diff = (await team.request("GET", f"/v1/agents/{slug}/versions/1/diff/draft")).json()
    assert diff["changes"] == [{"field": "provider_id", "from": provider["id"], "to": None}]
    assert (await team.request("POST", f"/v1/agents/{slug}/publish", json={})).status_code == 201
    still = await team.request("DELETE", f"/v1/providers/{provider['id']}")
    assert still.status_code == 409
    assert still.json()["error"]["details"] == {"drafts": [], "versions": [{"agent": slug, "version": 1}]}

    upgraded = await team.request("POST", f"/v1/conversations/{conversation}/upgrade", json={})
    assert upgraded.status_code == 200, upgraded.text
    assert (await team.request("DELETE", f"/v1/providers/{provider['id']}")).status_code == 204


async def test_an_agent_names_only_its_own_teams_providers(
    team: TeamClient, model: str, sessions: async_sessionmaker[AsyncSession]
) -> None:
    theirs = await new_team(sessions, team.http)
    other = await _add(Seen(theirs), name="theirs", base_url="http://127.0.0.1:1/v1", api_key=KEY)
    for method, path in [("GET", ""), ("PATCH", ""), ("DELETE", ""), ("POST", "/check")]:
        response = await team.request(method, f"/v1/providers/{other['id']}{path}", json={})
        assert response.status_code == 404 and response.json()["error"]["code"] == "provider_not_found"
    borrowed = await team.request(
        "POST", "/v1/agents", json={"slug": "z", "name": "Z", "model": model, "provider": "theirs"}
    )
    assert borrowed.status_code == 422 and borrowed.json()["error"]["details"][0]["field"] == "provider"
    unknown = await team.request(
        "POST", "/v1/agents", json={"slug": "x", "name": "X", "model": model, "provider": "nowhere"}
    )
    assert unknown.status_code == 422 and unknown.json()["error"]["details"][0]["field"] == "provider"
    no_model = await team.request("POST", "/v1/agents", json={"slug": "y", "name": "Y"})
    assert no_model.status_code == 422 and no_model.json()["error"]["details"][0]["field"] == "model"


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_the_migration_adds_providers_and_goes_back(backend: str, tmp_path: Path) -> None:
    with migrating(backend, tmp_path, "0007_agent_versions") as (config, engine):
        with engine.begin() as conn:
            conn.execute(
                sa.text("INSERT INTO teams (id, slug, name, created_at) VALUES ('t', 't', 'T', :now)"),
                {"now": utcnow()},
            )
            conn.execute(
                sa.text(
                    "INSERT INTO agents (id, team_id, slug, name, model, system_prompt, tools, temperature,"
                    " max_tool_rounds, double_texting, tool_policies, approvals, created_at, updated_at)"
                    " VALUES ('a', 't', 'a', 'A', 'm', '', '[]', 0.5, 4, 'enqueue', '{}', '{}', :now, :now)"
                ),
                {"now": utcnow()},
            )
        command.upgrade(config, "head")
        with engine.begin() as conn:
            assert conn.execute(sa.text("SELECT provider_id FROM agents")).scalar_one() is None
            row = {"now": utcnow()}
            insert = (
                "INSERT INTO llm_providers (id, team_id, name, kind, created_at, updated_at, deleted_at)"
                " VALUES (:id, 't', 'p', 'openai', :now, :now, {deleted})"
            )
            conn.execute(sa.text(insert.format(deleted=":now")), {**row, "id": "gone"})
            conn.execute(sa.text(insert.format(deleted="NULL")), {**row, "id": "one"})
        with pytest.raises(sa.exc.IntegrityError), engine.begin() as conn:  # one live 'p' per team
            conn.execute(sa.text(insert.format(deleted="NULL")), {**row, "id": "two"})
        command.downgrade(config, "0007_agent_versions")
        with engine.connect() as conn:
            assert "llm_providers" not in sa.inspect(conn).get_table_names()
            assert "provider_id" not in {c["name"] for c in sa.inspect(conn).get_columns("agents")}
