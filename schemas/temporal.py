"""What the API's Temporal client and the worker must agree on: converter and workflow ids."""

from __future__ import annotations

from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.converter import DataConverter

from schemas.settings import Settings


def data_converter() -> DataConverter:
    """The single data converter used by every client and worker (pydantic models as JSON)."""
    return pydantic_data_converter


def conversation_workflow_id(conversation_id: str) -> str:
    return f"conversation/{conversation_id}"


async def connect(settings: Settings) -> Client:
    """A Temporal client with Steward's data converter."""
    return await Client.connect(
        settings.temporal_address,
        namespace=settings.temporal_namespace,
        data_converter=data_converter(),
    )


def temporal_schedule_id(schedule_id: str) -> str:
    """The Temporal Schedule of a schedule row."""
    return f"schedule/{schedule_id}"


def ambient_run_workflow_id(schedule_id: str) -> str:
    """The id its runs get, to which Temporal appends the scheduled time (`...-2026-01-31T08:00:00Z`)."""
    return f"schedule/{schedule_id}/run"
