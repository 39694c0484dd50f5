"""LLM provider errors as activity failures: Temporal retries what a retry can change, and no more.

The openai client runs with its own retries off; 408, 409, 429 and 5xx answers and lost
connections are retried by Temporal (after the provider's `Retry-After` when it gives one),
other 4xx are final, and each carries an `ErrorType` a turn's error shows.
"""

from __future__ import annotations

import email.utils
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import openai
from temporalio.exceptions import ApplicationError

from schemas.errors import ErrorType

RETRYABLE_STATUS = {408, 409, 429}


def retry_after(response: Any) -> float | None:
    headers = getattr(response, "headers", None)
    if headers is None:
        return None
    if (ms := headers.get("retry-after-ms")) is not None:
        try:
            return float(ms) / 1000
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        parsed = email.utils.parsedate_to_datetime(value)
        return max(0.0, (parsed - datetime.now(UTC)).total_seconds())


def provider_failure(err: openai.OpenAIError) -> ApplicationError:
    """An activity failure Temporal retries (or not) as the provider's answer deserves."""
    if isinstance(err, openai.APIStatusError):
        status = err.status_code
        retryable = status in RETRYABLE_STATUS or status >= 500
        code = {
            401: ErrorType.LLM_AUTH_FAILED,
            403: ErrorType.LLM_FORBIDDEN,
            404: ErrorType.LLM_NOT_FOUND,
            429: ErrorType.LLM_RATE_LIMITED,
        }.get(status, ErrorType.LLM_UNAVAILABLE if retryable else ErrorType.LLM_REJECTED)
        delay = retry_after(err.response) if retryable else None
        return ApplicationError(
            f"LLM endpoint answered HTTP {status}: {err.message}",
            type=code,
            non_retryable=not retryable,
            next_retry_delay=timedelta(seconds=delay) if delay is not None else None,
        )
    if isinstance(err, openai.APIConnectionError):
        return ApplicationError(f"LLM endpoint unreachable: {err}", type=ErrorType.LLM_UNAVAILABLE)
    return ApplicationError(f"LLM call failed: {err}", type=ErrorType.LLM_ERROR, non_retryable=True)


def stream_dropped(err: httpx.TransportError) -> ApplicationError:
    return ApplicationError(f"LLM stream broke off: {err!r}", type=ErrorType.LLM_UNAVAILABLE)
