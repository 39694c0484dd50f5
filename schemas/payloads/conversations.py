"""Conversations, turns, tools, approvals and channel deliveries: what their workflows and activities pass."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from schemas.enums import (
    ApprovalStatus,
    AuditAction,
    ConversationStatus,
    Decision,
    DoubleTexting,
    ExpiryAction,
    ReplyKind,
    TurnStatus,
)


class InboundMessage(BaseModel):
    """A user message accepted by a conversation, numbered in arrival order."""

    number: int
    text: str
    idempotency_key: str | None = None


class PendingTurn(BaseModel):
    """A turn that has its number but has not started yet."""

    turn: int
    messages: list[InboundMessage]
    trace: dict[str, str] = Field(default_factory=dict)
    """W3C trace context (`traceparent`) of the request that queued the turn; empty untraced."""


class SubmitMessage(BaseModel):
    """Update argument: a new user message for a conversation."""

    text: str
    idempotency_key: str | None = None
    double_texting: DoubleTexting = DoubleTexting.ENQUEUE
    wait_seconds: float = 0.0
    """If positive, answer only once the turn has an outcome or this time has passed."""
    answer_on_pause: bool = False
    """With `wait_seconds`: answer as soon as the turn pauses for approval, or queues behind one
    that did, rather than wait for a decision (REST and chat callers; ambient runs wait)."""


class TurnError(BaseModel):
    code: str
    message: str


class ApprovalTimers(BaseModel):
    """When a pending approval reminds, escalates and expires (seconds after it opened)."""

    remind_after: float = 30 * 60
    escalate_after: float = 4 * 3600
    expires_after: float = 24 * 3600
    expiry_action: ExpiryAction = ExpiryAction.REJECT
    notify: bool = False
    """The agent has a notification webhook: tell it of new, reminded and decided items."""
    notify_escalation: bool = False
    """The agent has a webhook for escalations (its own, or the notification one)."""


class BudgetHold(BaseModel):
    """A budget with `ask` was reached (schemas/budgets.py): the turn opens an inbox item, an
    approval of the reserved tool `_budget_extension` with these `arguments` (scope, metric,
    used, limit, extension, window, agent), before any model call; approving it is the extension."""

    arguments: dict[str, Any]
    sentence: str
    """The question as a person reads it ("This conversation reached 50,000 tokens: allow …?")."""
    reason: str = ""
    """Why it asks: the limit, what was used, what each answer does (the item's rationale)."""
    holding_message: str = ""
    timers: ApprovalTimers = Field(default_factory=ApprovalTimers)


class ToolCall(BaseModel):
    """A tool call the model asked for. `arguments` is the model's JSON text, unparsed."""

    id: str
    name: str
    arguments: str = "{}"
    approval: ApprovalTimers | None = None
    """Set when the agent's policy gates this call: it waits for an operator's decision."""
    client_timeout: float | None = None
    """Set when the call names a client tool: the caller runs it; seconds the turn waits for its output."""
    local: bool = False
    """Set by the LLM activity when the call may run as a local activity, in the workflow task
    that received the answer: a built-in tool (database work of milliseconds), not gated, not
    the caller's, with no tool-arguments rail (whose checks may call a service)."""


class ToolRequested(BaseModel):
    """A client tool call the turn waits on: what the caller is asked to run."""

    call_id: str
    name: str
    arguments: str = "{}"


class ClientOutput(BaseModel):
    """What became of a client tool call: the caller's output, or no answer in time."""

    output: str | None = None
    timed_out_after: float | None = None
    """Set when nobody answered: the agent's `client_tool_timeout` in seconds."""


class ToolOutput(BaseModel):
    call_id: str
    output: str


class ToolOutputs(BaseModel):
    """Update argument: the caller's outputs for client tool calls of the running turn `turn`."""

    turn: int
    outputs: list[ToolOutput] = Field(default_factory=list)
    wait_seconds: float = 0.0
    """If positive, answer once the turn has an outcome, pauses again, or this time has passed."""
    lenient: bool = False
    """Skip outputs for calls answered already (a chat-completions retry) instead of refusing them."""


class ToolCallRecord(BaseModel):
    """A tool call and what came of it, as reported to API callers."""

    id: str
    name: str
    arguments: str
    ok: bool
    result: str


class TurnOutcome(BaseModel):
    """What a turn produced."""

    turn: int
    status: TurnStatus
    reply: str | None = None
    tool_calls: list[ToolCallRecord] = Field(default_factory=list)
    error: TurnError | None = None
    handed_off: bool = False


class SubmitAccepted(BaseModel):
    """Update result: which turn answers the message, and its outcome if waited for."""

    turn: int
    status: TurnStatus
    duplicate: bool = False
    outcome: TurnOutcome | None = None
    holding_message: str | None = None
    """While the turn awaits approval: what the user was told meanwhile (None if the agent says nothing)."""
    approvals: list[str] = Field(default_factory=list)
    """The pending approvals the turn waits for (its own, or those of the turn it queues behind)."""
    tool_requests: list[ToolRequested] = Field(default_factory=list)
    """While the turn awaits the caller: the client tool calls it waits for."""
    tool_text: str = ""
    """While the turn awaits the caller: the model's text alongside those calls."""


class ConversationState(BaseModel):
    """What a conversation carries across continue-as-new."""

    last_turn: int = 0
    last_message: int = 0
    handed_off: bool = False
    pending: list[PendingTurn] = Field(default_factory=list)
    recent_keys: dict[str, int] = Field(default_factory=dict)
    recent_outcomes: dict[int, TurnOutcome] = Field(default_factory=dict)
    channel: ChannelRef | None = None
    """Set when the conversation talks on a channel: its replies are delivered there."""
    held_by: str | None = None
    """The operator holding a handed-off conversation (by key name); None: unclaimed."""
    held_by_key_id: str | None = None
    operator_messages: int = 0
    """Operator messages numbered so far: the next one's dedupe key (without a caller's key)."""


class ConversationRef(BaseModel):
    conversation_id: str
    team_id: str


class ConversationInput(BaseModel):
    """Start argument of a conversation workflow."""

    conversation_id: str
    team_id: str
    state: ConversationState | None = None
    """Carried state after continue-as-new; None on a first start (loaded from the store)."""


class TurnInput(BaseModel):
    """What a turn works on."""

    conversation_id: str
    team_id: str
    turn: int
    messages: list[InboundMessage]
    silent: bool = False
    """A human has the conversation: record the messages, do not answer."""
    channel: ChannelRef | None = None
    """The conversation's channel, where holding notices go while approvals wait."""


class BeginTurn(BaseModel):
    conversation_id: str
    team_id: str
    turn: int
    messages: list[InboundMessage]
    silent: bool = False


class FinishTurn(BaseModel):
    conversation_id: str
    team_id: str
    outcome: TurnOutcome


class LlmRequest(BaseModel):
    """Ask the agent's model for the next assistant message of a turn.

    Round 0 carries the turn's inbound messages, which the activity records first; an
    answer without tool calls is recorded as the turn's outcome in the same transaction
    as the message. A plain turn so costs one activity and two short transactions.
    """

    conversation_id: str
    team_id: str
    turn: int
    round: int
    inbound: list[InboundMessage] = Field(default_factory=list)
    budget_denied: bool = False
    """A person denied more budget for this turn: answer with the stop message, call no model."""


class LlmResponse(BaseModel):
    """The assistant message, already persisted in the transcript."""

    content: str = ""
    tool_calls: list[ToolCall] = Field(default_factory=list)
    model: str = ""
    holding_message: str = ""
    """What the user is told while gated calls wait (the agent's setting); only set if any are."""
    budget: BudgetHold | None = None
    """Set when a budget with `ask` was reached: nothing was asked or persisted (workflows/budgets.py)."""
    review: bool = False
    """An output guardrail escalated the reply: it waits for a person ("send this reply?"),
    not yet stored or delivered."""


class ToolRequest(BaseModel):
    conversation_id: str
    team_id: str
    turn: int
    call: ToolCall
    key: str
    """The call's place in the turn (`{round}.{index}`): what its side effects are keyed on."""
    decision: ApprovalOutcome | None = None
    """For a gated call: the operator's (or the system's) decision, which the tool obeys."""
    client: ClientOutput | None = None
    """For a client tool call: the caller's output (or its timeout), recorded as the result."""


class ToolResult(BaseModel):
    """A tool's result, already persisted as a tool message."""

    tool_call_id: str
    name: str
    ok: bool
    content: str
    handoff: bool = False


class StatusChange(BaseModel):
    conversation_id: str
    team_id: str
    status: ConversationStatus


class Handback(BaseModel):
    """Update argument: a human hands the conversation back to the agent."""

    comment: str | None = None
    operator: str | None = None
    """Who handed it back (an API key's name); None in histories recorded before operators."""
    operator_key_id: str | None = None


class HandbackResult(BaseModel):
    status: ConversationStatus


class AwaitApprovals(BaseModel):
    """The turn waits for operators: show it, and tell the user (once per round)."""

    conversation_id: str
    team_id: str
    turn: int
    round: int
    holding_message: str = ""
    approvals: list[str] = Field(default_factory=list)
    """The ids of the round's approvals, for the `turn.awaiting_approval` event."""


class ApprovalRequest(BaseModel):
    """Start argument of an ApprovalWorkflow: one gated tool call of one turn."""

    approval_id: str
    team_id: str
    conversation_id: str
    turn: int
    call_key: str
    call: ToolCall
    rationale: str = ""
    """The model's text alongside the call: why it wants to make it."""
    timers: ApprovalTimers = Field(default_factory=ApprovalTimers)


class DecisionRequest(BaseModel):
    """Update argument: an operator decides a pending approval."""

    decision: Decision
    arguments: str | None = None
    """For `edit`: the arguments to run with, as JSON text (already validated by the API)."""
    message: str | None = None
    comment: str | None = None
    operator: str
    operator_key_id: str | None = None


class ApprovalOutcome(BaseModel):
    """How an approval ended, and what the turn does with its tool call."""

    approval_id: str
    status: ApprovalStatus
    decision: Decision
    """The effective decision (for an expired item, the agent's expiry action)."""
    arguments: str | None = None
    message: str | None = None
    comment: str | None = None
    decided_by: str
    decided_by_key_id: str | None = None
    decided_at: datetime


class ApprovalEvent(BaseModel):
    """Something happened to an approval: the projection and the audit trail record it."""

    approval_id: str
    team_id: str
    kind: AuditAction
    """`requested` opens the inbox item; the others update it."""
    request: ApprovalRequest | None = None
    outcome: ApprovalOutcome | None = None
    at: datetime


class Notification(BaseModel):
    """An outgoing notification about an approval; the activity resolves where it goes."""

    approval_id: str
    team_id: str
    event: str
    """`approval.requested`, `approval.reminder`, `approval.escalated` or `approval.decided`."""
    escalation: bool = False
    """Send to the agent's escalation target (else its notification target)."""


class OperatorReply(BaseModel):
    """An operator answered the user in the agent's place: the turn ends with their words."""

    conversation_id: str
    team_id: str
    turn: int
    round: int
    text: str
    operator: str


class ChannelRef(BaseModel):
    """The channel a conversation talks on: a reference only, never credentials."""

    channel_id: str


class DeliverTurn(BaseModel):
    """Deliver what a turn said to its channel: the reply, a holding notice, or a failure notice."""

    conversation_id: str
    team_id: str
    channel_id: str
    turn: int
    kind: ReplyKind = ReplyKind.REPLY
    """`reply` (the turn's last assistant message), `holding` (the notice of round `round`) or `failed`."""
    round: int = 0


class DeliveryRef(BaseModel):
    """One stored delivery to send (a command's answer, a slow-down notice, a dead letter retried)."""

    delivery_id: int
    team_id: str


class DeliveryResult(BaseModel):
    sent: int = 0
    failed: int = 0


class ChannelTyping(BaseModel):
    """Show the channel user that the agent is working on an answer (best effort)."""

    conversation_id: str
    team_id: str
    channel_id: str
