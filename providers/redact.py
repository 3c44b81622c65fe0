"""Keep API keys out of every message, log line and repr the provider layer produces."""
from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from .errors import ProviderError, RefusedError

MASK = "***"
# Credentials that may show up in a gateway's own words even when they are not our keys.
_PATTERNS = (
    # A bearer token as RFC 6750 spells it (b64token: no "=" but trailing padding), so that a setting
    # written after the word, as in "auth=bearer stream=yes", is not taken for one.
    (re.compile(r"(?i)\b(bearer\s+)[A-Za-z0-9\-._~+/]+=*(?![^\s\"',;])"), r"\1" + MASK),
    (re.compile(r"(?i)((?:[?&]|\b)(?:api[_-]?)?key=)[^&\s\"',;]+"), r"\1" + MASK),
    (re.compile(r"(?i)(x-goog-api-key[\"']?\s*[:=]\s*[\"']?)[^\s\"',;]+"), r"\1" + MASK),
    (re.compile(r"\bsk-[A-Za-z0-9_\-]{8,}"), "sk-" + MASK),
    (re.compile(r"\bAIza[0-9A-Za-z_\-]{20,}"), MASK),
)


def scrub(text: str) -> str:
    """Mask what looks like a credential (Bearer tokens, key=, x-goog-api-key, sk-, AIza)."""
    for pattern, repl in _PATTERNS:
        text = pattern.sub(repl, text)
    return text


class Redactor:
    """Replaces each configured secret (and Bearer/key=/sk-/AIza patterns) with ***."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        # Longest first, so a key that contains another is masked whole.
        self._secrets = sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True)

    def add(self, *secrets: str) -> None:
        self._secrets = sorted({*self._secrets, *(s for s in secrets if s and len(s) >= 4)},
                               key=len, reverse=True)

    def __call__(self, text: str | None) -> str:
        if not text:
            return text or ""
        for secret in self._secrets:
            text = text.replace(secret, MASK)
        return scrub(text)

    def exact(self, text: str | None) -> str:
        """Only the configured secrets masked: for the model's own words, where the generic
        patterns would mangle ordinary text ("the bearer of", "key=value")."""
        if not text:
            return text or ""
        for secret in self._secrets:
            text = text.replace(secret, MASK)
        return text

    def error(self, exc: ProviderError) -> ProviderError:
        """Redact an exception in place (message, detail, the model's text) and return it."""
        exc.args = tuple(self(a) if isinstance(a, str) else a for a in exc.args)
        if exc.detail:
            exc.detail = self(exc.detail)
        if isinstance(exc, RefusedError) and exc.model_text:
            exc.model_text = self(exc.model_text)
        return exc

    def __repr__(self) -> str:
        return f"Redactor({len(self._secrets)} secrets)"


def excerpt(body: bytes | str, redact: Redactor, limit: int = 200) -> str:
    """A short, single-line, redacted excerpt of a body for logs and error details."""
    text = body.decode("utf-8", "replace") if isinstance(body, (bytes, bytearray)) else body
    if "<" in text[:200] and re.search(r"(?i)<(!doctype|html|head|body|title)", text[:2000]):
        title = re.search(r"(?is)<title>(.*?)</title>", text)
        text = "HTML page" + (f": {title.group(1)}" if title else "")
    text = " ".join(text[: limit * 4].split())
    text = redact(text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def redact_texts(state: Any, redact: Redactor) -> Any:
    """provider_state with every "text" value redacted; everything else (thought signatures) as is."""
    if isinstance(state, dict):
        return {k: redact.exact(v) if k == "text" and isinstance(v, str) else redact_texts(v, redact)
                for k, v in state.items()}
    if isinstance(state, list):
        return [redact_texts(v, redact) for v in state]
    return state
