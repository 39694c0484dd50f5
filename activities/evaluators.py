"""Evaluators: judge one case's observed answer against an `EvaluatorSpec`.

`evaluate` makes every check that needs nothing but the observation (it is pure: eval-run
activities and the replay comparison call it alike). `llm_judge` needs a model: `judge`
asks one, and `EvaluatorActivities.judge` is the activity an eval run calls, with
Temporal's retries; what is still failing after them is recorded as `error`, never `fail`
(the judge's failure says nothing about the agent).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, cast

import openai
from jsonschema import Draft202012Validator
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.heartbeat import heartbeating
from activities.infra.llm_clients import api_key, client_for, redacted
from activities.infra.secrets import SecretBox, SecretsUnavailable
from schemas.errors import ErrorType
from schemas.evals import (
    BoundsSpec,
    ContainsSpec,
    EvaluatorResult,
    EvaluatorSpec,
    ExactSpec,
    JsonSchemaSpec,
    LlmJudgeSpec,
    RegexSpec,
    ToolsSpec,
)
from schemas.payloads.evals import JudgeRequest
from schemas.settings import Settings
from schemas.tables import LlmProvider


@dataclass(frozen=True)
class ObservedCall:
    """A tool call the agent made: its name and its arguments (parsed; raw text if not JSON)."""

    name: str
    arguments: dict[str, Any] | str


@dataclass(frozen=True)
class Observation:
    """What a case's run showed: the last reply, every tool call in order, and its costs."""

    reply: str
    tool_calls: tuple[ObservedCall, ...] = ()
    latency_ms: int | None = None
    tokens: int | None = None
    tool_rounds: int = 0


def _result(spec: EvaluatorSpec, passed: bool, reason: str, score: float | None = None) -> EvaluatorResult:
    return EvaluatorResult(
        kind=spec.kind, name=spec.label, verdict="pass" if passed else "fail", score=score, reason=reason
    )


def _error(spec: EvaluatorSpec, reason: str) -> EvaluatorResult:
    return EvaluatorResult(kind=spec.kind, name=spec.label, verdict="error", reason=reason)


def _quote(text: str, limit: int = 80) -> str:
    return json.dumps(text if len(text) <= limit else text[:limit] + "…")


def evaluate(spec: EvaluatorSpec, obs: Observation) -> EvaluatorResult:
    """The verdict of `spec` on `obs`, for every kind but `llm_judge` (see `judge`).

    Raises:
        ValueError: for an `llm_judge` spec, which needs a model.
    """
    if isinstance(spec, ExactSpec):
        return _exact(spec, obs)
    if isinstance(spec, ContainsSpec):
        return _contains(spec, obs)
    if isinstance(spec, RegexSpec):
        found = re.search(spec.pattern, obs.reply, re.IGNORECASE if spec.ignore_case else 0)
        if found:
            return _result(spec, True, f"matched {_quote(found.group(0))}")
        return _result(spec, False, f"no match of /{spec.pattern}/ in the reply {_quote(obs.reply)}")
    if isinstance(spec, JsonSchemaSpec):
        return _json_schema(spec, obs)
    if isinstance(spec, ToolsSpec):
        return _tools(spec, obs)
    if isinstance(spec, BoundsSpec):
        return _bounds(spec, obs)
    raise ValueError(f"evaluator kind {spec.kind!r} needs a model: use judge()")


def _exact(spec: ExactSpec, obs: Observation) -> EvaluatorResult:
    got, want = obs.reply, spec.value
    if spec.strip:
        got, want = got.strip(), want.strip()
    if not spec.case_sensitive:
        got, want = got.casefold(), want.casefold()
    if got == want:
        return _result(spec, True, "the reply is exactly the expected text")
    return _result(spec, False, f"expected {_quote(spec.value)}, got {_quote(obs.reply)}")


def _contains(spec: ContainsSpec, obs: Observation) -> EvaluatorResult:
    haystack, needle = obs.reply, spec.value
    if not spec.case_sensitive:
        haystack, needle = haystack.casefold(), needle.casefold()
    present = needle in haystack
    if spec.negate:
        if present:
            return _result(spec, False, f"the reply holds {_quote(spec.value)}, which it must not")
        return _result(spec, True, f"the reply does not hold {_quote(spec.value)}")
    if present:
        return _result(spec, True, f"the reply holds {_quote(spec.value)}")
    return _result(spec, False, f"the reply {_quote(obs.reply)} does not hold {_quote(spec.value)}")


