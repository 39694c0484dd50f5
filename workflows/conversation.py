"""ConversationWorkflow: the entity for one conversation.

It numbers incoming messages into turns, runs one turn at a time in arrival order
(each a cancellable scope, see workflows/turn.py), applies the agent's double-texting
policy, and continues-as-new when the server suggests it and nothing is in flight.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    # Pydantic models and activity references only; nothing with side effects at import.
    from activities.channels.delivery import ChannelActivities
    from activities.infra import tracing
    from activities.infra.temporal_tracing import turn_trace, workflow_span
    from activities.store import StoreActivities
    from schemas.enums import ConversationStatus, DoubleTexting, ReplyKind, TurnStatus
    from schemas.errors import ErrorType
    from schemas.keys import client_call_of, operator_message_caller_key, operator_message_key
    from schemas.payloads import (
        ConversationInput,
        ConversationRef,
        ConversationState,
        DeliverOperatorMessage,
        DeliverTurn,
        DeliveryResult,
        Handback,
        HandbackResult,
        HandoffNotice,
        HoldChange,
        HoldRequest,
        HoldResult,
        InboundMessage,
        OperatorMessage,
        OperatorMessageRecorded,
        PendingTurn,
        RecordHandback,
        RecordOperatorMessage,
        RecordTakeover,
        StatusChange,
        SubmitAccepted,
        SubmitMessage,
        TakeOver,
        ToolOutputs,
        TurnInput,
        TurnOutcome,
    )
    from workflows.channel import DELIVERY_HEARTBEAT, DELIVERY_RETRY, DELIVERY_TIMEOUT, deliver_turn
    from workflows.turn import Turn

STORE_TIMEOUT = timedelta(seconds=30)
MAX_PENDING_TURNS = 50
"""More queued turns than this and new messages are refused until the agent catches up."""
RECENT_KEYS = 1000
RECENT_OUTCOMES = 20
ANSWER_ON_PAUSE = "submit-answers-when-the-turn-pauses"
"""Patch: a waiting `submit` answers once its turn pauses for approval (before, only at its outcome)."""


@dataclass
class _Send:
    """One activity of the outbox: what it sends and the activity id it shows in the Temporal UI."""

    activity_id: str
    method: Callable[..., Awaitable[DeliveryResult]]
    arg: DeliverOperatorMessage | HandoffNotice


@workflow.defn(name="Conversation")
class ConversationWorkflow:
    @workflow.init
    def __init__(self, inp: ConversationInput) -> None:
        self._inp = inp
        self._state: ConversationState | None = inp.state
        self._running: PendingTurn | None = None
        self._turn_task: asyncio.Task[TurnOutcome] | None = None
        self._turn: Turn | None = None
        self._outbox: list[_Send] = []
        """Operators' messages and handoff notices on their way to chats, sent one at a time."""
        self._courier: asyncio.Task[None] | None = None

    @property
    def _running_turn(self) -> int | None:
        return self._running.turn if self._running is not None else None

    @property
    def state(self) -> ConversationState:
        assert self._state is not None, "read before the state was loaded"
        return self._state

    @workflow.run
    async def run(self, inp: ConversationInput) -> None:
        if self._state is None:
            self._state = await workflow.execute_local_activity_method(
                StoreActivities.load_conversation,
                ConversationRef(conversation_id=inp.conversation_id, team_id=inp.team_id),
                start_to_close_timeout=STORE_TIMEOUT,
            )
        while True:
            await workflow.wait_condition(
                lambda: bool(self.state.pending) or workflow.info().is_continue_as_new_suggested()
            )
            if not self.state.pending:
                # A caller waiting on a turn it just queued is a handler too: wake for either.
                # What the outbox holds is sent first (the next run would not know of it).
                await workflow.wait_condition(
                    lambda: (
                        (workflow.all_handlers_finished() and not self._outbox) or bool(self.state.pending)
                    )
                )
                if not self.state.pending:
                    workflow.continue_as_new(
                        ConversationInput(
                            conversation_id=inp.conversation_id,
                            team_id=inp.team_id,
                            state=self.state,
                        )
                    )
                continue
            await self._run_turn(self.state.pending.pop(0))

    async def _run_turn(self, pending: PendingTurn) -> None:
        # The turn's span, in the trace of the request that queued it (a no-op untraced).
        attributes: dict[str, str | int | bool] = {
            tracing.OPERATION: "invoke_agent",
            tracing.CONVERSATION: self._inp.conversation_id,
            tracing.TURN: pending.turn,
        }
        with workflow_span("invoke_agent", f"turn/{pending.turn}", attributes, pending.trace):
            await self._turn_steps(pending)

    async def _turn_steps(self, pending: PendingTurn) -> None:
        state = self.state
        self._running = pending
        turn = Turn(
            TurnInput(
                conversation_id=self._inp.conversation_id,
                team_id=self._inp.team_id,
                turn=pending.turn,
                messages=pending.messages,
                silent=state.handed_off,
                channel=state.channel,
            )
        )
        self._turn = turn
        self._turn_task = asyncio.create_task(turn.run())
        try:
            outcome = await self._turn_task
        except asyncio.CancelledError:
            # Interrupted before the turn took its first step: it could not record itself.
            outcome = await turn.interrupted()
        self._running = None
        self._turn_task = None
        self._turn = None
        if outcome.status == TurnStatus.HANDED_OFF and not state.handed_off:
            # Handed back while this silent turn ran: its finish wrote "handed_off" last.
            await self._set_status(ConversationStatus.IDLE)
        handed_off_now = outcome.handed_off and not state.handed_off
        state.handed_off = state.handed_off or outcome.handed_off
        if handed_off_now:
            state.held_by = state.held_by_key_id = None  # the model's handoff is nobody's yet
            if state.channel is not None and workflow.patched("handoff-notice-to-ops-chat"):
                self._notify_handoff()
        state.recent_outcomes[outcome.turn] = outcome
        for old in sorted(state.recent_outcomes)[:-RECENT_OUTCOMES]:
            del state.recent_outcomes[old]
        if state.channel is not None and outcome.status in (TurnStatus.COMPLETED, TurnStatus.FAILED):
            # Only conversations bound to a channel pay for delivery. It runs outside the
            # turn's scope, so a newer message cannot interrupt a reply half sent.
            await deliver_turn(
                DeliverTurn(
                    conversation_id=self._inp.conversation_id,
                    team_id=self._inp.team_id,
                    channel_id=state.channel.channel_id,
                    turn=outcome.turn,
                    kind=ReplyKind.REPLY if outcome.status == TurnStatus.COMPLETED else ReplyKind.FAILED,
                )
            )

    @workflow.update
    async def submit(self, msg: SubmitMessage) -> SubmitAccepted:
        """Accept a user message: number it into a turn, or recognise a repeat of its key."""
        await workflow.wait_condition(lambda: self._state is not None)
        state = self.state
        key = msg.idempotency_key
        if key is not None and key in state.recent_keys:
            turn = state.recent_keys[key]
            accepted = SubmitAccepted(turn=turn, status=self._status_of(turn), duplicate=True)
        else:
            accepted = self._accept(msg)
        if msg.wait_seconds > 0:
            return await self._with_outcome(accepted, msg)
        return self._with_pause(accepted)

    async def _with_outcome(self, accepted: SubmitAccepted, msg: SubmitMessage) -> SubmitAccepted:
        """Wait for the turn's outcome; with `answer_on_pause`, only until it waits for a person."""
        state = self.state
        turn = accepted.turn
        in_flight = self._running_turn == turn or any(p.turn == turn for p in state.pending)
        if in_flight:
            # Histories from before the patch completed this update only at the outcome.
            on_pause = msg.answer_on_pause and workflow.patched(ANSWER_ON_PAUSE)

            def answered() -> bool:
                return turn in state.recent_outcomes or (
                    on_pause and (self._paused_for(turn) is not None or self._awaits_caller(turn) is not None)
                )

            with contextlib.suppress(TimeoutError):
                await workflow.wait_condition(answered, timeout=timedelta(seconds=msg.wait_seconds))
        outcome = state.recent_outcomes.get(turn)
        accepted.status = outcome.status if outcome is not None else self._status_of(turn)
        accepted.outcome = outcome
        return self._with_pause(accepted)

    def _paused_for(self, turn: int) -> Turn | None:
        """The running turn, if it awaits approval and `turn` is it or queued behind it."""
        running = self._turn
        if running is None or not running.pending_approvals:
            return None
        if self._running_turn == turn or any(p.turn == turn for p in self.state.pending):
            return running
        return None

    def _with_pause(self, accepted: SubmitAccepted) -> SubmitAccepted:
        """Name the approvals an unfinished turn waits for, and its holding message if they are its own;
        and the client tool calls it waits on the caller for."""
        paused = self._paused_for(accepted.turn) if accepted.outcome is None else None
        if paused is not None:
            accepted.approvals = list(paused.pending_approvals)
            if paused.inp.turn == accepted.turn:
                accepted.holding_message = paused.holding_message
        waiting = self._awaits_caller(accepted.turn) if accepted.outcome is None else None
        if waiting is not None:
            accepted.tool_requests = list(waiting.tool_requests.values())
            accepted.tool_text = waiting.tool_text
        return accepted

    def _awaits_caller(self, turn: int) -> Turn | None:
        """The running turn, if it is `turn` and waits for the output of a client tool call."""
        running = self._turn
        if running is None or self._running_turn != turn or not running.tool_requests:
            return None
        return running

    @submit.validator
    def _validate_submit(self, msg: SubmitMessage) -> None:
        if not msg.text.strip():
            raise ApplicationError("message text is empty", type=ErrorType.EMPTY_MESSAGE)
        if self._state is not None and len(self._state.pending) >= MAX_PENDING_TURNS:
            raise ApplicationError(
                f"conversation has {MAX_PENDING_TURNS} turns waiting; try again later",
                type=ErrorType.CONVERSATION_BUSY,
            )

    def _accept(self, msg: SubmitMessage) -> SubmitAccepted:
        state = self.state
        state.last_message += 1
        inbound = InboundMessage(
            number=state.last_message, text=msg.text, idempotency_key=msg.idempotency_key
        )
        interrupt = msg.double_texting == DoubleTexting.INTERRUPT and not state.handed_off
        if interrupt and state.pending:
            # A turn that has not started yet answers this message too.
            state.pending[-1].messages.append(inbound)
            turn = state.pending[-1].turn
        else:
            state.last_turn += 1
            turn = state.last_turn
            carried: list[InboundMessage] = []
            if interrupt and self._turn_task is not None and self._running is not None:
                # The new turn re-sends the interrupted turn's messages so none is lost
                # even if it was cancelled before recording them (writes are idempotent).
                carried = self._running.messages
                self._turn_task.cancel()
                if self._turn is not None:
                    self._turn.stop_waiting()
            state.pending.append(PendingTurn(turn=turn, messages=[*carried, inbound], trace=turn_trace()))
        if msg.idempotency_key is not None:
            state.recent_keys[msg.idempotency_key] = turn
            while len(state.recent_keys) > RECENT_KEYS:
                del state.recent_keys[next(iter(state.recent_keys))]
        status = (
            TurnStatus.QUEUED if self._running is not None or len(state.pending) > 1 else TurnStatus.RUNNING
        )
        return SubmitAccepted(turn=turn, status=status)

    def _status_of(self, turn: int) -> TurnStatus:
        if turn in self.state.recent_outcomes:
            return self.state.recent_outcomes[turn].status
        if turn == self._running_turn:
            waiting = self._turn is not None and self._turn.awaiting > 0
            if not waiting and self._awaits_caller(turn) is not None:
                return TurnStatus.AWAITING_TOOL_OUTPUT
            return TurnStatus.AWAITING_APPROVAL if waiting else TurnStatus.RUNNING
        if any(p.turn == turn for p in self.state.pending):
            return TurnStatus.QUEUED
        return TurnStatus.COMPLETED

    @workflow.update
    async def tool_outputs(self, req: ToolOutputs) -> SubmitAccepted:
        """The caller's outputs for client tool calls of the running turn, which then goes on.

        With `wait_seconds`, answers once the turn has its outcome or waits again (for the
        caller or an operator), as `submit` does: a chat completion's next answer.
        """
        await workflow.wait_condition(lambda: self._state is not None)
        self._check_tool_outputs(req)
        turn = self._turn
        for output in req.outputs:
            if turn is not None and output.call_id not in turn.tools_answered:
                turn.give_output(output)
        accepted = SubmitAccepted(turn=req.turn, status=self._status_of(req.turn))
        if req.wait_seconds > 0:
            state = self.state

            def answered() -> bool:
                return (
                    req.turn in state.recent_outcomes
                    or self._paused_for(req.turn) is not None
                    or self._awaits_caller(req.turn) is not None
                )

            with contextlib.suppress(TimeoutError):
                await workflow.wait_condition(answered, timeout=timedelta(seconds=req.wait_seconds))
        outcome = self.state.recent_outcomes.get(req.turn)
        accepted.status = outcome.status if outcome is not None else self._status_of(req.turn)
        accepted.outcome = outcome
        return self._with_pause(accepted)

    @tool_outputs.validator
    def _validate_tool_outputs(self, req: ToolOutputs) -> None:
        if self._state is not None:
            self._check_tool_outputs(req)

    def _check_tool_outputs(self, req: ToolOutputs) -> None:
        """Each output must answer a client call of the running turn that has no output yet."""
        turn = self._turn
        for output in req.outputs:
            where = client_call_of(output.call_id)
            ours = (
                where is not None
                and where.conversation_id == self._inp.conversation_id
                and where.turn == req.turn
                and turn is not None
                and turn.inp.turn == req.turn
            )
            if not ours:
                if req.lenient and req.turn in self.state.recent_outcomes:
                    continue  # a retry after the turn ended: it answers with the outcome
                raise ApplicationError(
                    f"no client tool call {output.call_id} waits in this conversation's running turn",
                    type=ErrorType.TOOL_CALL_NOT_FOUND,
                )
            assert turn is not None
            if output.call_id in turn.tools_answered and not req.lenient:
                raise ApplicationError(
                    f"client tool call {output.call_id} has its output already (or timed out)",
                    type=ErrorType.TOOL_OUTPUT_GIVEN,
                )

    @workflow.update
    async def handback(self, req: Handback) -> HandbackResult:
        """A human hands the conversation back: the agent answers new messages again."""
        state = self.state
        state.handed_off = False
        if workflow.patched("handback-clears-hold"):
            state.held_by = state.held_by_key_id = None
            await workflow.execute_local_activity_method(
                StoreActivities.hand_back,
                RecordHandback(
                    conversation_id=self._inp.conversation_id,
                    team_id=self._inp.team_id,
                    by=req.operator,
                    idle=self._running is None,  # else the running turn's end records it
                ),
                start_to_close_timeout=STORE_TIMEOUT,
            )
        elif self._running is None:  # else the running turn's end records it
            await self._set_status(ConversationStatus.IDLE)
        return HandbackResult(status=ConversationStatus.IDLE)

    async def _set_status(self, status: ConversationStatus) -> None:
        await workflow.execute_local_activity_method(
            StoreActivities.set_status,
            StatusChange(conversation_id=self._inp.conversation_id, team_id=self._inp.team_id, status=status),
            start_to_close_timeout=STORE_TIMEOUT,
        )

    @handback.validator
    def _validate_handback(self, req: Handback) -> None:
        if self._state is None or not self._state.handed_off:
            raise ApplicationError("conversation is not handed off", type=ErrorType.NOT_HANDED_OFF)

    # --- operators: takeover, holds, their messages, notices -----------------------------

    @workflow.update
    async def take_over(self, req: TakeOver) -> HoldResult:
        """An operator takes the conversation from its agent, and holds it.

        A running turn is cancelled as a newer message would cancel it (its messages are
        kept, its approvals cancelled), so the agent says nothing more; queued messages
        become silent turns. Taking over a conversation already with a person is claiming it.
        """
        await workflow.wait_condition(lambda: self._state is not None)
        state = self.state
        if state.handed_off:
            return await self._claim(req.operator, req.operator_key_id)
        state.handed_off = True
        state.held_by, state.held_by_key_id = req.operator, req.operator_key_id
        turn = self._turn
        if turn is not None and not turn.inp.silent and self._turn_task is not None:
            turn.stop_waiting()  # its approvals are being cancelled: nobody waits behind them now
            self._turn_task.cancel()
            # Its end writes the conversation's status; the handoff must be written after it.
            await workflow.wait_condition(lambda: self._turn is not turn)
        await workflow.execute_local_activity_method(
            StoreActivities.hand_off,
            RecordTakeover(
                conversation_id=self._inp.conversation_id,
                team_id=self._inp.team_id,
                at=workflow.now(),
                by=req.operator,
                by_key_id=req.operator_key_id,
                reason=req.reason,
            ),
            start_to_close_timeout=STORE_TIMEOUT,
        )
        if state.channel is not None:
            self._notify_handoff()
        return HoldResult(handed_off=True, held_by=req.operator)

    @take_over.validator
    def _validate_take_over(self, req: TakeOver) -> None:
        if self._state is not None and self._state.handed_off:
            self._check_holder(req.operator, req.operator_key_id)

    @workflow.update
    async def claim(self, req: HoldRequest) -> HoldResult:
        """An operator takes a handed-off conversation: the queue shows them holding it."""
        await workflow.wait_condition(lambda: self._state is not None)
        self._check_hold_request(req, claim=True)
        return await self._claim(req.operator, req.operator_key_id)

    @claim.validator
    def _validate_claim(self, req: HoldRequest) -> None:
        if self._state is not None:
            self._check_hold_request(req, claim=True)

    @workflow.update
    async def release(self, req: HoldRequest) -> HoldResult:
        """The holder (or an admin, with `override`) lets go: the conversation is unclaimed again."""
        await workflow.wait_condition(lambda: self._state is not None)
        self._check_hold_request(req, claim=False)
        state = self.state
        if state.held_by is not None:
            state.held_by = state.held_by_key_id = None
            await self._record_hold(req.operator, req.operator_key_id, claim=False)
        return HoldResult(handed_off=True)

    @release.validator
    def _validate_release(self, req: HoldRequest) -> None:
        if self._state is not None:
            self._check_hold_request(req, claim=False)

    @workflow.update
    async def operator_message(self, msg: OperatorMessage) -> OperatorMessageRecorded:
        """A person writes to the user: recorded once, then sent to the chat once (in the background).

        The update answers once the message is recorded; a channel conversation's outbox
        sends it after, with delivery's retries and dead letters, keyed by the message's
        `seq`, so a resumed or repeated send posts it once. An unclaimed conversation is
        claimed by the message's author.
        """
        await workflow.wait_condition(lambda: self._state is not None)
        self._check_operator_message(msg)
        state = self.state
        if msg.idempotency_key is not None:
            key = operator_message_caller_key(msg.idempotency_key)
        else:
            state.operator_messages += 1
            key = operator_message_key(state.operator_messages)
        if state.held_by is None:
            state.held_by, state.held_by_key_id = msg.author, msg.author_key_id
        recorded: OperatorMessageRecorded = await workflow.execute_local_activity_method(
            StoreActivities.record_operator_message,
            RecordOperatorMessage(
                conversation_id=self._inp.conversation_id,
                team_id=self._inp.team_id,
                dedupe_key=key,
                text=msg.text,
                author=msg.author,
                author_key_id=msg.author_key_id,
            ),
            start_to_close_timeout=STORE_TIMEOUT,
        )
        if state.channel is not None:
            # Also for a repeat: its first send may not have finished; the key keeps it to one.
            self._send_later(
                _Send(
                    f"operator-message/{recorded.seq}/deliver",
                    ChannelActivities.deliver_operator_message,
                    DeliverOperatorMessage(
                        conversation_id=self._inp.conversation_id,
                        team_id=self._inp.team_id,
                        channel_id=state.channel.channel_id,
                        seq=recorded.seq,
                    ),
                )
            )
        return recorded

    @operator_message.validator
    def _validate_operator_message(self, msg: OperatorMessage) -> None:
        if self._state is not None:
            self._check_operator_message(msg)

    def _check_operator_message(self, msg: OperatorMessage) -> None:
        if not msg.text.strip():
            raise ApplicationError("message text is empty", type=ErrorType.EMPTY_MESSAGE)
        if not self.state.handed_off:
            raise ApplicationError(
                "conversation is not handed off: take it over first", type=ErrorType.NOT_HANDED_OFF
            )
        self._check_holder(msg.author, msg.author_key_id)

    def _check_hold_request(self, req: HoldRequest, *, claim: bool) -> None:
        if not self.state.handed_off:
            raise ApplicationError("conversation is not handed off", type=ErrorType.NOT_HANDED_OFF)
        if claim or not req.override:
            self._check_holder(req.operator, req.operator_key_id)

    def _check_holder(self, operator: str, key_id: str | None) -> None:
        """Refuse anyone but the holder of a held conversation."""
        state = self.state
        if state.held_by is not None and (state.held_by, state.held_by_key_id) != (operator, key_id):
            raise ApplicationError(
                f"conversation is held by {state.held_by}", state.held_by, type=ErrorType.HELD_BY_OTHER
            )

    async def _claim(self, operator: str, key_id: str | None) -> HoldResult:
        self._check_holder(operator, key_id)
        state = self.state
        if state.held_by is None:
            state.held_by, state.held_by_key_id = operator, key_id
            await self._record_hold(operator, key_id, claim=True)
        return HoldResult(handed_off=True, held_by=operator)

    async def _record_hold(self, operator: str, key_id: str | None, *, claim: bool) -> None:
        await workflow.execute_local_activity_method(
            StoreActivities.set_hold,
            HoldChange(
                conversation_id=self._inp.conversation_id,
                team_id=self._inp.team_id,
                at=workflow.now(),
                by=operator,
                by_key_id=key_id,
                claim=claim,
            ),
            start_to_close_timeout=STORE_TIMEOUT,
        )

    def _notify_handoff(self) -> None:
        """Tell the channel's ops chat that a person is needed (in the background, once per handoff)."""
        assert self.state.channel is not None
        self._send_later(
            _Send(
                "handoff/notify",
                ChannelActivities.notify_handoff,
                HandoffNotice(
                    conversation_id=self._inp.conversation_id,
                    team_id=self._inp.team_id,
                    channel_id=self.state.channel.channel_id,
                ),
            )
        )

    def _send_later(self, send: _Send) -> None:
        self._outbox.append(send)
        if self._courier is None or self._courier.done():
            self._courier = asyncio.create_task(self._deliver_outbox())

    async def _deliver_outbox(self) -> None:
        """Send the outbox in order; continue-as-new waits until it is empty."""
        while self._outbox:
            send = self._outbox[0]
            try:
                await workflow.execute_activity_method(
                    send.method,
                    send.arg,
                    activity_id=send.activity_id,
                    start_to_close_timeout=DELIVERY_TIMEOUT,
                    heartbeat_timeout=DELIVERY_HEARTBEAT,
                    retry_policy=DELIVERY_RETRY,
                )
            except ActivityError as err:
                # Transient failures end as dead letters inside the activity; this is the rest
                # (a deleted channel): logged, and never a reason to fail the conversation.
                workflow.logger.warning("%s not sent: %s", send.activity_id, err.cause or err)
            self._outbox.pop(0)
