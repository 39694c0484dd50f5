"""The demo dataset `steward dev` seeds: golden cases for the concierge that pass on the offline model."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from schemas.tables import Dataset, DatasetCase, Team

DEMO_DATASET = "concierge-golden"

_CASES: list[dict[str, Any]] = [
    {
        "name": "offers free slots",
        "messages": ["Any appointments available?"],
        "evaluators": [
            {"kind": "tools", "called": ["check_availability"], "not_called": ["book_appointment"]},
            {"kind": "contains", "value": "Free slots"},
        ],
        "tags": ["booking"],
    },
    {
        "name": "books the first slot (simulated)",
        "messages": ["Any appointments available?", "Book it, my name is Ana"],
        "evaluators": [
            {"kind": "tools", "order": ["check_availability", "book_appointment"]},
            {
                "kind": "tools",
                "name": "books for Ana",
                "args": [{"tool": "book_appointment", "arguments": {"customer_name": "Ana"}}],
            },
            {
                "kind": "json_schema",
                "target": "tool_arguments",
                "tool": "book_appointment",
                "schema": {"type": "object", "required": ["slot_id", "customer_name"]},
            },
        ],
        "tags": ["booking"],
    },
    {
        "name": "opens a ticket for a problem",
        "messages": ["My card reader is broken"],
        "evaluators": [{"kind": "tools", "called": ["create_ticket"], "count": {"create_ticket": 1}}],
        "tags": ["support"],
    },
    {
        "name": "small talk calls no tool",
        "messages": ["Hello there"],
        "evaluators": [
            {"kind": "tools", "none": True},
            {"kind": "regex", "pattern": "offline demo model", "ignore_case": True},
        ],
        "tags": ["chat"],
    },
]


async def ensure_demo_dataset(session: AsyncSession, team: Team) -> Dataset:
    """The team's demo dataset, made with its cases unless one of that name exists."""
    found = await session.scalar(
        select(Dataset).where(
            Dataset.team_id == team.id, Dataset.name == DEMO_DATASET, Dataset.deleted_at.is_(None)
        )
    )
    if found is not None:
        return found
    dataset = Dataset(
        team_id=team.id,
        name=DEMO_DATASET,
        description="Golden cases for the demo concierge (they pass on the offline demo model).",
        evaluators=[{"kind": "bounds", "name": "few rounds", "tool_rounds": 2}],
    )
    session.add(dataset)
    await session.flush()
    for seq, case in enumerate(_CASES, start=1):
        session.add(DatasetCase(team_id=team.id, dataset_id=dataset.id, seq=seq, **case))
    await session.flush()
    return dataset
