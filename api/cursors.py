"""Keyset cursors for lists ordered by (created_at, id): opaque to callers, checked on the way in."""

from __future__ import annotations

import base64
import json
from datetime import datetime

from api.errors import ApiError


def encode_cursor(created_at: datetime, row_id: str) -> str:
    """The cursor that continues a list after this row."""
    raw = json.dumps([created_at.isoformat(), row_id])
    return base64.urlsafe_b64encode(raw.encode()).decode()


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    """The (created_at, id) a cursor continues after, or 422 naming the `cursor` field."""
    try:
        created, row_id = json.loads(base64.urlsafe_b64decode(cursor.encode()))
        when = datetime.fromisoformat(created)
        if when.tzinfo is None:
            raise ValueError("cursor time has no timezone")
        return when, str(row_id)
    except (ValueError, TypeError) as err:
        raise ApiError(
            422, "validation_error", "cursor is not valid", [{"field": "cursor", "message": "not a cursor"}]
        ) from err
