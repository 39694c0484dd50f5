"""`/conversations/{id}/turns/{n}/trace`: one turn's trace as a waterfall, from the `spans` table.

Spans reach the table when tracing keeps them in the database (`STEWARD_TRACING=db`, the
`steward dev` default); with an OTLP collector the page says where they went instead. A
turn's traces are found by the spans that name it (`gen_ai.conversation.id`, `steward.turn`),
then drawn whole: the API request, Temporal's hops, the turn, each model call, tool call,
approval wait and delivery, as bars placed on one time axis (plain HTML and CSS).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import APIRouter, Path, Request
from fastapi.responses import Response
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from activities.infra import tracing
from api.deps import SessionDep
from api.services import console
from api.web import templates
from api.web.session import WebUser
from schemas.api import MAX_DB_INT
from schemas.tables import Conversation, Span

router = APIRouter(tags=["web"], include_in_schema=False)

MAX_SPANS = 2000
"""A trace larger than this is cut (a runaway tool loop); the page says so."""

templates.env.globals["traces_kept"] = tracing.in_database


@dataclass
class Bar:
    """One span as a row of the waterfall."""

    span: Span
    depth: int
    offset: float
    """Percent of the trace's duration before the span starts."""
    width: float
    """Percent of the trace's duration the span lasts."""
    kind: str
    """What it is, for its colour: api, temporal, agent, llm, tool, approval, delivery, other."""

    @property
    def millis(self) -> float:
        return (self.span.end_ns - self.span.start_ns) / 1e6

    @property
    def attributes(self) -> list[tuple[str, str]]:
        """Name and value of each attribute, lists written out (`tool_calls, stop`)."""
        return sorted(
            (k, ", ".join(map(str, v)) if isinstance(v, list) else str(v))
            for k, v in self.span.attributes.items()
        )


@dataclass
class Waterfall:
    trace_id: str
    bars: list[Bar] = field(default_factory=list)
    millis: float = 0.0
    cut: bool = False


def kind_of(name: str) -> str:
    for prefix, kind in (
        ("invoke_agent", "agent"),
        ("chat ", "llm"),
        ("execute_tool", "tool"),
        ("await_approval", "approval"),
        ("deliver ", "delivery"),
    ):
        if name.startswith(prefix):
            return kind
    if name.split(":", 1)[0] in (
        "StartWorkflow",
        "StartUpdateWithStartWorkflow",
        "HandleUpdate",
        "ValidateUpdate",
        "RunWorkflow",
        "StartActivity",
        "RunActivity",
        "StartChildWorkflow",
        "CompleteWorkflow",
        "SignalWorkflow",
        "HandleSignal",
    ):
        return "temporal"
    return "api" if name.split(" ", 1)[0] in ("GET", "POST", "PUT", "PATCH", "DELETE") else "other"


def waterfall(trace_id: str, spans: list[Span]) -> Waterfall:
    """The spans of one trace, each under its parent (depth first, in start order), on one time axis."""
    found = Waterfall(trace_id, cut=len(spans) > MAX_SPANS)
    spans = spans[:MAX_SPANS]
    if not spans:
        return found
    start = min(s.start_ns for s in spans)
    total = max(max(s.end_ns for s in spans) - start, 1)
    found.millis = total / 1e6
    ids = {s.span_id for s in spans}
    children: dict[str | None, list[Span]] = {}
    for span in spans:
        parent = span.parent_span_id if span.parent_span_id in ids else None
        children.setdefault(parent, []).append(span)
    for kids in children.values():
        kids.sort(key=lambda s: (s.start_ns, s.end_ns))

    def visit(span: Span, depth: int) -> None:
        offset = (span.start_ns - start) / total * 100
        width = (span.end_ns - span.start_ns) / total * 100
        found.bars.append(Bar(span, depth, round(offset, 3), round(width, 3), kind_of(span.name)))
        for child in children.get(span.span_id, []):
            visit(child, depth + 1)

    for root in children.get(None, []):
        visit(root, 0)
    return found


async def turn_traces(session: AsyncSession, conversation_id: str, turn: int) -> list[Waterfall]:
    """Every trace a turn's spans belong to (usually one), oldest first."""
    first_seen = (
        await session.execute(
            select(Span.trace_id, Span.start_ns)
            .where(Span.conversation_id == conversation_id, Span.turn == turn)
            .order_by(Span.start_ns)
        )
    ).all()
    trace_ids = list(dict.fromkeys(row.trace_id for row in first_seen))
    if not trace_ids:
        return []
    rows = (
        (
            await session.execute(
                select(Span).where(Span.trace_id.in_(trace_ids)).order_by(Span.start_ns).limit(MAX_SPANS + 1)
            )
        )
        .scalars()
        .all()
    )
    return [waterfall(t, [s for s in rows if s.trace_id == t]) for t in trace_ids]


@router.get("/conversations/{conversation_id}/turns/{turn}/trace")
async def trace_page(
    request: Request,
    conversation_id: Annotated[str, Path(max_length=64)],
    turn: Annotated[int, Path(ge=0, le=MAX_DB_INT)],
    user: WebUser,
    session: SessionDep,
) -> Response:
    """A turn's trace: where its time went, span by span."""
    context: dict[str, Any] = {"user": user, "conversation_id": conversation_id, "turn": turn}
    if user.role not in console.READERS:
        return templates.TemplateResponse(
            request,
            "console_forbidden.html",
            {"user": user, "needs": ", ".join(r.value for r in console.READERS)},
            status_code=403,
        )
    conversation = await session.get(Conversation, conversation_id)
    if conversation is None or conversation.team_id != user.team_id:
        context["missing"] = True
        return templates.TemplateResponse(request, "trace.html", context, status_code=404)
    context["traces"] = await turn_traces(session, conversation_id, turn)
    context["kept"] = tracing.in_database()
    return templates.TemplateResponse(request, "trace.html", context)
