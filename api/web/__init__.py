"""Server-rendered web pages (sign-in, playground; the inbox and schedules build on them).

`templates` renders with the shared `base.html`; `STATIC_DIR` is served at `/static`.
"""

from __future__ import annotations

from pathlib import Path

from fastapi.templating import Jinja2Templates

HERE = Path(__file__).parent
STATIC_DIR = HERE / "static"
templates = Jinja2Templates(directory=HERE / "templates")

__all__ = ["STATIC_DIR", "templates"]
