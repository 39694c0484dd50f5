"""Schemathesis over `/openapi.json`: the API answers only what its document declares.

Every operation gets a fixed number of schema-valid and schema-invalid requests, derandomized
so a run is reproducible, sent over real HTTP to the app on the suite's PostgreSQL and
Temporal with an admin key. Checks: no 5xx, every status is declared, every declared body
matches its schema, and data the schema allows is not refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
import requests
import schemathesis
import uvicorn
from hypothesis import HealthCheck, Phase, given
from hypothesis import settings as hypothesis_settings
from hypothesis.errors import Unsatisfiable
from hypothesis.strategies import SearchStrategy
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.core.result import Ok
from schemathesis.core.transport import Response
from schemathesis.generation.case import Case
from schemathesis.generation.modes import GenerationMode
from schemathesis.openapi.checks import RejectedPositiveData
from schemathesis.specs.openapi.checks import (
    positive_data_acceptance,
    response_schema_conformance,
    status_code_conformance,
)
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import Client
from temporalio.worker import Worker

from api.app import create_app
from api.errors import CHECKED_KEY
from schemas.settings import Settings
from tests.processes import free_port
from tests.support import new_team

MAX_EXAMPLES = 12
"""Per operation and mode (positive, negative): about 1,400 requests, well under a minute here."""

EXCLUDED: dict[tuple[str, str], str] = {
    ("GET", "/v1/conversations/{conversation_id}/events"): "an SSE stream that stays open by design",
    ("GET", "/v1/conversations/{conversation_id}/ws"): "a WebSocket, not an HTTP request/response",
    ("GET", "/metrics"): "Prometheus text, not part of the JSON API",
}
"""Operations not fuzzed, each with why."""

CHECKS = [not_a_server_error, status_code_conformance, response_schema_conformance, positive_data_acceptance]


@pytest.fixture
async def fuzz_url(
    settings: Settings, temporal: Client, sessions: async_sessionmaker[AsyncSession], worker: Worker
) -> AsyncIterator[str]:
    """A live app of the fuzzer's own, on a task queue no worker polls: its turns never run.

    A fuzzed turn would otherwise call the fake LLM with made-up agents while other tests run.
    """
    own = settings.model_copy(update={"task_queue": f"steward-fuzz-{uuid.uuid4().hex[:8]}"})
    app = create_app(own, temporal=temporal)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.02)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    await task


def _excluded(method: str, path: str, case: Case[Any] | None = None) -> bool:
    if (method, path) in EXCLUDED:
        return True
    # `?stream=true` answers server-sent events until the turn ends; no worker runs it here.
    return case is not None and bool((case.query or {}).get("stream")) and path.endswith("/messages")


def _run(strategy: SearchStrategy[Case[Any]], send: Callable[[Case[Any]], None]) -> None:
    @hypothesis_settings(
        max_examples=MAX_EXAMPLES,
        derandomize=True,
        database=None,
        deadline=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(strategy)
    def fuzz(case: Case[Any]) -> None:
        send(case)

    # Unsatisfiable: nothing to negate, the operation has no parameters and no body.
    with contextlib.suppress(Unsatisfiable):
        fuzz()


def _explained(schema_doc: dict[str, Any], case: Case[Any], response: Response) -> bool:
    """A 422 on schema-valid data whose every field is one the operation's 422 says it checks further."""
    if response.status_code != 422:
        return False
    declared = schema_doc["paths"][case.path][case.method.lower()]["responses"]["422"]
    checked: dict[str, str] = declared.get(CHECKED_KEY, {})
    fields = [str(d.get("field", "")) for d in response.json()["error"].get("details") or []]
    return bool(fields) and all(f.split(".")[0] in checked for f in fields)


def fuzz_everything(schema_doc: dict[str, Any], base_url: str, key: str) -> tuple[list[str], int]:
    """Every operation, both modes; the failures found (one line each) and the requests sent."""
    schema = schemathesis.openapi.from_dict(schema_doc)
    http = requests.Session()
    headers = {"Authorization": f"Bearer {key}"}
    failures: list[str] = []
    sent = 0

    def send(case: Case[Any]) -> None:
        nonlocal sent
        if _excluded(case.method.upper(), case.path, case):
            return
        sent += 1
        # Also `?wait=true` and `?timeout=`: no worker runs the turn, so waiting would only sleep.
        if case.query and case.query.get("wait") is True:
            case.query["wait"] = False
        response = case.call(base_url=base_url, session=http, headers=headers, timeout=30)
        try:
            case.validate_response(response, checks=CHECKS, headers=headers)
        except FailureGroup as group:
            body = response.text[:200].replace("\n", " ")
            for failure in group.exceptions:
                if isinstance(failure, RejectedPositiveData) and _explained(schema_doc, case, response):
                    continue
                failures.append(
                    f"{case.method.upper()} {case.path} -> {response.status_code}: {failure.title}; {body}"
                )

    for result in schema.get_all_operations():
        assert isinstance(result, Ok), result
        operation = result.ok()
        if _excluded(operation.method.upper(), operation.path):
            continue
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            _run(operation.as_strategy(generation_mode=mode), send)
    return failures, sent


async def test_the_openapi_document_holds_under_fuzzing(
    fuzz_url: str, sessions: async_sessionmaker[AsyncSession], http: httpx.AsyncClient
) -> None:
    team = await new_team(sessions, http)
    document = (await http.get("/openapi.json")).json()
    started = time.monotonic()
    failures, sent = await asyncio.to_thread(fuzz_everything, document, fuzz_url, team.key)
    elapsed = time.monotonic() - started
    print(f"schemathesis: {sent} requests in {elapsed:.1f} s, {len(failures)} failures")  # noqa: T201
    assert sent > 500
    unique = sorted(set(failures))
    assert not unique, f"{len(unique)} distinct failures:\n" + "\n".join(unique[:200])
