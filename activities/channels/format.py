"""Splitting and formatting text for a channel: each provider has its limits and markup."""

from __future__ import annotations

import html
import re

TELEGRAM_LIMIT = 4096
SLACK_LIMIT = 4000
"""Slack accepts longer texts, but truncates or folds them; 4,000 characters read well."""

_BOLD = re.compile(r"\*\*(.+?)\*\*", re.DOTALL)
_CODE_BLOCK = re.compile(r"```(?:[a-zA-Z0-9_+-]*\n)?(.*?)```", re.DOTALL)
_CODE = re.compile(r"`([^`\n]+)`")


def split(text: str, limit: int) -> list[str]:
    """Parts of at most `limit` characters, cut at a paragraph, line or word break where one is near."""
    text = text.strip()
    parts: list[str] = []
    while len(text) > limit:
        window = text[:limit]
        cut = max(window.rfind("\n\n"), window.rfind("\n"), window.rfind(" "))
        if cut < limit // 2:
            cut = limit
        parts.append(text[:cut].rstrip())
        text = text[cut:].lstrip()
    if text:
        parts.append(text)
    return parts


def telegram_html(text: str) -> str:
    """Telegram HTML: everything escaped, then **bold**, `code` and ``` blocks as tags.

    Markdown from a model is rarely valid MarkdownV2 (which rejects unescaped `.`, `!`,
    `-`...), so Steward sends HTML, where escaping three characters is enough.
    """
    out = html.escape(text, quote=False)
    out = _CODE_BLOCK.sub(lambda m: f"<pre>{m.group(1)}</pre>", out)
    out = _CODE.sub(lambda m: f"<code>{m.group(1)}</code>", out)
    return _BOLD.sub(lambda m: f"<b>{m.group(1)}</b>", out)


def slack_mrkdwn(text: str) -> str:
    """Slack mrkdwn: `&`, `<`, `>` escaped (so no accidental mentions or links), **bold** as *bold*."""
    out = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return _BOLD.sub(lambda m: f"*{m.group(1)}*", out)
