"""One conversation as the web console shows it: transcript, approvals, timeline, channel, hold.

Each tool call carries its result and the approval it waited for, inline; a user's
message the agent left to a person says so, and each handoff, takeover and handback is
marked where it happened. The turn timeline and those marks are built from the event log
(which retention prunes: an old conversation may show neither).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import quote

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from activities.evals import case_of
from activities.replays import replay_of
from api.services.console import cut, stand_in
from api.services.conversations import find_conversation
from schemas.enums import ApprovalStatus, ConversationStatus, EventKind, MessageRole, TurnStatus
from schemas.settings import Settings
from schemas.tables import (
    Approval,
    Channel,
    ChannelInbound,
    Conversation,
    Event,
    Message,
    ToolExecution,
    Turn,
)
from schemas.tools import HANDOFF_BY_AGENT
from workflows import contract

TRANSCRIPT_LIMIT = 500
"""The newest transcript entries a detail page shows."""
TIMELINE_LIMIT = 300
TIMELINE_KINDS = (
    EventKind.TURN_STARTED,
    EventKind.TURN_COMPLETED,
    EventKind.TURN_FAILED,
    EventKind.APPROVAL_REQUESTED,
    EventKind.TURN_AWAITING_APPROVAL,
    EventKind.APPROVAL_DECIDED,
    EventKind.MESSAGE_OPERATOR,
    EventKind.CONVERSATION_HANDED_OFF,
    EventKind.CONVERSATION_CLAIMED,
    EventKind.CONVERSATION_RELEASED,
    EventKind.CONVERSATION_HANDED_BACK,
)
HANDOVERS = (EventKind.CONVERSATION_HANDED_OFF, EventKind.CONVERSATION_HANDED_BACK)
"""Changes of who answers: also marked inline in the transcript, where they happened."""
LIVE_KINDS = (
    *TIMELINE_KINDS,
    EventKind.MESSAGE_DELTA,
    EventKind.MESSAGE_COMPLETED,
    EventKind.TOOL_CALL,
    EventKind.TOOL_RESULT,
)
"""What the detail page listens for on the conversation's event stream."""
NOT_RUN = {
    ApprovalStatus.REJECTED,
    ApprovalStatus.RESPONDED,
    ApprovalStatus.EXPIRED,
    ApprovalStatus.CANCELLED,
}
"""Approval outcomes that leave the tool unrun: its "result" says so, it is not a failure."""


@dataclass(frozen=True)
class ApprovalView:
    id: str
    tool: str
    status: ApprovalStatus
    turn: int
    tool_call_id: str
    arguments: dict[str, Any]
    decided_arguments: dict[str, Any] | None
    decided_by: str | None
    decided_at: datetime | None
    comment: str | None
    message: str | None
    created_at: datetime
    escalated: bool


@dataclass
class ToolCallView:
    """A tool call the agent made, with what it returned and the approval it waited for."""

    id: str
    name: str
    arguments: str
    result: str | None = None
    ok: bool | None = None
    approval: ApprovalView | None = None

    @property
    def not_run(self) -> bool:
        """An operator's decision kept the tool from running (rejected, answered instead, expired)."""
        return self.approval is not None and self.approval.status in NOT_RUN


@dataclass
class Entry:
    """One transcript entry; an assistant's entry carries its tool calls, results inline."""

    seq: int
    turn: int
    role: MessageRole
    content: str
    created_at: datetime
    author: str | None = None
    model: str | None = None
    calls: list[ToolCallView] = field(default_factory=list)
    silent: bool = False
    """A user's message recorded while a person had the conversation: the agent did not answer it."""

    @property
    def stand_in(self) -> str | None:
        """Who wrote this assistant reply in the agent's place (an approval answered by a person)."""
        return stand_in(self.model) if self.role == MessageRole.ASSISTANT else None


@dataclass(frozen=True)
class TimelineEntry:
    seq: int
    at: datetime
    turn: int
    kind: str
    title: str
    detail: str = ""
    tone: str = ""
    """`ok`, `failed`, `warn` or `person`: how the page colours it."""
    approval_id: str | None = None


@dataclass(frozen=True)
class Mark:
    """A change of who answers, between the transcript's entries: a handoff, a takeover, a handback."""

    event: TimelineEntry

    @property
    def created_at(self) -> datetime:
        return self.event.at


