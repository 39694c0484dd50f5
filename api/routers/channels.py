"""Channels: the Telegram bots and Slack apps through which users reach an agent.

Credentials are encrypted before they are stored and never returned: the API shows
only which ones are set.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response

from api.deps import Admin, Principal, SessionDep, SettingsDep, require
from api.errors import checked_beyond_schema
from api.inbound.dispatch import Inbound
from api.services import channels
from schemas.api import ChannelCreate, ChannelList, ChannelPublic, ChannelUpdate, ErrorBody
from schemas.enums import Role

router = APIRouter(
    prefix="/v1/channels",
    tags=["channels"],
    responses={401: {"model": ErrorBody}, 403: {"model": ErrorBody}},
)

_CHECKED = checked_beyond_schema(
    credentials="the type's own: Telegram `bot_token`; Slack `bot_token`, `signing_secret`",
    mode="`polling` only for Telegram",
    ops="Telegram `chat_id`, Slack `channel_id`",
)

Reader = Annotated[Principal, Depends(require(Role.ADMIN, Role.OPERATOR, Role.VIEWER))]


def _forget(request: Request, channel_id: str) -> None:
    """This process's webhooks see the change at once (other processes within the cache's seconds)."""
    inbound: Inbound = request.app.state.inbound
    inbound.channels.forget(channel_id)


@router.post("", status_code=201, response_model=ChannelPublic, responses=_CHECKED)
async def create_channel(
    body: ChannelCreate, principal: Admin, session: SessionDep, settings: SettingsDep
) -> ChannelPublic:
    """Connect a Telegram bot or a Slack app to an agent (credentials are stored encrypted)."""
    channel, agent = await channels.create_channel(session, settings, principal.team_id, body)
    return channels.public(channel, agent.slug, settings)


@router.get("", response_model=ChannelList)
async def list_channels(principal: Reader, session: SessionDep, settings: SettingsDep) -> ChannelList:
    rows = await channels.list_channels(session, principal.team_id)
    return ChannelList(items=[channels.public(c, slug, settings) for c, slug in rows])


@router.get("/{channel_id}", response_model=ChannelPublic, responses={404: {"model": ErrorBody}})
async def get_channel(
    channel_id: str, principal: Reader, session: SessionDep, settings: SettingsDep
) -> ChannelPublic:
    channel, agent = await channels.find_channel(session, principal.team_id, channel_id)
    return channels.public(channel, agent.slug, settings)


@router.patch(
    "/{channel_id}",
    response_model=ChannelPublic,
    responses={404: {"model": ErrorBody}, **_CHECKED},
)
async def update_channel(
    channel_id: str,
    body: ChannelUpdate,
    principal: Admin,
    session: SessionDep,
    settings: SettingsDep,
    request: Request,
) -> ChannelPublic:
    """Change a channel; `credentials` replaces only the keys it gives."""
    channel, agent = await channels.update_channel(session, settings, principal.team_id, channel_id, body)
    _forget(request, channel.id)
    return channels.public(channel, agent.slug, settings)


@router.delete("/{channel_id}", status_code=204, responses={404: {"model": ErrorBody}})
async def delete_channel(
    channel_id: str, principal: Admin, session: SessionDep, request: Request
) -> Response:
    """Disconnect a channel: its webhooks answer 404 from now on; conversations are kept."""
    channel = await channels.delete_channel(session, principal.team_id, channel_id)
    _forget(request, channel.id)
    return Response(status_code=204)
