"""Shared parsing helpers: JSON loading, error envelopes, usage, and an image collector.

`error_from_body` is used both by the parsers (an `error` object inside a 200 body or stream event)
and by the HTTP client (non-2xx bodies), so every gateway's envelope maps to one ProviderError tree.
"""
from __future__ import annotations

import functools
import json
import re
import secrets
from typing import Any, Callable

from .base import ProviderConfig
from .errors import (AuthError, BadRequestError, MalformedResponse, ProviderError, ProviderTimeout,
                     RateLimitError, RefusedError, ServerError, error_class_for_status)
from .images import parse_image_ref
from .models import ImageData
from .redact import scrub

# finishReason / blockReason values meaning "the model or a filter refused" (Gemini, OpenRouter's
# native_finish_reason, OpenAI's content_filter), compared upper-case.
REFUSAL_REASONS = frozenset({
    "SAFETY", "IMAGE_SAFETY", "PROHIBITED_CONTENT", "IMAGE_PROHIBITED_CONTENT", "RECITATION",
    "IMAGE_RECITATION", "BLOCKLIST", "SPII", "CONTENT_FILTER", "MODEL_ARMOR", "JAILBREAK",
})
# Finished normally but drew nothing: NoImageError with the reason.
NO_IMAGE_REASONS = frozenset({"NO_IMAGE", "IMAGE_OTHER"})


def short(text: Any, limit: int = 300) -> str:
    """A one-line, redacted excerpt for ProviderError.detail; never a whole body, never a key."""
    if isinstance(text, (bytes, bytearray, memoryview)):
        text = bytes(text[:limit * 4]).decode("utf-8", "replace")
    text = " ".join(str(text)[:limit * 4].split())
    text = scrub(text)
    return text if len(text) <= limit else text[:limit - 1] + "…"


def load_json(body: bytes | str) -> Any:
    """json.loads, or MalformedResponse naming what came instead (an HTML page, an empty body)."""
    try:
        if len(body) > BIG_STRING and not isinstance(body, str):
            try:
                parsed = _load_with_big_strings(body)
            except (ValueError, RecursionError):  # json.loads below says what is wrong
                parsed = _NOT_FOUND
            if parsed is not _NOT_FOUND:
                return parsed
        return json.loads(body)
    except (ValueError, RecursionError):
        pass
    head = bytes(body[:64]).lstrip() if not isinstance(body, str) else body[:64].lstrip().encode()
    if not head:
        raise MalformedResponse(detail="empty body")
    what = "an HTML page" if head[:1] == b"<" else "invalid JSON"
    raise MalformedResponse(detail=f"{what}: {short(body, 200)}")


BIG_STRING = 1 << 20  # a JSON string this long (an image's base64) is cut out before json.loads
_NOT_FOUND = object()


def _load_with_big_strings(body: bytes | bytearray) -> Any:
    """json.loads for an answer carrying an image as one huge string, without json scanning it.

    json.loads holds the GIL for its whole run, and on a 20 MB answer that stalled the bot's event
    loop for 25-200 ms even from a worker thread. Here each string over BIG_STRING bytes without a
    backslash (base64 never has one) is found with memchr-speed searches, the rest is parsed with a
    placeholder in its place, and the string is decoded in one pass. Same result as json.loads,
    except that control characters inside such a string are not rejected. _NOT_FOUND when there is
    no such string or anything looks unusual: the caller then uses json.loads.
    """
    spans, pos = [], 0
    while True:
        start = body.find(b'"', pos)
        if start < 0:
            break
        end = start
        while True:  # the closing quote: the next one not escaped by an odd run of backslashes
            end = body.find(b'"', end + 1)
            if end < 0:
                return _NOT_FOUND
            slashes = 0
            while body[end - 1 - slashes] == 0x5C:
                slashes += 1
            if slashes % 2 == 0:
                break
        if end - start - 1 > BIG_STRING and body.find(b"\\", start + 1, end) < 0:
            spans.append((start + 1, end))
        pos = end + 1
    if not spans:
        return _NOT_FOUND
    token = "\x00big-" + secrets.token_hex(6) + "-"
    pieces, last = [], 0
    for i, (start, end) in enumerate(spans):
        pieces += [body[last:start], f"\\u0000big-{token[5:]}{i}".encode()]
        last = end
    pieces.append(body[last:])
    parsed = json.loads(b"".join(pieces))
    found = [0]
    parsed = _restore(parsed, token, body, spans, found)
    return parsed if found[0] == len(spans) else _NOT_FOUND