def _json_schema(spec: JsonSchemaSpec, obs: Observation) -> EvaluatorResult:
    validator = Draft202012Validator(spec.schema_)
    if spec.target == "reply":
        try:
            document = json.loads(obs.reply)
        except json.JSONDecodeError as err:
            return _result(spec, False, f"the reply is not JSON: {err.msg} at position {err.pos}")
        problems = sorted(validator.iter_errors(document), key=lambda e: list(e.absolute_path))
        if problems:
            first = problems[0]
            where = "/".join(str(p) for p in first.absolute_path) or "(root)"
            return _result(spec, False, f"the reply does not match the schema at {where}: {first.message}")
        return _result(spec, True, "the reply matches the schema")
    calls = [c for c in obs.tool_calls if c.name == spec.tool]
    if not calls:
        return _result(spec, False, f"tool {spec.tool!r} was not called")
    for index, call in enumerate(calls):
        if isinstance(call.arguments, str):
            return _result(spec, False, f"call {index + 1} of {spec.tool!r} sent arguments that are not JSON")
        problems = list(validator.iter_errors(call.arguments))
        if problems:
            first = problems[0]
            where = "/".join(str(p) for p in first.absolute_path) or "(root)"
            return _result(
                spec, False, f"call {index + 1} of {spec.tool!r}: arguments at {where}: {first.message}"
            )
    return _result(spec, True, f"{len(calls)} call(s) of {spec.tool!r} match the schema")


def _subset(want: Any, got: Any) -> bool:
    """`want` is found in `got`: dicts key by key (recursively), anything else equal."""
    if isinstance(want, dict):
        return isinstance(got, dict) and all(k in got and _subset(v, got[k]) for k, v in want.items())
    return bool(want == got)


def _in_order(order: list[str], names: list[str]) -> bool:
    """`order` is a subsequence of `names`."""
    remaining = iter(names)
    return all(any(name == wanted for name in remaining) for wanted in order)


def _tools(spec: ToolsSpec, obs: Observation) -> EvaluatorResult:
    names = [c.name for c in obs.tool_calls]
    seen = ", ".join(names) if names else "no tool"
    problems: list[str] = []
    if spec.none and names:
        problems.append(f"expected no tool call, got {seen}")
    missing = [n for n in spec.called if n not in names]
    if missing:
        problems.append(f"not called: {', '.join(missing)}")
    unwanted = [n for n in spec.not_called if n in names]
    if unwanted:
        problems.append(f"called though it must not be: {', '.join(unwanted)}")
    if spec.order and not _in_order(spec.order, names):
        problems.append(f"expected the order {' → '.join(spec.order)}, got {seen}")
    for name, times in spec.count.items():
        if names.count(name) != times:
            problems.append(f"{name} called {names.count(name)} time(s), expected {times}")
    for expected in spec.args:
        calls = [c for c in obs.tool_calls if c.name == expected.tool]
        if not any(_subset(expected.arguments, c.arguments) for c in calls):
            sent = "; ".join(json.dumps(c.arguments, sort_keys=True) for c in calls) or "never called"
            problems.append(
                f"no call of {expected.tool} with {json.dumps(expected.arguments, sort_keys=True)} ({sent})"
            )
    if problems:
        return _result(spec, False, "; ".join(problems))
    return _result(spec, True, f"tool calls as expected ({seen})")


def _bounds(spec: BoundsSpec, obs: Observation) -> EvaluatorResult:
    problems: list[str] = []
    unknown: list[str] = []
    if spec.latency_ms is not None:
        if obs.latency_ms is None:
            unknown.append("latency")
        elif obs.latency_ms > spec.latency_ms:
            problems.append(f"latency {obs.latency_ms} ms > {spec.latency_ms} ms")
    if spec.tokens is not None:
        if obs.tokens is None:
            unknown.append("tokens")
        elif obs.tokens > spec.tokens:
            problems.append(f"tokens {obs.tokens} > {spec.tokens}")
    if spec.tool_rounds is not None and obs.tool_rounds > spec.tool_rounds:
        problems.append(f"tool rounds {obs.tool_rounds} > {spec.tool_rounds}")
    if problems:
        return _result(spec, False, "; ".join(problems))
    if unknown:
        return _error(spec, f"not measured: {', '.join(unknown)}")
    return _result(spec, True, "within bounds")


JUDGE_SYSTEM = (
    "You grade an AI assistant's answer against a rubric. Read the conversation, the tools "
    "the assistant called and its final reply, then answer with one JSON object and nothing "
    'else: {"score": <a number from 0 to 1>, "reason": "<one or two sentences>"}.'
)


def judge_messages(spec: LlmJudgeSpec, messages: list[str], obs: Observation) -> list[dict[str, str]]:
    """The chat a judge is asked: the rubric, the user's messages, the calls and the reply."""
    calls = "\n".join(f"- {c.name}({json.dumps(c.arguments, sort_keys=True)})" for c in obs.tool_calls)
    user = "\n".join(f"User: {m}" for m in messages)
    body = (
        f"Rubric:\n{spec.rubric}\n\nConversation:\n{user}\n\n"
        f"Tools called:\n{calls or '(none)'}\n\nFinal reply:\n{obs.reply}"
    )
    return [{"role": "system", "content": JUDGE_SYSTEM}, {"role": "user", "content": body}]


