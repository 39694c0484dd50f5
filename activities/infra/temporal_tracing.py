"""Temporal's OpenTelemetry interceptor, made to give each turn its own trace.

temporalio's `TracingInterceptor` carries the trace across API -> Temporal -> worker in
headers, and a retried activity (on any worker) reads the same header, so it stays in the
trace. But it runs every handler under the context of whoever *started* the workflow: for a
conversation, an entity that lives for many turns, every turn would land in its first
message's trace. `StewardTracingInterceptor` runs an update's handler under the caller's
context instead, a turn records that context when its message is accepted (`turn_trace`),
and the turn runs under it (`workflow_span`).

A workflow span (`invoke_agent`, `await_approval`) has a real duration but is written only
when its step ends, by the worker that is then running the workflow, with a span id chosen
up front from the trace and the step's key: its activities name it as their parent before it
exists, and a replay on another worker arrives at the same id. Nothing here runs without the
interceptor: with tracing off every helper is a no-op.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, cast

import opentelemetry.context
import opentelemetry.trace
import opentelemetry.util.types
import temporalio.worker
import temporalio.workflow
from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, Status, StatusCode, TraceFlags
from temporalio.contrib.opentelemetry import TracingInterceptor, TracingWorkflowInboundInterceptor
from temporalio.contrib.opentelemetry._context import attached_context

from activities.infra import tracing

_EMIT = "__steward_workflow_span"

Carrier = dict[str, str]
Attributes = Mapping[str, str | int | bool]
"""A workflow span's attributes: ids, names and counts."""


@dataclass(frozen=True)
class _WorkflowSpan:
    """What a workflow asks its worker to write (through an extern function, outside the sandbox)."""

    parent: Carrier
    span_id: int
    name: str
    attributes: Attributes
    start_ns: int
    end_ns: int
    error: str | None


_agents: dict[str, tuple[str, str | None]] = {}
"""conversation id -> (agent name, version id), as this worker's LLM activity last saw them, so
the turn's span can be named `invoke_agent {agent}` (the workflow itself never reads agents)."""
_AGENTS_KEPT = 10_000


def remember_agent(conversation_id: str, name: str, version: str | None) -> None:
    if not tracing.enabled():
        return
    if len(_agents) >= _AGENTS_KEPT:
        _agents.clear()
    _agents[conversation_id] = (name, version)


def known_agent(conversation_id: str) -> tuple[str, str | None] | None:
    """The agent (name, version id) this worker last saw answer the conversation, if any."""
    return _agents.get(conversation_id)


class StewardTracingInterceptor(TracingInterceptor):
    """`TracingInterceptor`, with Steward's tracer and its per-turn workflow context."""

    def __init__(self) -> None:
        super().__init__(tracing.tracer())

    def workflow_interceptor_class(
        self, input: temporalio.worker.WorkflowInterceptorClassInput
    ) -> type[TracingWorkflowInboundInterceptor]:
        super().workflow_interceptor_class(input)
        input.unsafe_extern_functions[_EMIT] = self._emit
        return _TurnTracing

    def _emit(self, params: _WorkflowSpan) -> None:
        attributes = dict(params.attributes)
        name = params.name
        conversation = attributes.get(tracing.CONVERSATION)
        if name == "invoke_agent" and isinstance(conversation, str) and conversation in _agents:
            agent, version = _agents[conversation]
            name = f"invoke_agent {agent}"
            attributes[tracing.AGENT_NAME] = agent
            if version is not None:
                attributes[tracing.AGENT_VERSION] = version
        token = tracing.preset_span_id(params.span_id)
        try:
            span = self.tracer.start_span(
                name,
                self.text_map_propagator.extract(params.parent),
                kind=SpanKind.INTERNAL,
                attributes=attributes,
                start_time=params.start_ns,
            )
        finally:
            tracing.reset_span_id(token)
        if params.error is not None:
            span.set_status(Status(StatusCode.ERROR, params.error))
        span.end(end_time=params.end_ns)


