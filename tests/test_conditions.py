"""Approval conditions: parsed by our own parser, never eval'd; bad input says what is wrong."""

from __future__ import annotations

import datetime as dt
import re

import pytest

from schemas.conditions import ConditionError, parse

NOW = dt.datetime(2026, 11, 22, 12, 0, tzinfo=dt.UTC)


@pytest.mark.parametrize(
    ("source", "args", "expected"),
    [
        ("amount > 100", {"amount": 150}, True),
        ("amount > 100", {"amount": 100}, False),
        ("amount >= 100 and currency == 'EUR'", {"amount": 100, "currency": "EUR"}, True),
        ("amount >= 100 and currency == 'EUR'", {"amount": 100, "currency": "USD"}, False),
        ('priority in ["high", "urgent"]', {"priority": "urgent"}, True),
        ('priority not in ["high", "urgent"]', {"priority": "urgent"}, False),
        ("not (priority == 'low') or amount < 0", {"priority": "low", "amount": 5}, False),
        ("customer.vip == true", {"customer": {"vip": True}}, True),
        ("date within 24h", {"date": "2026-11-23T09:00:00+00:00"}, True),
        ("date within 24h", {"date": "2026-11-25"}, False),
        ("date within 3d", {"date": "2026-11-24"}, True),
        # Missing fields and incomparable sides are false, never an error at run time.
        ("amount > 100", {}, False),
        ("amount > 100", {"amount": "lots"}, False),
        ("date within 1h", {"date": "not a date"}, False),
        ("note == null", {"note": None}, True),
    ],
)
def test_conditions_evaluate_against_arguments(source: str, args: dict[str, object], expected: bool) -> None:
    assert parse(source).holds(args, NOW) is expected


def test_condition_reports_the_fields_it_reads() -> None:
    assert parse("a > 1 and (b.c == 'x' or d within 2h)").fields == {"a", "b", "d"}


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("", "empty"),
        ("amount >", "ends too early"),
        ("amount > 100 100", "unexpected '100'"),
        ("__import__('os').system('x')", "unexpected '('"),
        ("amount ; 1", "unexpected character ';'"),
        ("date within tomorrow", "expected a duration"),
        ("(amount > 1", "expected ')'"),
        ("amount > 24h", "may only follow 'within'"),
        ("x" * 501, "at most 500"),
    ],
)
def test_invalid_conditions_say_what_is_wrong(source: str, message: str) -> None:
    with pytest.raises(ConditionError, match=re.escape(message)):
        parse(source)
