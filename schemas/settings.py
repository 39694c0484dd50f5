"""The one settings object, read from the environment (and `.env`) once per process."""

from __future__ import annotations

from functools import cached_property
from pathlib import Path

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from schemas.enums import TracingMode

DEMO_MODEL = "steward-offline-demo"
"""Model name of the built-in offline demo model; shown wherever a model name shows."""


def _env(*names: str) -> AliasChoices:
    return AliasChoices(*names)


class Settings(BaseSettings):
    """Process configuration. Every field names the environment variable that sets it."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", populate_by_name=True)

    database_url: str = Field("sqlite:///.steward/steward.db", validation_alias=_env("STEWARD_DATABASE_URL"))
    temporal_address: str = Field("127.0.0.1:7233", validation_alias=_env("TEMPORAL_ADDRESS"))
    temporal_namespace: str = Field("default", validation_alias=_env("TEMPORAL_NAMESPACE"))
    task_queue: str = Field("steward", validation_alias=_env("STEWARD_TASK_QUEUE"))
    temporal_ui_url: str | None = Field(None, validation_alias=_env("STEWARD_TEMPORAL_UI_URL"))

    openai_api_key: SecretStr | None = Field(None, validation_alias=_env("OPENAI_API_KEY"))
    openai_base_url: str | None = Field(None, validation_alias=_env("OPENAI_BASE_URL"))
    default_model: str = Field("gpt-4o-mini", validation_alias=_env("STEWARD_DEFAULT_MODEL"))
    llm_timeout_seconds: float = Field(120.0, validation_alias=_env("STEWARD_LLM_TIMEOUT"))

    bootstrap_key: SecretStr | None = Field(None, validation_alias=_env("STEWARD_BOOTSTRAP_KEY"))
    default_team: str = Field("default", validation_alias=_env("STEWARD_DEFAULT_TEAM"))

    webhook_secret: SecretStr | None = Field(None, validation_alias=_env("STEWARD_WEBHOOK_SECRET"))
    """Signs outgoing notification webhooks (HMAC-SHA256); unsigned without it."""
    public_url: str = Field("http://127.0.0.1:8000", validation_alias=_env("STEWARD_PUBLIC_URL"))
    """Where people reach the API and web pages; links in notifications point here."""
    event_retention_days: float = Field(7.0, gt=0, validation_alias=_env("STEWARD_EVENT_RETENTION_DAYS"))
    """How long conversation events (the streams clients resume) are kept."""

    eval_sandbox_days: float = Field(14.0, gt=0, validation_alias=_env("STEWARD_EVAL_SANDBOX_DAYS"))
    """How long a finished eval run's sandbox keeps what its cases booked (then it is cleared)."""

    sse_heartbeat_seconds: float = Field(15.0, gt=0, validation_alias=_env("STEWARD_SSE_HEARTBEAT"))
    """Seconds between keep-alive comments on an idle event stream."""
    accept_seconds: float = Field(15.0, gt=0, validation_alias=_env("STEWARD_ACCEPT_SECONDS"))
    """How long a conversation may take to accept a message (or a handback) before the API
    answers 503 (`not_accepted`); a message to a task queue no worker polls would wait forever."""

    secret_key: SecretStr | None = Field(None, validation_alias=_env("STEWARD_SECRET_KEY"))
    """Fernet key(s) that encrypt channel credentials at rest; comma-separated for rotation
    (the first encrypts, all decrypt). Channels cannot be configured without it."""
    channel_polling: bool = Field(False, validation_alias=_env("STEWARD_CHANNEL_POLLING"))
    """Long-poll Telegram channels in `polling` mode from this API process (`steward dev` turns it on)."""

    http_keep_alive_seconds: int = Field(75, ge=1, validation_alias=_env("STEWARD_HTTP_KEEP_ALIVE"))
    """How long the API keeps an idle client connection open. Providers and proxies keep their
    connections to the webhooks between bursts, and a burst on open connections is acknowledged
    sooner (uvicorn's own default, 5 s, closed them between any two bursts)."""

    slo_eval_seconds: float = Field(60.0, gt=0, validation_alias=_env("STEWARD_SLO_EVAL_SECONDS"))
    """How often the scheduled SLO evaluation runs."""
    slo_window_scale: float = Field(1.0, gt=0, le=1, validation_alias=_env("STEWARD_SLO_WINDOW_SCALE"))
    """Multiplies the burn-rate windows (1 h, 5 min, 6 h, 30 min): below 1 only in dev and
    tests, so an outage opens and resolves an incident in seconds."""
    incident_webhook_url: str | None = Field(None, validation_alias=_env("STEWARD_INCIDENT_WEBHOOK_URL"))
    """Where incidents' opened and resolved notices are POSTed, signed like every webhook."""
    guardrail_private_urls: bool = Field(False, validation_alias=_env("STEWARD_GUARDRAIL_PRIVATE_URLS"))
    """Let custom HTTP guardrail checks call private and loopback addresses (tests, a sidecar)."""
    session_idle_hours: float = Field(12.0, gt=0, validation_alias=_env("STEWARD_SESSION_IDLE_HOURS"))
    """A web session unused this long ends (people sign in again)."""
    session_days: float = Field(14.0, gt=0, validation_alias=_env("STEWARD_SESSION_DAYS"))
    """A web session ends this long after sign-in, however busy."""
    sign_in_attempts: int = Field(5, ge=1, validation_alias=_env("STEWARD_SIGN_IN_ATTEMPTS"))
    """Failed sign-ins allowed per email address in `sign_in_window_seconds` (per IP: four times as many)."""
    sign_in_window_seconds: float = Field(900.0, gt=0, validation_alias=_env("STEWARD_SIGN_IN_WINDOW"))
    oidc_issuer: str | None = Field(None, validation_alias=_env("STEWARD_OIDC_ISSUER"))
    """Single sign-on: the OpenID Connect issuer (its `/.well-known/openid-configuration` is read)."""
    oidc_client_id: str | None = Field(None, validation_alias=_env("STEWARD_OIDC_CLIENT_ID"))
    oidc_client_secret: SecretStr | None = Field(None, validation_alias=_env("STEWARD_OIDC_CLIENT_SECRET"))

    log_level: str = Field("INFO", validation_alias=_env("STEWARD_LOG_LEVEL"))
    worker_metrics_port: int = Field(9464, validation_alias=_env("STEWARD_WORKER_METRICS_PORT"))
    worker_shutdown_seconds: float = Field(
        0.0, ge=0, validation_alias=_env("STEWARD_WORKER_SHUTDOWN_SECONDS")
    )
    """How long a stopping worker lets its running activities finish before it cancels them
    (Temporal then retries them on another worker). 0, the default, cancels at once: right
    for `steward dev`'s Ctrl-C; a deployment that rolls its workers sets about 300 (an LLM
    call's limit) and gives the process a longer termination grace period."""
    test_wait_seconds: float = Field(120.0, gt=0, validation_alias=_env("STEWARD_TEST_WAIT_SECONDS"))
    """How long `POST /v1/agents/{slug}/test` waits for a test run's turns before answering 202
    with the run so far (its turns go on; `GET /v1/agents/{slug}/tests/{id}` shows them)."""

    tracing: TracingMode = Field(TracingMode.OFF, validation_alias=_env("STEWARD_TRACING"))
    """Trace every turn with OpenTelemetry: `off` (the default; `steward dev` uses `db`), `db`
    (spans in the app database, shown by the console), `otlp` (to the collector named by the
    standard `OTEL_EXPORTER_OTLP_*` variables), or `on` (`otlp` if an endpoint is set, else `db`)."""
    otlp_endpoint: str | None = Field(
        None, validation_alias=_env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")
    )
    """Read only to decide `on`; the OTLP exporters read this and the other `OTEL_EXPORTER_OTLP_*`
    variables (headers, timeout, certificates) themselves."""
    otlp_protocol: str = Field(
        "http/protobuf",
        validation_alias=_env("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"),
    )
    """`http/protobuf` (the default) or `grpc`."""
    trace_content: bool = Field(False, validation_alias=_env("STEWARD_TRACE_CONTENT"))
    """Record message text in LLM and tool spans. Off by default: spans then carry ids, names,
    token counts and finish reasons, never what was said."""

    payload_keys: SecretStr | None = Field(None, validation_alias=_env("STEWARD_PAYLOAD_KEYS"))
    """AES keys that encrypt every payload sent to Temporal, as `id:base64key` (16, 24 or 32
    bytes), comma-separated for rotation: the first encrypts, all decrypt. Every API and
    worker process needs the same keys. Unset, payloads travel in plain JSON (with a warning
    at start-up); `steward dev` makes one."""
    codec_cors_origins: str = Field("", validation_alias=_env("STEWARD_CODEC_CORS_ORIGINS"))
    """Comma-separated origins (e.g. `https://temporal.example.com`) of Temporal Web UIs allowed
    to call `/codec/decode` and `/codec/encode` from the browser; `steward dev` allows its own UI."""
    workflow_cache_size: int = Field(1000, ge=0, validation_alias=_env("STEWARD_WORKFLOW_CACHE_SIZE"))
    """How many workflow runs a worker keeps in memory (Temporal's sticky cache). Past it, the
    least recently used idle conversation is evicted and replays from its history on its next
    message: memory stays bounded however many conversations are open. 1000 is Temporal's default."""
    workflow_sandbox: bool = Field(False, validation_alias=_env("STEWARD_WORKFLOW_SANDBOX"))
    """Run workflows in Temporal's sandbox, which re-imports their modules per run and refuses
    I/O, clocks and randomness at run time. It guards workflow code, which only Steward's own
    developers write, so the test suite turns it on; a worker runs without it, as the sandbox
    re-enters itself for every payload and cost a quarter of a worker's CPU per turn."""
    allow_http_actions: bool = Field(False, validation_alias=_env("STEWARD_ALLOW_HTTP_ACTIONS"))
    """Let custom actions call plain `http://` services on loopback addresses (127.0.0.0/8, ::1).
    Off in production: actions then speak HTTPS only. `steward dev` and the tests turn it on."""
    allow_private_mcp: bool = Field(False, validation_alias=_env("STEWARD_ALLOW_PRIVATE_MCP"))
    """Let MCP servers be on private, loopback and link-local addresses (dev and tests; `steward
    dev` sets it). Off, a server whose host resolves to one is refused before Steward connects."""
    mcp_timeout_seconds: float = Field(30.0, gt=0, le=55, validation_alias=_env("STEWARD_MCP_TIMEOUT"))
    """How long a call of an MCP server's tool (or a listing of its tools) may take; under the
    tool activity's own 60 s, so a hung server is a tool error the model hears, not a retry."""

    eval_concurrency: int = Field(4, ge=1, le=64, validation_alias=_env("STEWARD_EVAL_CONCURRENCY"))
    """How many cases of an eval run run at once when the run does not say (`concurrency`)."""
    cli_key: SecretStr | None = Field(None, validation_alias=_env("STEWARD_KEY"))
    """The API key `steward eval run` sends to the API at `STEWARD_PUBLIC_URL` (or `--url`)."""

    @property
    def llm_configured(self) -> bool:
        """Whether a real OpenAI-compatible endpoint is configured."""
        return self.openai_api_key is not None or self.openai_base_url is not None

    @property
    def secure_cookies(self) -> bool:
        """Cookies are `Secure` unless Steward is reached over plain http (`steward dev`, tests)."""
        return not self.public_url.startswith("http://")

    @property
    def seed_model(self) -> str:
        """Model for seeded agents: the real default when an endpoint is set, else the demo."""
        return self.default_model if self.llm_configured else DEMO_MODEL

    @cached_property
    def async_database_url(self) -> str:
        """The database URL with an asyncio driver (aiosqlite or psycopg)."""
        url = self.database_url
        for prefix in ("sqlite+aiosqlite://", "sqlite+pysqlite://", "sqlite://"):
            if url.startswith(prefix):
                return "sqlite+aiosqlite://" + url[len(prefix) :]
        for prefix in ("postgresql+psycopg://", "postgresql://", "postgres://"):
            if url.startswith(prefix):
                return "postgresql+psycopg://" + url[len(prefix) :]
        return url

    @cached_property
    def sync_database_url(self) -> str:
        """The database URL with a blocking driver, for migrations."""
        return self.async_database_url.replace("sqlite+aiosqlite://", "sqlite://", 1)

    def sqlite_path(self) -> Path | None:
        """The SQLite file, or None for other databases or in-memory SQLite."""
        url = self.sync_database_url
        if not url.startswith("sqlite:///") or url.endswith(":memory:"):
            return None
        return Path(url[len("sqlite:///") :])