class _TurnTracing(TracingWorkflowInboundInterceptor):
    """Updates run under their caller's trace, not the workflow starter's."""

    def handle_update_validator(self, input: temporalio.worker.HandleUpdateInput) -> None:
        # No `ValidateUpdate` span: it would sit beside `HandleUpdate` with nothing under it,
        # and cost every message a span.
        temporalio.worker.WorkflowInboundInterceptor.handle_update_validator(self, input)

    async def handle_update_handler(self, input: temporalio.worker.HandleUpdateInput) -> Any:
        header = input.headers.get(self.header_key)
        caller = (
            self.text_map_propagator.extract(self.payload_converter.from_payloads([header])[0])
            if header
            else None
        )
        parent = opentelemetry.trace.get_current_span(caller).get_span_context() if caller else None
        if caller is None or parent is None or not parent.is_valid:
            return await super().handle_update_handler(input)
        # `HandleUpdate:{name}`, a child of the caller's span, with an id derived from the update's:
        # what the handler records (a turn's context) is then the same on every replay.
        span_id = _span_id(parent.trace_id, f"update/{input.id}")
        own = SpanContext(
            parent.trace_id, span_id, is_remote=True, trace_flags=TraceFlags(TraceFlags.SAMPLED)
        )
        context = self._set_on_context(opentelemetry.trace.set_span_in_context(NonRecordingSpan(own), caller))
        now = temporalio.workflow.time_ns()
        _write(
            _WorkflowSpan(_carrier(self, caller), span_id, f"HandleUpdate:{input.update}", {}, now, now, None)
        )
        with attached_context(context):
            return await temporalio.worker.WorkflowInboundInterceptor.handle_update_handler(self, input)


def _carrier(root: TracingWorkflowInboundInterceptor, context: opentelemetry.context.Context) -> Carrier:
    carrier: Carrier = {}
    root.text_map_propagator.inject(carrier, context)
    return carrier


def _interceptor() -> _TurnTracing | None:
    found = TracingWorkflowInboundInterceptor._from_context()
    return found if isinstance(found, _TurnTracing) else None


def turn_trace() -> Carrier:
    """In a workflow: the trace context a step started now belongs to (empty with tracing off)."""
    root = _interceptor()
    if root is None:
        return {}
    carrier: Carrier = {}
    root.text_map_propagator.inject(carrier)
    return carrier


def _span_id(trace_id: int, key: str) -> int:
    digest = hashlib.blake2b(f"{trace_id:032x}/{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") or 1


@contextmanager
def workflow_span(
    name: str,
    key: str,
    attributes: Attributes,
    parent: Carrier | None = None,
) -> Iterator[None]:
    """In a workflow: run the block as span `name`, a child of `parent` (else of the current context).

    `key` names the step uniquely within the trace (`turn/3`, `approval/{id}`): the span's id
    is derived from it, so every replay parents the block's activities on the same span.
    """
    root = _interceptor()
    if root is None:
        yield
        return
    base = root.text_map_propagator.extract(parent) if parent else opentelemetry.context.get_current()
    parent_span = opentelemetry.trace.get_current_span(base).get_span_context()
    if not parent_span.is_valid:
        yield
        return
    parent_carrier = _carrier(root, base)
    span_id = _span_id(parent_span.trace_id, key)
    own = SpanContext(
        parent_span.trace_id, span_id, is_remote=True, trace_flags=TraceFlags(TraceFlags.SAMPLED)
    )
    context = root._set_on_context(opentelemetry.trace.set_span_in_context(NonRecordingSpan(own), base))
    started = temporalio.workflow.time_ns()
    error: str | None = None
    try:
        with attached_context(context):
            yield
    except GeneratorExit:
        # The workflow was evicted from this worker's cache mid-step: whoever replays it ends the span.
        raise
    except Exception as err:
        error = f"{type(err).__name__}: {err}"
        _end(parent_carrier, span_id, name, attributes, started, error)
        raise
    except BaseException:  # cancelled (an interrupted turn): ended, not failed
        _end(parent_carrier, span_id, name, attributes, started, None)
        raise
    else:
        _end(parent_carrier, span_id, name, attributes, started, None)


def _end(
    parent: Carrier,
    span_id: int,
    name: str,
    attributes: Attributes,
    started: int,
    error: str | None,
) -> None:
    _write(_WorkflowSpan(parent, span_id, name, attributes, started, temporalio.workflow.time_ns(), error))


def _write(span: _WorkflowSpan) -> None:
    """Have the worker write `span`, unless this is a replay (the span was written the first time)."""
    if temporalio.workflow.unsafe.is_replaying():
        return
    emit = cast(Any, temporalio.workflow.extern_functions()[_EMIT])
    emit(span)
