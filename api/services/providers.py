"""Team LLM providers: add, list, change, check and delete the endpoints agents may name.

A provider's API key is sealed with `SecretBox` before it is stored and is opened only to
build a client (here for a check, in the LLM activity for a turn); the public view says
whether one is set and, for long keys, their last four characters. Every message a check
or a failure shows has the key masked out, in case a provider echoes what it was sent.
"""

from __future__ import annotations

import os
import ssl
import time
from collections import defaultdict
from typing import Any

import openai
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from activities.infra.llm_clients import api_key, client_for, redacted
from activities.infra.secrets import SecretBox, SecretsUnavailable
from api.errors import ApiError
from schemas.api import ProviderCheck, ProviderCreate, ProviderPublic, ProviderUpdate
from schemas.enums import CheckReason, ProviderKind
from schemas.settings import Settings
from schemas.tables import Agent, AgentVersion, Conversation, LlmProvider, utcnow

CHECK_TIMEOUT = 10.0
"""Seconds a check waits for the models list: a person is waiting for the answer."""
HINT_MIN_LENGTH = 16
"""Keys at least this long show their last four characters; shorter ones show nothing."""
MAX_MODELS = 1000
"""At most this many model ids are kept from a check (OpenRouter lists hundreds)."""


def _box(settings: Settings) -> SecretBox:
    try:
        return SecretBox.of(settings)
    except SecretsUnavailable as err:
        raise ApiError(503, "secrets_unavailable", str(err)) from err


def _invalid(field: str, message: str) -> ApiError:
    return ApiError(422, "validation_error", f"{field}: {message}", [{"field": field, "message": message}])


def _check_shape(kind: ProviderKind, base_url: str | None, api_version: str | None) -> None:
    """What each kind needs beyond the schema: a URL but for `openai`, an api_version for Azure only."""
    if kind != ProviderKind.OPENAI and base_url is None:
        raise _invalid("base_url", f"a {kind.value} provider needs its base URL")
    if kind == ProviderKind.AZURE_OPENAI and api_version is None:
        raise _invalid("api_version", "an azure_openai provider needs its api_version (such as 2024-10-21)")
    if kind != ProviderKind.AZURE_OPENAI and api_version is not None:
        raise _invalid("api_version", f"only azure_openai providers take an api_version, not {kind.value}")


def _seal_key(provider: LlmProvider, key: str | None, settings: Settings) -> None:
    provider.secret = _box(settings).seal({"api_key": key}) if key is not None else None
    provider.key_hint = key[-4:] if key is not None and len(key) >= HINT_MIN_LENGTH else None


def public(provider: LlmProvider, agents: list[str] | None = None) -> ProviderPublic:
    """The provider as the API shows it: whether a key is set, never the key."""
    return ProviderPublic(
        id=provider.id,
        name=provider.name,
        kind=ProviderKind(provider.kind),
        base_url=provider.base_url,
        api_version=provider.api_version,
        default_model=provider.default_model,
        has_key=provider.secret is not None,
        key_hint=provider.key_hint,
        last_check=ProviderCheck.model_validate(provider.last_check) if provider.last_check else None,
        agents=agents or [],
        created_at=provider.created_at,
        updated_at=provider.updated_at,
    )


async def agents_naming(session: AsyncSession, team_id: str, ids: list[str]) -> dict[str, list[str]]:
    """For each provider id, the slugs of the team's live agents whose draft names it."""
    rows = await session.execute(
        select(Agent.provider_id, Agent.slug)
        .where(Agent.team_id == team_id, Agent.deleted_at.is_(None), Agent.provider_id.in_(ids))
        .order_by(Agent.slug)
    )
    found: defaultdict[str, list[str]] = defaultdict(list)
    for provider_id, slug in rows.tuples():
        found[str(provider_id)].append(slug)
    return found


async def public_of(session: AsyncSession, provider: LlmProvider) -> ProviderPublic:
    return public(provider, (await agents_naming(session, provider.team_id, [provider.id])).get(provider.id))


async def find_provider(session: AsyncSession, team_id: str, provider_id: str) -> LlmProvider:
    """The team's live provider with this id, or 404."""
    provider = (
        await session.execute(
            select(LlmProvider).where(
                LlmProvider.id == provider_id,
                LlmProvider.team_id == team_id,
                LlmProvider.deleted_at.is_(None),
            )
        )
    ).scalar_one_or_none()
    if provider is None:
        raise ApiError(404, "provider_not_found", f"no provider '{provider_id}' in this team")
    return provider


