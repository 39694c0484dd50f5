"""Recorded histories replay against the current workflow code: in-flight work survives deploys."""

from __future__ import annotations

from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.worker import Replayer

from activities.infra.temporal import StewardPlugin
from workers.worker import WORKFLOWS

HISTORIES = sorted((Path(__file__).parent / "histories").glob("*.json"))


def test_every_conversation_path_has_a_recorded_history() -> None:
    names = {path.stem for path in HISTORIES}
    # conversation-main: plain, tool, failed, handoff, silent turns and a handback;
    # conversation-interrupt: a turn interrupted by a newer message; conversation-approvals:
    # two gated calls in one turn, one approved and one rejected (and those approvals);
    # ambient-run: a scheduled run whose turn waits for an approval.
    assert {
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
    replayer = Replayer(workflows=WORKFLOWS, plugins=[StewardPlugin()])
    result = await replayer.replay_workflow(history, raise_on_replay_failure=False)
    assert result.replay_failure is None, result.replay_failure
