"""OpenAI clients for a team's LLM provider, and keeping its key out of every message.

The LLM activity and the API's provider check build clients the same way: the openai SDK's
own retries off (Temporal retries the activity; a check is asked again by a person), and
the key given to the client only, never to anything that is logged or shown.
"""

from __future__ import annotations

import openai

from activities.infra.secrets import SecretBox
from schemas.enums import ProviderKind
from schemas.tables import LlmProvider

OPENAI_URL = "https://api.openai.com/v1"
"""Where `openai` providers without a base URL are asked: given explicitly, because the SDK
would otherwise take the environment's OPENAI_BASE_URL (the built-in provider's) for it."""
NO_KEY = "unused"
"""What the SDK is given for a provider without a key (it refuses to start with none)."""


def api_key(provider: LlmProvider, box: SecretBox) -> str | None:
    """The provider's key, decrypted (raises `SecretsUnavailable` when no configured key opens it)."""
    if provider.secret is None:
        return None
    return str(box.open(provider.secret)["api_key"])


def client_for(
    provider: LlmProvider,
    key: str | None,
    timeout: float,
    http: openai.DefaultAsyncHttpxClient | None = None,
) -> openai.AsyncOpenAI:
    """A client that speaks to `provider` with `key`: Azure's for `azure_openai`, else OpenAI's.

    `http` is a connection pool to share: each openai client sends its own key and base URL
    on every request, so one pool serves them all, and a new provider client then costs no
    TLS context of its own (building one was most of the ~0.1 s a fresh client took).
    """
    if provider.kind == ProviderKind.AZURE_OPENAI:
        return openai.AsyncAzureOpenAI(
            api_key=key or NO_KEY,
            azure_endpoint=provider.base_url or "",
            api_version=provider.api_version,
            max_retries=0,
            timeout=timeout,
            http_client=http,
        )
    return openai.AsyncOpenAI(
        api_key=key or NO_KEY,
        base_url=provider.base_url or OPENAI_URL,
        max_retries=0,
        timeout=timeout,
        http_client=http,
    )


def redacted(text: str, key: str | None) -> str:
    """`text` with every occurrence of `key` masked: a provider's error may echo what it was sent."""
    if not key:
        return text
    return text.replace(key, "***")
