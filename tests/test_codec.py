"""Temporal payloads are sealed: histories hold no user text, and the codec endpoint opens them."""

from __future__ import annotations

import base64
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.api.common.v1 import Payload
from temporalio.client import Client
from temporalio.worker import UnsandboxedWorkflowRunner, Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner

from activities.infra.codec import ENCODING, KEY_ID, AesGcmCodec, PayloadKeyError, new_key, parse_keys
from activities.infra.temporal import plugin
from api.app import create_app
from api.deps import SESSION_COOKIE
from schemas.enums import Role
from schemas.settings import Settings
from tests.conftest import TEST_PAYLOAD_KEYS
from tests.fakes.openai_server import FakeOpenAI, Step, ToolCallSpec
from tests.members import add_person
from tests.support import TeamClient, add_key
from workers.dev import _dev_payload_keys
from workflows.contract import conversation_workflow_id

CARD = "4111 1111 1111 1111"
UI = "http://temporal-ui.test:8233"
"""The Temporal Web UI origin the codec app allows."""


def _json(payload: Payload) -> dict[str, Any]:
    """A payload as the Web UI sends it (proto3 JSON: base64 throughout)."""
    return {
        "metadata": {k: base64.b64encode(v).decode() for k, v in payload.metadata.items()},
        "data": base64.b64encode(payload.data).decode(),
    }


def _data(payload: dict[str, Any]) -> bytes:
    return base64.b64decode(payload["data"])


@pytest.fixture
async def ui_http(settings: Settings, temporal: Client, worker: Worker) -> AsyncIterator[httpx.AsyncClient]:
    """An app that lets the Temporal UI at `UI` call the codec."""
    app = create_app(
        settings.model_copy(update={"codec_cors_origins": f"{UI}, http://other-ui.test"}), temporal
    )
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://steward.test") as client:
            yield client


async def test_a_turns_raw_history_holds_no_user_text_and_the_codec_endpoint_opens_it(
    team: TeamClient, temporal: Client, fake_llm: FakeOpenAI, model: str
) -> None:
    agent = await team.create_agent(model, tools=["check_availability"])
    conversation = await team.start_conversation(agent["slug"])
    fake_llm.script(
        model,
        [
            Step(tool_calls=[ToolCallSpec("check_availability", {"note": f"card {CARD}"})]),
            Step(text="Noted the card ending 1111, and we have slots"),
        ],
    )
    answer = await team.send(conversation, f"my card is {CARD}, any slots?")
    assert answer.status_code == 200 and answer.json()["status"] == "completed", answer.text

    # No codec: the history exactly as the Temporal server stores and serves it.
    history = await temporal.get_workflow_handle(conversation_workflow_id(conversation)).fetch_history()
    raw = b"".join(event.SerializeToString() for event in history.events)
    for text in (CARD.encode(), b"my card is", b"Noted the card", b"we have slots"):
        assert text not in raw
    assert ENCODING in raw

    updates = [e.workflow_execution_update_accepted_event_attributes for e in history.events]
    sealed = [p for update in updates for p in update.accepted_request.input.args.payloads]
    assert sealed and all(p.metadata["encoding"] == ENCODING for p in sealed)
    assert {p.metadata[KEY_ID] for p in sealed} == {b"test-1"}

    response = await team.request("POST", "/codec/decode", json={"payloads": [_json(p) for p in sealed]})
    assert response.status_code == 200, response.text
    opened = response.json()["payloads"]
    assert any(f"my card is {CARD}".encode() in _data(p) for p in opened)
    assert base64.b64decode(opened[0]["metadata"]["encoding"]) == b"json/plain"


async def test_the_first_key_seals_and_every_key_opens() -> None:
    old, new = parse_keys(new_key("old")), parse_keys(new_key("new"))
    plain = Payload(metadata={"encoding": b"json/plain"}, data=b'"hello"')
    by_old = AesGcmCodec(old).seal(plain)
    rotated = AesGcmCodec(new + old)
    assert rotated.open(by_old) == plain
    by_new = rotated.seal(plain)
    assert by_new.metadata[KEY_ID] == b"new" and rotated.open(by_new) == plain
    assert b"hello" not in by_new.data
    # A deployment that dropped the old key says which one it lacks.
    with pytest.raises(PayloadKeyError, match="key 'old'"):
        AesGcmCodec(new).open(by_old)
    # Each payload has its own nonce: the same value never seals to the same bytes.
    assert rotated.seal(plain).data != by_new.data


