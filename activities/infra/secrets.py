"""Channel credentials encrypted at rest with Fernet (MultiFernet: keys rotate).

STEWARD_SECRET_KEY holds one or more Fernet keys separated by commas. The first key
encrypts; every key decrypts, so a new key goes first and the old one stays listed
until `rotate` has re-encrypted what it wrote.
"""

from __future__ import annotations

import json
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from schemas.settings import Settings


class SecretsUnavailable(RuntimeError):
    """No key is configured, or none of the configured keys opens a stored secret."""


class SecretBox:
    """Encrypts and decrypts small JSON documents (a channel's credentials)."""

    def __init__(self, keys: str) -> None:
        parts = [k.strip() for k in keys.split(",") if k.strip()]
        if not parts:
            raise SecretsUnavailable("STEWARD_SECRET_KEY is empty")
        try:
            self._fernet = MultiFernet([Fernet(k.encode()) for k in parts])
        except ValueError as err:
            raise SecretsUnavailable(
                "STEWARD_SECRET_KEY must be Fernet keys (32 url-safe base64-encoded bytes), comma-separated"
            ) from err

    @classmethod
    def of(cls, settings: Settings) -> SecretBox:
        if settings.secret_key is None:
            raise SecretsUnavailable("set STEWARD_SECRET_KEY (a Fernet key) to configure channels")
        return cls(settings.secret_key.get_secret_value())

    def seal(self, value: dict[str, Any]) -> str:
        return self._fernet.encrypt(json.dumps(value, separators=(",", ":")).encode()).decode()

    def open(self, token: str) -> dict[str, Any]:
        try:
            value = json.loads(self._fernet.decrypt(token.encode()))
        except InvalidToken as err:
            raise SecretsUnavailable("no configured key decrypts these credentials") from err
        return dict(value)

    def rotate(self, token: str) -> str:
        """The same secret encrypted with the first (newest) key."""
        return self._fernet.rotate(token.encode()).decode()


def generate_key() -> str:
    return Fernet.generate_key().decode()
