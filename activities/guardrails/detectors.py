"""The built-in, local checks: PII detectors, term and regex lists, length, prompt injection.

Each returns the spans it matched (kind and position, never kept with the text itself).
They are plain functions of the text, so a check takes microseconds (`bench/rails_speed.py`).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Span:
    """What a check matched: its kind (`card`, `term`, ...) and where, never the value."""

    kind: str
    start: int
    end: int


@dataclass(frozen=True)
class Detector:
    """A PII detector: a pattern, a test that a match really is one (a card's Luhn sum), and a
    cheap test that the text could hold one at all (most messages hold none: skip the regex)."""

    kind: str
    pattern: re.Pattern[str]
    valid: Callable[[str], bool] = lambda _: True
    could: Callable[[str], bool] = lambda _: True


_DROP_DIGITS = str.maketrans("", "", "0123456789")


def _digits(at_least: int) -> Callable[[str], bool]:
    def could(text: str) -> bool:
        return len(text) - len(text.translate(_DROP_DIGITS)) >= at_least

    return could


def luhn(digits: str) -> bool:
    """Whether a card number's digits pass the Luhn checksum."""
    total = 0
    for i, char in enumerate(reversed(digits)):
        n = ord(char) - 48
        if i % 2:
            n = n * 2 - 9 if n > 4 else n * 2
        total += n
    return total % 10 == 0


def _card(match: str) -> bool:
    digits = re.sub(r"\D", "", match)
    return 13 <= len(digits) <= 19 and luhn(digits)


def _iban(match: str) -> bool:
    text = match.replace(" ", "").upper()
    if not 15 <= len(text) <= 34:
        return False
    moved = text[4:] + text[:4]
    return int("".join(str(int(c, 36)) for c in moved)) % 97 == 1


def _phone(match: str) -> bool:
    return 8 <= sum(c.isdigit() for c in match) <= 15


DETECTORS: dict[str, Detector] = {}
"""PII detectors by kind; `register` adds one (a national id, an account number)."""


def register(detector: Detector) -> None:
    """Make a PII detector available to `pii` checks by its kind."""
    DETECTORS[detector.kind] = detector


register(
    Detector(
        "email",
        re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}"),
        could=lambda text: "@" in text,
    )
)
register(Detector("card", re.compile(r"(?<![\d-])\d(?:[ -]?\d){12,18}(?![\d-])"), _card, _digits(13)))
register(Detector("iban", re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,30}\b"), _iban, _digits(4)))
register(Detector("phone", re.compile(r"(?<![\w+])\+?\(?\d[\d ().-]{6,18}\d(?!\w)"), _phone, _digits(8)))

_ORDER = ("card", "iban", "email", "phone")
"""Built-ins are tried in this order, and a span already taken is not matched again (a card
number is not also a phone number)."""


def pii(text: str, kinds: list[str]) -> list[Span]:
    """The PII spans of `kinds` in `text`, without overlaps, by position.

    Kinds are scanned in `_ORDER` (then the registered ones), and a span already taken is not
    matched again (a card number is not also a phone number); a kind whose cheap test rules
    it out is not scanned. One scan per kind: measured, a combined alternation was slower.
    """
    spans: list[Span] = []
    for kind in (*[k for k in _ORDER if k in kinds], *[k for k in kinds if k not in _ORDER]):
        detector = DETECTORS.get(kind)
        if detector is None or not detector.could(text):
            continue
        for match in detector.pattern.finditer(text):
            start, end = match.span()
            if any(s.start < end and start < s.end for s in spans):
                continue
            if detector.valid(match.group()):
                spans.append(Span(kind, start, end))
    return sorted(spans, key=lambda s: s.start)


@functools.lru_cache(maxsize=256)
def _terms_pattern(terms: tuple[str, ...]) -> re.Pattern[str]:
    alternatives = "|".join(re.escape(t) for t in sorted(terms, key=len, reverse=True))
    return re.compile(rf"(?<!\w)(?:{alternatives})(?!\w)", re.IGNORECASE)


def terms(text: str, words: list[str]) -> list[Span]:
    """Where any of `words` occurs as a whole word, case-insensitively."""
    return [Span("term", *m.span()) for m in _terms_pattern(tuple(words)).finditer(text)]


@functools.lru_cache(maxsize=256)
def _compiled(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


def patterns(text: str, regexes: list[str]) -> list[Span]:
    """Where any of `regexes` matches (non-empty matches only)."""
    return [
        Span("pattern", *m.span())
        for regex in regexes
        for m in _compiled(regex).finditer(text)
        if m.end() > m.start()
    ]


def too_long(text: str, max_chars: int) -> list[Span]:
    """The part past `max_chars`, if any."""
    return [Span("length", max_chars, len(text))] if len(text) > max_chars else []


_STRONG = re.compile(
    r"\b(?:ignore|disregard|forget|override)\b[^.\n]{0,40}\b(?:previous|prior|above|earlier|all|your|system)\b"
    r"[^.\n]{0,20}\b(?:instructions?|prompts?|rules|directions)\b"
    r"|\b(?:reveal|print|show|repeat|leak)\b[^.\n]{0,30}\b(?:system prompt|instructions|hidden prompt)\b"
    r"|<\|im_start\|>|\[/?INST\]|\bdeveloper mode\b|\bjailbreak\b|\bDAN\b",
    re.IGNORECASE,
)
_WEAK = re.compile(
    r"\byou are now\b|\bact as\b|\bpretend (?:to be|you are)\b|\bfrom now on\b|\bno restrictions\b"
    r"|\bsystem prompt\b|\bdo anything now\b",
    re.IGNORECASE,
)


_TRIGGERS = (
    "ignore", "disregard", "forget", "override", "reveal", "print", "show", "repeat", "leak", "<|im_",
    "inst]", "developer mode", "jailbreak", "dan", "you are now", "act as", "pretend", "from now on",
    "no restrictions", "system prompt", "do anything now",
)  # fmt: skip
"""Words every phrase below contains: a text with none of them is not scanned."""


def injection(text: str, threshold: float) -> list[Span]:
    """A prompt-injection heuristic: phrases that try to replace the agent's instructions.

    Strong phrases ("ignore all previous instructions") score 0.6 each, weak ones ("you are
    now") 0.3; the text trips at `threshold`. The spans are the phrases found.
    """
    lowered = text.lower()
    if not any(word in lowered for word in _TRIGGERS):
        return []
    strong = [Span("injection", *m.span()) for m in _STRONG.finditer(text)]
    weak = [Span("injection", *m.span()) for m in _WEAK.finditer(text)]
    score = 0.6 * len(strong) + 0.3 * len(weak)
    return sorted(strong + weak, key=lambda s: s.start) if score >= threshold and score > 0 else []


def redact(text: str, spans: list[Span]) -> str:
    """`text` with each span replaced by `[redacted <kind>]`."""
    out: list[str] = []
    at = 0
    for span in sorted(spans, key=lambda s: s.start):
        if span.start < at:
            continue
        out.append(text[at : span.start])
        out.append(f"[redacted {span.kind}]")
        at = span.end
    out.append(text[at:])
    return "".join(out)