@dataclass(frozen=True)
class ChannelView:
    id: str
    type: str
    name: str
    chat: str
    """The chat's key: Telegram chat (and topic), Slack channel (and thread)."""
    address: dict[str, Any]
    users: list[str]
    """Who wrote in this conversation, as decisions name them (`telegram:@ana`, `slack:U123`)."""


@dataclass
class ConversationDetail:
    id: str
    agent: str
    agent_name: str
    status: ConversationStatus
    turns: int
    created_at: datetime
    last_activity_at: datetime
    last_error_code: str | None
    last_error_message: str | None
    handed_off_at: datetime | None
    handoff_reason: str | None
    held_by: str | None
    held_by_key_id: str | None
    held_since: datetime | None
    channel: ChannelView | None
    entries: list[Entry | Mark]
    """The transcript, oldest first, with `Mark`s where a person took over or handed back."""
    earlier: int
    """Older transcript entries not shown (only the newest `TRANSCRIPT_LIMIT` are)."""
    approvals: list[ApprovalView]
    timeline: list[TimelineEntry]
    last_event: int
    """The newest event's id: the page's live stream continues after it."""
    workflow_id: str
    temporal_url: str | None


def workflow_url(settings: Settings, workflow_id: str) -> str | None:
    """A workflow in the Temporal UI, or None when no UI address is configured."""
    if settings.temporal_ui_url is None:
        return None
    base = settings.temporal_ui_url.rstrip("/")
    return f"{base}/namespaces/{settings.temporal_namespace}/workflows/{quote(workflow_id, safe='')}"


def _workflow_of(conversation: Conversation) -> str:
    """The workflow a conversation's turns run in: its own, or, for the scratch conversation of
    an eval case or of a replay (which have none of their own), the case's or the replay's."""
    if (case := case_of(conversation)) is not None:
        return contract.case_workflow_id(case["run"], case["case"])
    replay = replay_of(conversation)
    if replay is not None and isinstance(replay.get("replay_id"), str):
        return contract.replay_workflow_id(replay["replay_id"])
    return contract.conversation_workflow_id(conversation.id)


async def conversation_detail(
    session: AsyncSession, settings: Settings, team_id: str, conversation_id: str
) -> ConversationDetail:
    """One conversation in full: transcript, approvals, timeline, channel, hold (404 if not the team's)."""
    conversation, agent = await find_conversation(session, team_id, conversation_id)
    approvals = [
        _approval(a)
        for a in (
            await session.execute(
                select(Approval)
                .where(Approval.conversation_id == conversation.id)
                .order_by(Approval.created_at)
            )
        ).scalars()
    ]
    entries, earlier = await _transcript(session, conversation.id, approvals)
    timeline, last_event = await _timeline(session, conversation.id)
    marks = await _handovers(session, conversation.id, entries[0].created_at if earlier else None)
    workflow_id = _workflow_of(conversation)
    return ConversationDetail(
        id=conversation.id,
        agent=agent.slug,
        agent_name=agent.name,
        status=ConversationStatus(conversation.status),
        turns=conversation.turns,
        created_at=conversation.created_at,
        last_activity_at=conversation.last_activity_at,
        last_error_code=conversation.last_error_code,
        last_error_message=conversation.last_error_message,
        handed_off_at=conversation.handed_off_at,
        handoff_reason=conversation.handoff_reason,
        held_by=conversation.held_by,
        held_by_key_id=conversation.held_by_key_id,
        held_since=conversation.held_since,
        channel=await _channel(session, conversation),
        entries=_interleave(entries, marks),
        earlier=earlier,
        approvals=approvals,
        timeline=timeline,
        last_event=last_event,
        workflow_id=workflow_id,
        temporal_url=workflow_url(settings, workflow_id),
    )


def _approval(a: Approval) -> ApprovalView:
    return ApprovalView(
        id=a.id,
        tool=a.tool_name,
        status=ApprovalStatus(a.status),
        turn=a.turn,
        tool_call_id=a.tool_call_id,
        arguments=a.arguments,
        decided_arguments=a.decided_arguments,
        decided_by=a.decided_by,
        decided_at=a.decided_at,
        comment=a.comment,
        message=a.message,
        created_at=a.created_at,
        escalated=a.escalated,
    )


def _pretty(text: str) -> str:
    """JSON text indented for reading; anything else as it is."""
    try:
        return json.dumps(json.loads(text), indent=2, ensure_ascii=False)
    except ValueError:
        return text


