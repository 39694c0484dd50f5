"""The chaos benchmark, small: real processes SIGKILLed during turns lose and double nothing.

`bench/chaos.py` at full size (200 turns, 20 conversations) is a benchmark; this runs its
loop on a few turns so the suite holds the same promise: every accepted turn is answered
once, each user message is stored once and each tool call files one ticket.
"""

from __future__ import annotations

from bench.chaos import run


async def test_turns_survive_processes_killed_at_random() -> None:
    tally, duplicates = await run(turns=8, conversations=2, gap=2.0, seed=7, database_url=None)
    assert sum(tally.kills.values()) >= 1
    assert tally.accepted == tally.answered == 8 and tally.lost == []
    assert tally.refused == 0
    assert duplicates["duplicate replies"] == 0
    assert duplicates["duplicate user messages"] == 0
    assert duplicates["duplicate tool effects"] == 0
    assert duplicates["tickets filed"] <= tally.kinds["tool"]  # a retried model call may skip its tool
