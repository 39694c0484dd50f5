"""Dead letters: channel messages that could not be delivered, to retry or discard."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio.service import RPCError

from api.deps import Operator, Principal, SessionDep, SettingsDep, TemporalDep, require
from api.errors import ApiError
from schemas.api import DeadLetter, DeadLetterPage, ErrorBody
from schemas.enums import ChannelType, DeliveryStatus, Role
from schemas.tables import Channel, ChannelDelivery
from workflows import contract

router = APIRouter(
    prefix="/v1/dead-letters",
    tags=["channels"],
    responses={401: {"model": ErrorBody}, 403: {"model": ErrorBody}},
)

READERS = (Role.ADMIN, Role.OPERATOR, Role.VIEWER)
"""Who may see dead letters (the web page asks the same)."""
Reader = Annotated[Principal, Depends(require(*READERS))]


def _public(row: ChannelDelivery, channel_type: str) -> DeadLetter:
    return DeadLetter(
        id=row.id,
        channel_id=row.channel_id,
        channel_type=ChannelType(channel_type),
        conversation_id=row.conversation_id,
        turn=row.turn,
        key=row.key,
        text=row.text,
        status=DeliveryStatus(row.status),
        error_code=row.error_code,
        error_message=row.error_message,
        attempts=row.attempts,
        created_at=row.created_at,
        failed_at=row.failed_at,
    )


async def list_page(
    session: AsyncSession,
    team_id: str,
    channel: str | None = None,
    cursor: int | None = None,
    limit: int = 50,
) -> DeadLetterPage:
    """A team's undelivered messages, oldest first, and how many there are under the same filter.

    Args:
        session: the database session.
        team_id: whose messages.
        channel: only this channel's (by id); an unknown id gives an empty page.
        cursor: the `next_cursor` of the page before.
        limit: at most this many items.
    """
    filters = [ChannelDelivery.team_id == team_id, ChannelDelivery.status == DeliveryStatus.FAILED]
    if channel is not None:
        filters.append(ChannelDelivery.channel_id == channel)
    total = (
        await session.execute(select(func.count()).select_from(ChannelDelivery).where(*filters))
    ).scalar_one()
    stmt = (
        select(ChannelDelivery, Channel.type)
        .join(Channel, Channel.id == ChannelDelivery.channel_id)
        .where(*filters)
    )
    if cursor is not None:
        stmt = stmt.where(ChannelDelivery.id > cursor)
    rows = list((await session.execute(stmt.order_by(ChannelDelivery.id).limit(limit + 1))).tuples())
    page = rows[:limit]
    return DeadLetterPage(
        items=[_public(r, t) for r, t in page],
        total=int(total),
        next_cursor=page[-1][0].id if len(rows) > limit else None,
    )


@router.get("", response_model=DeadLetterPage)
async def list_dead_letters(
    principal: Reader,
    session: SessionDep,
    channel: Annotated[str | None, Query(max_length=32)] = None,
    cursor: Annotated[int | None, Query(ge=0)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> DeadLetterPage:
    """Undelivered messages, oldest first, with the provider's reason."""
    return await list_page(session, principal.team_id, channel=channel, cursor=cursor, limit=limit)


async def _find(session: AsyncSession, team_id: str, delivery_id: int) -> tuple[ChannelDelivery, str]:
    row = (
        await session.execute(
            select(ChannelDelivery, Channel.type)
            .join(Channel, Channel.id == ChannelDelivery.channel_id)
            .where(ChannelDelivery.id == delivery_id, ChannelDelivery.team_id == team_id)
            .with_for_update(of=ChannelDelivery)
        )
    ).first()
    if row is None:
        raise ApiError(404, "dead_letter_not_found", f"no dead letter {delivery_id} in this team")
    delivery, kind = row[0], row[1]
    if delivery.status != DeliveryStatus.FAILED:
        raise ApiError(
            409,
            "not_a_dead_letter",
            f"message {delivery_id} is {delivery.status}, not failed",
            {"status": delivery.status},
        )
    return delivery, kind


@router.post(
    "/{delivery_id}/retry",
    status_code=202,
    response_model=DeadLetter,
    responses={404: {"model": ErrorBody}, 409: {"model": ErrorBody}, 503: {"model": ErrorBody}},
)
async def retry_dead_letter(
    delivery_id: int, principal: Operator, session: SessionDep, temporal: TemporalDep, settings: SettingsDep
) -> DeadLetter:
    """Send it again (after the cause is fixed: bot unblocked, token replaced)."""
    delivery, kind = await _find(session, principal.team_id, delivery_id)
    delivery.status = DeliveryStatus.PENDING
    delivery.sending_at = None
    attempts = delivery.attempts
    await session.commit()
    try:
        await contract.start_delivery(
            temporal, settings.task_queue, delivery.id, delivery.team_id, retry=attempts
        )
    except RPCError as err:
        delivery.status = DeliveryStatus.FAILED
        await session.commit()
        raise ApiError(503, "temporal_unavailable", f"Temporal is not reachable: {err.message}") from err
    return _public(delivery, kind)


async def _discard(delivery_id: int, principal: Principal, session: AsyncSession) -> DeadLetter:
    delivery, kind = await _find(session, principal.team_id, delivery_id)
    delivery.status = DeliveryStatus.DISCARDED
    await session.commit()
    return _public(delivery, kind)


@router.post(
    "/{delivery_id}/discard",
    response_model=DeadLetter,
    responses={404: {"model": ErrorBody}, 409: {"model": ErrorBody}},
)
async def discard_dead_letter(delivery_id: int, principal: Operator, session: SessionDep) -> DeadLetter:
    """Give up on it: it leaves the list and the count."""
    return await _discard(delivery_id, principal, session)


@router.delete(
    "/{delivery_id}", status_code=204, responses={404: {"model": ErrorBody}, 409: {"model": ErrorBody}}
)
async def delete_dead_letter(delivery_id: int, principal: Operator, session: SessionDep) -> Response:
    """The same as discard."""
    await _discard(delivery_id, principal, session)
    return Response(status_code=204)
