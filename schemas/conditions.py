"""Approval conditions: a small, safe expression language over a tool call's arguments.

An agent may gate a tool only when its arguments meet a condition, for example
`priority in ["high", "urgent"]`, `amount > 100 and currency == "EUR"` or
`date within 24h`. Expressions are parsed by the recursive-descent parser below into
a tree that `evaluate` walks; nothing is ever handed to `eval`, and the only names an
expression can reach are the call's argument fields.

Grammar (keywords are lowercase)::

    expr     := or
    or       := and ("or" and)*
    and      := not ("and" not)*
    not      := "not" not | compare
    compare  := operand [("==" | "!=" | "<" | "<=" | ">" | ">=") operand
                         | ["not"] "in" operand
                         | "within" DURATION]
    operand  := NUMBER | STRING | "true" | "false" | "null" | FIELD ("." FIELD)*
              | "[" [operand ("," operand)*] "]" | "(" expr ")"
    DURATION := NUMBER ("s" | "m" | "h" | "d")

`a within 24h` holds when `a` is a date or time at most that far from now, either way.
A comparison whose sides cannot be compared (a missing field, text against a number)
is false rather than an error, so a gate with a condition errs on the side of asking.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

MAX_LENGTH = 500

_TOKEN = re.compile(
    r"""\s*(?:
        (?P<duration>\d+(?:\.\d+)?[smhd])\b
      | (?P<number>-?\d+(?:\.\d+)?)
      | (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
      | (?P<op>==|!=|<=|>=|<|>|\(|\)|\[|\]|,|\.)
      | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
    )""",
    re.VERBOSE,
)
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_KEYWORDS = {"and", "or", "not", "in", "within", "true", "false", "null"}


class ConditionError(ValueError):
    """The expression is not valid; the message says where and why."""


@dataclass(frozen=True)
class Token:
    kind: str
    text: str
    at: int


def _tokens(source: str) -> list[Token]:
    tokens: list[Token] = []
    pos = 0
    while pos < len(source):
        if source[pos:].strip() == "":
            break
        match = _TOKEN.match(source, pos)
        if match is None or match.lastgroup is None:
            raise ConditionError(f"unexpected character {source[pos:].lstrip()[:1]!r} at {pos}")
        kind = match.lastgroup
        text = match.group(kind)
        tokens.append(Token(kind, text, match.start(kind)))
        pos = match.end()
    return tokens


# A parsed expression is a tree of tuples: ("field", path), ("const", value),
# ("list", items), ("not", expr), ("and"|"or", left, right), ("cmp", op, left, right),
# ("within", operand, seconds).
Node = tuple[Any, ...]


class _Parser:
    def __init__(self, source: str) -> None:
        self.tokens = _tokens(source)
        self.pos = 0

    def peek(self) -> Token | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def take(self) -> Token:
        token = self.peek()
        if token is None:
            raise ConditionError("the expression ends too early")
        self.pos += 1
        return token

    def accept(self, text: str) -> bool:
        token = self.peek()
        if token is not None and token.text == text and token.kind in ("op", "name"):
            self.pos += 1
            return True
        return False

    def expect(self, text: str) -> None:
        token = self.peek()
        if not self.accept(text):
            where = f"{token.text!r} at {token.at}" if token else "the end"
            raise ConditionError(f"expected {text!r}, found {where}")

    def parse(self) -> Node:
        node = self.or_()
        token = self.peek()
        if token is not None:
            raise ConditionError(f"unexpected {token.text!r} at {token.at}")
        return node

    def or_(self) -> Node:
        node = self.and_()
        while self.accept("or"):
            node = ("or", node, self.and_())
        return node

    def and_(self) -> Node:
        node = self.not_()
        while self.accept("and"):
            node = ("and", node, self.not_())
        return node

    def not_(self) -> Node:
        if self.accept("not"):
            return ("not", self.not_())
        return self.compare()

    def compare(self) -> Node:
        left = self.operand()
        token = self.peek()
        if token is None:
            return left
        if token.kind == "op" and token.text in ("==", "!=", "<", "<=", ">", ">="):
            self.pos += 1
            return ("cmp", token.text, left, self.operand())
        if self.accept("in"):
            return ("cmp", "in", left, self.operand())
        if token.text == "not" and self._next_is("in"):
            self.pos += 2
            return ("not", ("cmp", "in", left, self.operand()))
        if self.accept("within"):
            duration = self.take()
            if duration.kind != "duration":
                raise ConditionError(f"expected a duration like 24h after 'within', found {duration.text!r}")
            return ("within", left, float(duration.text[:-1]) * _UNITS[duration.text[-1]])
        return left

    def _next_is(self, text: str) -> bool:
        following = self.tokens[self.pos + 1] if self.pos + 1 < len(self.tokens) else None
        return following is not None and following.text == text

    def operand(self) -> Node:
        token = self.take()
        if token.kind == "number":
            return ("const", float(token.text) if "." in token.text else int(token.text))
        if token.kind == "string":
            return ("const", _unquote(token.text))
        if token.kind == "duration":
            raise ConditionError(f"a duration ({token.text}) may only follow 'within'")
        if token.text == "(":
            node = self.or_()
            self.expect(")")
            return node
        if token.text == "[":
            items: list[Node] = []
            if not self.accept("]"):
                items.append(self.operand())
                while self.accept(","):
                    items.append(self.operand())
                self.expect("]")
            return ("list", items)
        if token.kind == "name":
            constants = {"true": True, "false": False, "null": None}
            if token.text in constants:
                return ("const", constants[token.text])
            if token.text in _KEYWORDS:
                raise ConditionError(f"unexpected keyword {token.text!r} at {token.at}")
            path = [token.text]
            while self.accept("."):
                part = self.take()
                if part.kind != "name" or part.text in _KEYWORDS:
                    raise ConditionError(f"expected a field name after '.', found {part.text!r}")
                path.append(part.text)
            return ("field", tuple(path))
        raise ConditionError(f"unexpected {token.text!r} at {token.at}")


def _unquote(text: str) -> str:
    return re.sub(r"\\(.)", r"\1", text[1:-1])


@dataclass(frozen=True)
class Condition:
    """A parsed condition: the source it came from and the fields it reads."""

    source: str
    tree: Node

    @property
    def fields(self) -> set[str]:
        """The top-level argument names the condition reads."""
        found: set[str] = set()

        def walk(node: Node) -> None:
            if node[0] == "field":
                found.add(node[1][0])
            for part in node[1:]:
                if isinstance(part, tuple) and part and isinstance(part[0], str):
                    walk(part)
                elif isinstance(part, list):
                    for item in part:
                        walk(item)

        walk(self.tree)
        return found

    def holds(self, arguments: Mapping[str, Any], now: dt.datetime) -> bool:
        """Whether the condition is true of these arguments at `now` (timezone-aware)."""
        return bool(_evaluate(self.tree, arguments, now))


def parse(source: str) -> Condition:
    """Parse a condition, or raise ConditionError saying what is wrong."""
    if len(source) > MAX_LENGTH:
        raise ConditionError(f"a condition may be at most {MAX_LENGTH} characters")
    if not source.strip():
        raise ConditionError("the condition is empty")
    return Condition(source, _Parser(source).parse())


_MISSING = object()


def _evaluate(node: Node, args: Mapping[str, Any], now: dt.datetime) -> Any:
    kind = node[0]
    if kind == "const":
        return node[1]
    if kind == "field":
        value: Any = args
        for part in node[1]:
            if not isinstance(value, Mapping) or part not in value:
                return _MISSING
            value = value[part]
        return value
    if kind == "list":
        return [_evaluate(item, args, now) for item in node[1]]
    if kind == "not":
        return not _truthy(_evaluate(node[1], args, now))
    if kind == "and":
        return _truthy(_evaluate(node[1], args, now)) and _truthy(_evaluate(node[2], args, now))
    if kind == "or":
        return _truthy(_evaluate(node[1], args, now)) or _truthy(_evaluate(node[2], args, now))
    if kind == "cmp":
        return _compare(node[1], _evaluate(node[2], args, now), _evaluate(node[3], args, now))
    if kind == "within":
        when = _as_time(_evaluate(node[1], args, now))
        return when is not None and abs((when - now).total_seconds()) <= node[2]
    raise ConditionError(f"unknown node {kind!r}")  # pragma: no cover - the parser makes no others


def _truthy(value: Any) -> bool:
    return value is not _MISSING and bool(value)


_COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    "==": lambda a, b: bool(a == b),
    "!=": lambda a, b: bool(a != b),
    "<": lambda a, b: bool(a < b),
    "<=": lambda a, b: bool(a <= b),
    ">": lambda a, b: bool(a > b),
    ">=": lambda a, b: bool(a >= b),
}


def _compare(op: str, left: Any, right: Any) -> bool:
    if left is _MISSING or right is _MISSING:
        return False
    if op == "in":
        return isinstance(right, list | str | Mapping) and _safe(lambda: left in right)
    if isinstance(left, bool) != isinstance(right, bool) and op not in ("==", "!="):
        return False
    return _safe(lambda: _COMPARE[op](left, right))


def _safe(check: Callable[[], bool]) -> bool:
    try:
        return check()
    except TypeError:  # text against a number, say: not comparable, so not true
        return False


def _as_time(value: Any) -> dt.datetime | None:
    if isinstance(value, dt.datetime):
        return value if value.tzinfo else value.replace(tzinfo=dt.UTC)
    if isinstance(value, dt.date):
        return dt.datetime.combine(value, dt.time(), dt.UTC)
    if isinstance(value, str):
        try:
            parsed = dt.datetime.fromisoformat(value)
        except ValueError:
            return None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)
    return None
