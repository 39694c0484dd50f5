"""Approval activities: the inbox projection, its audit trail, and operator notifications.

The ApprovalWorkflow decides; these activities only record what it decided (local
activities, idempotent on the audit trail's unique (approval, action)) and tell people
about it (an ordinary activity with retries: an HTTP call leaves the process).
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import httpx
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities import metrics
from activities.channels.ops import OpsNotifier
from activities.channels.registry import ChannelRegistry
from activities.events import append_event
from activities.transcript import in_transaction
from activities.webhooks import post_signed
from schemas.enums import ApprovalStatus, AuditAction, EventKind
from schemas.errors import ErrorType
from schemas.payloads import ApprovalEvent, Notification
from schemas.policy import ApprovalSettings
from schemas.settings import Settings
from schemas.tables import Agent, AgentVersion, Approval, ApprovalAudit, Conversation, Turn


def _arguments(text: str | None) -> dict[str, Any]:
    try:
        value = json.loads(text or "{}")
    except json.JSONDecodeError:
        return {"_unparsed": text}
    return value if isinstance(value, dict) else {"_value": value}


async def _open(session: AsyncSession, event: ApprovalEvent) -> None:
    req = event.request
    if req is None:
        raise ApplicationError("a 'requested' event carries its request", non_retryable=True)
    if await session.get(Approval, req.approval_id) is not None:
        return
    conversation = await session.get(Conversation, req.conversation_id)
    if conversation is None or conversation.team_id != req.team_id:
        raise ApplicationError("conversation not found", type=ErrorType.NOT_FOUND, non_retryable=True)
    timers = req.timers
    session.add(
        Approval(
            id=req.approval_id,
            team_id=req.team_id,
            conversation_id=req.conversation_id,
            agent_id=conversation.agent_id,
            turn=req.turn,
            call_key=req.call_key,
            tool_call_id=req.call.id,
            tool_name=req.call.name,
            arguments=_arguments(req.call.arguments),
            rationale=req.rationale,
            status=ApprovalStatus.PENDING,
            remind_at=event.at + timedelta(seconds=timers.remind_after),
            escalate_at=event.at + timedelta(seconds=timers.escalate_after),
            expires_at=event.at + timedelta(seconds=timers.expires_after),
            expiry_action=timers.expiry_action,
            created_at=event.at,
        )
    )
    await session.flush()


_STREAMED = {
    AuditAction.REQUESTED: EventKind.APPROVAL_REQUESTED,
    **{
        action: EventKind.APPROVAL_DECIDED
        for action in (
            AuditAction.APPROVED,
            AuditAction.EDITED,
            AuditAction.REJECTED,
            AuditAction.RESPONDED,
            AuditAction.EXPIRED,
            AuditAction.CANCELLED,
        )
    },
}


async def record_event(session: AsyncSession, event: ApprovalEvent) -> bool:
    """Apply one event to the projection and append it to the audit trail; False if already there."""
    action = AuditAction(event.kind)
    if action == AuditAction.REQUESTED:
        await _open(session, event)
    seen = await session.execute(
        select(ApprovalAudit.id).where(
            ApprovalAudit.approval_id == event.approval_id, ApprovalAudit.action == action
        )
    )
    if seen.first() is not None:
        return False
    approval = await session.get(Approval, event.approval_id, with_for_update=True)
    if approval is None or approval.team_id != event.team_id:
        raise ApplicationError(
            f"approval {event.approval_id} not found", type=ErrorType.NOT_FOUND, non_retryable=True
        )
    actor, actor_key_id, comment = "system", None, None
    detail: dict[str, Any] = {}
    if action == AuditAction.REMINDED:
        approval.reminded_at = event.at
    elif action == AuditAction.ESCALATED:
        approval.escalated = True
        approval.escalated_at = event.at
    elif action == AuditAction.CANCELLED:
        approval.status = ApprovalStatus.CANCELLED
        approval.decided_at = event.at
    elif action != AuditAction.REQUESTED:
        outcome = event.outcome
        if outcome is None:
            raise ApplicationError("a decision event carries its outcome", non_retryable=True)
        approval.status = outcome.status
        approval.decision = outcome.decision
        approval.message = outcome.message
        approval.comment = outcome.comment
        approval.decided_by = outcome.decided_by
        approval.decided_by_key_id = outcome.decided_by_key_id
        approval.decided_at = outcome.decided_at
        if outcome.arguments is not None and outcome.status == ApprovalStatus.EDITED:
            approval.decided_arguments = _arguments(outcome.arguments)
            detail["arguments"] = approval.decided_arguments
        if outcome.message:
            detail["message"] = outcome.message
        detail["decision"] = outcome.decision.value
        actor, actor_key_id, comment = outcome.decided_by, outcome.decided_by_key_id, outcome.comment
    if action in _STREAMED:
        # Live clients (SSE, WebSocket, playground) see the pause and its resolution.
        await append_event(
            session,
            team_id=event.team_id,
            conversation_id=approval.conversation_id,
            turn=approval.turn,
            kind=_STREAMED[action],
            data={
                "approval_id": approval.id,
                "tool": approval.tool_name,
                "call_key": approval.call_key,
                "arguments": approval.arguments,
                "status": approval.status,
                **(
                    {"decided_by": actor, "decision": approval.decision or action.value}
                    if action != AuditAction.REQUESTED
                    else {}
                ),
                **({"comment": approval.comment} if approval.comment else {}),
                **({"message": approval.message} if approval.message else {}),
            },
        )
    session.add(
        ApprovalAudit(
            team_id=event.team_id,
            approval_id=event.approval_id,
            action=action,
            actor=actor,
            actor_key_id=actor_key_id,
            comment=comment,
            detail=detail,
            at=event.at,
        )
    )
    return True


class ApprovalActivities:
    """Inbox bookkeeping and notifications for ApprovalWorkflow."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        settings: Settings,
        channels: ChannelRegistry | None = None,
    ) -> None:
        self._sessions = sessions
        self._settings = settings
        self._http = httpx.AsyncClient(timeout=10.0, follow_redirects=False)
        self._ops = OpsNotifier(sessions, channels or ChannelRegistry(sessions, settings), settings)

    @activity.defn(name="approval.record")
    async def record(self, event: ApprovalEvent) -> None:
        """Record an approval's event in the inbox projection and its audit trail (idempotent)."""

        async def work(session: AsyncSession) -> bool:
            return await record_event(session, event)

        if await in_transaction(self._sessions, work):
            metrics.APPROVAL_EVENTS.labels(event=event.kind).inc()
            activity.logger.info(
                "approval %s %s", event.approval_id, event.kind, extra={"team": event.team_id}
            )

    @activity.defn(name="approval.notify")
    async def notify(self, note: Notification) -> bool:
        """Tell the ops chats of the agent's channels, and POST a signed notification to its webhook.

        False if the agent has neither configured.

        4xx answers other than 408 and 429 are final (retrying would not change them);
        anything else is retried by Temporal.
        """
        async with self._sessions() as session:
            found = (
                await session.execute(
                    select(Approval, Agent)
                    .join(Agent, Agent.id == Approval.agent_id)
                    .where(Approval.id == note.approval_id, Approval.team_id == note.team_id)
                )
            ).first()
        if found is None:
            raise ApplicationError(
                f"approval {note.approval_id} not found", type=ErrorType.NOT_FOUND, non_retryable=True
            )
        approval, agent = found[0], found[1]
        # Ops chats first: each message is posted once and then edited, so a retry caused
        # by the webhook below repeats nothing there.
        told = await self._ops.notify(note, approval, agent)
        settings = ApprovalSettings.model_validate(await self._approvals_of(approval, agent))
        url = (settings.escalation_url or settings.notify_url) if note.escalation else settings.notify_url
        if url is None:
            if told:
                metrics.NOTIFICATIONS.labels(event=note.event).inc()
            return told > 0
        await post_signed(
            self._http,
            url,
            self._payload(note, approval, agent),
            delivery=f"{note.approval_id}/{note.event}",
            secret=self._settings.webhook_secret,
        )
        metrics.NOTIFICATIONS.labels(event=note.event).inc()
        return True

    async def _approvals_of(self, approval: Approval, agent: Agent) -> dict[str, Any]:
        """The approval settings of the version that answered the approval's turn: where its
        notices go is part of what was published, not of the draft being edited now."""
        async with self._sessions() as session:
            frozen = (
                await session.execute(
                    select(AgentVersion.definition)
                    .join(Turn, Turn.version_id == AgentVersion.id)
                    .where(Turn.conversation_id == approval.conversation_id, Turn.n == approval.turn)
                )
            ).scalar_one_or_none()
        if frozen is None:  # a turn on the draft (`slug@draft`, a test run)
            return agent.approvals or {}
        approvals: dict[str, Any] = frozen.get("approvals") or {}
        return approvals

    def _payload(self, note: Notification, approval: Approval, agent: Agent) -> dict[str, Any]:
        return {
            "event": note.event,
            "escalation": note.escalation,
            "approval": {
                "id": approval.id,
                "status": approval.status,
                "escalated": approval.escalated,
                "agent": agent.slug,
                "conversation_id": approval.conversation_id,
                "tool": approval.tool_name,
                "arguments": approval.arguments,
                "rationale": approval.rationale,
                "decided_by": approval.decided_by,
                "created_at": approval.created_at.isoformat(),
                "expires_at": approval.expires_at.isoformat(),
                "url": f"{self._settings.public_url.rstrip('/')}/inbox/{approval.id}",
            },
        }
