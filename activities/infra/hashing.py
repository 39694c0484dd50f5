"""API keys and webhook secrets: generated once, shown once, stored only as a lookup hash."""

from __future__ import annotations

import hashlib
import secrets

KEY_PREFIX = "stw_"


def generate_key() -> str:
    """A new API key (256 bits of entropy)."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_secret(value: str) -> str:
    """The stored form of an API key or a channel's webhook secret.

    Both carry enough entropy (keys 256 bits; webhook secrets are generated alike) that
    a fast unsalted hash is safe, and it lets a request's secret be looked up directly.
    """
    return hashlib.sha256(value.encode()).hexdigest()


def display_prefix(key: str) -> str:
    """The part of a key shown in lists, so a person can tell keys apart."""
    return key[:10]
