"""Every `ApplicationError` type Steward raises, in one style (snake_case, as the API's error codes).

A turn that fails carries its cause's type as its error code (`turn.failed`, the turn's
row, `last_error` of the conversation), and the API maps update refusals to HTTP codes
by type, so a type is part of what callers see: add new ones here, never inline.
Channel delivery failures carry the provider's own code instead (Slack's `channel_not_found`,
Telegram's `forbidden`), which is the provider's vocabulary, not ours.
"""

from enum import StrEnum


class ErrorType(StrEnum):
    # Update refusals: the workflow's validator said no; the API answers 4xx.
    CONVERSATION_BUSY = "conversation_busy"
    EMPTY_MESSAGE = "empty_message"
    NOT_HANDED_OFF = "not_handed_off"
    HELD_BY_OTHER = "held_by_other"
    ALREADY_DECIDED = "already_decided"
    NOT_PENDING = "not_pending"
    INVALID_DECISION = "invalid_decision"
    # Missing rows: non-retryable, the reference is wrong.
    NOT_FOUND = "not_found"
    CHANNEL_NOT_FOUND = "channel_not_found"
    # The model and its endpoint.
    LLM_AUTH_FAILED = "llm_auth_failed"
    LLM_FORBIDDEN = "llm_forbidden"
    LLM_NOT_FOUND = "llm_not_found"
    LLM_RATE_LIMITED = "llm_rate_limited"
    LLM_UNAVAILABLE = "llm_unavailable"
    LLM_REJECTED = "llm_rejected"
    LLM_ERROR = "llm_error"
    LLM_NOT_CONFIGURED = "llm_not_configured"
    TOO_MANY_TOOL_ROUNDS = "too_many_tool_rounds"
    PROVIDER_NOT_FOUND = "provider_not_found"
    """Non-retryable: the turn's definition names a team LLM provider that is deleted or gone."""
    # Agent versions.
    VERSION_CHANGED = "version_changed"
    """Retryable: the live version changed while a turn started; the retry uses the recorded one."""
    # Prompt templates.
    PROMPT_RENDER_FAILED = "prompt_render_failed"
    """Non-retryable: the system prompt's template failed with this conversation's values."""
    # Ambient runs.
    PROMPT_REFUSED = "prompt_refused"
    # Channels and notifications.
    SECRETS_UNAVAILABLE = "secrets_unavailable"
    CHANNEL_UNAVAILABLE = "channel_unavailable"
    CHANNEL_UNDELIVERED = "channel_undelivered"
    NOTIFY_UNREACHABLE = "notify_unreachable"
    NOTIFY_REJECTED = "notify_rejected"
    NOTIFY_FAILED = "notify_failed"
    # Tools of a team's sources (custom actions, MCP servers).
    TOOL_SOURCE_CHANGED = "tool_source_changed"
    """Retryable: a source's tool changed between its call's checks and its record."""