async def _transcript(
    session: AsyncSession, conversation_id: str, approvals: list[ApprovalView]
) -> tuple[list[Entry], int]:
    """The newest entries in order, each tool result folded into the call that asked for it."""
    messages = list(
        (
            await session.execute(
                select(Message)
                .where(Message.conversation_id == conversation_id)
                .order_by(Message.seq.desc())
                .limit(TRANSCRIPT_LIMIT)
            )
        ).scalars()
    )[::-1]
    earlier = 0
    if len(messages) == TRANSCRIPT_LIMIT:
        earlier = int(
            (
                await session.execute(
                    select(func.count())
                    .select_from(Message)
                    .where(Message.conversation_id == conversation_id, Message.seq < messages[0].seq)
                )
            ).scalar_one()
        )
    ran = {
        (turn, call_id): ok
        for turn, call_id, ok in (
            await session.execute(
                select(ToolExecution.turn, ToolExecution.tool_call_id, ToolExecution.ok).where(
                    ToolExecution.conversation_id == conversation_id,
                    ToolExecution.turn >= (messages[0].turn if messages else 0),
                )
            )
        ).tuples()
    }
    silent = set(
        (
            await session.execute(
                select(Turn.n).where(
                    Turn.conversation_id == conversation_id,
                    Turn.n >= (messages[0].turn if messages else 0),
                    Turn.status == TurnStatus.HANDED_OFF,  # only a silent turn ends so
                )
            )
        ).scalars()
    )
    asked = {(a.turn, a.tool_call_id): a for a in approvals}
    calls: dict[tuple[int, str], ToolCallView] = {}
    entries: list[Entry] = []
    for m in messages:
        role = MessageRole(m.role)
        call = calls.get((m.turn, m.tool_call_id or "")) if role == MessageRole.TOOL else None
        if call is not None and call.result is None:
            call.result, call.ok = _pretty(m.content), ran.get((m.turn, call.id), True)
            continue
        entry = Entry(m.seq, m.turn, role, m.content, m.created_at, m.author, m.model)
        entry.silent = role == MessageRole.USER and m.turn in silent
        if role == MessageRole.TOOL:  # its call is older than the entries shown
            entry.calls.append(ToolCallView(m.tool_call_id or "", m.tool_name or "", "", _pretty(m.content)))
        for c in m.tool_calls or []:
            view = ToolCallView(
                id=str(c.get("id", "")),
                name=str(c.get("name", "")),
                arguments=_pretty(str(c.get("arguments", "{}"))),
                approval=asked.get((m.turn, str(c.get("id", "")))),
            )
            calls[(m.turn, view.id)] = view
            entry.calls.append(view)
        entries.append(entry)
    return entries, earlier


async def _handovers(session: AsyncSession, conversation_id: str, since: datetime | None) -> list[Mark]:
    """Where a person took the conversation or gave it back, oldest first (from `since` on)."""
    where = [Event.conversation_id == conversation_id, Event.kind.in_(HANDOVERS)]
    if since is not None:
        where.append(Event.created_at >= since)
    events = (
        await session.execute(select(Event).where(*where).order_by(Event.seq.desc()).limit(TIMELINE_LIMIT))
    ).scalars()
    return [Mark(e) for e in (timeline_entry(ev) for ev in events) if e is not None][::-1]


def _interleave(entries: list[Entry], marks: list[Mark]) -> list[Entry | Mark]:
    """The marks among the entries by time; the entries keep their order (a tie: the mark after)."""
    merged: list[Entry | Mark] = []
    rest = iter(marks)
    mark = next(rest, None)
    for entry in entries:
        while mark is not None and mark.created_at < entry.created_at:
            merged.append(mark)
            mark = next(rest, None)
        merged.append(entry)
    if mark is not None:
        merged += [mark, *rest]
    return merged


async def _timeline(session: AsyncSession, conversation_id: str) -> tuple[list[TimelineEntry], int]:
    last = (
        await session.execute(select(func.max(Event.seq)).where(Event.conversation_id == conversation_id))
    ).scalar()
    events = list(
        (
            await session.execute(
                select(Event)
                .where(Event.conversation_id == conversation_id, Event.kind.in_(TIMELINE_KINDS))
                .order_by(Event.seq.desc())
                .limit(TIMELINE_LIMIT)
            )
        ).scalars()
    )[::-1]
    # A silent turn's end says nothing its start did not: the agent stayed silent.
    silent = {ev.turn for ev in events if ev.kind == EventKind.TURN_STARTED and ev.data.get("silent")}
    shown = [ev for ev in events if not (ev.kind == EventKind.TURN_COMPLETED and ev.turn in silent)]
    return [e for e in (timeline_entry(ev) for ev in shown) if e is not None], int(last or 0)


