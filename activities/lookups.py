"""What approvals' arguments refer to, looked up for their one-line summaries.

The inbox, the API and the ops chats' approval messages all summarise a call the same way
(`schemas/tools.py` `ToolSpec.summarise`), from the slots its arguments name.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from schemas.tables import Approval, Slot
from schemas.tools import TOOLS, Lookups, SlotFacts


async def lookups(session: AsyncSession, team_id: str, approvals: Iterable[Approval]) -> Lookups:
    """What the items' arguments refer to, for their summaries: the slots they name, in one query."""
    slot_ids: set[str] = set()
    for approval in approvals:
        spec = TOOLS.get(approval.tool_name)
        if spec is None or spec.slot_argument is None:
            continue
        for arguments in (approval.arguments, approval.decided_arguments or {}):
            value = arguments.get(spec.slot_argument)
            if isinstance(value, str):
                slot_ids.add(value)
    if not slot_ids:
        return Lookups()
    slots = await session.execute(select(Slot).where(Slot.team_id == team_id, Slot.id.in_(slot_ids)))
    return Lookups(
        slots={s.id: SlotFacts(starts_at=s.starts_at, resource=s.resource) for s in slots.scalars()}
    )
