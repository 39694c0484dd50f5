"""Regression replays (`/v1/replays`): recorded conversations re-run against a candidate version."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query

from api.deps import Admin, Principal, SessionDep, SettingsDep, TemporalDep, require
from api.errors import checked_beyond_schema
from api.services import replays
from schemas.api import NO_NUL, ErrorBody, ReplayCreate, ReplayDetail, ReplayPage
from schemas.api.replays import REPLAY_ID

router = APIRouter(
    prefix="/v1/replays", tags=["replays"], responses={401: {"model": ErrorBody}, 403: {"model": ErrorBody}}
)

Reader = Annotated[Principal, Depends(require(*replays.READERS))]
ReplayId = Annotated[str, Path(pattern=REPLAY_ID, description="a replay's id")]


@router.post(
    "",
    status_code=202,
    response_model=ReplayDetail,
    responses={
        404: {"model": ErrorBody},
        503: {"model": ErrorBody},
        **checked_beyond_schema(
            conversations="each this agent's, recorded (not a test run), named once, with a turn the agent"
            " answered; a filter must match one (`no_conversations`)",
            evaluators="each evaluator's own rules: `kind` names it, a `regex` compiles, a `json_schema`"
            " is one (and `tool_arguments` names its tool), `tools` asserts something and `none` alone",
        ),
    },
)
async def start_replay(
    body: ReplayCreate, principal: Admin, session: SessionDep, temporal: TemporalDep, settings: SettingsDep
) -> ReplayDetail:
    """Re-run recorded conversations turn by turn against version N or the draft.

    Each conversation is re-run in a scratch test conversation: the recorded user messages
    are sent again; a tool call the recording made (same tool, same arguments) gets the
    recorded result, any other is a test run's (side-effecting calls simulated). 202 with
    the replay; `GET /v1/replays/{id}` shows each turn's differences and verdicts as they come.
    """
    replay = await replays.open_replay(session, principal.team_id, body, principal.key_name)
    await replays.start(session, temporal, settings.task_queue, replay, body.concurrency)
    return await replays.replay_detail(session, principal.team_id, replay.id)


_LIST: dict[int | str, dict[str, Any]] = {404: {"model": ErrorBody}, 422: {"model": ErrorBody}}


@router.get("", response_model=ReplayPage, responses=_LIST)
async def list_replays(
    principal: Reader,
    session: SessionDep,
    agent: Annotated[
        str | None, Query(max_length=64, pattern=NO_NUL, description="only this agent's")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> ReplayPage:
    """The team's replays, newest first, with their verdicts so far."""
    return await replays.list_replays(session, principal.team_id, agent, limit)


@router.get("/{replay_id}", response_model=ReplayDetail, responses=_LIST)
async def get_replay(replay_id: ReplayId, principal: Reader, session: SessionDep) -> ReplayDetail:
    """A replay: each conversation's verdict (same, changed, regressed); each turn's sides and differences."""
    return await replays.replay_detail(session, principal.team_id, replay_id)
