"""The agent studio: `/agents` (every agent, its live version, pending changes, conversations per
version), `/agents/new` and `/agents/{slug}` (the draft's form, the live→draft diff, publish,
the version history with rollback, and a test panel that streams the draft's reply).

Pages read through `api.services.agent_pages` and the agent services; everything they change
goes through the JSON API (`/v1/agents/...`) from static/agents.js with the sign-in cookie and
the `X-Steward-Web: 1` header, as the other pages' buttons do. The form is declared here, once:
`FIELDS` and `APPROVAL_FIELDS` list its inputs (the template draws them, the script reads them by
their `data-path`), so a new agent field is one entry.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from annotated_types import Ge, Le, MaxLen
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel

from activities import catalogue
from api.deps import Principal, SessionDep
from api.errors import ApiError
from api.services import agent_pages, budgets, console, versions
from api.services.agents import find_agent, public_of
from api.web import templates
from api.web.session import WebUser
from schemas.api import AgentCreate
from schemas.enums import DoubleTexting, ExpiryAction, Role
from schemas.policy import ApprovalSettings, ToolPolicy
from schemas.tables import DEFINITION_FIELDS
from schemas.tools import TOOLS, Tool, argument_names

router = APIRouter(tags=["web"], include_in_schema=False)

Kind = Literal[
    "text", "textarea", "number", "integer", "select", "duration", "url", "provider", "json", "json_list"
]
"""How an input is drawn and read: `provider` is a select of the team's LLM providers (empty: the
built-in one), `json` a textarea holding a JSON object, `json_list` one holding a JSON array."""


@dataclass(frozen=True)
class FormField:
    """One input of the agent form; its bounds come from the API's own model, so they cannot drift."""

    path: str
    """Where the value goes in the request body: `model`, or `approvals.remind_after`."""
    label: str
    kind: Kind
    hint: str = ""
    options: tuple[tuple[str, str], ...] = ()
    """For a select: (value, what it says)."""
    required: bool = False
    rows: int = 3
    placeholder: str = ""

    @property
    def name(self) -> str:
        return self.path.rsplit(".", 1)[-1]

    @property
    def versioned(self) -> bool:
        """Whether a publish freezes it (else a save changes the agent at once)."""
        top = self.path.split(".", 1)[0]
        return (f"{top}_id" if top == "provider" else top) in DEFINITION_FIELDS

    def bounds(self) -> dict[str, Any]:
        """`maxlength`, `min`, `max` from the pydantic field behind it."""
        owner: type[BaseModel] = ApprovalSettings if self.path.startswith("approvals.") else AgentCreate
        found: dict[str, Any] = {}
        for rule in owner.model_fields[self.name].metadata:
            if isinstance(rule, MaxLen) and self.kind != "json_list":  # a list's length, not the text's
                found["maxlength"] = rule.max_length
            elif isinstance(rule, Ge):
                found["min"] = rule.ge
            elif isinstance(rule, Le) and self.kind in ("number", "integer"):
                found["max"] = rule.le
        return found