def verdict_of(spec: LlmJudgeSpec, answer: str) -> EvaluatorResult:
    """The judge's answer read as a verdict.

    Raises:
        ApplicationError: `judge_unreadable` (retryable) when the answer holds no score.
    """
    start, end = answer.find("{"), answer.rfind("}")
    try:
        parsed = json.loads(answer[start : end + 1]) if start >= 0 and end > start else None
    except json.JSONDecodeError:
        parsed = None
    score = parsed.get("score") if isinstance(parsed, dict) else None
    if not isinstance(score, int | float) or isinstance(score, bool) or not 0 <= score <= 1:
        raise ApplicationError(
            f"the judge's answer holds no score from 0 to 1: {_quote(answer, 200)}",
            type=ErrorType.JUDGE_UNREADABLE,
        )
    assert isinstance(parsed, dict)
    reason = str(parsed.get("reason") or "")[:2000]
    passed = float(score) >= spec.threshold
    return _result(spec, passed, reason or f"score {score} (threshold {spec.threshold})", float(score))


async def judge(
    client: openai.AsyncOpenAI, model: str, spec: LlmJudgeSpec, messages: list[str], obs: Observation
) -> EvaluatorResult:
    """Ask `model` through `client` to score `obs` by `spec`'s rubric.

    Raises:
        ApplicationError: `judge_failed` when the call fails (retryable unless the provider
            refused the request itself), `judge_unreadable` when the answer holds no score.
    """
    try:
        completion = await client.chat.completions.create(
            model=model,
            messages=cast(Any, judge_messages(spec, messages, obs)),  # plain role/content dicts
            temperature=0,
        )
    except openai.APIStatusError as err:
        fatal = 400 <= err.status_code < 500 and err.status_code not in (408, 409, 429)
        raise ApplicationError(
            f"the judge's provider answered {err.status_code}",
            type=ErrorType.JUDGE_FAILED,
            non_retryable=fatal,
        ) from None
    except Exception as err:  # a transport failure of any kind: try again
        raise ApplicationError(
            f"the judge could not be asked: {type(err).__name__}", type=ErrorType.JUDGE_FAILED
        ) from None
    answer = completion.choices[0].message.content if completion.choices else None
    return verdict_of(spec, answer or "")


def observation_of(obs: dict[str, Any]) -> Observation:
    """An `Observation` from its JSON form (as payloads and stored results carry it)."""
    return Observation(
        reply=str(obs.get("reply") or ""),
        tool_calls=tuple(
            ObservedCall(name=str(c.get("name", "")), arguments=c.get("arguments", {}))
            for c in obs.get("tool_calls") or []
        ),
        latency_ms=obs.get("latency_ms"),
        tokens=obs.get("tokens"),
        tool_rounds=int(obs.get("tool_rounds") or 0),
    )


class EvaluatorActivities:
    """The judge: an `llm_judge` evaluator asked of a team's provider (or the built-in one)."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], settings: Settings) -> None:
        self._sessions = sessions
        self._settings = settings

    async def _client(self, req: JudgeRequest) -> tuple[openai.AsyncOpenAI, str, str | None]:
        spec = req.spec
        if spec.provider is None:
            if not self._settings.llm_configured:
                raise ApplicationError(
                    "the judge names no provider and no built-in LLM is configured (OPENAI_*)",
                    type=ErrorType.LLM_NOT_CONFIGURED,
                    non_retryable=True,
                )
            env_key = self._settings.openai_api_key
            key = env_key.get_secret_value() if env_key else None
            client = openai.AsyncOpenAI(
                api_key=key or "unused",
                base_url=self._settings.openai_base_url,
                max_retries=0,
                timeout=self._settings.llm_timeout_seconds,
            )
            return client, spec.model or self._settings.default_model, key
        async with self._sessions() as session:
            provider = await session.get(LlmProvider, spec.provider)
        if provider is None or provider.deleted_at is not None or provider.team_id != req.team_id:
            raise ApplicationError(
                f"the judge's LLM provider {spec.provider} does not exist",
                type=ErrorType.PROVIDER_NOT_FOUND,
                non_retryable=True,
            )
        try:
            # A provider without a key (a local server) needs no secret key to be asked.
            key = api_key(provider, SecretBox.of(self._settings)) if provider.secret is not None else None
        except SecretsUnavailable as err:
            raise ApplicationError(
                f"the judge provider's key cannot be decrypted: {err}",
                type=ErrorType.SECRETS_UNAVAILABLE,
                non_retryable=True,
            ) from None
        model = spec.model or provider.default_model
        if not model:
            raise ApplicationError(
                f"the judge names no model and provider '{provider.name}' has no default",
                type=ErrorType.JUDGE_FAILED,
                non_retryable=True,
            )
        return client_for(provider, key, self._settings.llm_timeout_seconds), model, key

    @activity.defn(name="eval.judge")
    async def judge(self, req: JudgeRequest) -> EvaluatorResult:
        """Score one case by an `llm_judge` rubric (failures raise, for Temporal to retry)."""
        client, model, key = await self._client(req)
        try:
            async with heartbeating(every=5.0):
                return await judge(client, model, req.spec, req.messages, observation_of(req.observation))
        except ApplicationError as err:
            if key and key in err.message:
                raise ApplicationError(
                    redacted(err.message, key), type=err.type, non_retryable=err.non_retryable
                ) from None
            raise
        finally:
            if req.spec.provider is None:
                await client.close()
