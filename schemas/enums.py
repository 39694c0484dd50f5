"""The domain's closed vocabularies. Values are what the API and the database show."""

from enum import StrEnum


class Role(StrEnum):
    """What an API key may do."""

    ADMIN = "admin"
    OPERATOR = "operator"
    VIEWER = "viewer"
    CLIENT = "client"


class VersionPolicy(StrEnum):
    """Which agent version a conversation's turns run on."""

    PINNED = "pinned"
    """The version live when it started (or was last upgraded): `conversations.version_id`."""
    LATEST = "latest"
    """The agent's live version at the start of each turn."""
    DRAFT = "draft"
    """The agent's unpublished draft (admins, through `model: "slug@draft"`)."""


class VersionSource(StrEnum):
    """How a version came to be."""

    PUBLISH = "publish"
    ROLLBACK = "rollback"


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
    AWAITING_APPROVAL = "awaiting_approval"
    """Running, and paused until an operator decides on a gated tool call."""
    AWAITING_TOOL_OUTPUT = "awaiting_tool_output"
    """Running, and paused until the caller posts the output of a client tool it asked for."""
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
    NOTICE = "notice"
    """Steward's own word to the user (a holding message while approval is pending); not model context."""
    OPERATOR = "operator"
    """A person's message to the user while they hold the conversation (`author` says who)."""


class ToolMode(StrEnum):
    """Whether an agent's tool call runs at once or waits for an operator."""

    AUTO = "auto"
    REQUIRE_APPROVAL = "require_approval"


class Decision(StrEnum):
    """What an operator decides about a gated tool call."""

    APPROVE = "approve"
    EDIT = "edit"
    """Run the tool with the operator's arguments instead of the model's."""
    REJECT = "reject"
    """Do not run it; the operator's message goes back to the model as the tool's result."""
    RESPOND = "respond"
    """Do not run it; the operator's message is the reply to the user."""


class ExpiryAction(StrEnum):
    REJECT = "reject"
    APPROVE = "approve"


class ApprovalStatus(StrEnum):
    PENDING = "pending"
    APPROVED = "approved"
    EDITED = "edited"
    REJECTED = "rejected"
    RESPONDED = "responded"
    EXPIRED = "expired"
    """Nobody decided in time; the agent's expiry action was applied by the system."""
    CANCELLED = "cancelled"
    """The turn that asked was interrupted by a newer message; nothing was run."""


DECIDED_STATUS = {
    Decision.APPROVE: ApprovalStatus.APPROVED,
    Decision.EDIT: ApprovalStatus.EDITED,
    Decision.REJECT: ApprovalStatus.REJECTED,
    Decision.RESPOND: ApprovalStatus.RESPONDED,
}


class AuditAction(StrEnum):
    """An entry in an approval's append-only audit trail."""

    REQUESTED = "requested"
    REMINDED = "reminded"
    ESCALATED = "escalated"
    APPROVED = "approved"
    EDITED = "edited"
    REJECTED = "rejected"
    RESPONDED = "responded"
    EXPIRED = "expired"
    CANCELLED = "cancelled"


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
    TURN_AWAITING_APPROVAL = "turn.awaiting_approval"
    """The turn paused for operators: `round`, `approvals` (ids) and the `holding_message` sent."""
    TURN_COMPLETED = "turn.completed"
    TURN_FAILED = "turn.failed"
    MESSAGE_OPERATOR = "message.operator"
    """A person wrote to the user while holding the conversation (`{seq, text, author}`)."""
    CONVERSATION_HANDED_OFF = "conversation.handed_off"
    """The agent handed off or an operator took over (`{reason, by}`); the agent is silent."""
    CONVERSATION_CLAIMED = "conversation.claimed"
    CONVERSATION_RELEASED = "conversation.released"
    CONVERSATION_HANDED_BACK = "conversation.handed_back"
    TOOL_REQUESTED = "tool.requested"
    """The model called a client tool: the caller runs it (`{call_id, name, arguments}`) and
    posts its output to `/v1/conversations/{id}/tool-outputs`."""
    TURN_AWAITING_TOOL_OUTPUT = "turn.awaiting_tool_output"
    """The turn paused for the caller: `round` and `calls` (the round's `tool.requested` ones)."""
    GUARDRAIL_TRIPPED = "guardrail.tripped"
    """A check tripped (`rail`, `check`, `action`, `spans` by kind and position, `detail`)."""


