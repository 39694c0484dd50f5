"""Running one rail's checks over a text: local checks at once, network checks with their fail mode.

`Checker.run` returns a `Verdict`: the text after redactions, every check that tripped (with
the spans it matched, never their values) and the strongest action among them. A network
check that errors counts as passed (`open`) or tripped (`closed`), and says so in its detail.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import re
import socket
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx
import openai
from jsonschema import validators
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from activities.guardrails import detectors
from activities.guardrails.detectors import Span
from activities.infra.llm_clients import api_key, client_for
from activities.infra.secrets import SecretBox
from activities.webhooks import SIGNATURE_HEADER, sign
from schemas.guardrails import (
    Check,
    ClassifierCheck,
    FailMode,
    HttpCheck,
    InjectionCheck,
    JsonSchemaCheck,
    MaxLengthCheck,
    ModerationCheck,
    PiiCheck,
    Rail,
    RailAction,
    RegexCheck,
    TermsCheck,
    fail_mode_of,
)
from schemas.settings import Settings
from schemas.tables import LlmProvider

_STRENGTH = [RailAction.FLAG, RailAction.REDACT, RailAction.RETRY, RailAction.ESCALATE, RailAction.BLOCK]
"""Weakest to strongest: when several checks trip, the strongest decides what happens."""


class CheckFailed(Exception):
    """A check could not give a verdict (timeout, provider error, a bad answer)."""


@dataclass
class Trip:
    """One check that tripped."""

    index: int
    """Its position on the rail (with the rail, it names the check)."""
    kind: str
    action: RailAction
    spans: list[Span] = field(default_factory=list)
    detail: str = ""
    """Never the matched text: a score, a category, `error (fail closed): ...`."""


@dataclass
class Verdict:
    rail: Rail
    text: str
    """The text after every `redact` trip."""
    trips: list[Trip] = field(default_factory=list)

    @property
    def action(self) -> RailAction | None:
        """The strongest action among the trips (None: passed untouched)."""
        if not self.trips:
            return None
        return max((t.action for t in self.trips), key=_STRENGTH.index)

    @property
    def stops(self) -> bool:
        """Whether the text must not go on as it is (block, escalate or retry)."""
        return self.action in (RailAction.BLOCK, RailAction.ESCALATE, RailAction.RETRY)

    def feedback(self) -> str:
        """What the model is told when it is asked again."""
        found = "; ".join(f"{t.kind}{': ' + t.detail if t.detail else ''}" for t in self.trips)
        return f"Your previous answer was not delivered because it failed these checks: {found}."


def local_spans(check: Check, text: str) -> list[Span] | None:
    """The spans a local check matched, or None for a check that needs the network."""
    if isinstance(check, PiiCheck):
        return detectors.pii(text, check.detectors)
    if isinstance(check, TermsCheck):
        return detectors.terms(text, check.terms)
    if isinstance(check, RegexCheck):
        return detectors.patterns(text, check.patterns)
    if isinstance(check, MaxLengthCheck):
        return detectors.too_long(text, check.max_chars)
    if isinstance(check, InjectionCheck):
        return detectors.injection(text, check.threshold)
    if isinstance(check, JsonSchemaCheck):
        return _schema_errors(check.json_schema, text)
    return None


def _schema_errors(schema: dict[str, Any], text: str) -> list[Span]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        return [Span("json", err.pos, len(text))]
    validator = validators.validator_for(schema)(schema)
    return [Span("schema", 0, len(text))] if any(True for _ in validator.iter_errors(value)) else []


def redact_pii(text: str, checks: list[Check]) -> tuple[str, list[Span]]:
    """`text` with what the rail's `pii` checks (any action) detect redacted, and the spans."""
    kinds = sorted({k for c in checks if isinstance(c, PiiCheck) for k in c.detectors})
    spans = detectors.pii(text, kinds) if kinds else []
    return detectors.redact(text, spans), spans


def _refuse_private(url: str) -> None:
    """Refuse a URL whose host resolves to a private, loopback, link-local or metadata address."""
    host = urlsplit(url).hostname or ""
    try:
        infos = socket.getaddrinfo(host, None)
    except socket.gaierror as err:
        raise CheckFailed(f"cannot resolve {host}: {err}") from None
    for info in infos:
        address = ipaddress.ip_address(info[4][0])
        if address.is_private or address.is_loopback or address.is_link_local or address.is_reserved:
            raise CheckFailed(f"{host} resolves to a private address ({address}); refused")


