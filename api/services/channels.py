"""Channels: connect a Telegram bot or a Slack app to an agent, change, find and disconnect them.

Credentials are sealed with `SecretBox` before they are stored and never shown: the
public view says only which ones are set.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from activities.infra.secrets import SecretBox, SecretsUnavailable
from api.errors import ApiError
from api.services.agents import find_agent
from schemas.api import ChannelCreate, ChannelOps, ChannelPublic, ChannelUpdate, credentials_model
from schemas.enums import ChannelMode, ChannelType
from schemas.settings import Settings
from schemas.tables import Agent, Channel, utcnow


def _box(settings: Settings) -> SecretBox:
    try:
        return SecretBox.of(settings)
    except SecretsUnavailable as err:
        raise ApiError(503, "secrets_unavailable", str(err)) from err


def _credentials(kind: ChannelType, raw: dict[str, Any]) -> dict[str, Any]:
    """Validated credentials, or 422 naming each field (never echoing a value)."""
    try:
        parsed = credentials_model(kind).model_validate(raw)
    except ValidationError as err:
        details = [
            {
                "field": ".".join(["credentials", *(str(p) for p in e["loc"])]),
                "message": e["msg"],
                "type": e["type"],
            }
            for e in err.errors()
        ]
        fields = ", ".join(d["field"] for d in details)
        raise ApiError(
            422, "validation_error", f"invalid {kind.value} credentials: {fields}", details
        ) from err
    return parsed.model_dump(exclude_none=True)


def _check(kind: ChannelType, mode: ChannelMode, ops: ChannelOps | None) -> None:
    if kind == ChannelType.SLACK and mode == ChannelMode.POLLING:
        raise ApiError(
            422,
            "validation_error",
            "Slack channels receive events by webhook; polling is for Telegram",
            [{"field": "mode", "message": "Slack has no polling mode"}],
        )
    if ops is None:
        return
    wrong = "channel_id" if kind == ChannelType.TELEGRAM else "chat_id"
    if getattr(ops, wrong) is not None:
        right = "chat_id" if kind == ChannelType.TELEGRAM else "channel_id"
        raise ApiError(
            422,
            "validation_error",
            f"a {kind.value} ops chat is given as ops.{right}",
            [{"field": f"ops.{wrong}", "message": f"not for {kind.value}; use ops.{right}"}],
        )


def public(channel: Channel, agent_slug: str, settings: Settings) -> ChannelPublic:
    """The channel as the API shows it: which credentials are set (no values) and its webhook URLs."""
    credentials = _box(settings).open(channel.credentials)
    base = settings.public_url.rstrip("/")
    if channel.type == ChannelType.TELEGRAM:
        webhook, interactions = f"{base}/channels/telegram/{channel.id}", None
    else:
        webhook = f"{base}/channels/slack/{channel.id}/events"
        interactions = f"{base}/channels/slack/{channel.id}/interactions"
    return ChannelPublic(
        id=channel.id,
        type=ChannelType(channel.type),
        agent=agent_slug,
        name=channel.name,
        mode=ChannelMode(channel.mode),
        ops=ChannelOps.model_validate(channel.ops) if channel.ops else None,
        rate_limit_per_minute=channel.rate_limit_per_minute,
        credentials_set=sorted(k for k in credentials if k != "api_base_url"),
        api_base_url=credentials.get("api_base_url"),
        webhook_url=webhook,
        interactions_url=interactions,
        webhook_registered=channel.webhook_secret_hash is not None,
        created_at=channel.created_at,
        updated_at=channel.updated_at,
    )


async def find_channel(session: AsyncSession, team_id: str, channel_id: str) -> tuple[Channel, Agent]:
    """The team's live channel with this id and the agent behind it, or 404."""
    row = (
        await session.execute(
            select(Channel, Agent)
            .join(Agent, Agent.id == Channel.agent_id)
            .where(Channel.id == channel_id, Channel.team_id == team_id, Channel.deleted_at.is_(None))
        )
    ).first()
    if row is None:
        raise ApiError(404, "channel_not_found", f"no channel '{channel_id}' in this team")
    return row[0], row[1]


async def create_channel(
    session: AsyncSession, settings: Settings, team_id: str, body: ChannelCreate
) -> tuple[Channel, Agent]:
    """Connect a Telegram bot or a Slack app to an agent (credentials are stored encrypted)."""
    _check(body.type, body.mode, body.ops)
    credentials = _credentials(body.type, body.credentials)
    box = _box(settings)
    agent = await find_agent(session, team_id, body.agent)
    channel = Channel(
        team_id=team_id,
        agent_id=agent.id,
        type=body.type,
        mode=body.mode,
        name=body.name,
        credentials=box.seal(credentials),
        ops=body.ops.model_dump(mode="json", exclude_none=True) if body.ops else {},
        rate_limit_per_minute=body.rate_limit_per_minute,
    )
    session.add(channel)
    await session.commit()
    return channel, agent


async def list_channels(session: AsyncSession, team_id: str) -> list[tuple[Channel, str]]:
    """The team's live channels, oldest first, each with its agent's slug."""
    rows = await session.execute(
        select(Channel, Agent.slug)
        .join(Agent, Agent.id == Channel.agent_id)
        .where(Channel.team_id == team_id, Channel.deleted_at.is_(None))
        .order_by(Channel.created_at, Channel.id)
    )
    return list(rows.tuples())


async def update_channel(
    session: AsyncSession, settings: Settings, team_id: str, channel_id: str, body: ChannelUpdate
) -> tuple[Channel, Agent]:
    """Change a channel; `credentials` replaces only the keys it gives."""
    channel, agent = await find_channel(session, team_id, channel_id)
    kind = ChannelType(channel.type)
    mode = body.mode or ChannelMode(channel.mode)
    ops = body.ops if "ops" in body.model_fields_set else None
    _check(kind, mode, ops)
    box = _box(settings)
    if body.credentials is not None:
        merged = {**box.open(channel.credentials), **body.credentials}
        channel.credentials = box.seal(_credentials(kind, merged))
    if body.agent is not None:
        agent = await find_agent(session, team_id, body.agent)
        channel.agent_id = agent.id
    if body.name is not None:
        channel.name = body.name
    channel.mode = mode
    if "ops" in body.model_fields_set:
        channel.ops = body.ops.model_dump(mode="json", exclude_none=True) if body.ops else {}
    if body.rate_limit_per_minute is not None:
        channel.rate_limit_per_minute = body.rate_limit_per_minute
    channel.updated_at = utcnow()
    await session.commit()
    return channel, agent


async def delete_channel(session: AsyncSession, team_id: str, channel_id: str) -> Channel:
    """Disconnect a channel: its webhooks answer 404 from now on; conversations are kept."""
    channel, _ = await find_channel(session, team_id, channel_id)
    channel.deleted_at = channel.updated_at = utcnow()
    await session.commit()
    return channel