FIELDS: tuple[FormField, ...] = (
    FormField("name", "Name", "text", "What people call it.", required=True),
    FormField(
        "model", "Model", "text", "The model the LLM endpoint serves, e.g. gpt-4o-mini.", required=True
    ),
    FormField(
        "provider",
        "LLM provider",
        "provider",
        "Where the model is asked: the team's providers (/providers), or the built-in one.",
    ),
    FormField(
        "system_prompt",
        "System prompt",
        "textarea",
        "What the agent is and how it behaves: a template that may use {{ user.name }}, "
        '{{ channel.type }}, {{ now }}, its variables and {% include "a-template" %}.',
        rows=10,
        placeholder="You are the front desk of …",
    ),
    FormField("timezone", "Time zone", "text", "IANA name; {{ now }} is shown in it.", placeholder="UTC"),
    FormField(
        "variables",
        "Variables",
        "json",
        'Names the prompt may use, with their values: {"company": "ACME"}.',
        rows=2,
    ),
    FormField(
        "guardrails",
        "Guardrails",
        "json",
        'Checks on input, output and tool arguments: {"input": [{"kind": "pii", "action": "redact"}]}; '
        "empty for the team's defaults (see /guardrails).",
        rows=3,
    ),
    FormField("temperature", "Temperature", "number", "0 is the most predictable, 2 the most varied."),
    FormField("max_tool_rounds", "Max tool rounds", "integer", "Model calls per turn before it must answer."),
    FormField(
        "double_texting",
        "A message while a turn runs",
        "select",
        "How a conversation treats a message that arrives mid-turn.",
        options=(
            (DoubleTexting.ENQUEUE.value, "waits for the running turn (enqueue)"),
            (DoubleTexting.INTERRUPT.value, "interrupts the running turn"),
        ),
    ),
    FormField(
        "budgets",
        "Budgets",
        "json",
        'Token and cost limits: {"conversation": {"tokens": 50000}, "agent_day": {"cost_usd": 5}, '
        '"action": "ask"} (stop answers with stop_message; ask waits in the inbox for more).',
        rows=4,
    ),
    FormField(
        "client_tools",
        "Client tools",
        "json_list",
        "Tools the caller runs (tool.requested, then POST …/tool-outputs): "
        '[{"name": "lookup_order", "description": "…", "parameters": {"type": "object", …}}].',
        rows=4,
    ),
    FormField(
        "client_tool_timeout",
        "Client tool timeout",
        "number",
        "Seconds a turn waits for a client tool's output; then the model hears it timed out.",
    ),
)
"""The draft's own inputs, in the order the form shows them."""

APPROVAL_FIELDS: tuple[FormField, ...] = (
    FormField(
        "approvals.holding_message",
        "Holding message",
        "textarea",
        "Sent to the user while a call waits; empty to send nothing.",
    ),
    FormField(
        "approvals.remind_after", "Remind after", "duration", "Seconds or 90s, 30m, 4h, 2d.", required=True
    ),
    FormField("approvals.escalate_after", "Escalate after", "duration", required=True),
    FormField("approvals.expires_after", "Expires after", "duration", required=True),
    FormField(
        "approvals.expiry_action",
        "When it expires",
        "select",
        options=(
            (ExpiryAction.REJECT.value, "reject the call"),
            (ExpiryAction.APPROVE.value, "run it anyway"),
        ),
    ),
    FormField(
        "approvals.notify_url",
        "Notify URL",
        "url",
        "Webhook for new, reminded and decided items.",
        placeholder="https://…",
    ),
    FormField(
        "approvals.escalation_url",
        "Escalation URL",
        "url",
        "The notify URL if empty.",
        placeholder="https://…",
    ),
)


def duration(seconds: float) -> str:
    """`90s`, `30m`, `4h`, `2d`: a timer as the form shows it (the API takes the same spellings)."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


def value_at(values: dict[str, Any], path: str) -> Any:
    """`values["approvals"]["remind_after"]` for `approvals.remind_after`; None if absent."""
    found: Any = values
    for part in path.split("."):
        found = found.get(part) if isinstance(found, dict) else None
    return found


templates.env.filters["duration"] = duration
templates.env.filters["at"] = value_at


@dataclass(frozen=True)
class ToolChoice:
    """A registry tool as the form offers it, with the agent's policy for it."""

    name: str
    description: str
    side_effecting: bool
    gated_by_default: bool
    schema: dict[str, Any]
    arguments: list[str]
    chosen: bool
    mode: str
    """`""` (the tool's default), `auto` or `require_approval`."""
    when: str
    extra: dict[str, Any]
    """The policy's timer overrides, which the form keeps as they are."""


def tool_choices(
    tools: list[str], policies: dict[str, ToolPolicy], known: Mapping[str, Tool] = TOOLS
) -> list[ToolChoice]:
    """Every tool of the team's catalogue (`known`: built-in ones, then its sources') for the form."""
    choices = []
    for spec in known.values():
        policy = policies.get(spec.name)
        extra = policy.model_dump(mode="json", exclude_none=True, exclude={"mode", "when"}) if policy else {}
        choices.append(
            ToolChoice(
                name=spec.name,
                description=spec.description,
                side_effecting=spec.side_effecting,
                gated_by_default=spec.gated_by_default,
                schema=spec.parameters(),
                arguments=argument_names(spec),
                chosen=spec.name in tools,
                mode=policy.mode.value if policy else "",
                when=(policy.when or "") if policy else "",
                extra=extra,
            )
        )
    return choices


