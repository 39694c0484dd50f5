"""Dead letters: channel messages that could not be delivered, to retry or discard."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Response

from api.deps import Operator, Principal, SessionDep, SettingsDep, TemporalDep, require
from api.services import dead_letters
from schemas.api import MAX_DB_INT, DeadLetter, DeadLetterPage, ErrorBody

router = APIRouter(
    prefix="/v1/dead-letters",
    tags=["channels"],
    responses={401: {"model": ErrorBody}, 403: {"model": ErrorBody}},
)

Reader = Annotated[Principal, Depends(require(*dead_letters.READERS))]
DeliveryId = Annotated[int, Path(ge=1, le=MAX_DB_INT, description="a dead letter's id")]


@router.get("", response_model=DeadLetterPage)
async def list_dead_letters(
    principal: Reader,
    session: SessionDep,
    channel: Annotated[str | None, Query(max_length=32)] = None,
    cursor: Annotated[int | None, Query(ge=0, le=MAX_DB_INT)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> DeadLetterPage:
    """Undelivered messages, oldest first, with the provider's reason."""
    return await dead_letters.list_page(
        session, principal.team_id, channel=channel, cursor=cursor, limit=limit
    )


@router.post(
    "/{delivery_id}/retry",
    status_code=202,
    response_model=DeadLetter,
    responses={404: {"model": ErrorBody}, 409: {"model": ErrorBody}, 503: {"model": ErrorBody}},
)
async def retry_dead_letter(
    delivery_id: DeliveryId,
    principal: Operator,
    session: SessionDep,
    temporal: TemporalDep,
    settings: SettingsDep,
) -> DeadLetter:
    """Send it again (after the cause is fixed: bot unblocked, token replaced)."""
    return await dead_letters.retry(session, temporal, settings, principal.team_id, delivery_id)


@router.post(
    "/{delivery_id}/discard",
    response_model=DeadLetter,
    responses={404: {"model": ErrorBody}, 409: {"model": ErrorBody}},
)
async def discard_dead_letter(
    delivery_id: DeliveryId, principal: Operator, session: SessionDep
) -> DeadLetter:
    """Give up on it: it leaves the list and the count."""
    return await dead_letters.discard(session, principal.team_id, delivery_id)


@router.delete(
    "/{delivery_id}", status_code=204, responses={404: {"model": ErrorBody}, 409: {"model": ErrorBody}}
)
async def delete_dead_letter(delivery_id: DeliveryId, principal: Operator, session: SessionDep) -> Response:
    """The same as discard."""
    await dead_letters.discard(session, principal.team_id, delivery_id)
    return Response(status_code=204)
