"""The metrics pages: `/metrics/agents`, every agent's figures over an hour, a day or a week.

`/metrics` itself stays the Prometheus scrape endpoint (its name is in every scrape config),
so the console's pages live under it. The page is a shell: static/metrics.js asks
`GET /v1/metrics/summary` (`api.services.metrics_summary`) and draws the charts with
uPlot, vendored in static/vendor (see docs/decisions.md), so nothing loads from another host.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from api.deps import SessionDep
from api.services.agents import list_agents
from api.services.incidents import READERS
from api.services.metrics_summary import WINDOWS, summary
from api.web import templates
from api.web.session import WebUser

router = APIRouter(tags=["web"], include_in_schema=False)


@router.get("/metrics/agents")
async def metrics_page(
    request: Request, user: WebUser, session: SessionDep, agent: str | None = None, window: str = "day"
) -> Response:
    """Charts of turns, latency, failures, handoffs, approvals, tools, tokens and deliveries.

    The totals are rendered here (they read without scripts); the charts are drawn from the
    same figures, fetched as JSON.
    """
    if user.role not in READERS:
        return templates.TemplateResponse(
            request,
            "metrics.html",
            {"user": user, "needs": ", ".join(r.value for r in READERS)},
            status_code=403,
        )
    agents = await list_agents(session, user.team_id)
    agent = agent if agent in {a.slug for a in agents} else None
    window = window if window in WINDOWS else "day"
    return templates.TemplateResponse(
        request,
        "metrics.html",
        {
            "user": user,
            "needs": None,
            "agents": agents,
            "agent": agent or "",
            "window": window,
            "windows": list(WINDOWS),
            "s": await summary(session, user.team_id, window, agent),
        },
    )
