"""Approval requests in operators' chats: a message with Approve / Reject buttons per channel.

The ApprovalWorkflow's `approval.notify` activity calls this for every event of an
approval whose agent has channels with an `ops` chat. `requested` posts the message
once (its id is kept per approval and channel); later events edit that same message:
a reminder or escalation says so, and the decision replaces the buttons with the
outcome and who decided.
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.channels.providers import ApprovalView, DeliveryError
from activities.channels.registry import ChannelRegistry
from activities.lookups import lookups
from activities.transcript import in_transaction
from schemas.budgets import BUDGET_TOOL, extension_sentence
from schemas.enums import ApprovalStatus, ChannelType
from schemas.payloads import Notification
from schemas.settings import Settings
from schemas.tables import Agent, Approval, Channel, ChannelApprovalMessage, Conversation
from schemas.tools import TOOLS, Lookups

_FOOTERS = {
    "approval.reminder": "Reminder: this is still waiting for a decision.",
    "approval.escalated": "Escalated: nobody has decided yet.",
}


def ops_chat(channel: Channel) -> str | None:
    """The chat that gets this channel's approval requests, if it has one."""
    ops = channel.ops or {}
    value = ops.get("chat_id") if channel.type == ChannelType.TELEGRAM else ops.get("channel_id")
    return str(value) if value not in (None, "") else None


def ops_address(channel: Channel) -> dict[str, Any] | None:
    """Where a plain message to the channel's ops chat goes (`send_text`'s address), if it has one."""
    chat = ops_chat(channel)
    if chat is None:
        return None
    return {"chat_id": chat} if channel.type == ChannelType.TELEGRAM else {"channel": chat}


def handoff_text(conversation: Conversation, agent: Agent, url: str) -> str:
    """The ops chat's notice that a conversation needs a person: who handed it off, why, and where."""
    if conversation.held_by:
        head = f"{conversation.held_by} took over a conversation with {agent.name} ({agent.slug})."
    else:
        head = f"{agent.name} ({agent.slug}) handed a conversation to a person. Nobody has claimed it yet."
    reason = f"\nWhy: {conversation.handoff_reason}" if conversation.handoff_reason else ""
    return f"{head}{reason}\nOpen it: {url}"


def view_of(
    approval: Approval, agent: Agent, event: str, inbox_url: str, found: Lookups | None = None
) -> ApprovalView:
    """The approval as an ops chat shows it: the call as a person reads it (the inbox's
    summary, when the tool has one, else its arguments), the agent's reason, then the decision."""
    spec = TOOLS.get(approval.tool_name)
    found = found if found is not None else Lookups()
    summary = spec.summarise(approval.arguments, found) if spec else None
    arguments = json.dumps(approval.arguments, ensure_ascii=False, indent=1)
    who = f"{agent.name} ({agent.slug})"
    budget = approval.tool_name == BUDGET_TOOL  # a reached budget's "allow more?" (schemas/budgets.py)
    if budget:
        body = f"{who}: {extension_sentence(approval.arguments, agent.slug) or arguments}"
    elif summary:  # the inbox link gives the raw arguments to whoever wants them
        body = f"{who} asks to run {approval.tool_name}: {summary}"
    else:
        body = f"{who} wants to run {approval.tool_name} with:\n{arguments}"
    if approval.rationale and not budget:
        body += f"\n\nWhy: {approval.rationale}"
    pending = approval.status == ApprovalStatus.PENDING
    if pending:
        return ApprovalView(
            approval_id=approval.id,
            title="Approval needed: more budget" if budget else f"Approval needed: {approval.tool_name}",
            body=body,
            inbox_url=inbox_url,
            pending=True,
            footer=_FOOTERS.get(event, ""),
        )
    status = ApprovalStatus(approval.status)
    who = approval.decided_by or "system"
    footer = {
        ApprovalStatus.EXPIRED: f"Expired: nobody decided in time ({who} applied the agent's expiry action).",
        ApprovalStatus.CANCELLED: "Cancelled: the turn that asked has ended.",
    }.get(status, f"{status.value.capitalize()} by {who}")
    if approval.decided_arguments and approval.decided_arguments != approval.arguments:
        edited = spec.summarise(approval.decided_arguments, found) if spec else None
        footer += f", edited to: {edited or json.dumps(approval.decided_arguments, ensure_ascii=False)}"
    if approval.comment:
        footer += f": {approval.comment}"
    return ApprovalView(
        approval_id=approval.id,
        title=f"{status.value.capitalize()}: {approval.tool_name}",
        body=body,
        inbox_url=inbox_url,
        pending=False,
        footer=footer,
    )


class OpsNotifier:
    """Posts and updates approval messages in ops chats."""

    def __init__(
        self, sessions: async_sessionmaker[AsyncSession], registry: ChannelRegistry, settings: Settings
    ) -> None:
        self._sessions = sessions
        self._registry = registry
        self._settings = settings

    async def notify(self, note: Notification, approval: Approval, agent: Agent) -> int:
        """Tell every ops chat of the agent's channels; returns how many were told."""
        async with self._sessions() as session:
            channels = list(
                (
                    await session.execute(
                        select(Channel).where(
                            Channel.agent_id == agent.id,
                            Channel.team_id == approval.team_id,
                            Channel.deleted_at.is_(None),
                        )
                    )
                ).scalars()
            )
            found = await lookups(session, approval.team_id, [approval])
        url = f"{self._settings.public_url.rstrip('/')}/inbox/{approval.id}"
        view = view_of(approval, agent, note.event, url, found)
        told = 0
        for channel in channels:
            chat = ops_chat(channel)
            if chat is None:
                continue
            try:
                if await self._show(channel, chat, approval, note.event, view):
                    told += 1
            except DeliveryError as err:
                if not err.permanent:
                    delay = err.retry_after
                    raise ApplicationError(
                        err.message,
                        type=err.code,
                        next_retry_delay=None if delay is None else timedelta(seconds=delay),
                    ) from err
                activity.logger.warning("ops chat of channel %s refused: %s", channel.id, err.message)
        return told

    async def _show(
        self, channel: Channel, chat: str, approval: Approval, event: str, view: ApprovalView
    ) -> bool:
        async with self._sessions() as session:
            row = (
                await session.execute(
                    select(ChannelApprovalMessage).where(
                        ChannelApprovalMessage.approval_id == approval.id,
                        ChannelApprovalMessage.channel_id == channel.id,
                    )
                )
            ).scalar_one_or_none()
        message_id = row.message_id if row is not None else None
        if row is not None and row.last_event == event:
            return True  # a retry: this event is already shown
        if message_id is None and event == "approval.decided":
            return False  # never announced here: nothing to update
        _, client = await self._registry.get(channel.id, channel.team_id)
        shown = await client.show_approval(chat, view, message_id)

        async def record(session: AsyncSession) -> None:
            existing = (
                await session.execute(
                    select(ChannelApprovalMessage).where(
                        ChannelApprovalMessage.approval_id == approval.id,
                        ChannelApprovalMessage.channel_id == channel.id,
                    )
                )
            ).scalar_one_or_none()
            if existing is None:
                existing = ChannelApprovalMessage(
                    team_id=approval.team_id, approval_id=approval.id, channel_id=channel.id, chat=chat
                )
                session.add(existing)
            existing.message_id = shown
            existing.last_event = event

        await in_transaction(self._sessions, record)
        return True