def _context(user: Principal, **values: Any) -> dict[str, Any]:
    return {
        "user": user,
        "can_edit": user.role == Role.ADMIN,
        "fields": FIELDS,
        "approval_fields": APPROVAL_FIELDS,
        "providers": (),
        "provider_ids": {},
        **values,
    }


def _forbidden(request: Request, user: Principal) -> Response:
    return templates.TemplateResponse(
        request,
        "console_forbidden.html",
        {"user": user, "needs": ", ".join(r.value for r in console.READERS)},
        status_code=403,
    )


@router.get("/agents")
async def agents_page(request: Request, user: WebUser, session: SessionDep) -> Response:
    """Every agent with its model, live version, pending draft changes and conversations per version."""
    if user.role not in console.READERS:
        return _forbidden(request, user)
    rows = await agent_pages.agent_rows(session, user.team_id)
    return templates.TemplateResponse(request, "agents.html", _context(user, rows=rows))


@router.get("/agents/new")
async def new_agent_page(request: Request, user: WebUser, session: SessionDep) -> Response:
    """The form for a new agent (admins); creating it publishes version 1."""
    if user.role not in console.READERS:
        return _forbidden(request, user)
    # The API's own defaults, so the new form starts where a bare `POST /v1/agents` would.
    defaults = AgentCreate(slug="new", name="-", model="-").model_dump(mode="json", exclude={"slug"})
    values = defaults | {"name": "", "model": ""}
    return templates.TemplateResponse(
        request,
        "agent_new.html",
        _context(
            user,
            values=values,
            tools=tool_choices([], {}, await catalogue.specs(session, user.team_id)),
            providers=await agent_pages.provider_names(session, user.team_id),
        ),
        status_code=200 if user.role == Role.ADMIN else 403,
    )


@router.get("/agents/{slug}")
async def agent_page(request: Request, slug: str, user: WebUser, session: SessionDep) -> Response:
    """One agent: the draft's form, what a publish would change, its versions, and a test panel."""
    if user.role not in console.READERS:
        return _forbidden(request, user)
    try:
        agent = await find_agent(session, user.team_id, slug)
    except ApiError as err:
        return templates.TemplateResponse(
            request, "agent.html", _context(user, agent=None, message=err.message), status_code=404
        )
    public = await public_of(session, agent)
    names = await agent_pages.providers_by_id(session, user.team_id)
    history = await versions.list_versions(session, user.team_id, slug)
    counts = await agent_pages.open_conversations(session, user.team_id, agent.id)
    return templates.TemplateResponse(
        request,
        "agent.html",
        _context(
            user,
            agent=public,
            values=public.model_dump(mode="json"),
            tools=tool_choices(
                public.tools, public.tool_policies, await catalogue.specs(session, user.team_id)
            ),
            versions=[v.model_dump(mode="json") for v in history],
            conversations={c.label: c.count for c in counts.get(agent.id, [])},
            providers=list(names.values()),
            provider_ids=names,
            usage=await budgets.agent_usage(session, user.team_id, agent.id),
        ),
    )


@router.get("/agents/{slug}/conversations")
async def agent_conversations(request: Request, slug: str, user: WebUser, session: SessionDep) -> Response:
    """`{"v3": 12, "latest": 4}`: the agent's open conversations per version, for the page's
    confirmations to say what a publish or rollback leaves where it is."""
    if user.role not in console.READERS:
        return _forbidden(request, user)
    agent = await find_agent(session, user.team_id, slug)  # 404 in the API's error shape
    counts = await agent_pages.open_conversations(session, user.team_id, agent.id)
    return JSONResponse({c.label: c.count for c in counts.get(agent.id, [])})