async def test_an_altered_or_relabelled_payload_is_refused() -> None:
    keys = parse_keys(f"{new_key('a')},{new_key('b')}")
    codec = AesGcmCodec(keys)
    sealed = codec.seal(Payload(metadata={"encoding": b"json/plain"}, data=b'"x"'))
    flipped = Payload(metadata=sealed.metadata, data=sealed.data[:-1] + bytes([sealed.data[-1] ^ 1]))
    with pytest.raises(PayloadKeyError, match="altered"):
        codec.open(flipped)
    # Sealed with `a`, but claiming `b`: the key id is bound into the ciphertext.
    relabelled = Payload(metadata={"encoding": ENCODING, KEY_ID: b"b"}, data=sealed.data)
    with pytest.raises(PayloadKeyError, match="altered"):
        codec.open(relabelled)


def test_malformed_keys_are_refused_without_echoing_key_material() -> None:
    material = base64.b64encode(b"x" * 20).decode()
    with pytest.raises(ValueError, match="16, 24 or 32 bytes") as short:
        parse_keys(f"k1:{material}")
    assert material not in str(short.value)
    with pytest.raises(ValueError, match="not valid base64") as garbled:
        parse_keys("k1:secret-not-base64!")
    assert "secret-not-base64" not in str(garbled.value)
    with pytest.raises(ValueError, match="entry 2"):
        parse_keys(f"{new_key('k1')},nocolon")
    with pytest.raises(ValueError, match="twice"):
        parse_keys(f"{new_key('k1')},{new_key('k1')}")
    assert parse_keys("") == ()


def test_without_keys_payloads_stay_plain_and_the_process_warns(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="steward.codec"):
        bare = plugin(Settings(payload_keys=None))
    assert not bare.codec.encrypts
    assert "STEWARD_PAYLOAD_KEYS is not set" in caplog.text
    plain = Payload(metadata={"encoding": b"json/plain"}, data=b'"hi"')
    assert bare.codec.seal(plain) == plain
    # It still names the key it would need for a sealed payload.
    with pytest.raises(PayloadKeyError, match="test-1"):
        bare.codec.open(AesGcmCodec(parse_keys(TEST_PAYLOAD_KEYS)).seal(plain))


async def test_encode_then_decode_round_trips_and_plain_payloads_pass_through(team: TeamClient) -> None:
    plain = {"metadata": {"encoding": base64.b64encode(b"json/plain").decode()}, "data": "ImhpIg=="}
    sealed = await team.request("POST", "/codec/encode", json={"payloads": [plain]})
    assert sealed.status_code == 200, sealed.text
    [payload] = sealed.json()["payloads"]
    assert base64.b64decode(payload["metadata"]["encoding"]) == ENCODING
    assert base64.b64decode(payload["metadata"][KEY_ID]) == b"test-1"
    opened = await team.request("POST", "/codec/decode", json={"payloads": [payload, plain]})
    assert opened.status_code == 200, opened.text
    assert opened.json()["payloads"] == [plain, plain]
    # URL-safe and unpadded base64 (both proto3 JSON) read the same.
    unpadded = {"metadata": {"encoding": "anNvbi9wbGFpbg"}, "data": "ImhpIg"}
    again = await team.request("POST", "/codec/decode", json={"payloads": [unpadded]})
    assert again.json()["payloads"] == [plain]


async def test_decode_names_the_payload_it_cannot_read(team: TeamClient) -> None:
    foreign = AesGcmCodec(parse_keys(new_key("elsewhere"))).seal(Payload(data=b"x"))
    response = await team.request("POST", "/codec/decode", json={"payloads": [{"data": ""}, _json(foreign)]})
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "validation_error" and error["details"][0]["field"] == "payloads.1"
    assert "key 'elsewhere'" in error["message"]
    garbled = await team.request("POST", "/codec/decode", json={"payloads": [{"data": "abcde"}]})
    assert garbled.status_code == 422
    assert garbled.json()["error"]["details"][0]["field"] == "payloads.0.data"


async def test_only_admins_and_operators_may_use_the_codec(
    team: TeamClient, sessions: async_sessionmaker[AsyncSession]
) -> None:
    body = {"payloads": [{"data": "ImhpIg=="}]}
    anonymous = await team.http.post("/codec/decode", json=body)
    assert anonymous.status_code == 401 and anonymous.json()["error"]["code"] == "unauthorized"
    for role in (Role.VIEWER, Role.CLIENT):
        other = await add_key(sessions, team, role)
        refused = await other.request("POST", "/codec/decode", json=body)
        assert refused.status_code == 403 and refused.json()["error"]["code"] == "forbidden"
    operator = await add_key(sessions, team, Role.OPERATOR)
    assert (await operator.request("POST", "/codec/decode", json=body)).status_code == 200


