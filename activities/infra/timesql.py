"""Time arithmetic in SQL that reads the same on SQLite and PostgreSQL.

SQLite keeps timestamps as text and PostgreSQL as `timestamptz`, and neither spells
"seconds since the epoch" like the other. `epoch(column)` is that number on both, so
queries can subtract timestamps and bucket them with plain arithmetic.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Float, Integer
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import QueryableAttribute
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.functions import FunctionElement


class epoch(FunctionElement[float]):
    """Seconds since 1970-01-01 UTC of a timestamp column, as a float."""

    type = Float()
    inherit_cache = True
    name = "epoch"


@compiles(epoch, "postgresql")
def _epoch_pg(element: epoch, compiler: SQLCompiler, **kw: Any) -> str:
    return f"EXTRACT(EPOCH FROM {compiler.process(element.clauses, **kw)})"


@compiles(epoch, "sqlite")
def _epoch_sqlite(element: epoch, compiler: SQLCompiler, **kw: Any) -> str:
    return f"((julianday({compiler.process(element.clauses, **kw)}) - 2440587.5) * 86400.0)"


Timestamp = ColumnElement[Any] | QueryableAttribute[Any]


def seconds_between(start: Timestamp, end: Timestamp) -> ColumnElement[float]:
    """`end - start` in seconds."""
    return epoch(end) - epoch(start)


class floor_int(FunctionElement[int]):
    """The integer part of a non-negative number (SQLite's `floor` is an optional extension)."""

    type = Integer()
    inherit_cache = True
    name = "floor_int"


@compiles(floor_int, "postgresql")
def _floor_pg(element: floor_int, compiler: SQLCompiler, **kw: Any) -> str:
    return f"CAST(FLOOR({compiler.process(element.clauses, **kw)}) AS INTEGER)"


@compiles(floor_int, "sqlite")
def _floor_sqlite(element: floor_int, compiler: SQLCompiler, **kw: Any) -> str:
    return f"CAST({compiler.process(element.clauses, **kw)} AS INTEGER)"


def bucket_of(at: Timestamp, start: float, step: float) -> ColumnElement[int]:
    """Which `step`-second bucket after `start` (epoch seconds) a timestamp falls in (0, 1, ...)."""
    return floor_int((epoch(at) - start) / step)
