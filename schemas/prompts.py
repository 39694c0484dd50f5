"""Prompt templates: the sandboxed engine that checks them when saved and renders them at a turn.

An agent's system prompt is a Jinja template that may `{% include "name" %}` the team's named
templates. It is rendered by jinja2's `ImmutableSandboxedEnvironment` (no attribute starting
with `_`, no mutating methods, no `eval` or `format` on user data), with one context: `user`,
`conversation`, `channel`, `now` and the agent's declared variables. Saving checks a template
statically (syntax, names, includes, `_` attributes) and renders it once with sample values,
so a mistake is a 422 naming the template and the line; what only real values can break
fails the turn at run time (`PromptProblem`), never the conversation.

Pure: the API's checks and the LLM activity share it, and it touches no database.
"""

from __future__ import annotations

import contextvars
import functools
import re
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from jinja2 import (
    ChainableUndefined,
    Environment,
    FunctionLoader,
    StrictUndefined,
    TemplateNotFound,
    TemplateSyntaxError,
    Undefined,
    meta,
    nodes,
)
from jinja2.exceptions import SecurityError, UndefinedError
from jinja2.nodes import EvalContext
from jinja2.runtime import Context
from jinja2.sandbox import ImmutableSandboxedEnvironment

BUILTINS = frozenset({"user", "conversation", "channel", "now"})
"""Names every template may use; an agent's declared variables add to them."""

SYSTEM_PROMPT = "system prompt"
"""How problems name an agent's own system prompt (no template can be called so: names have no spaces)."""

TEMPLATE_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")
VARIABLE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")

MAX_OUTPUT = 100_000
"""Characters a rendered prompt may have."""
MAX_ITEMS = 10_000
"""Loop items `range()` may make in one render, and the longest string or list `*` may build."""
MAX_EXPONENT = 100


@dataclass(frozen=True)
class PromptProblem(Exception):
    """What is wrong with a template, where: the template's name (or `system prompt`) and line."""

    template: str
    line: int | None
    message: str

    def __str__(self) -> str:
        where = f" line {self.line}" if self.line else ""
        name = SYSTEM_PROMPT if self.template == SYSTEM_PROMPT else f"template '{self.template}'"
        return f"{name}{where}: {self.message}"


_budget: contextvars.ContextVar[list[int]] = contextvars.ContextVar("prompt_budget")


def _range(*args: int) -> range:
    """`range`, drawing on the render's item budget, so nested loops cannot spin for minutes."""
    made = range(*args)
    budget = _budget.get()
    budget[0] -= len(made)
    if budget[0] < 0:
        raise SecurityError(f"loops may make at most {MAX_ITEMS} items in one render")
    return made


_WIDE_FIELD = re.compile(r"\{[^{}]*:[^{}]*\d{6}[^{}]*\}|%[-#0 +]*\d{6}")
"""A `str.format` field or `%` conversion padded to a million characters or more."""


