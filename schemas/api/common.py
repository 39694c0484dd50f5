"""What every HTTP body shares: the error shape, limits, and the strict base model."""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, ConfigDict

SLUG = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")


MAX_TEXT_BYTES = 16 * 1024


NO_NUL = r"^[^\u0000]*$"
"""Text a person writes: PostgreSQL's text columns cannot hold a NUL character."""


MAX_DB_INT = 2**31 - 1
"""The largest id, sequence number or cursor the API takes: the database's columns are 32-bit
`INTEGER`s, so anything above is refused with 422 before it reaches a query."""


class ErrorDetail(BaseModel):
    code: str
    message: str
    details: list[dict[str, Any]] | dict[str, Any] | None = None


class ErrorBody(BaseModel):
    """Every error the API returns has this shape."""

    error: ErrorDetail


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")
