"""The dead-letters page: `/dead-letters`, channel messages that could not be delivered.

Its rows are what `GET /v1/dead-letters` lists (`api.routers.dead_letters.list_page`);
its Retry and Discard buttons call the JSON API from static/dead_letters.js with the
sign-in cookie and the `X-Steward-Web: 1` header, as the other pages' buttons do.
"""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import APIRouter, Request
from fastapi.responses import Response
from sqlalchemy import func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from api.deps import SessionDep
from api.routers.dead_letters import READERS, list_page
from api.web import templates
from api.web.session import WebUser
from schemas.enums import DeliveryStatus, Role
from schemas.tables import Channel, ChannelDelivery

router = APIRouter(tags=["web"], include_in_schema=False)

OPERATORS = (Role.ADMIN, Role.OPERATOR)
"""Who may press Retry and Discard (the JSON API's `Operator`)."""
PAGE_SIZE = 100


@dataclass(frozen=True)
class ChannelChoice:
    """One entry of the channel filter: a channel and how many of its messages wait here."""

    id: str
    type: str
    name: str
    waiting: int


async def channel_choices(session: AsyncSession, team_id: str) -> list[ChannelChoice]:
    """The team's channels with their dead-letter counts; deleted ones only while they have some."""
    waiting = (
        select(ChannelDelivery.channel_id, func.count().label("waiting"))
        .where(ChannelDelivery.team_id == team_id, ChannelDelivery.status == DeliveryStatus.FAILED)
        .group_by(ChannelDelivery.channel_id)
        .subquery()
    )
    rows = await session.execute(
        select(Channel.id, Channel.type, Channel.name, func.coalesce(waiting.c.waiting, 0))
        .outerjoin(waiting, waiting.c.channel_id == Channel.id)
        .where(Channel.team_id == team_id, or_(Channel.deleted_at.is_(None), waiting.c.waiting.is_not(None)))
        .order_by(Channel.type, Channel.name, Channel.id)
    )
    return [ChannelChoice(id, kind, name, int(count)) for id, kind, name, count in rows.tuples()]


@router.get("/dead-letters")
async def dead_letters_page(
    request: Request,
    user: WebUser,
    session: SessionDep,
    channel: str | None = None,
    cursor: int | None = None,
) -> Response:
    """Undelivered messages, oldest first, with the provider's reason and Retry / Discard buttons."""
    if user.role not in READERS:
        return templates.TemplateResponse(
            request,
            "dead_letters.html",
            {"user": user, "needs": ", ".join(r.value for r in READERS)},
            status_code=403,
        )
    channels = await channel_choices(session, user.team_id)
    page = await list_page(session, user.team_id, channel=channel or None, cursor=cursor, limit=PAGE_SIZE)
    return templates.TemplateResponse(
        request,
        "dead_letters.html",
        {
            "user": user,
            "page": page,
            "channels": channels,
            "channel": channel or "",
            "cursor": cursor,
            "names": {c.id: c.name for c in channels},
            "dead_letter_count": sum(c.waiting for c in channels),
            "can_operate": user.role in OPERATORS,
            "needs": None,
        },
    )