def _bounded(args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    """Refuse an argument that asks for more than a prompt may hold (`'x'.center(10**9)`)."""
    for value in (*args, *kwargs.values()):
        if isinstance(value, int) and abs(value) > MAX_OUTPUT:
            raise SecurityError(f"numbers above {MAX_OUTPUT} may not be passed to a function or filter")


def _guarded(name: str, filter_: Any) -> Any:
    """A filter that refuses arguments asking for a huge result (widths, counts, format strings)."""

    @functools.wraps(filter_)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        values = [a for a in args if not isinstance(a, EvalContext | Environment)]  # drop what Jinja passes
        _bounded(tuple(values[1:]), kwargs)  # the first is what the filter works on
        if name == "format" and values and isinstance(values[0], str) and _WIDE_FIELD.search(values[0]):
            raise SecurityError("format widths of a million characters or more are not allowed")
        text = values[:3] if name == "replace" and len(values) >= 3 else []
        if (
            text
            and all(isinstance(a, str) for a in text)
            and text[0].count(text[1]) * len(text[2]) > MAX_OUTPUT
        ):
            raise SecurityError(f"'replace' may build at most {MAX_OUTPUT} characters")
        return filter_(*args, **kwargs)

    return guarded


_GUARDED_FILTERS = ("center", "indent", "wordwrap", "format", "replace", "batch", "slice", "truncate")


class _Sandbox(ImmutableSandboxedEnvironment):
    """The sandbox, with unsafe access an error (not a silent blank), and whatever could build a
    huge string refused: `*`, `**`, `+` and `%` past bounds, huge numeric arguments, wide formats."""

    intercepted_binops = frozenset({"*", "**", "+", "%"})

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        for name in _GUARDED_FILTERS:
            self.filters[name] = _guarded(name, self.filters[name])

    def unsafe_undefined(self, obj: Any, attribute: str) -> Undefined:
        raise SecurityError(f"'{attribute}' of a {type(obj).__name__} is not allowed in a template")

    def call(__self, __context: Context, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        _bounded(args, kwargs)
        return super().call(__context, __obj, *args, **kwargs)

    def wrap_str_format(self, value: Any) -> Any:
        text = getattr(value, "__self__", None)
        if isinstance(text, str) and _WIDE_FIELD.search(text):
            raise SecurityError("format widths of a million characters or more are not allowed")
        return super().wrap_str_format(value)

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        if operator == "**" and isinstance(right, int | float) and abs(right) > MAX_EXPONENT:
            raise SecurityError(f"exponents above {MAX_EXPONENT} are not allowed")
        if operator == "*":
            for seq, times in ((left, right), (right, left)):
                if (
                    isinstance(seq, str | list | tuple)
                    and isinstance(times, int)
                    and len(seq) * times > MAX_ITEMS
                ):
                    raise SecurityError(f"'*' may build at most {MAX_ITEMS} items")
        joined = operator == "+" and all(isinstance(x, str | list | tuple) for x in (left, right))
        if joined and len(left) + len(right) > MAX_OUTPUT:
            raise SecurityError(f"'+' may build at most {MAX_OUTPUT} items")
        if operator == "%" and isinstance(left, str):
            if _WIDE_FIELD.search(left):
                raise SecurityError("format widths of a million characters or more are not allowed")
            _bounded(right if isinstance(right, tuple) else (right,), {})
        return super().call_binop(context, operator, left, right)


@functools.lru_cache(maxsize=64)
def _cached(sources: tuple[tuple[str, str], ...]) -> _Sandbox:
    """The turn's sandbox, one per set of sources, so a version's templates compile once per worker."""
    return _environment(sources, True)


def _environment(sources: tuple[tuple[str, str], ...], strict: bool) -> _Sandbox:
    """A sandbox that loads `sources` by name."""
    by_name = dict(sources)

    def load(name: str) -> tuple[str, str, Any] | None:
        if name not in by_name:
            return None
        return by_name[name], name, lambda: True

    env = _Sandbox(
        loader=FunctionLoader(load),
        undefined=StrictUndefined if strict else ChainableUndefined,
        keep_trailing_newline=True,
        autoescape=False,
        auto_reload=False,
    )
    env.globals = {"range": _range, "dict": dict}
    return env


_PARSER = _environment((), False)
"""Parses for the static checks (its globals are the names every template may call)."""


def _walk(node: nodes.Node) -> Iterator[nodes.Node]:
    yield node
    for child in node.iter_child_nodes():
        yield from _walk(child)


def _included(node: nodes.Node) -> list[tuple[str | None, int]]:
    """The templates a parsed template includes, imports or extends (None: not a literal name)."""
    found: list[tuple[str | None, int]] = []
    for n in _walk(node):
        if isinstance(n, nodes.Include | nodes.Extends | nodes.Import | nodes.FromImport):
            target = n.template
            found.append((target.value if isinstance(target, nodes.Const) else None, n.lineno))
    return found


def _unsafe(node: nodes.Node) -> tuple[str, int] | None:
    """The first `_`-prefixed attribute a template names (`x.__class__`, `x['_y']`, `|attr('_z')`)."""
    for n in _walk(node):
        name: Any = None
        if isinstance(n, nodes.Getattr):
            name = n.attr
        elif isinstance(n, nodes.Getitem) and isinstance(n.arg, nodes.Const):
            name = n.arg.value
        elif (
            isinstance(n, nodes.Filter) and n.name == "attr" and n.args and isinstance(n.args[0], nodes.Const)
        ):
            name = n.args[0].value
        if isinstance(name, str) and name.startswith("_"):
            return name, n.lineno
    return None


def check(name: str, source: str, allowed: Collection[str], known: Collection[str]) -> None:
    """Refuse (`PromptProblem`) a template that does not parse, names a variable not in
    `allowed`, includes a template not in `known` or by a computed name, or reaches for an
    attribute starting with `_`."""
    env = _PARSER
    try:
        tree = env.parse(source, name=name)
    except TemplateSyntaxError as err:
        raise PromptProblem(name, err.lineno, err.message or "syntax error") from err
    except Exception as err:  # the parser's own limits (nesting thousands deep)
        raise PromptProblem(name, None, f"could not be parsed: {type(err).__name__}") from err
    for n in _walk(tree):
        if isinstance(n, nodes.Macro | nodes.CallBlock):
            raise PromptProblem(name, n.lineno, "macros are not supported in prompt templates")
    unsafe = _unsafe(tree)
    if unsafe is not None:
        raise PromptProblem(
            name, unsafe[1], f"'{unsafe[0]}' is not allowed: names starting with '_' are off limits"
        )
    unknown = meta.find_undeclared_variables(tree) - set(allowed) - set(env.globals)
    if unknown:
        first = min(
            (n.lineno, n.name) for n in _walk(tree) if isinstance(n, nodes.Name) and n.name in unknown
        )
        known_names = ", ".join(sorted(allowed))
        raise PromptProblem(name, first[0], f"unknown variable '{first[1]}' (known: {known_names})")
    for target, line in _included(tree):
        if target is None:
            raise PromptProblem(name, line, "include a template by its name in quotes")
        if target not in known:
            raise PromptProblem(name, line, f"includes '{target}', which is not a template here")


def reachable(root: str, sources: Mapping[str, str], root_name: str = SYSTEM_PROMPT) -> dict[str, str]:
    """The templates `root` (a source, named `root_name`) reaches through includes; refuses a cycle."""
    found: dict[str, str] = {}

    def visit(name: str, source: str, path: tuple[str, ...]) -> None:
        try:
            tree = _PARSER.parse(source)
        except Exception:
            return  # `check` says where; a template that cannot parse reaches nothing
        for target, line in _included(tree):
            if target is None or target not in sources:
                continue
            if target in path:
                raise PromptProblem(name, line, f"includes itself through {' → '.join((*path, target))}")
            if target not in found:  # else explored already, and no path from it led back here
                found[target] = sources[target]
                visit(target, sources[target], (*path, target))

    visit(root_name, root, (root_name,))
    return found


def _where(err: BaseException, names: Collection[str]) -> tuple[str | None, int | None]:
    """The template and line a render failed at, from the frames Jinja gives its templates."""
    template: str | None = None
    line: int | None = None
    tb = err.__traceback__
    while tb is not None:
        filename = tb.tb_frame.f_code.co_filename
        if filename in names:
            template, line = filename, tb.tb_lineno
        tb = tb.tb_next
    return template, line


def render(
    root_name: str,
    root: str,
    templates: Mapping[str, str],
    context: Mapping[str, Any],
    *,
    strict: bool = True,
) -> str:
    """Render `root` (named `root_name` in problems) with `templates` to include, in the sandbox.

    `strict`: an undefined value is an error (a turn); otherwise it is blank (the trial
    render at save time, whose sample metadata cannot have the keys real conversations will).
    """
    if "{" not in root:
        return root  # nothing to render: the common case costs nothing
    sources = {**templates, root_name: root}
    ordered = tuple(sorted(sources.items()))
    env = _cached(ordered) if strict else _environment(ordered, False)  # trials vary: not cached
    token = _budget.set([MAX_ITEMS])
    try:
        text = _capped(env.get_template(root_name).generate(context), root_name)
    except PromptProblem:
        raise
    except TemplateSyntaxError as err:
        raise PromptProblem(err.name or root_name, err.lineno, err.message or "syntax error") from err
    except TemplateNotFound as err:
        template, line = _where(err, sources)
        raise PromptProblem(
            template or root_name, line, f"includes '{err.name}', which is not a template here"
        ) from err
    except UndefinedError as err:
        if not strict:
            return ""  # the trial's sample metadata lacks a key real conversations have: fine
        template, line = _where(err, sources)
        raise PromptProblem(template or root_name, line, err.message or "undefined value") from err
    except Exception as err:  # whatever a template raises is the template's problem, never ours
        template, line = _where(err, sources)
        reason = "includes itself" if isinstance(err, RecursionError) else str(err) or type(err).__name__
        raise PromptProblem(template or root_name, line, reason) from err
    finally:
        _budget.reset(token)
    return text


def _capped(pieces: Iterator[str], root_name: str) -> str:
    """The rendered text, stopped as soon as it passes `MAX_OUTPUT` (before it is all built)."""
    out: list[str] = []
    size = 0
    for piece in pieces:
        size += len(piece)
        if size > MAX_OUTPUT:
            raise PromptProblem(root_name, None, f"renders to more than {MAX_OUTPUT} characters")
        out.append(piece)
    return "".join(out)


def now_in(timezone: str, at: datetime) -> datetime:
    """`now` as templates see it: in the agent's time zone, to the second."""
    return at.astimezone(ZoneInfo(timezone)).replace(microsecond=0)


def context(
    *,
    user_name: str,
    conversation_id: str,
    metadata: Mapping[str, Any],
    channel_type: str,
    now: datetime,
    variables: Mapping[str, Any],
) -> dict[str, Any]:
    """What a template sees: the agent's variables, then the built-ins (which they cannot shadow)."""
    return {
        **variables,
        "user": {"name": user_name},
        "conversation": {"id": conversation_id, "metadata": dict(metadata)},
        "channel": {"type": channel_type},
        "now": now,
    }


def sample_context(timezone: str, variables: Mapping[str, Any], at: datetime) -> dict[str, Any]:
    """The values a template is tried with when it is saved."""
    return context(
        user_name="Sample User",
        conversation_id="sample",
        metadata={},
        channel_type="api",
        now=now_in(timezone, at),
        variables=variables,
    )


def frozen(system_prompt: str, sources: Mapping[str, str], default: str | None) -> dict[str, Any]:
    """What a version keeps of the templates: those its prompt reaches and, for an empty prompt,
    the default it renders instead (`PROMPT_FIELDS`). A cycle (refused when saved, but an edit
    in another scope can close one) keeps every template in scope; the render then says so."""
    use_default = not system_prompt.strip() and default is not None and default in sources
    root = sources[default] if use_default and default is not None else system_prompt
    try:
        templates = reachable(
            root, sources, default if use_default and default is not None else SYSTEM_PROMPT
        )
    except PromptProblem:
        templates = dict(sources)
    if use_default and default is not None:
        templates = {default: sources[default], **templates}
    return {
        "templates": dict(sorted(templates.items())),
        "default_template": default if use_default else None,
    }


def root_of(system_prompt: str, templates: Mapping[str, str], default: str | None) -> tuple[str, str]:
    """The name and source a turn renders: the system prompt, or the default template for an empty one."""
    if not system_prompt.strip() and default is not None and default in templates:
        return default, templates[default]
    return SYSTEM_PROMPT, system_prompt