async def named(session: AsyncSession, team_id: str, name: str, field: str = "provider") -> LlmProvider:
    """The team's live provider called `name`, for an agent that names it (422 on `field` if none)."""
    provider = (
        await session.execute(
            select(LlmProvider).where(
                LlmProvider.team_id == team_id, LlmProvider.name == name, LlmProvider.deleted_at.is_(None)
            )
        )
    ).scalar_one_or_none()
    if provider is None:
        raise _invalid(field, f"no provider '{name}' in this team (see GET /v1/providers)")
    return provider


async def name_of(session: AsyncSession, provider_id: str | None) -> str | None:
    """The name of the provider with this id (None for the built-in provider)."""
    if provider_id is None:
        return None
    provider = await session.get(LlmProvider, provider_id)
    return provider.name if provider is not None else None


async def _commit(session: AsyncSession, name: str) -> None:
    try:
        await session.commit()
    except IntegrityError as err:
        await session.rollback()
        raise ApiError(409, "provider_exists", f"a provider named '{name}' already exists") from err


async def create_provider(
    session: AsyncSession, settings: Settings, team_id: str, body: ProviderCreate
) -> LlmProvider:
    """Add a provider (its key stored encrypted). Names are unique within a team (409)."""
    _check_shape(body.kind, body.base_url, body.api_version)
    provider = LlmProvider(
        team_id=team_id,
        name=body.name,
        kind=body.kind,
        base_url=body.base_url,
        api_version=body.api_version,
        default_model=body.default_model,
    )
    _seal_key(provider, body.api_key, settings)
    session.add(provider)
    await _commit(session, body.name)
    return provider


async def list_providers(session: AsyncSession, team_id: str) -> list[ProviderPublic]:
    """The team's live providers by name, each with the agents that name it."""
    rows = await session.execute(
        select(LlmProvider)
        .where(LlmProvider.team_id == team_id, LlmProvider.deleted_at.is_(None))
        .order_by(LlmProvider.name)
    )
    providers = list(rows.scalars())
    agents = await agents_naming(session, team_id, [p.id for p in providers])
    return [public(p, agents.get(p.id)) for p in providers]


async def update_provider(
    session: AsyncSession, settings: Settings, team_id: str, provider_id: str, body: ProviderUpdate
) -> LlmProvider:
    """Change a provider; the next turn that uses it builds a client with the change."""
    provider = await find_provider(session, team_id, provider_id)
    given = body.model_fields_set
    if "name" in given and body.name is None:
        raise _invalid("name", "may not be null")
    if "kind" in given and body.kind is None:
        raise _invalid("kind", "may not be null")
    kind = body.kind or ProviderKind(provider.kind)
    base_url = body.base_url if "base_url" in given else provider.base_url
    api_version = body.api_version if "api_version" in given else provider.api_version
    _check_shape(kind, base_url, api_version)
    provider.name = body.name or provider.name
    provider.kind = kind
    provider.base_url = base_url
    provider.api_version = api_version
    if "api_key" in given:
        _seal_key(provider, body.api_key, settings)
    if "default_model" in given:
        provider.default_model = body.default_model
    provider.updated_at = utcnow()
    await _commit(session, provider.name)
    return provider


async def _in_use(session: AsyncSession, provider: LlmProvider) -> dict[str, Any] | None:
    """What still answers turns with this provider: live agents' drafts, and the versions that
    are live or that a conversation is pinned to (None: nothing)."""
    drafts = (await agents_naming(session, provider.team_id, [provider.id])).get(provider.id, [])
    live = select(Agent.live_version_id).where(
        Agent.team_id == provider.team_id, Agent.deleted_at.is_(None), Agent.live_version_id.is_not(None)
    )
    pinned = (
        select(Conversation.version_id)
        .where(Conversation.team_id == provider.team_id, Conversation.version_id.is_not(None))
        .distinct()
    )
    rows = await session.execute(
        select(Agent.slug, AgentVersion.n, AgentVersion.definition)
        .join(Agent, Agent.id == AgentVersion.agent_id)
        .where(
            AgentVersion.team_id == provider.team_id,
            Agent.deleted_at.is_(None),
            AgentVersion.id.in_(live) | AgentVersion.id.in_(pinned),
        )
        .order_by(Agent.slug, AgentVersion.n)
    )
    versions = [
        {"agent": slug, "version": n}
        for slug, n, definition in rows.tuples()
        if definition.get("provider_id") == provider.id
    ]
    if not drafts and not versions:
        return None
    return {"drafts": drafts, "versions": versions}


