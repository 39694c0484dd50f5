"""Prompt templates at a turn: the templates an agent sees, and its system prompt rendered.

The API freezes what `prompt_fields` finds into each version; a draft turn finds it live. The
LLM activity renders the turn's definition with the conversation's values (`system_prompt`).
Where `user.name` comes from, first found: the conversation's metadata `user_name` (set by
whoever opens it), the OpenAI endpoint's `user`, the sender of the newest channel message
in its chat (`@ana` on Telegram, `U123` on Slack); else it is empty.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio.exceptions import ApplicationError

from schemas.enums import InboundKind
from schemas.errors import ErrorType
from schemas.prompts import PromptProblem, context, frozen, now_in, render, root_of
from schemas.tables import (
    DEFINITION_FIELDS,
    Agent,
    Channel,
    ChannelInbound,
    Conversation,
    PromptTemplate,
    utcnow,
)


async def templates_in_scope(
    session: AsyncSession, team_id: str, agent_id: str | None
) -> tuple[dict[str, str], str | None]:
    """Name → body of the templates an agent may include (its own over global ones of the same
    name), and the default template's name (its own default, else the global one). With no
    agent: the global templates only."""
    rows = (
        await session.execute(
            select(PromptTemplate).where(
                PromptTemplate.team_id == team_id,
                or_(PromptTemplate.agent_id.is_(None), PromptTemplate.agent_id == agent_id),
            )
        )
    ).scalars()
    ordered = sorted(rows, key=lambda t: t.agent_id is not None)  # global first: the agent's win
    sources = {t.name: t.body for t in ordered}
    defaults = [t.name for t in ordered if t.is_default]
    return sources, defaults[-1] if defaults else None


async def prompt_fields(session: AsyncSession, agent: Agent) -> dict[str, Any]:
    """The `PROMPT_FIELDS` the agent's draft would freeze now."""
    sources, default = await templates_in_scope(session, agent.team_id, agent.id)
    return frozen(agent.system_prompt, sources, default)


async def draft_definition(session: AsyncSession, agent: Agent) -> dict[str, Any]:
    """The agent's draft as a version freezes it: its columns and the templates its prompt reaches."""
    return {**{f: getattr(agent, f) for f in DEFINITION_FIELDS}, **await prompt_fields(session, agent)}


async def _user_name(session: AsyncSession, conversation: Conversation) -> str:
    metadata = conversation.metadata_ or {}
    for key in ("user_name", "openai_user"):
        if isinstance(metadata.get(key), str) and metadata[key]:
            return str(metadata[key])
    if conversation.channel_id is None:
        return ""
    sender = (
        await session.execute(
            select(ChannelInbound.user_key)
            .where(
                ChannelInbound.channel_id == conversation.channel_id,
                # The chat's key: a message is recorded with it before its turn starts (its
                # conversation id only once the turn has been accepted).
                ChannelInbound.chat_key == str(metadata.get("chat") or ""),
                ChannelInbound.kind == InboundKind.MESSAGE,
                ChannelInbound.user_key != "",
            )
            .order_by(ChannelInbound.id.desc())
            .limit(1)
        )
    ).scalar_one_or_none()
    return sender.split(":", 1)[-1] if sender else ""


async def _channel_type(session: AsyncSession, conversation: Conversation) -> str:
    if conversation.channel_id is None:
        return "api"
    found = await session.get(Channel, conversation.channel_id)
    return found.type if found is not None else "api"


async def system_prompt(
    session: AsyncSession,
    conversation: Conversation,
    *,
    prompt: str,
    templates: dict[str, str],
    default_template: str | None,
    timezone: str,
    variables: dict[str, Any],
) -> str:
    """The turn's system prompt, rendered; a template that fails with real values fails the turn
    (non-retryable `prompt_render_failed`, naming the template and line), not the conversation."""
    name, source = root_of(prompt, templates, default_template)
    if "{" not in source:
        return source
    try:
        # The sender's lookup is a query: only for prompts that may show it.
        named = any("user" in text for text in (source, *templates.values()))
        values = context(
            user_name=await _user_name(session, conversation) if named else "",
            conversation_id=conversation.id,
            metadata=conversation.metadata_ or {},
            channel_type=await _channel_type(session, conversation),
            now=now_in(timezone, utcnow()),
            variables=variables,
        )
        return render(name, source, templates, values)
    except (PromptProblem, LookupError, ValueError) as err:
        raise ApplicationError(
            f"the agent's prompt could not be rendered: {err}",
            type=ErrorType.PROMPT_RENDER_FAILED,
            non_retryable=True,
        ) from err