TURN_ENDS = frozenset({EventKind.TURN_COMPLETED, EventKind.TURN_FAILED})
"""The kinds that end a turn's stream."""


class OverlapPolicy(StrEnum):
    """What a schedule does when a run is due while an earlier one still runs."""

    SKIP = "skip"
    BUFFER_ONE = "buffer_one"
    """Start it once the running one ends (at most one waits)."""
    ALLOW_ALL = "allow_all"


class ConversationMode(StrEnum):
    """Where a scheduled run talks to its agent."""

    FRESH = "fresh"
    """A new conversation per run: no memory between runs."""
    PERSISTENT = "persistent"
    """One conversation per schedule: the agent remembers earlier runs."""


class RunStatus(StrEnum):
    """A scheduled run, as `schedule_runs` records it."""

    RUNNING = "running"
    AWAITING_APPROVAL = "awaiting_approval"
    """Shown, never stored: the run's conversation waits for an operator."""
    COMPLETED = "completed"
    FAILED = "failed"


class ReportStatus(StrEnum):
    """An inbox report (a scheduled run's result delivered to the inbox)."""

    NEW = "new"
    ACKNOWLEDGED = "acknowledged"


class ChannelType(StrEnum):
    """Where channel users talk to an agent."""

    TELEGRAM = "telegram"
    SLACK = "slack"


class ChannelMode(StrEnum):
    """How a channel's updates reach Steward."""

    WEBHOOK = "webhook"
    """The provider POSTs to Steward (Telegram webhook, Slack Events API)."""
    POLLING = "polling"
    """Steward long-polls the provider (Telegram getUpdates; for development without a public URL)."""


class InboundStatus(StrEnum):
    """What became of one update a channel received (a row per provider dedupe key)."""

    RECEIVED = "received"
    """Recorded and acknowledged; not yet handed to its conversation."""
    SUBMITTED = "submitted"
    """Handed to its conversation as a turn (or queued in it)."""
    ANSWERED = "answered"
    """A command (/help, /new, /status) or a button press, answered without a turn."""
    RATE_LIMITED = "rate_limited"
    """Over the user's messages-per-minute limit: kept here with the reason, the user told to slow down."""
    IGNORED = "ignored"
    """Not for the agent (an edit, a bot's own message, a kind of update Steward does not handle)."""


class DeliveryStatus(StrEnum):
    """An outbound message's state; `failed` ones are the dead letters."""

    PENDING = "pending"
    SENDING = "sending"
    """A provider call was started; whether it posted is checked before any retry."""
    SENT = "sent"
    FAILED = "failed"
    DISCARDED = "discarded"


class ReplyKind(StrEnum):
    """Which of a turn's words a channel delivery carries (`DeliverTurn.kind`)."""

    REPLY = "reply"
    HOLDING = "holding"
    """The holding message sent while a gated call waits for an operator."""
    FAILED = "failed"
    """The apology a channel user gets when the turn failed."""


class InboundKind(StrEnum):
    """What a channel update is, once normalised (`channel_inbound.kind`)."""

    MESSAGE = "message"
    COMMAND = "command"
    DECISION = "decision"
    """An operator's button press on an approval request."""
    IGNORED = "ignored"


