"""Dedupe keys: every business key a store or a provider enforces once-only on, built in one place.

Two writers that must meet on one row (a retried activity and its first attempt, the
LLM activity and `begin_turn`, a webhook and its redelivery) build the key here, so they
cannot spell it differently. None of these carries an attempt number.
"""

from typing import NamedTuple

from schemas.enums import ReplyKind

# --- transcript messages (unique per conversation) ----------------------------------


def inbound_key(number: int) -> str:
    """A conversation's `number`th inbound message."""
    return f"in/{number}"


def seed_key(seq: int) -> str:
    """An earlier message a chat-completions request seeds a new conversation with."""
    return f"seed/{seq}"


def assistant_key(turn: int, round_: int) -> str:
    """The model's answer in one round of a turn."""
    return f"t{turn}/r{round_}/assistant"


def holding_key(turn: int, round_: int) -> str:
    """The holding message of a round whose calls wait for an operator."""
    return f"t{turn}/r{round_}/holding"


def operator_reply_key(turn: int, round_: int) -> str:
    """An operator's own answer to the user, in place of the model's."""
    return f"t{turn}/r{round_}/operator"


def tool_result_key(turn: int, call_key: str) -> str:
    """A tool call's result (`call_key` is the turn's own `round.index`)."""
    return f"t{turn}/tool/{call_key}"


def turn_error_key(turn: int) -> str:
    """The notice recorded when a turn failed."""
    return f"t{turn}/error"


# --- channel deliveries (unique per team) -------------------------------------------


def turn_delivery_key(conversation_id: str, turn: int, kind: ReplyKind, round_: int, part: int) -> str:
    """One part of what a turn says on a channel: (conversation, turn, part)."""
    which = f"{ReplyKind.HOLDING}{round_}" if kind == ReplyKind.HOLDING else str(kind)
    return f"c/{conversation_id}/t{turn}/{which}.{part}"


def run_delivery_key(run_id: str, part: int) -> str:
    """One part of an ambient run's reply posted to a channel."""
    return f"r/{run_id}.{part}"


def notice_key(inbound_key: str) -> str:
    """Steward's own answer to one inbound update (a command, a refusal, a decision)."""
    return f"n/{inbound_key}"


def slow_down_key(channel_id: str, user_key: str, minute: int) -> str:
    """The one "please slow down" a user gets per minute, however many messages are over."""
    return f"n/slow/{channel_id}/{user_key}/{minute}"


# --- channel inbound updates (unique) -----------------------------------------------


def telegram_update_key(channel_id: str, update_id: object) -> str:
    return f"tg:{channel_id}:{update_id}"


def telegram_chat_key(chat_id: object, thread: object) -> str:
    """One Telegram chat and forum topic: one conversation."""
    return f"tg:{chat_id}:{thread or 0}"


def slack_event_key(channel_id: str, event_id: object) -> str:
    return f"slack:{channel_id}:{event_id}"


def slack_action_key(channel_id: str, action: object, user: object) -> str:
    """One button press (Slack sends `action_ts`, or at least a `trigger_id`)."""
    return f"slack:{channel_id}:action:{action}:{user}"


def slack_user_key(user: object) -> str:
    return f"slack:{user}"


def slack_chat_key(where: object, thread: object) -> str:
    """One Slack thread or DM: one conversation."""
    return f"slack:{where}:{thread}"


# --- the operator console -----------------------------------------------------------


def operator_message_key(number: int) -> str:
    """A conversation's `number`th operator message (numbered by its workflow)."""
    return f"op/{number}"


def operator_message_caller_key(idempotency_key: str) -> str:
    """An operator message sent with the caller's own idempotency key: repeats meet on it."""
    return f"op/key/{idempotency_key}"


def operator_delivery_key(conversation_id: str, seq: int, part: int) -> str:
    """One part of an operator message on the conversation's channel, by the message's `seq`."""
    return f"c/{conversation_id}/m{seq}.{part}"


def handoff_notice_key(conversation_id: str, handed_off_micros: int, part: int) -> str:
    """The ops chat's notice of one handoff (a handoff is known by when it happened)."""
    return f"h/{conversation_id}/{handed_off_micros}.{part}"


# --- client tools -------------------------------------------------------------------


class ClientCall(NamedTuple):
    """Where a client tool call sits: its conversation, turn, round and place in the round."""

    conversation_id: str
    turn: int
    round: int
    position: int

    @property
    def key(self) -> str:
        """The call's `round.index` in its turn (its tool result's key)."""
        return f"{self.round}.{self.position}"


def client_call_id(conversation_id: str, turn: int, round_: int, index: int) -> str:
    """The id a client tool call gets in place of the model's: unique, and it names its conversation,
    so a chat-completions caller's `role: "tool"` message finds the turn it continues."""
    return f"call_{conversation_id}_{turn}_{round_}_{index}"


def client_call_of(call_id: str) -> ClientCall | None:
    """The place `client_call_id` encoded in `call_id`, or None for an id it did not make."""
    head, sep, rest = call_id.partition("_")
    parts = rest.rsplit("_", 3)
    if head != "call" or not sep or len(parts) != 4 or not parts[0]:
        return None
    conversation_id, *numbers = parts
    if not all(n.isdigit() and len(n) <= 9 for n in numbers):
        return None
    return ClientCall(conversation_id, int(numbers[0]), int(numbers[1]), int(numbers[2]))
