"""The Temporal codec-server protocol: payloads as the Web UI and the `temporal` CLI send them.

This is Temporal's JSON form of `Payloads` (proto3 JSON): each metadata value and the data
are base64, standard or URL-safe, padded or not.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, Field, StringConstraints

BASE64 = r"^[A-Za-z0-9+/_-]*={0,2}$"
MAX_CODEC_PAYLOADS = 1000
"""Payloads in one request: the Web UI sends one event's (a handful); the body limit binds first."""

MetadataKey = Annotated[str, StringConstraints(min_length=1, max_length=256)]
Base64Text = Annotated[str, StringConstraints(max_length=1024 * 1024, pattern=BASE64)]


class CodecPayload(BaseModel):
    """One payload: metadata (e.g. `encoding`, `encryption-key-id`) and data, base64 each.

    Not strict: a newer UI may send fields this version does not know, as proto3 JSON allows.
    """

    metadata: dict[MetadataKey, Annotated[str, StringConstraints(max_length=4096, pattern=BASE64)]] = Field(
        default_factory=dict, max_length=64
    )
    data: Base64Text = ""


class CodecPayloads(BaseModel):
    """Request and answer of `/codec/encode` and `/codec/decode`."""

    payloads: list[CodecPayload] = Field(max_length=MAX_CODEC_PAYLOADS)
