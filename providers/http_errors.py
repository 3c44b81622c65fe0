"""HTTP status + body -> typed ProviderError, and the retry timing hints servers send.

The status decides the class; the body (through parsing.error_from_body, which knows the
Google, OpenAI, OpenRouter and new-api envelopes) supplies the gateway's words, a refusal
(content policy), a bad key hidden behind a 400, and RetryInfo waits.
"""
from __future__ import annotations

import email.utils
import json
import time
from collections.abc import Mapping
from typing import Any

from .errors import (AuthError, BadRequestError, MalformedResponse, ProviderError, RateLimitError, RefusedError,
                     error_class_for_status)
from .redact import Redactor, excerpt

INITIAL_DELAY = 0.5
MAX_DELAY = 8.0


def backoff_delay(retry: int, rng: float) -> float:
    """Exponential backoff with jitter (as openai-python): 0.5 s, 1 s, 2 s ... capped at 8 s."""
    return min(INITIAL_DELAY * 2 ** retry, MAX_DELAY) * (1 - 0.25 * rng)


def retry_after_header(headers: Mapping[str, str], now: float | None = None) -> float | None:
    """Seconds to wait from `retry-after-ms`, or `Retry-After` in seconds or as an HTTP date."""
    raw_ms = headers.get("retry-after-ms")
    if raw_ms:
        try:
            value = float(raw_ms) / 1000
            return value if value > 0 else None
        except ValueError:
            pass
    raw = headers.get("retry-after")
    if not raw:
        return None
    try:
        value = float(raw)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(raw)
        except (TypeError, ValueError, IndexError):
            return None
        value = when.timestamp() - (time.time() if now is None else now)
    return value if value > 0 else None


def parse_json(body: bytes) -> Any:
    try:
        value = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None
    if isinstance(value, list) and len(value) == 1:  # Google sometimes wraps the error in a list
        value = value[0]
    return value if isinstance(value, dict) else None


def error_for_response(status: int, headers: Mapping[str, str], body: bytes, redact: Redactor,
                       provider: str) -> ProviderError:
    """The error for a non-2xx answer; `retry_after` is set on it when the server gave a hint."""
    from .parsing import error_from_body  # written alongside the translators

    cls = error_class_for_status(status)
    hint = retry_after_header(headers)
    parsed = parse_json(body)
    if parsed is None:
        text = excerpt(body, redact)
        err = cls(provider=provider, status=status, detail=f"HTTP {status}: {text}" if text else f"HTTP {status}")
    else:
        err = _from_body(cls, status, error_from_body(status, parsed), provider)
        err.detail = redact(err.detail or excerpt(body, redact))
        body_hint = getattr(err, "retry_after", None)
        hint = max(h for h in (hint, body_hint, 0.0) if h is not None) or None
    err.status = status
    err.retry_after = hint  # type: ignore[attr-defined]  # read by the retry loop for every class
    return redact.error(err)


def _from_body(cls: type[ProviderError], status: int, parsed: ProviderError,
               provider: str) -> ProviderError:
    parsed.provider = provider
    # The body knows better in a few cases: a content-policy refusal, Gemini's bad key answered
    # as 400 API_KEY_INVALID, and quota errors some gateways send as 400/403.
    if isinstance(parsed, RefusedError) and status < 500:
        return parsed
    if isinstance(parsed, AuthError) and cls is BadRequestError:
        return parsed
    if isinstance(parsed, RateLimitError) and status in (400, 403):
        return parsed
    if type(parsed) is cls:
        return parsed
    kw: dict[str, Any] = {"provider": provider, "status": status, "detail": parsed.detail}
    if cls is RateLimitError:
        kw["retry_after"] = getattr(parsed, "retry_after", None)
    return cls(**kw)


def error_in_event(payload: bytes, redact: Redactor, provider: str) -> ProviderError | None:
    """An `{"error": {...}}` object sent inside a 200 stream, as an exception (or None)."""
    if len(payload) > 256 * 1024 or b'"error"' not in payload[:4096]:
        return None
    parsed = parse_json(payload)
    if not parsed or not parsed.get("error") or parsed.get("choices") or parsed.get("candidates"):
        return None
    from .parsing import error_from_body

    err = error_from_body(None, parsed)
    err.provider = provider
    err.detail = redact(err.detail or excerpt(payload, redact))
    return redact.error(err)


def html_answer(provider: str, status: int, body: bytes, redact: Redactor) -> MalformedResponse:
    return MalformedResponse(provider=provider, status=status,
                             detail=f"HTTP {status} with a non-JSON body: {excerpt(body, redact)}")