def _restore(value: Any, token: str, body: bytes | bytearray, spans: list[tuple[int, int]], found: list[int]) -> Any:
    """`value` with each placeholder put back as the string it stands for.

    A module-level function on purpose: a nested recursive one is a reference cycle (the function
    holds its own closure cell), which kept the whole 20 MB answer alive until the cyclic garbage
    collector ran; a CPU worker process that rarely allocates grew by one answer per call.
    """
    if isinstance(value, str) and value.startswith(token):
        with memoryview(body) as view:
            start, end = spans[int(value[len(token):])]
            found[0] += 1
            return str(view[start:end], "utf-8")
    if isinstance(value, dict):
        return {k: _restore(v, token, body, spans, found) for k, v in value.items()}
    if isinstance(value, list):
        return [_restore(v, token, body, spans, found) for v in value]
    return value


def guarded(parse: Callable[..., Any]) -> Callable[..., Any]:
    """Turn a parser's KeyError/TypeError/... into MalformedResponse and tag errors with the provider."""

    @functools.wraps(parse)
    def wrapper(config: ProviderConfig, *args: Any) -> Any:
        try:
            return parse(config, *args)
        except ProviderError as exc:
            exc.provider = exc.provider or config.name
            raise
        except (KeyError, TypeError, AttributeError, IndexError, ValueError) as exc:
            raise MalformedResponse(provider=config.name,
                                    detail=f"{type(exc).__name__}: {short(exc, 200)}") from None
    return wrapper


def auth_headers(config: ProviderConfig) -> dict[str, str]:
    if config.auth == "x-goog-api-key":
        return {"x-goog-api-key": config.api_key}
    return {"Authorization": f"Bearer {config.api_key}"}


def get(obj: Any, *keys: str) -> Any:
    """The first present, non-None value among keys (camelCase and snake_case spellings)."""
    if isinstance(obj, dict):
        for key in keys:
            value = obj.get(key)
            if value is not None:
                return value
    return None


class ImageSink:
    """Collects image references in answer order: decoded images, URLs to download, and bad refs."""

    def __init__(self) -> None:
        self.images: list[ImageData] = []
        self.urls: list[str] = []
        self.errors: list[str] = []
        self._index: dict[bytes | str, int] = {}

    def add(self, ref: Any) -> ImageData | str | None:
        """Decode one reference; returns the image (or URL), None if it was unreadable."""
        if not isinstance(ref, str) or not ref.strip():
            return None
        try:
            found = parse_image_ref(ref)
        except ValueError as exc:
            self.errors.append(str(exc))
            return None
        # Some gateways put the same image both in content and in message.images: keep it once.
        key = found if isinstance(found, str) else found.data
        if key not in self._index:
            target: list[Any] = self.urls if isinstance(found, str) else self.images
            self._index[key] = len(target)
            target.append(found)
        return found

    def index(self, found: ImageData | str) -> int:
        """Position of an added image in `images` (or of a URL in `urls`)."""
        return self._index[found if isinstance(found, str) else found.data]

    @property
    def empty(self) -> bool:
        return not self.images and not self.urls

    def check(self) -> None:
        """No usable image, but some reference could not be decoded: the answer is unreadable."""
        if self.empty and self.errors:
            raise MalformedResponse(detail=f"undecodable image: {short(self.errors[0], 120)}")


def image_ref(obj: Any) -> str | None:
    """The base64 / data URI / URL inside any image-ish object seen in the wild."""
    if isinstance(obj, str):
        return obj
    if not isinstance(obj, dict):
        return None
    for key in ("url", "b64_json", "base64", "b64", "data", "image_base64"):
        value = obj.get(key)
        if isinstance(value, str) and value:
            return value
    for key in ("image_url", "image", "inline_data", "inlineData"):
        if obj.get(key) is not None:
            return image_ref(obj[key])
    return None