class ProviderKind(StrEnum):
    """Which client a team's LLM provider is spoken to with (`llm_providers.kind`)."""

    OPENAI = "openai"
    AZURE_OPENAI = "azure_openai"
    """Azure OpenAI: needs `base_url` (the resource's endpoint) and `api_version`."""
    OPENAI_COMPATIBLE = "openai_compatible"
    """Any server speaking OpenAI's API (Ollama, vLLM, LM Studio, OpenRouter): needs `base_url`."""


class CheckReason(StrEnum):
    """Why a provider check failed (`ProviderCheck.reason`)."""

    UNAUTHORIZED = "unauthorized"
    """The provider answered 401 or 403: the key is wrong, revoked or lacks access."""
    UNREACHABLE = "unreachable"
    """No connection: the host does not resolve, or nothing listens on the port."""
    TLS = "tls"
    """The TLS handshake failed (most often: the certificate does not verify)."""
    TIMEOUT = "timeout"
    NOT_FOUND = "not_found"
    """The server answered 404 for its models list: the base URL is likely wrong."""
    BAD_RESPONSE = "bad_response"
    """Anything else: another status, or an answer that is not a models list."""


class Objective(StrEnum):
    """What an agent's service level objectives measure (schemas/slo.py has their defaults)."""

    TURN_SUCCESS = "turn_success"
    TURN_LATENCY = "turn_latency"
    APPROVAL_DECISION = "approval_decision"
    DELIVERY_SUCCESS = "delivery_success"


class IncidentStatus(StrEnum):
    OPEN = "open"
    ACKNOWLEDGED = "acknowledged"
    RESOLVED = "resolved"


class Severity(StrEnum):
    PAGE = "page"
    """The fast burn (1 h and 5 min at 14.4x): 2 % of a 30-day budget gone in an hour."""
    TICKET = "ticket"
    """The slow burn (6 h and 30 min at 6x): 5 % of the budget gone in six hours."""


class FaultKind(StrEnum):
    """What `steward incidents simulate` can break on purpose (activities/faults.py)."""

    LLM_OUTAGE = "llm_outage"
    SLOW_LLM = "slow_llm"
    CHANNEL_DOWN = "channel_down"


class TracingMode(StrEnum):
    """Where a process's trace spans go (`STEWARD_TRACING`)."""

    OFF = "off"
    """No spans, no interceptor, no instrumentation: nothing is paid."""
    ON = "on"
    """`otlp` when an `OTEL_EXPORTER_OTLP_*` endpoint is set, else `db`."""
    DB = "db"
    """Into the app database's `spans` table (shown by the console's trace waterfall)."""
    OTLP = "otlp"
    """To any OpenTelemetry collector, configured by the standard `OTEL_EXPORTER_OTLP_*` variables."""


class ReplayVerdict(StrEnum):
    """How a re-run turn (or conversation: its worst turn) compares with the recording."""

    SAME = "same"
    """Same status, tool calls (names and arguments), approvals and reply (spacing aside)."""
    CHANGED = "changed"
    """Something differs, and no evaluator that passed on the recording fails on it."""
    REGRESSED = "regressed"
    """An evaluator given with the replay passed on the recorded turn and fails on the candidate's."""


class ReplayStatus(StrEnum):
    """A replay, or one of its conversations."""

    QUEUED = "queued"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"


class McpAuthKind(StrEnum):
    """How Steward authenticates to an MCP server (`McpAuth.kind`)."""

    NONE = "none"
    BEARER = "bearer"
    """`Authorization: Bearer <token>`."""
    HEADER = "header"
    """One header of the server's choosing, such as `X-Api-Key: <value>`."""


class McpStatus(StrEnum):
    """What Steward's last contact with an MCP server found (a refresh or a tool call)."""

    UNKNOWN = "unknown"
    """Never reached yet."""
    HEALTHY = "healthy"
    UNHEALTHY = "unhealthy"
    """The last contact failed: `last_error` says how."""


class EvalRunStatus(StrEnum):
    """Where an eval run is: cases still running, or every case's result recorded."""

    RUNNING = "running"
    COMPLETED = "completed"
