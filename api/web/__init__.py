"""Server-rendered web pages (sign-in, playground; the inbox and schedules build on them).

`templates` renders with the shared `base.html` and the filters every page may use
(`age`, `ago`); `STATIC_DIR` is served at `/static`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from fastapi.templating import Jinja2Templates

HERE = Path(__file__).parent
STATIC_DIR = HERE / "static"


def age(when: datetime, now: datetime | None = None) -> str:
    """`just now`, `4 min`, `3 h 10 min`, `2 d 5 h`: how long an item has waited."""
    seconds = int(((now or datetime.now(UTC)) - when).total_seconds())
    if seconds < 60:
        return "just now"
    minutes, hours, days = seconds // 60, seconds // 3600, seconds // 86400
    if days:
        return f"{days} d {hours % 24} h"
    if hours:
        return f"{hours} h {minutes % 60} min"
    return f"{minutes} min"


def ago(when: datetime) -> str:
    """`just now`, `4 min ago`: `age` as a time in the past."""
    text = age(when)
    return text if text == "just now" else f"{text} ago"


templates = Jinja2Templates(directory=HERE / "templates")
templates.env.filters["age"] = age
templates.env.filters["ago"] = ago

__all__ = ["STATIC_DIR", "age", "ago", "templates"]
