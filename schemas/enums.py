"""The domain's closed vocabularies. Values are what the API and the database show."""

from enum import StrEnum


class Role(StrEnum):
    """What an API key may do."""

    ADMIN = "admin"
    OPERATOR = "operator"
    VIEWER = "viewer"
    CLIENT = "client"


class DoubleTexting(StrEnum):
    """What a conversation does with a message that arrives while a turn is running."""

    ENQUEUE = "enqueue"
    INTERRUPT = "interrupt"


class ConversationStatus(StrEnum):
    IDLE = "idle"
    RUNNING = "running"
    AWAITING_APPROVAL = "awaiting_approval"
    HANDED_OFF = "handed_off"
    FAILED = "failed"


class TurnStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    INTERRUPTED = "interrupted"
    HANDED_OFF = "handed_off"
    """The message was recorded while a human had the conversation; the agent stayed silent."""


class MessageRole(StrEnum):
    USER = "user"
    ASSISTANT = "assistant"
    TOOL = "tool"
    SYSTEM = "system"


class EventKind(StrEnum):
    """Kinds of entries in a conversation's event log (the `event:` field of SSE)."""

    TURN_STARTED = "turn.started"
    MESSAGE_DELTA = "message.delta"
    MESSAGE_RESET = "message.reset"
    """An LLM attempt was abandoned: drop the text streamed for that round so far."""
    MESSAGE_COMPLETED = "message.completed"
    TOOL_CALL = "tool.call"
    TOOL_RESULT = "tool.result"
    APPROVAL_REQUESTED = "approval.requested"
    APPROVAL_DECIDED = "approval.decided"
    TURN_COMPLETED = "turn.completed"
    TURN_FAILED = "turn.failed"


TURN_ENDS = frozenset({EventKind.TURN_COMPLETED, EventKind.TURN_FAILED})
"""The kinds that end a turn's stream."""
