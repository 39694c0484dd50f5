"""Signed webhooks Steward sends (approval notices, schedule notices): one way to sign and post.

Each POST carries `X-Steward-Delivery`, the same for every retry of one notice (receivers
dedupe on it), when STEWARD_WEBHOOK_SECRET is set, `X-Steward-Signature`, and with tracing on
the W3C `traceparent` of the activity that sends it. 4xx answers
other than 408 and 429 are final (retrying would not change them); anything else is
raised for Temporal to retry.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from typing import Any

import httpx
from opentelemetry import propagate
from pydantic import SecretStr
from temporalio.exceptions import ApplicationError

from schemas.errors import ErrorType

SIGNATURE_HEADER = "X-Steward-Signature"
"""`t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">`, keyed by STEWARD_WEBHOOK_SECRET."""
DELIVERY_HEADER = "X-Steward-Delivery"
"""The notice's own id (`<approval id>/<event>`, `<schedule id>/<event>/<run id>`)."""


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The signature header value for a notification body."""
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


async def post_signed(
    http: httpx.AsyncClient, url: str, payload: dict[str, Any], delivery: str, secret: SecretStr | None
) -> None:
    """POST `payload` as JSON to `url`, signed; raises an `ApplicationError` unless it is taken."""
    body = json.dumps(payload, separators=(",", ":")).encode()
    headers = {"content-type": "application/json", DELIVERY_HEADER: delivery}
    propagate.inject(headers)  # `traceparent`, when this runs in a traced activity; nothing otherwise
    if secret is not None:
        headers[SIGNATURE_HEADER] = sign(secret.get_secret_value(), int(time.time()), body)
    try:
        response = await http.post(url, content=body, headers=headers)
    except httpx.HTTPError as err:
        raise ApplicationError(
            f"notification to {url} failed: {err}", type=ErrorType.NOTIFY_UNREACHABLE
        ) from err
    if response.status_code >= 300:
        final = 400 <= response.status_code < 500 and response.status_code not in (408, 429)
        raise ApplicationError(
            f"notification to {url} answered HTTP {response.status_code}",
            type=ErrorType.NOTIFY_REJECTED if final else ErrorType.NOTIFY_FAILED,
            non_retryable=final,
        )
