"""ConversationWorkflow: the entity for one conversation.

It numbers incoming messages into turns, runs one turn at a time in arrival order
(each a cancellable scope, see workflows/turn.py), applies the agent's double-texting
policy, and continues-as-new when the server suggests it and nothing is in flight.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import timedelta

from temporalio import workflow
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    # Pydantic models and activity references only; nothing with side effects at import.
    from activities.store import StoreActivities
    from schemas.enums import ConversationStatus, DoubleTexting, ReplyKind, TurnStatus
    from schemas.errors import ErrorType
    from schemas.payloads import (
        ConversationInput,
        ConversationRef,
        ConversationState,
        DeliverTurn,
        Handback,
        HandbackResult,
        InboundMessage,
        PendingTurn,
        StatusChange,
        SubmitAccepted,
        SubmitMessage,
        TurnInput,
        TurnOutcome,
    )
    from workflows.channel import deliver_turn
    from workflows.turn import Turn

STORE_TIMEOUT = timedelta(seconds=30)
MAX_PENDING_TURNS = 50
"""More queued turns than this and new messages are refused until the agent catches up."""
RECENT_KEYS = 1000
RECENT_OUTCOMES = 20
ANSWER_ON_PAUSE = "submit-answers-when-the-turn-pauses"
"""Patch: a waiting `submit` answers once its turn pauses for approval (before, only at its outcome)."""


@workflow.defn(name="Conversation")
class ConversationWorkflow:
    @workflow.init
    def __init__(self, inp: ConversationInput) -> None:
        self._inp = inp
        self._state: ConversationState | None = inp.state
        self._running: PendingTurn | None = None
        self._turn_task: asyncio.Task[TurnOutcome] | None = None
        self._turn: Turn | None = None

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
                await workflow.wait_condition(
                    lambda: workflow.all_handlers_finished() or bool(self.state.pending)
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
        state.handed_off = state.handed_off or outcome.handed_off
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
                return turn in state.recent_outcomes or (on_pause and self._paused_for(turn) is not None)

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
        """Name the approvals an unfinished turn waits for, and its holding message if they are its own."""
        paused = self._paused_for(accepted.turn) if accepted.outcome is None else None
        if paused is not None:
            accepted.approvals = list(paused.pending_approvals)
            if paused.inp.turn == accepted.turn:
                accepted.holding_message = paused.holding_message
        return accepted

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
            state.pending.append(PendingTurn(turn=turn, messages=[*carried, inbound]))
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
            return TurnStatus.AWAITING_APPROVAL if waiting else TurnStatus.RUNNING
        if any(p.turn == turn for p in self.state.pending):
            return TurnStatus.QUEUED
        return TurnStatus.COMPLETED

    @workflow.update
    async def handback(self, req: Handback) -> HandbackResult:
        """A human hands the conversation back: the agent answers new messages again."""
        self.state.handed_off = False
        if self._running is None:  # else the running turn's end records it
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
