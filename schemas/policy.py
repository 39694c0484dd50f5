"""Approval policy: which tool calls wait for an operator, and on what timers.

Builders set it per agent (`approvals`) and per tool (`tool_policies`); a side-effecting
tool with no policy of its own waits for approval. Both are validated by these models
when an agent is saved, and read back through them when a call is gated.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Mapping
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

from schemas.conditions import ConditionError, parse
from schemas.enums import ExpiryAction, ToolMode
from schemas.payloads import ApprovalTimers, ToolCall
from schemas.tools import TOOLS, Tool, argument_names

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd])\s*$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
MAX_TIMER = 365 * 86400.0

DEFAULT_HOLDING_MESSAGE = (
    "Thanks! This needs a quick check by a member of our team. I'll get back to you as soon as they have "
    "looked at it."
)


def _seconds(value: Any) -> Any:
    """Accept `90`, `"90s"`, `"30m"`, `"4h"` or `"2d"`; other values go on to the float check."""
    if isinstance(value, str):
        match = _DURATION.match(value)
        if match is None:
            raise ValueError("use seconds or a duration like 90s, 30m, 4h or 2d")
        return float(match.group(1)) * _UNITS[match.group(2)]
    return value


Duration = Annotated[float, BeforeValidator(_seconds), Field(gt=0, le=MAX_TIMER)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ApprovalSettings(_Strict):
    """An agent's approval settings; every field has a sensible default."""

    holding_message: str = Field(DEFAULT_HOLDING_MESSAGE, max_length=2000)
    """Sent to the user while a call waits; empty to send nothing."""
    remind_after: Duration = 30 * 60
    escalate_after: Duration = 4 * 3600
    expires_after: Duration = 24 * 3600
    expiry_action: ExpiryAction = ExpiryAction.REJECT
    notify_url: str | None = Field(None, max_length=2000)
    """Webhook that hears of new, reminded and decided items (HMAC-signed)."""
    escalation_url: str | None = Field(None, max_length=2000)
    """Webhook for escalations; the notify_url if unset."""

    @field_validator("notify_url", "escalation_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^https?://[^\s/]+", value):
            raise ValueError("must be an http:// or https:// URL")
        return value


class ToolPolicy(_Strict):
    """How one tool's calls are gated; timers left unset come from the agent's settings."""

    mode: ToolMode = ToolMode.REQUIRE_APPROVAL
    when: str | None = Field(None, max_length=500)
    """Ask only when this condition on the arguments holds (schemas/conditions.py)."""
    remind_after: Duration | None = None
    escalate_after: Duration | None = None
    expires_after: Duration | None = None
    expiry_action: ExpiryAction | None = None

    @model_validator(mode="after")
    def _when_needs_gate(self) -> ToolPolicy:
        if self.when is not None and self.mode == ToolMode.AUTO:
            raise ValueError("'when' applies only to mode 'require_approval'")
        return self


def policy_errors(policies: dict[str, ToolPolicy], known: Mapping[str, Tool] = TOOLS) -> list[dict[str, str]]:
    """Problems with a set of tool policies, each naming its field (empty if none).

    `known`: the tools there are (the team's catalogue; the built-in ones by default).
    """
    errors: list[dict[str, str]] = []
    for name, policy in policies.items():
        spec = known.get(name)
        if spec is None:
            errors.append(
                {"field": f"tool_policies.{name}", "message": f"unknown tool; known: {', '.join(known)}"}
            )
            continue
        if policy.when is None:
            continue
        field = f"tool_policies.{name}.when"
        try:
            condition = parse(policy.when)
        except ConditionError as err:
            errors.append({"field": field, "message": str(err)})
            continue
        names = argument_names(spec)
        for unknown in sorted(condition.fields - set(names)):
            errors.append(
                {"field": field, "message": f"{name} has no argument {unknown!r}; it has: {', '.join(names)}"}
            )
    return errors


def gate(
    call: ToolCall,
    offered: list[str],
    policies: dict[str, Any],
    settings: dict[str, Any],
    now: dt.datetime,
    ops_chat: bool = False,
    known: Mapping[str, Tool] = TOOLS,
) -> ApprovalTimers | None:
    """The timers of the approval this call must wait for, or None if it runs at once.

    `ops_chat`: the agent has a channel with an ops chat, which hears of approvals too.
    Calls of tools the agent was not offered are never gated: the tool activity refuses
    them. Arguments that are not valid JSON are gated whenever the tool is, so a garbled
    call cannot slip past a condition. `known`: the tools there are (the team's catalogue).
    """
    spec = known.get(call.name)
    if spec is None or call.name not in offered:
        return None
    raw = policies.get(call.name)
    if raw is None:
        if not spec.gated_by_default:
            return None
        policy = ToolPolicy()
    else:
        policy = ToolPolicy.model_validate(raw)
    if policy.mode == ToolMode.AUTO:
        return None
    if policy.when is not None:
        try:
            arguments = json.loads(call.arguments or "{}")
        except json.JSONDecodeError:
            arguments = None
        if isinstance(arguments, dict) and not parse(policy.when).holds(arguments, now):
            return None
    base = ApprovalSettings.model_validate(settings)
    return ApprovalTimers(
        remind_after=policy.remind_after or base.remind_after,
        escalate_after=policy.escalate_after or base.escalate_after,
        expires_after=policy.expires_after or base.expires_after,
        expiry_action=policy.expiry_action or base.expiry_action,
        notify=base.notify_url is not None or ops_chat,
        notify_escalation=(base.escalation_url or base.notify_url) is not None or ops_chat,
    )
