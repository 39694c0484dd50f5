"""Recorded histories replay against the current workflow code: in-flight work survives deploys."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Iterator, Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from google.protobuf.message import Message
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.api.common.v1 import Payload
from temporalio.client import Client, WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner

from activities.infra.codec import ENCODING, AesGcmCodec, parse_keys
from activities.infra.temporal import PASSTHROUGH_MODULES, StewardPlugin
from schemas.settings import Settings
from tests.conftest import TEST_PAYLOAD_KEYS
from workers.worker import WORKFLOWS, build_worker

HISTORIES = sorted((Path(__file__).parent / "histories").glob("*.json"))
KEYS = parse_keys(TEST_PAYLOAD_KEYS)
"""The fixed key the histories were recorded with (tests/histories/record.py)."""


def test_every_conversation_path_has_a_recorded_history() -> None:
    names = {path.stem for path in HISTORIES}
    # conversation-main: plain, tool, failed, handoff, silent turns and a handback;
    # conversation-interrupt: a turn interrupted by a newer message; conversation-approvals:
    # two gated calls in one turn, one approved and one rejected (and those approvals);
    # ambient-run: a scheduled run whose turn waits for an approval; conversation-takeover: a
    # Telegram conversation taken over mid-turn, an operator's reply, a silent turn, release,
    # claim, handback, then the model's own handoff (with the ops chat's notices).
    assert {
        "conversation-takeover",
        "conversation-main",
        "conversation-interrupt",
        "conversation-approvals",
        "approval-approved",
        "approval-rejected",
        "ambient-run",
    } <= names


@pytest.mark.parametrize("path", HISTORIES, ids=[p.stem for p in HISTORIES])
async def test_recorded_history_replays_without_nondeterminism(path: Path) -> None:
    history = WorkflowHistory.from_json(path.stem, path.read_text())  # noqa: ASYNC240 - a small fixture
    replayer = Replayer(workflows=WORKFLOWS, plugins=[StewardPlugin(KEYS)])
    result = await replayer.replay_workflow(history, raise_on_replay_failure=False)
    assert result.replay_failure is None, result.replay_failure


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("conversation-approvals", b"booking and filing"),  # the model's words
        ("conversation-takeover", b"a person will answer"),
        ("conversation-approvals", b"2099-01-01T09:00:00Z"),  # a tool call's arguments
        ("conversation-approvals", b"book and file"),  # the user's message
    ],
)
async def test_recorded_histories_are_sealed_and_open_with_the_recording_key(name: str, text: bytes) -> None:
    """What the model said is in the history, but only under encryption."""
    path = Path(__file__).parent / "histories" / f"{name}.json"
    history = WorkflowHistory.from_json(name, path.read_text())
    raw = b"".join(event.SerializeToString() for event in history.events)
    assert text not in raw
    assert ENCODING in raw
    opened = await AesGcmCodec(KEYS).decode(
        [p for event in history.events for p in _payloads(event) if p.metadata.get("encoding") == ENCODING]
    )
    assert any(text in p.data for p in opened)


def _payloads(message: Message) -> Iterator[Payload]:
    """Every payload anywhere in a history event (fields, lists and maps of messages)."""
    for _, value in message.ListFields():
        items: Iterable[Any]
        if isinstance(value, Message):
            items = [value]
        elif hasattr(value, "values"):  # a map field
            items = value.values()
        elif isinstance(value, (str, bytes, int, float)):
            items = []
        else:  # a repeated field (upb's containers iterate by index)
            items = list(value)
        for item in items:
            if isinstance(item, Payload):
                yield item
            elif isinstance(item, Message):
                yield from _payloads(item)


def _passthrough(config: Mapping[str, Any]) -> frozenset[str]:
    runner = config["workflow_runner"]
    assert isinstance(runner, SandboxedWorkflowRunner)
    return frozenset(runner.restrictions.passthrough_modules)


async def test_the_replayer_runs_workflows_as_every_worker_does(
    temporal: Client, settings: Settings, engine: AsyncEngine
) -> None:
    replayer = Replayer(workflows=WORKFLOWS, plugins=[StewardPlugin(KEYS)])
    replaying = replayer.config(active_config=True)
    # A task queue of its own: the session's worker already polls the test queue on this client.
    own = settings.model_copy(update={"task_queue": f"replayer-check-{uuid.uuid4().hex[:8]}"})
    worker = build_worker(temporal, own, engine)
    assert _passthrough(worker.config(active_config=True)) == _passthrough(replaying)
    assert set(PASSTHROUGH_MODULES) <= _passthrough(replaying)
    assert type(temporal.data_converter.payload_converter) is type(
        replaying["data_converter"].payload_converter
    )
    assert type(replaying["data_converter"].payload_converter) is type(
        pydantic_data_converter.payload_converter
    )
    # The same codec and keys: the replayer opens what the suite's client and worker sealed.
    sealing = temporal.data_converter.payload_codec
    assert isinstance(sealing, AesGcmCodec) and sealing.keys == KEYS
    opening = replaying["data_converter"].payload_codec
    assert isinstance(opening, AesGcmCodec) and opening.keys == KEYS


async def test_a_worker_is_refused_a_client_without_the_plugin(
    temporal: Client, settings: Settings, engine: AsyncEngine
) -> None:
    bare = await Client.connect(temporal.service_client.config.target_host, namespace=temporal.namespace)
    with pytest.raises(ValueError, match="StewardPlugin"):
        build_worker(bare, settings, engine)


async def test_a_worker_lets_running_activities_finish_for_the_configured_time(
    temporal: Client, settings: Settings, engine: AsyncEngine
) -> None:
    own = settings.model_copy(
        update={"task_queue": f"shutdown-check-{uuid.uuid4().hex[:8]}", "worker_shutdown_seconds": 300.0}
    )
    worker = build_worker(temporal, own, engine)
    assert worker.config(active_config=True)["graceful_shutdown_timeout"] == timedelta(seconds=300)
    assert Settings().worker_shutdown_seconds == 0  # dev's Ctrl-C cancels at once
