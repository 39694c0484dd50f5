"""Channels: find one of a team's Telegram bots or Slack apps."""

# TEMP: replaced by the channels service at merge

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from api.errors import ApiError
from schemas.tables import Agent, Channel


async def find_channel(session: AsyncSession, team_id: str, channel_id: str) -> tuple[Channel, Agent]:
    """The team's live channel and its agent, or 404."""
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
