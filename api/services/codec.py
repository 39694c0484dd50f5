"""The codec server: Temporal's Web UI and CLI send payloads here to read (or seal) them.

Payloads arrive in the codec-server JSON (`{"payloads": [{"metadata": {...}, "data": ...}]}`,
base64 throughout) and go back in it. Decoding opens what this deployment's keys sealed and
leaves anything else as it is; encoding seals with the first key, as the worker would.
"""

from __future__ import annotations

import base64
import binascii
from functools import lru_cache

from pydantic import SecretStr
from temporalio.api.common.v1 import Payload

from activities.infra.codec import AesGcmCodec, PayloadKeyError, parse_keys
from api.errors import ApiError
from schemas.api import CodecPayload, CodecPayloads
from schemas.settings import Settings


@lru_cache(maxsize=4)
def _codec(keys: str) -> AesGcmCodec:
    return AesGcmCodec(parse_keys(keys))


def codec(settings: Settings) -> AesGcmCodec:
    """The codec of this process's keys (built once per key set)."""
    keys: SecretStr | None = settings.payload_keys
    return _codec(keys.get_secret_value() if keys is not None else "")


def _bytes(text: str, field: str) -> bytes:
    """Base64, standard or URL-safe, padded or not (proto3 JSON accepts all four)."""
    unpadded = text.rstrip("=").replace("-", "+").replace("_", "/")
    try:
        return base64.b64decode(unpadded + "=" * (-len(unpadded) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise _invalid(field, "is not valid base64") from None


def _invalid(field: str, problem: str) -> ApiError:
    detail = {"field": field, "message": problem, "type": "value_error"}
    return ApiError(422, "validation_error", f"invalid request: {field} {problem}", [detail])


def _payload(body: CodecPayload, field: str) -> Payload:
    metadata = {key: _bytes(value, f"{field}.metadata.{key}") for key, value in body.metadata.items()}
    return Payload(metadata=metadata, data=_bytes(body.data, f"{field}.data"))


def _json(payload: Payload) -> CodecPayload:
    metadata = {key: base64.b64encode(value).decode() for key, value in payload.metadata.items()}
    return CodecPayload(metadata=metadata, data=base64.b64encode(payload.data).decode())


def encode(settings: Settings, body: CodecPayloads) -> CodecPayloads:
    """Seal each payload with the first key (unchanged when no key is configured)."""
    sealer = codec(settings)
    payloads = [_payload(p, f"payloads.{i}") for i, p in enumerate(body.payloads)]
    return CodecPayloads(payloads=[_json(sealer.seal(p)) for p in payloads])


def decode(settings: Settings, body: CodecPayloads) -> CodecPayloads:
    """Open each sealed payload; others come back as they are.

    Raises:
        ApiError: 422 naming the payload that is not base64, or was sealed with a key this
            deployment does not hold, or does not decrypt.
    """
    opener = codec(settings)
    opened: list[CodecPayload] = []
    for index, body_payload in enumerate(body.payloads):
        field = f"payloads.{index}"
        try:
            opened.append(_json(opener.open(_payload(body_payload, field))))
        except PayloadKeyError as err:
            raise _invalid(field, f"cannot be decoded: {err}") from None
    return CodecPayloads(payloads=opened)
