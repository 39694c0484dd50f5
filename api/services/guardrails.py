"""Guardrails: the violations on record, each team's default rails, and redaction before storage.

The checks run in the turn's activities (`activities/guardrails/`); here the API lists what
they recorded, edits the team's defaults, and, for rails with `store: "redacted"`, redacts a
user's message before it enters a workflow payload (`redacted_for_storage`).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

from activities.guardrails.checks import redact_pii
from activities.versions import VERSIONS
from api.cursors import decode_cursor, encode_cursor
from api.services.agents import find_agent
from schemas.api.guardrails import GuardrailDefaultsPublic, SpanPublic, ViolationPage, ViolationPublic
from schemas.enums import Role
from schemas.guardrails import PII_KINDS, Guardrails, PiiCheck, StoreMode, parse_guardrails
from schemas.tables import (
    Agent,
    AgentVersion,
    Conversation,
    GuardrailDefaults,
    GuardrailViolation,
    utcnow,
)

READERS = (Role.ADMIN, Role.OPERATOR, Role.VIEWER)


async def list_violations(
    session: AsyncSession,
    team_id: str,
    *,
    agent: str | None = None,
    check: str | None = None,
    conversation_id: str | None = None,
    cursor: str | None = None,
    limit: int = 50,
) -> ViolationPage:
    """The team's violations, newest first, by agent slug and check kind; `cursor` continues a page."""
    stmt = (
        select(GuardrailViolation, Agent.slug, AgentVersion.n)
        .join(Agent, Agent.id == GuardrailViolation.agent_id)
        .outerjoin(AgentVersion, AgentVersion.id == GuardrailViolation.version_id)
        .where(GuardrailViolation.team_id == team_id)
    )
    if agent is not None:
        stmt = stmt.where(Agent.id == (await find_agent(session, team_id, agent)).id)
    if check is not None:
        stmt = stmt.where(GuardrailViolation.check == check)
    if conversation_id is not None:
        stmt = stmt.where(GuardrailViolation.conversation_id == conversation_id)
    if cursor is not None:
        when, row_id = decode_cursor(cursor)
        key = int(row_id) if row_id.isdigit() else 0
        stmt = stmt.where(tuple_(GuardrailViolation.created_at, GuardrailViolation.id) < (when, key))
    stmt = stmt.order_by(GuardrailViolation.created_at.desc(), GuardrailViolation.id.desc()).limit(limit + 1)
    rows = list((await session.execute(stmt)).all())
    items = [
        ViolationPublic(
            id=v.id,
            agent=slug,
            version=n,
            conversation_id=v.conversation_id,
            turn=v.turn,
            rail=v.rail,
            check=v.check,
            check_index=v.check_index,
            action=v.action,
            spans=[SpanPublic.model_validate(s) for s in v.spans or []],
            detail=v.detail,
            created_at=v.created_at,
        )
        for v, slug, n in rows[:limit]
    ]
    more = len(rows) > limit
    last = rows[limit - 1][0] if more else None
    return ViolationPage(
        items=items, next_cursor=encode_cursor(last.created_at, str(last.id)) if last else None
    )


async def defaults(session: AsyncSession, team_id: str) -> GuardrailDefaultsPublic:
    """The team's default rails (none set: empty rails)."""
    row = await session.get(GuardrailDefaults, team_id)
    if row is None:
        return GuardrailDefaultsPublic(guardrails=Guardrails())
    return GuardrailDefaultsPublic(
        guardrails=Guardrails.model_validate(row.guardrails),
        updated_by=row.updated_by,
        updated_at=row.updated_at,
    )


async def set_defaults(
    session: AsyncSession, team_id: str, rails: Guardrails, by: str
) -> GuardrailDefaultsPublic:
    """Replace the team's default rails (workers see them within seconds: `DEFAULTS_TTL`)."""
    row = await session.get(GuardrailDefaults, team_id)
    if row is None:
        row = GuardrailDefaults(team_id=team_id)
        session.add(row)
    row.guardrails = rails.model_dump(mode="json", by_alias=True)
    row.updated_by = by
    row.updated_at = utcnow()
    await session.commit()
    return await defaults(session, team_id)


UNREAD: Any = object()
"""`team_defaults` not read yet: `_rails_of` reads them if it needs them."""


async def _rails_of(
    session: AsyncSession, conversation: Conversation, agent: Agent, team_defaults: Any = UNREAD
) -> Guardrails | None:
    """The rails the conversation's next turn is likely to run on (its pinned or the live
    version; versions are immutable, so read from memory after the first time), else the
    team's defaults (`team_defaults` if the caller read them with the conversation)."""
    version_id = conversation.version_id if conversation.version_policy == "pinned" else agent.live_version_id
    if conversation.version_policy == "draft":
        frozen = agent.guardrails
    else:
        definition = await VERSIONS.definition(session, version_id) if version_id else None
        frozen = definition.get("guardrails") if definition is not None else agent.guardrails
    rails = parse_guardrails(frozen)
    if rails is None:
        if team_defaults is UNREAD:
            row = await session.get(GuardrailDefaults, conversation.team_id)
            team_defaults = row.guardrails if row is not None else None
        rails = parse_guardrails(team_defaults)
    return rails


async def redacted_for_storage(
    session: AsyncSession, conversation: Conversation, agent: Agent, text: str, team_defaults: Any = UNREAD
) -> str:
    """`text` as it may be stored: with `store: "redacted"`, the PII its input rail's `pii`
    checks detect (every built-in kind when it has none) is redacted before it enters a payload."""
    rails = await _rails_of(session, conversation, agent, team_defaults)
    if rails is None or rails.store != StoreMode.REDACTED:
        return text
    checks = [c for c in rails.input if isinstance(c, PiiCheck)] or [
        PiiCheck(kind="pii", detectors=list(PII_KINDS))
    ]
    return redact_pii(text, list(checks))[0]
