"""OpenTelemetry for a Steward process: one tracer provider, its exporter, and the tracer spans use.

`STEWARD_TRACING` decides (see `Settings.tracing`): off, nothing is installed and `tracer()`
is OpenTelemetry's no-op tracer, so the span calls in activities cost a function call;
`otlp` exports with the official OTLP exporters (HTTP/protobuf or gRPC, configured by the
standard `OTEL_EXPORTER_OTLP_*` variables, which the exporters read themselves); `db` keeps
spans in the app database (`spans`), written in batches by `DatabaseSpanExporter`, for the
console's waterfall. The provider is this module's own, not OpenTelemetry's global one, so a
process (or a test) can set it up, shut it down and set it up again.
"""

from __future__ import annotations

import contextvars
import logging
import threading
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, urlencode

import sqlalchemy as sa
from opentelemetry import trace
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.id_generator import RandomIdGenerator
from opentelemetry.trace import StatusCode

from schemas.enums import TracingMode
from schemas.settings import Settings
from schemas.tables import Span

log = logging.getLogger("steward.tracing")

TRACER_NAME = "steward"
SERVICE = "steward"
"""`service.name` unless `OTEL_SERVICE_NAME` (or `OTEL_RESOURCE_ATTRIBUTES`) names another."""

# GenAI semantic conventions (https://opentelemetry.io/docs/specs/semconv/gen-ai/) and Steward's own.
OPERATION = "gen_ai.operation.name"
PROVIDER = "gen_ai.provider.name"
CONVERSATION = "gen_ai.conversation.id"
AGENT_NAME = "gen_ai.agent.name"
AGENT_ID = "gen_ai.agent.id"
AGENT_VERSION = "gen_ai.agent.version"
REQUEST_MODEL = "gen_ai.request.model"
RESPONSE_MODEL = "gen_ai.response.model"
INPUT_TOKENS = "gen_ai.usage.input_tokens"
OUTPUT_TOKENS = "gen_ai.usage.output_tokens"
FINISH_REASONS = "gen_ai.response.finish_reasons"
TOOL_NAME = "gen_ai.tool.name"
TOOL_CALL_ID = "gen_ai.tool.call.id"
INPUT_MESSAGES = "gen_ai.input.messages"
OUTPUT_MESSAGES = "gen_ai.output.messages"
TOOL_ARGUMENTS = "gen_ai.tool.call.arguments"
TOOL_RESULT = "gen_ai.tool.call.result"
TURN = "steward.turn"
ROUND = "steward.round"
ATTEMPT = "steward.attempt"
APPROVAL = "steward.approval.id"
CHANNEL = "steward.channel.id"

CONTENT_ATTRIBUTES = frozenset({INPUT_MESSAGES, OUTPUT_MESSAGES, TOOL_ARGUMENTS, TOOL_RESULT})
"""The only attributes that carry what was said; set only with `STEWARD_TRACE_CONTENT`."""

_NOOP = trace.NoOpTracer()
_provider: TracerProvider | None = None
_record_content = False
_in_database = False


def mode_of(settings: Settings) -> TracingMode:
    """Where spans go: `on` means OTLP when an endpoint is configured, else the database."""
    if settings.tracing is TracingMode.ON:
        return TracingMode.OTLP if settings.otlp_endpoint else TracingMode.DB
    return settings.tracing


def tracer() -> trace.Tracer:
    """Steward's tracer: the provider's when tracing is on, else a no-op one."""
    return _provider.get_tracer(TRACER_NAME) if _provider is not None else _NOOP


def enabled() -> bool:
    return _provider is not None


def record_content() -> bool:
    """Whether spans may carry message text (`STEWARD_TRACE_CONTENT`)."""
    return _record_content and _provider is not None


def provider() -> TracerProvider | None:
    return _provider


def in_database() -> bool:
    """Whether this process keeps its spans in the app database (so the console can show them)."""
    return _in_database and _provider is not None


class PresetIds(RandomIdGenerator):
    """Random ids, except the span id a workflow span was promised (see `preset_span_id`).

    A workflow cannot hold a span open across workflow tasks (a replay on another worker
    would lose it), so it names the span's id up front, deterministically, parents its
    activities on it, and has the span written with that id when the step ends.
    """

    def generate_span_id(self) -> int:
        preset = _preset.get()
        return preset if preset is not None else super().generate_span_id()


_preset: contextvars.ContextVar[int | None] = contextvars.ContextVar("steward_preset_span_id", default=None)


def preset_span_id(span_id: int) -> contextvars.Token[int | None]:
    """Make the next span started in this context take `span_id`; reset with the token."""
    return _preset.set(span_id)


def reset_span_id(token: contextvars.Token[int | None]) -> None:
    _preset.reset(token)


