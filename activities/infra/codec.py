"""Encryption of every payload Steward sends to Temporal: AES-GCM, keys from settings.

A history carries the user's messages, tool arguments and results, replies and approval
decisions. Whoever can read the Temporal server (its database, its UI, its operators) could
read them too; with this codec it sees ciphertext. Each encrypted payload names the key
that sealed it in its metadata (`encryption-key-id`), never the key itself: keys come only
from `STEWARD_PAYLOAD_KEYS` (`id:base64key,...`). The first key encrypts, every key
decrypts, so a key is rotated by putting a new one first and dropping the old one once no
open history needs it.

A payload that is not encrypted decodes as it is: histories written before a key was
configured still replay and are still readable. Without any key the codec encrypts nothing
(see `docs/decisions.md`, "Temporal payloads are encrypted").
"""

from __future__ import annotations

import base64
import binascii
import logging
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from temporalio.api.common.v1 import Payload
from temporalio.converter import PayloadCodec

from schemas.settings import Settings

log = logging.getLogger("steward.codec")

ENCODING = b"binary/encrypted"
"""The `encoding` metadata of an encrypted payload (the Temporal samples' name for it)."""
KEY_ID = "encryption-key-id"
NONCE_BYTES = 12
KEY_BYTES = (16, 24, 32)
KEY_ID_PATTERN = re.compile(r"[A-Za-z0-9._-]{1,64}")
SETTING = "STEWARD_PAYLOAD_KEYS"


class PayloadKeyError(ValueError):
    """A payload that cannot be decrypted: its key is not configured, or it was altered."""


@dataclass(frozen=True)
class PayloadKey:
    """One AES key and the id payloads sealed with it carry."""

    id: str
    secret: bytes = field(repr=False)


def parse_keys(value: str) -> tuple[PayloadKey, ...]:
    """Keys from `id:base64key,id:base64key` (the first encrypts).

    Raises:
        ValueError: an entry is malformed. The message names the entry by position and id,
            never by its key material.
    """
    keys: list[PayloadKey] = []
    for position, entry in enumerate((e.strip() for e in value.split(",") if e.strip()), start=1):
        key_id, sep, encoded = entry.partition(":")
        if not sep or not KEY_ID_PATTERN.fullmatch(key_id):
            raise ValueError(
                f"{SETTING} entry {position} must be 'id:base64key', the id of letters, digits, '.', '_', '-'"
            )
        try:
            secret = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            raise ValueError(f"{SETTING} key '{key_id}' is not valid base64") from None
        if len(secret) not in KEY_BYTES:
            raise ValueError(f"{SETTING} key '{key_id}' must be 16, 24 or 32 bytes (it is {len(secret)})")
        if any(k.id == key_id for k in keys):
            raise ValueError(f"{SETTING} names key '{key_id}' twice")
        keys.append(PayloadKey(key_id, secret))
    return tuple(keys)


def new_key(key_id: str) -> str:
    """A fresh `id:base64key` entry holding a random 256-bit key."""
    return f"{key_id}:{base64.b64encode(os.urandom(32)).decode()}"


def settings_keys(settings: Settings) -> tuple[PayloadKey, ...]:
    """The configured keys (none when `STEWARD_PAYLOAD_KEYS` is unset)."""
    if settings.payload_keys is None:
        return ()
    return parse_keys(settings.payload_keys.get_secret_value())


class AesGcmCodec(PayloadCodec):
    """Seals each payload (its whole serialized form, metadata included) with AES-GCM.

    The ciphertext is `nonce || AES-GCM(key, nonce, payload, aad=key id)`: a random 96-bit
    nonce per payload, and the key id bound in so a payload cannot be passed off as sealed
    by another key.
    """

    def __init__(self, keys: Sequence[PayloadKey]) -> None:
        self.keys = tuple(keys)
        self._ciphers = {key.id: AESGCM(key.secret) for key in self.keys}

    @property
    def encrypts(self) -> bool:
        return bool(self.keys)

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self.seal(payload) for payload in payloads]

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self.open(payload) for payload in payloads]

    def seal(self, payload: Payload) -> Payload:
        if not self.keys:
            return payload
        key_id = self.keys[0].id
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._ciphers[key_id].encrypt(nonce, payload.SerializeToString(), key_id.encode())
        return Payload(metadata={"encoding": ENCODING, KEY_ID: key_id.encode()}, data=nonce + sealed)

    def open(self, payload: Payload) -> Payload:
        if payload.metadata.get("encoding") != ENCODING:
            return payload
        key_id = payload.metadata.get(KEY_ID, b"").decode(errors="replace")
        cipher = self._ciphers.get(key_id)
        if cipher is None:
            raise PayloadKeyError(f"payload is encrypted with key '{key_id}', which {SETTING} does not hold")
        data = payload.data
        try:
            plain = cipher.decrypt(data[:NONCE_BYTES], data[NONCE_BYTES:], key_id.encode())
        except (InvalidTag, ValueError):
            raise PayloadKeyError(f"payload sealed with key '{key_id}' does not decrypt: altered") from None
        return Payload.FromString(plain)


def payload_codec(settings: Settings) -> AesGcmCodec:
    """The codec for this process's settings; warns loudly when it would encrypt nothing."""
    codec = AesGcmCodec(settings_keys(settings))
    if not codec.encrypts:
        log.warning(
            "%s is not set: Temporal histories will hold messages, tool arguments and replies in "
            "plain JSON. Set it (e.g. 'k1:<32 random bytes, base64>') on every API and worker process",
            SETTING,
        )
    return codec