def timeline_entry(event: Event) -> TimelineEntry | None:
    """What one event of the log says on the timeline (None: not a timeline event)."""
    d, n = event.data, event.turn

    def entry(title: str, detail: str = "", tone: str = "", approval_id: str | None = None) -> TimelineEntry:
        return TimelineEntry(event.seq, event.created_at, n, event.kind, title, detail, tone, approval_id)

    kind = event.kind
    if kind == EventKind.TURN_STARTED:
        said = " · ".join(cut(str(m.get("text", "")), 80) for m in d.get("messages", []))
        if d.get("silent"):
            return entry(f"Turn {n}: the user wrote; the agent stays silent", said, "person")
        on = {None: "", "draft": " on the draft"}.get(d.get("version"), f" on version {d.get('version')}")
        return entry(f"Turn {n} started{on}", said)
    if kind == EventKind.TURN_COMPLETED:
        status = str(d.get("status", TurnStatus.COMPLETED))
        usage = d.get("usage") or {}
        used = (int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0))
        tokens = f"{used[0]} + {used[1]} tokens" if any(used) else ""
        if status == TurnStatus.COMPLETED:
            return entry(f"Turn {n} completed", tokens, "ok")
        return entry(f"Turn {n} {status.replace('_', ' ')}", tokens)
    if kind == EventKind.TURN_FAILED:
        return entry(f"Turn {n} failed", f"{d.get('code', '')}: {d.get('message', '')}", "failed")
    if kind == EventKind.APPROVAL_REQUESTED:
        return entry(f"Approval asked for {d.get('tool', 'a tool')}", "", "warn", d.get("approval_id"))
    if kind == EventKind.TURN_AWAITING_APPROVAL:
        waiting = len(d.get("approvals") or [])
        told = d.get("holding_message")
        return entry(
            f"Turn {n} paused for {'approval' if waiting < 2 else f'{waiting} approvals'}",
            f"The user was told: “{cut(str(told), 160)}”" if told else "No holding message was sent.",
            "warn",
        )
    if kind == EventKind.APPROVAL_DECIDED:
        status = str(d.get("status", "decided"))
        by = f" by {d['decided_by']}" if d.get("decided_by") else ""
        tone = {"approved": "ok", "edited": "ok", "rejected": "failed", "expired": "failed"}.get(status, "")
        detail = str(d.get("comment") or d.get("message") or "")
        return entry(f"{d.get('tool', 'Approval')} {status}{by}", detail, tone, d.get("approval_id"))
    by = str(d.get("by") or "")
    if kind == EventKind.MESSAGE_OPERATOR:
        return entry(
            f"{d.get('author') or 'An operator'} replied", cut(str(d.get("text", "")), 160), "person"
        )
    if kind == EventKind.CONVERSATION_HANDED_OFF:
        reason = str(d.get("reason") or "")
        if by and by != HANDOFF_BY_AGENT:
            return entry(f"Taken over by {by}", reason, "person")
        return entry("Handed off to a person by the agent", reason, "person")
    if kind == EventKind.CONVERSATION_CLAIMED:
        return entry(f"Claimed by {by or 'an operator'}", "", "person")
    if kind == EventKind.CONVERSATION_RELEASED:
        return entry(f"Released by {by or 'an operator'}", "", "person")
    if kind == EventKind.CONVERSATION_HANDED_BACK:
        return entry(f"Handed back to the agent{f' by {by}' if by else ''}", "", "ok")
    return None


async def _channel(session: AsyncSession, conversation: Conversation) -> ChannelView | None:
    if conversation.channel_id is None:
        return None
    channel = await session.get(Channel, conversation.channel_id)
    if channel is None:
        return None
    users = (
        await session.execute(
            select(ChannelInbound.user_key)
            .where(
                ChannelInbound.channel_id == channel.id,
                ChannelInbound.conversation_id == conversation.id,
                ChannelInbound.user_key != "",
            )
            .group_by(ChannelInbound.user_key)
            .order_by(func.min(ChannelInbound.received_at))
            .limit(5)
        )
    ).scalars()
    return ChannelView(
        id=channel.id,
        type=channel.type,
        name=channel.name,
        chat=str(conversation.metadata_.get("chat", "")),
        address=conversation.channel_address or {},
        users=list(users),
    )