def setup(settings: Settings) -> TracerProvider | None:
    """Install this process's tracer provider and exporter (once); None when tracing is off."""
    global _provider, _record_content, _in_database
    mode = mode_of(settings)
    if mode is TracingMode.OFF:
        return None
    if _provider is not None:
        return _provider
    resource = Resource.create()  # OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES, if set
    if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
        resource = resource.merge(Resource({SERVICE_NAME: SERVICE}))
    created = TracerProvider(resource=resource, id_generator=PresetIds())
    created.add_span_processor(BatchSpanProcessor(_exporter(settings, mode)))
    _provider, _record_content, _in_database = created, settings.trace_content, mode is TracingMode.DB
    log.info("tracing on: spans go to %s", "the app database" if mode is TracingMode.DB else "OTLP")
    return created


def shutdown() -> None:
    """Flush what is buffered and uninstall the provider (a later `setup` starts afresh)."""
    global _provider
    if _provider is None:
        return
    current, _provider = _provider, None
    current.shutdown()


def flush(timeout_millis: int = 10_000) -> bool:
    """Export every finished span now (tests and shutdown)."""
    return _provider.force_flush(timeout_millis) if _provider is not None else True


def _exporter(settings: Settings, mode: TracingMode) -> SpanExporter:
    if mode is TracingMode.DB:
        return DatabaseSpanExporter(settings)
    if settings.otlp_protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter

        return GrpcExporter()
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter

    return HttpExporter()


def _hex(value: int, width: int) -> str:
    return format(value, f"0{width}x")


def _plain(value: Any) -> Any:
    """An attribute value as JSON holds it (OpenTelemetry keeps sequences as tuples)."""
    return list(value) if isinstance(value, tuple) else value


SECRET_PARAMS = ("token", "key", "secret", "password", "signature")
"""Query parameters whose values never go into a span (`/ws?token=<API key>` above all)."""


def redact_query(span: trace.Span, scope: dict[str, Any]) -> None:
    """A request span's URL attributes with secret query values replaced (FastAPI's request hook).

    The instrumentation records the full URL and query; Steward's WebSocket takes its key in
    `?token=`, and secrets are never recorded.
    """
    query = scope.get("query_string", b"")
    if not query or not span.is_recording():
        return
    pairs = parse_qsl(query.decode("latin-1"), keep_blank_values=True)
    if not any(secret in name.lower() for name, _ in pairs for secret in SECRET_PARAMS):
        return
    safe = urlencode([(n, "REDACTED" if any(s in n.lower() for s in SECRET_PARAMS) else v) for n, v in pairs])
    attributes = getattr(span, "attributes", None) or {}
    for name in ("http.url", "url.full"):
        if isinstance(url := attributes.get(name), str):
            span.set_attribute(name, url.split("?", 1)[0] + "?" + safe)
    for name in ("http.target",):
        if isinstance(target := attributes.get(name), str):
            span.set_attribute(name, target.split("?", 1)[0] + "?" + safe)
    if "url.query" in attributes:
        span.set_attribute("url.query", safe)


def span_row(span: ReadableSpan) -> dict[str, Any]:
    """One `spans` row for a finished span."""
    context = span.context
    assert context is not None
    attributes = {key: _plain(value) for key, value in (span.attributes or {}).items()}
    turn = attributes.get(TURN)
    conversation = attributes.get(CONVERSATION)
    start = span.start_time or 0
    return {
        "trace_id": _hex(context.trace_id, 32),
        "span_id": _hex(context.span_id, 16),
        "parent_span_id": _hex(span.parent.span_id, 16) if span.parent is not None else None,
        "name": span.name[:255],
        "kind": span.kind.name.lower(),
        "service": str(span.resource.attributes.get(SERVICE_NAME, SERVICE))[:64],
        "start_ns": start,
        "end_ns": span.end_time or start,
        "status": span.status.status_code.name.lower(),
        "status_message": span.status.description if span.status.status_code is StatusCode.ERROR else None,
        "attributes": attributes,
        "conversation_id": str(conversation)[:32] if conversation is not None else None,
        "turn": turn if isinstance(turn, int) else None,
        "started_at": datetime.fromtimestamp(start / 1e9, UTC),
    }


class DatabaseSpanExporter(SpanExporter):
    """Writes each batch of finished spans to `spans` in one transaction.

    `BatchSpanProcessor` calls `export` from its own thread, so this uses a blocking engine
    of its own (the app's engine is asyncio). On SQLite it may wait for the app's writers
    (the busy timeout); a batch that cannot be written is dropped and logged, never retried
    into the caller's path.
    """

    def __init__(self, settings: Settings) -> None:
        url = settings.sync_database_url
        connect_args: Mapping[str, Any] = {"timeout": 30} if url.startswith("sqlite") else {}
        self._engine = sa.create_engine(url, connect_args=dict(connect_args), pool_size=1, max_overflow=0)
        self._lock = threading.Lock()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        rows = [span_row(span) for span in spans if span.context is not None]
        if not rows:
            return SpanExportResult.SUCCESS
        try:
            with self._lock, self._engine.begin() as connection:
                connection.execute(sa.insert(Span), rows)
        except Exception as err:
            log.warning("dropped %d spans: could not write them (%s)", len(rows), type(err).__name__)
            return SpanExportResult.FAILURE
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        self._engine.dispose()

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return True
