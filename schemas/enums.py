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