async def test_the_temporal_ui_may_call_from_its_origin_with_the_console_cookie(
    ui_http: httpx.AsyncClient, team: TeamClient
) -> None:
    preflight = await ui_http.options(
        "/codec/decode",
        headers={
            "Origin": UI,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type,x-namespace",
        },
    )
    assert preflight.status_code == 204
    assert preflight.headers["access-control-allow-origin"] == UI
    assert preflight.headers["access-control-allow-credentials"] == "true"
    assert "x-namespace" in preflight.headers["access-control-allow-headers"]

    body = {"payloads": [{"data": "ImhpIg=="}]}
    signed_in = {"Origin": UI, "Cookie": f"{SESSION_COOKIE}={team.key}"}
    decoded = await ui_http.post("/codec/decode", json=body, headers={**signed_in, "X-Namespace": "default"})
    assert decoded.status_code == 200, decoded.text
    assert decoded.headers["access-control-allow-origin"] == UI
    # Errors carry the headers too, so the UI can show why.
    signed_out = await ui_http.post("/codec/decode", json=body, headers={"Origin": UI})
    assert signed_out.status_code == 401 and signed_out.headers["access-control-allow-origin"] == UI
    invalid = await ui_http.post("/codec/decode", json={"payloads": 1}, headers=signed_in)
    assert invalid.status_code == 422 and invalid.headers["access-control-allow-origin"] == UI


async def test_another_site_gets_no_cors_and_cannot_use_the_cookie(
    ui_http: httpx.AsyncClient, team: TeamClient
) -> None:
    evil = "http://evil.test"
    preflight = await ui_http.options(
        "/codec/decode", headers={"Origin": evil, "Access-Control-Request-Method": "POST"}
    )
    assert preflight.status_code == 403 and "access-control-allow-origin" not in preflight.headers
    body = {"payloads": [{"data": "ImhpIg=="}]}
    refused = await ui_http.post(
        "/codec/decode", json=body, headers={"Origin": evil, "Cookie": f"{SESSION_COOKIE}={team.key}"}
    )
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "csrf_failed"
    assert "access-control-allow-origin" not in refused.headers
    # A bearer key is not ambient authority: a script holding one may call from anywhere.
    keyed = await ui_http.post("/codec/decode", json=body, headers={"Origin": evil, **team.headers})
    assert keyed.status_code == 200


def test_steward_dev_makes_one_payload_key_and_keeps_it(tmp_path: Path) -> None:
    first = _dev_payload_keys(tmp_path)
    [key] = parse_keys(first)
    assert len(key.secret) == 32
    assert (tmp_path / "payload-keys").stat().st_mode & 0o777 == 0o600
    assert _dev_payload_keys(tmp_path) == first  # the next run opens what this one sealed


async def test_a_person_signed_in_to_the_console_may_decode_from_the_temporal_ui(
    ui_http: httpx.AsyncClient, team: TeamClient, sessions: async_sessionmaker[AsyncSession]
) -> None:
    # The console cookie of a person holds a session token, not an API key: the codec takes both.
    person = await add_person(sessions, team.team_id, Role.OPERATOR)
    signed = await ui_http.post(
        "/login", data={"email": person.email, "password": person.password, "next": "/"}
    )
    assert signed.status_code == 303, signed.text
    token = signed.cookies[SESSION_COOKIE]
    ui_http.cookies.clear()
    body = {"payloads": [{"data": "ImhpIg=="}]}
    decoded = await ui_http.post(
        "/codec/decode", json=body, headers={"Origin": UI, "Cookie": f"{SESSION_COOKIE}={token}"}
    )
    assert decoded.status_code == 200, decoded.text
    assert decoded.json()["payloads"][0]["data"] == "ImhpIg=="


def test_workers_run_unsandboxed_by_default_and_the_suite_runs_them_sandboxed() -> None:
    """The sandbox guards workflow code where it is checked (this suite); deployed workers
    skip its per-payload re-entry (docs/decisions.md, "The suite runs workflows sandboxed")."""
    assert Settings().workflow_sandbox  # tests/conftest.py turns it on for every worker here
    deployed = plugin(Settings(workflow_sandbox=False, payload_keys=TEST_PAYLOAD_KEYS))
    suite = plugin(Settings(payload_keys=TEST_PAYLOAD_KEYS))
    assert isinstance(deployed.workflow_runner, UnsandboxedWorkflowRunner)
    assert isinstance(suite.workflow_runner, SandboxedWorkflowRunner)
    assert Settings.model_fields["workflow_sandbox"].default is False