async def delete_provider(session: AsyncSession, team_id: str, provider_id: str) -> None:
    """Delete a provider nothing answers with (409 otherwise); its key is erased with it."""
    provider = await find_provider(session, team_id, provider_id)
    await session.execute(select(LlmProvider.id).where(LlmProvider.id == provider.id).with_for_update())
    used = await _in_use(session, provider)
    if used is not None:
        names = [f"{slug} (draft)" for slug in used["drafts"]]
        names += [f"{v['agent']} v{v['version']}" for v in used["versions"]]
        raise ApiError(
            409,
            "provider_in_use",
            f"provider '{provider.name}' is used by {', '.join(names)}: point them at another provider "
            "(and publish) first",
            used,
        )
    provider.deleted_at = provider.updated_at = utcnow()
    provider.secret = provider.key_hint = None
    await session.commit()


def _words(err: openai.APIStatusError) -> str:
    """What the provider said: its error's own message, without the SDK's `Error code: …` prefix."""
    body = err.body
    if isinstance(body, dict) and isinstance(body.get("message"), str):
        return str(body["message"])
    return err.message


def _ssl_failure(err: BaseException) -> ssl.SSLError | None:
    """The TLS error under a connection failure, if that is what it was."""
    seen: set[int] = set()
    cause: BaseException | None = err
    while cause is not None and id(cause) not in seen:
        if isinstance(cause, ssl.SSLError):
            return cause
        seen.add(id(cause))
        cause = cause.__cause__ or cause.__context__
    return None


def _root(err: BaseException) -> str:
    """The innermost cause in words (`Connection refused`, `Name or service not known`)."""
    while err.__cause__ is not None or err.__context__ is not None:
        err = err.__cause__ or err.__context__  # type: ignore[assignment]
    if isinstance(err, OSError) and err.errno is not None and err.errno > 0:
        return os.strerror(err.errno)
    if isinstance(err, OSError) and err.strerror:
        return err.strerror
    return str(err) or type(err).__name__


async def probe(provider: LlmProvider, key: str | None, timeout: float = CHECK_TIMEOUT) -> ProviderCheck:
    """Ask the provider for its models list; say what it serves, or precisely why it cannot."""
    where = provider.base_url or "api.openai.com"
    client = client_for(provider, key, timeout)
    started = time.perf_counter()

    def elapsed() -> int:
        return round((time.perf_counter() - started) * 1000)

    def failed(
        reason: CheckReason, message: str, status: int | None = None, timed: bool = False
    ) -> ProviderCheck:
        return ProviderCheck(
            ok=False,
            reason=reason,
            message=redacted(message, key),
            status=status,
            latency_ms=elapsed() if timed else None,
            checked_at=utcnow(),
        )

    try:
        page = await client.models.list()
        models = sorted({str(m.id) for m in page.data})[:MAX_MODELS]
    except openai.APIStatusError as err:
        status = err.status_code
        said = f"{where} answered HTTP {status}: {_words(err)}"
        if status in (401, 403):
            return failed(CheckReason.UNAUTHORIZED, f"the key was refused: {said}", status, timed=True)
        if status == 404:
            hint = f"no models list there (is the base URL right?): {said}"
            return failed(CheckReason.NOT_FOUND, hint, status, timed=True)
        return failed(CheckReason.BAD_RESPONSE, said, status, timed=True)
    except openai.APITimeoutError:
        return failed(CheckReason.TIMEOUT, f"{where} did not answer within {timeout:g} s")
    except openai.APIConnectionError as err:
        if (tls := _ssl_failure(err)) is not None:
            detail = getattr(tls, "verify_message", None) or tls.reason or str(tls)
            return failed(CheckReason.TLS, f"the TLS handshake with {where} failed: {detail}")
        return failed(CheckReason.UNREACHABLE, f"could not connect to {where}: {_root(err)}")
    except (openai.OpenAIError, ValueError, TypeError, AttributeError) as err:
        said = f"{where} did not answer with a models list: {err}"
        return failed(CheckReason.BAD_RESPONSE, said, timed=True)
    finally:
        await client.close()
    return ProviderCheck(ok=True, models=models, latency_ms=elapsed(), checked_at=utcnow())


async def check_provider(
    session: AsyncSession, settings: Settings, team_id: str, provider_id: str
) -> ProviderCheck:
    """Check a provider now and remember the result on it (its `updated_at` stays: nothing changed)."""
    provider = await find_provider(session, team_id, provider_id)
    try:
        key = api_key(provider, _box(settings)) if provider.secret is not None else None
    except SecretsUnavailable as err:
        raise ApiError(503, "secrets_unavailable", str(err)) from err
    await session.commit()  # nothing to write yet: no transaction stays open while the provider answers
    result = await probe(provider, key)
    provider.last_check = result.model_dump(mode="json")
    provider.checked_at = result.checked_at
    await session.commit()
    return result