class Checker:
    """Runs checks; holds what the network checks need (settings, providers, one HTTP pool)."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], settings: Settings | None) -> None:
        self._sessions = sessions
        self._configured = settings
        self._http: httpx.AsyncClient | None = None

    @property
    def _settings(self) -> Settings:
        if self._configured is None:
            raise CheckFailed("network checks need the worker's settings")
        return self._configured

    def _pool(self) -> httpx.AsyncClient:
        if self._http is None:
            self._http = httpx.AsyncClient()
        return self._http

    async def run(self, rail: Rail, checks: list[Check], text: str, context: dict[str, Any]) -> Verdict:
        """Every check of a rail over `text`, in order; redactions apply to the checks after them."""
        verdict = Verdict(rail=rail, text=text)
        for index, check in enumerate(checks):
            spans = local_spans(check, verdict.text)
            detail = ""
            if spans is None:
                try:
                    tripped, detail = await self._remote(check, verdict.text, rail, context)
                except CheckFailed as err:
                    mode = fail_mode_of(check, rail)
                    tripped, detail = mode == FailMode.CLOSED, f"error (fail {mode.value}): {err}"[:300]
                spans = [Span(check.kind, 0, len(verdict.text))] if tripped else []
            if not spans:
                continue
            verdict.trips.append(Trip(index, check.kind, check.action, spans, detail))
            if check.action == RailAction.REDACT:
                verdict.text = detectors.redact(verdict.text, spans)
        return verdict

    async def _remote(self, check: Check, text: str, rail: Rail, context: dict[str, Any]) -> tuple[bool, str]:
        try:
            if isinstance(check, ClassifierCheck):
                return await self._classify(check, text, context["team_id"])
            if isinstance(check, ModerationCheck):
                return await self._moderate(check, text, context["team_id"])
            if isinstance(check, HttpCheck):
                return await self._http_check(check, text, rail, context)
        except (openai.OpenAIError, httpx.HTTPError, TimeoutError) as err:
            raise CheckFailed(f"{type(err).__name__}: {err}") from None
        raise CheckFailed(f"unknown check {check.kind!r}")

    async def _client(self, team_id: str, provider_name: str | None) -> tuple[openai.AsyncOpenAI, str]:
        """A client for the team's provider `provider_name` (None: the built-in one), and its model."""
        timeout = min(self._settings.llm_timeout_seconds, 30.0)
        if provider_name is None:
            if not self._settings.llm_configured:
                raise CheckFailed(
                    "no built-in LLM provider is configured (OPENAI_API_KEY or OPENAI_BASE_URL)"
                )
            key = self._settings.openai_api_key
            client = openai.AsyncOpenAI(
                api_key=key.get_secret_value() if key else "unused",
                base_url=self._settings.openai_base_url,
                max_retries=0,
                timeout=timeout,
            )
            return client, self._settings.default_model
        async with self._sessions() as session:
            provider = await session.scalar(
                select(LlmProvider).where(
                    LlmProvider.team_id == team_id,
                    LlmProvider.name == provider_name,
                    LlmProvider.deleted_at.is_(None),
                )
            )
        if provider is None:
            raise CheckFailed(f"no LLM provider named {provider_name!r}")
        client = client_for(provider, api_key(provider, SecretBox.of(self._settings)), timeout)
        return client, provider.default_model or self._settings.default_model

    async def _classify(self, check: ClassifierCheck, text: str, team_id: str) -> tuple[bool, str]:
        client, default_model = await self._client(team_id, check.provider)
        answer = await client.chat.completions.create(
            model=check.model or default_model,
            temperature=0,
            messages=[
                {
                    "role": "system",
                    "content": "You score text against a rubric. Answer only with JSON "
                    '{"score": <0..1, how well the text matches the rubric>}. Rubric: ' + check.rubric,
                },
                {"role": "user", "content": text},
            ],
        )
        content = answer.choices[0].message.content or "" if answer.choices else ""
        found = re.search(r"\d+(?:\.\d+)?", content)
        if found is None:
            raise CheckFailed("the classifier's answer holds no score")
        score = float(found.group())
        return score >= check.threshold, f"score {score:g} (threshold {check.threshold:g})"

    async def _moderate(self, check: ModerationCheck, text: str, team_id: str) -> tuple[bool, str]:
        client, _ = await self._client(team_id, check.provider)
        if check.model:
            result = await client.moderations.create(input=text, model=check.model)
        else:
            result = await client.moderations.create(input=text)
        if not result.results:
            raise CheckFailed("the moderation answer holds no result")
        first = result.results[0]
        flagged = [name for name, on in first.categories.model_dump().items() if on]
        return bool(first.flagged), ", ".join(flagged)

    async def _http_check(
        self, check: HttpCheck, text: str, rail: Rail, context: dict[str, Any]
    ) -> tuple[bool, str]:
        if not self._settings.guardrail_private_urls:
            await asyncio.to_thread(_refuse_private, check.url)
        body = json.dumps({"rail": rail.value, "text": text, **context}, separators=(",", ":")).encode()
        headers = {"content-type": "application/json"}
        if (secret := self._settings.webhook_secret) is not None:
            # Signed as Steward's webhooks are, so a receiver checks both alike.
            headers[SIGNATURE_HEADER] = sign(secret.get_secret_value(), int(time.time()), body)
        response = await self._pool().post(
            check.url, content=body, headers=headers, timeout=check.timeout_seconds
        )
        if response.status_code >= 300:
            raise CheckFailed(f"the check answered HTTP {response.status_code}")
        try:
            verdict = response.json()
        except ValueError:
            raise CheckFailed("the check's answer is not JSON") from None
        if not isinstance(verdict, dict) or verdict.get("verdict") not in ("pass", "trip"):
            raise CheckFailed('the check\'s answer has no "verdict": "pass" or "trip"')
        reason = verdict.get("reason")
        return verdict["verdict"] == "trip", str(reason)[:200] if reason else ""
