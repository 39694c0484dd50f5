"""Logging set-up: JSON lines carrying team, conversation and turn where known."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any

_CONTEXT_FIELDS = ("team", "conversation", "turn")


def _temporal_context(record: logging.LogRecord) -> dict[str, Any]:
    info = getattr(record, "temporal_activity", None) or getattr(record, "temporal_workflow", None)
    if not isinstance(info, dict):
        return {}
    workflow_id = str(info.get("workflow_id", ""))
    parts = workflow_id.split("/")
    fields: dict[str, Any] = {"workflow_id": workflow_id}
    if len(parts) >= 2 and parts[0] == "conversation":
        fields["conversation"] = parts[1]
    if len(parts) == 4 and parts[2] == "turn":
        fields["turn"] = int(parts[3]) if parts[3].isdigit() else parts[3]
    if "activity_type" in info:
        fields["activity"] = info["activity_type"]
    return fields


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        entry.update(_temporal_context(record))
        for name in _CONTEXT_FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                entry[name] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure(level: str = "INFO", json_lines: bool = True) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        JsonFormatter()
        if json_lines
        else logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s")
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("httpx", "httpcore", "uvicorn.access", "alembic.runtime.migration"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