# --- usage -----------------------------------------------------------------------------------

_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
_ALIASES = {
    "input_tokens": ("prompt_tokens", "prompt_token_count", "input_tokens"),
    "output_tokens": ("completion_tokens", "candidates_token_count", "output_tokens"),
    "total_tokens": ("total_tokens", "total_token_count"),
}


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _snake(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {_CAMEL.sub("_", str(k)).lower(): _snake(v) for k, v in obj.items() if v is not None}
    if isinstance(obj, list):
        return [_snake(v) for v in obj]
    return obj


def normalise_usage(usage: Any) -> dict[str, Any]:
    """snake_case keys, nulls dropped, plus input/output/total_tokens when derivable. Never raises."""
    if not isinstance(usage, dict):
        return {}
    out = _snake(usage)
    for canonical, aliases in _ALIASES.items():
        values = [out[a] for a in aliases if _is_number(out.get(a))]
        if values:  # the first non-zero alias wins: gateways pad with zeros ("input_tokens": 0)
            out[canonical] = next((v for v in values if v), values[0])
    return out


def merge_usage(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """Streams repeat usage with different numbers; keep the larger count, the newer anything else."""
    merged = dict(old)
    for key, value in new.items():
        if _is_number(value) and _is_number(merged.get(key)):
            merged[key] = max(merged[key], value)
        else:
            merged[key] = value
    return merged


# --- error envelopes -------------------------------------------------------------------------

_REFUSAL_CODES = {"content_policy_violation", "content_filter", "moderation_blocked", "safety",
                  "image_safety", "prohibited_content", "image_prohibited_content", "blocklist",
                  "data_inspection_failed", "responsible_ai_policy_violation"}
_REFUSAL_TEXT = re.compile(r"(?i)safety system|content (management )?policy|content_policy|flagged|moderation")
_CREDIT_CODES = {"insufficient_quota", "insufficient_user_quota", "billing_not_active",
                 "billing_hard_limit_reached", "payment_required"}
_AUTH_CODES = {"invalid_api_key", "api_key_invalid", "unauthenticated", "permission_denied",
               "authentication_error", "unauthorized", "invalid_authentication", "account_deactivated",
               "api_key_expired", "access_terminated", "forbidden"}
_AUTH_TEXT = re.compile(r"(?i)api[ _]?key (not valid|is invalid|invalid)|invalid (api[ _]?key|token)|"
                        r"incorrect api key|unauthori[sz]ed")
_RATE_CODES = {"resource_exhausted", "rate_limit_exceeded", "rate_limit_error", "too_many_requests",
               "rate_limited"}
_TIMEOUT_CODES = {"deadline_exceeded", "timeout", "request_timeout"}
_SERVER_CODES = {"internal", "unavailable", "server_error", "api_error", "overloaded_error",
                 "service_unavailable", "bad_gateway", "internal_server_error", "upstream_error"}
_RETRY_TEXT = re.compile(r"(?i)(?:retry|try again) (?:in|after) (\d+(?:\.\d+)?)\s*(ms|milliseconds?)?")


def _duration(value: Any) -> float | None:
    """Google Duration: "12s", "12.59s", "500ms", or {"seconds": 12, "nanos": ...}."""
    if isinstance(value, dict):
        try:
            return float(value.get("seconds") or 0) + float(value.get("nanos") or 0) / 1e9
        except (TypeError, ValueError):
            return None
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(ms|s)?\s*", str(value))
    if not match:
        return None
    return float(match.group(1)) / (1000 if match.group(2) == "ms" else 1)


def _facts(body: Any, facts: dict[str, Any], depth: int = 0) -> None:
    """Collect message, codes, numeric status and retry hints from any known envelope."""
    if isinstance(body, list) and body:  # Google sometimes wraps the body in a one-element list
        body = body[0]
    if not isinstance(body, dict):
        return
    err = body.get("error") or body
    if isinstance(err, str):
        err = {"message": err}
    if not isinstance(err, dict):
        return
    message = get(err, "message", "msg", "detail") or get(body, "message", "detail")
    if isinstance(message, str) and message and not facts.get("message"):
        facts["message"] = message
    for key in ("code", "type", "status", "reason"):
        value = err.get(key)
        if isinstance(value, str) and value.isdigit():
            value = int(value)
        if isinstance(value, int) and not isinstance(value, bool) and 100 <= value <= 599:
            facts.setdefault("http", value)
        elif isinstance(value, str) and value:
            facts["codes"].add(value.lower())
    for detail in err.get("details") or []:
        if not isinstance(detail, dict):
            continue
        if isinstance(detail.get("reason"), str):
            facts["codes"].add(detail["reason"].lower())
        if "retryDelay" in detail or "retry_delay" in detail:
            facts.setdefault("retry", _duration(get(detail, "retryDelay", "retry_delay")))
    if _is_number(body.get("retry_after")):
        facts.setdefault("retry", float(body["retry_after"]))
    metadata = err.get("metadata")
    if isinstance(metadata, dict):
        if metadata.get("reasons") or metadata.get("flagged_input"):  # OpenRouter moderation
            facts["codes"].add("moderation_blocked")
        raw = metadata.get("raw")  # OpenRouter: the upstream error as a JSON string
        if isinstance(raw, str) and raw and depth < 2:
            try:
                inner = json.loads(raw)
            except ValueError:
                facts["message"] = raw
            else:
                inner_facts: dict[str, Any] = {"codes": facts["codes"]}
                _facts(inner, inner_facts, depth + 1)
                if inner_facts.get("message"):
                    facts["message"] = inner_facts["message"]
                if inner_facts.get("retry") is not None:
                    facts.setdefault("retry", inner_facts["retry"])


def error_from_body(status: int | None, body: Any) -> ProviderError:
    """Map an error body (Google, OpenAI, OpenRouter, new-api, bare text) to a ProviderError.

    `status` is the HTTP status, or None for an error object inside a 200 body or SSE event.
    The user-facing message is the class default; the gateway's own words go, redacted, in detail.
    """
    if isinstance(body, (bytes, bytearray, str)):
        try:
            body = json.loads(body)
        except ValueError:
            body = {"error": {"message": short(body, 200)}}
    facts: dict[str, Any] = {"codes": set()}
    _facts(body, facts)
    codes: set[str] = facts["codes"]
    http = status or facts.get("http")
    message = facts.get("message") or ""
    retry = facts.get("retry")
    if retry is None and (match := _RETRY_TEXT.search(message)):
        retry = float(match.group(1)) / (1000 if match.group(2) else 1)
    label = " ".join(str(x) for x in (http, *sorted(codes)) if x)
    kw: dict[str, Any] = {"status": status, "detail": short(f"{label}: {message}" if label else message)}

    if codes & _REFUSAL_CODES or (http in (None, 400, 403, 422) and _REFUSAL_TEXT.search(message)):
        reason = next(iter(sorted(codes & _REFUSAL_CODES)), None) or "content_policy"
        return RefusedError(reason=reason, **kw)
    if codes & _CREDIT_CODES or http == 402:
        return AuthError("The image service account is out of credit; the bot's operator needs to "
                         "top it up.", **kw)
    by_status = error_class_for_status(http) if http else None
    if codes & _AUTH_CODES or by_status is AuthError or _AUTH_TEXT.search(message):
        return AuthError(**kw)
    if codes & _RATE_CODES or by_status is RateLimitError:
        return RateLimitError(retry_after=retry, **kw)
    if codes & _TIMEOUT_CODES or by_status is ProviderTimeout:
        return ProviderTimeout(**kw)
    if codes & _SERVER_CODES or by_status is ServerError:
        return ServerError(**kw)
    if by_status is BadRequestError:
        return BadRequestError(**kw)
    if codes & {"invalid_argument", "invalid_request_error", "not_found", "failed_precondition",
                "out_of_range", "bad_request", "invalid_request"}:
        return BadRequestError(**kw)
    return ServerError(**kw)  # an unexplained error object in a 200 answer: worth a retry elsewhere
