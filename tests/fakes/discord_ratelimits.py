"""Discord's REST rate limits, as the fake Discord enforces them (on by default).

From Discord's documentation (Topics > Rate Limits) and what discord.py's http.py reads:
- Per-route buckets, counted per top-level resource (channel, guild, or webhook id + token). Every
  answer on a limited route carries `X-RateLimit-Limit`, `-Remaining`, `-Reset` (epoch seconds),
  `-Reset-After` (seconds) and `-Bucket` (one id per limit, the same for routes that share it).
- Beyond a bucket: 429 with `Retry-After` (whole seconds), `X-RateLimit-Scope` (`user`; `shared` for a
  resource's own limit, such as thread creation in a channel) and the JSON body
  `{"message": "You are being rate limited.", "retry_after": <seconds>, "global": false}`.
- The global limit: 50 requests a second per bot, all routes together, except interaction endpoints
  (callbacks, and the webhook routes used with an interaction token). Beyond it: 429 with
  `X-RateLimit-Global: true`, `X-RateLimit-Scope: global` and `"global": true`.
- Invalid requests: 401, 403 and 429 answers (not 429s of scope `shared`) count; 10,000 in 10 minutes
  get the client's IP banned by Cloudflare. The fake counts them (`invalid_requests`, `banned`).

Discord publishes the mechanism, not the numbers ("should not be hard coded"); the numbers below are
the ones Discord's headers show for these routes (messages: 5 per 5 s per channel) or, for thread
creation, a conservative guess. Tests change them through `RateLimitSettings`, or switch the whole
thing off: `FakeDiscord(rate_limits=False)` / `Driver(rate_limits=False)` / `fake.ratelimits.enabled = False`.

Windows are fixed: a bucket's window opens with its first request and resets `window` seconds later.
Interaction callbacks carry no bucket: discord.py keys them without the interaction, so a per-
interaction bucket would make every other interaction's acknowledgement wait.
"""
from __future__ import annotations

import hashlib
import math
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any, Callable

CHANNEL, WEBHOOK = ("channel_id",), ("application_id", "token")
WEBHOOK_BASE = "/webhooks/{application_id}/{token}"
INVALID_WINDOW, INVALID_BAN = 600.0, 10_000


@dataclass(frozen=True)
class Limit:
    requests: int
    window: float  # seconds
    major: tuple[str, ...] = CHANNEL  # route parameters that give each resource its own bucket
    scope: str = "user"  # what a 429 says: "user", or "shared" for a resource's own limit


@dataclass
class RateLimitSettings:
    enabled: bool = True
    global_per_second: int = 50
    message_create: Limit = Limit(5, 5.0)
    message_edit: Limit = Limit(5, 5.0)
    message_delete: Limit = Limit(5, 1.0)
    reaction: Limit = Limit(1, 0.25)
    thread_create: Limit = Limit(5, 5.0, scope="shared")
    interaction_webhook: Limit = Limit(5, 2.0, major=WEBHOOK)  # per interaction token

    def table(self) -> dict[str, tuple[str, Limit]]:
        """Route template ("METHOD /path") -> (bucket name, limit). Routes sharing a name share a bucket."""
        msg = "/channels/{channel_id}/messages/{message_id}"
        react = msg + "/reactions/{emoji}"
        return {
            "POST /channels/{channel_id}/messages": ("message_create", self.message_create),
            f"PATCH {msg}": ("message_edit", self.message_edit),
            f"DELETE {msg}": ("message_delete", self.message_delete),
            f"PUT {react}/@me": ("reaction", self.reaction),
            f"DELETE {react}/@me": ("reaction", self.reaction),
            f"DELETE {react}/{{user_id}}": ("reaction", self.reaction),
            f"POST {msg}/threads": ("thread_create", self.thread_create),
            "POST /channels/{channel_id}/threads": ("thread_create", self.thread_create),
            f"POST {WEBHOOK_BASE}": ("interaction_webhook", self.interaction_webhook),
            **{f"{m} {WEBHOOK_BASE}/messages/{tail}": ("interaction_webhook", self.interaction_webhook)
               for m in ("GET", "PATCH", "DELETE") for tail in ("@original", "{message_id}")},
        }


@dataclass
class _Window:
    opened: float
    used: int = 0


@dataclass
class Verdict:
    """What the limiter says about one request: the headers to send, and the 429 body if refused."""
    headers: dict[str, str] = field(default_factory=dict)
    refused: dict[str, Any] | None = None


class DiscordRateLimits:
    def __init__(self, settings: RateLimitSettings | None = None, *,
                 clock: Callable[[], float] = time.monotonic, wall: Callable[[], float] = time.time) -> None:
        self.settings = settings or RateLimitSettings()
        self._clock, self._wall = clock, wall
        self._table = self.settings.table()
        self._windows: dict[tuple[str, ...], _Window] = {}
        self._global: _Window | None = None
        self._invalid: deque[float] = deque()
        self.served_429 = 0
        self.by_route: Counter[str] = Counter()  # route template -> 429s served
        self.by_scope: Counter[str] = Counter()  # user / shared / global -> 429s served
        self.requests_by_route: Counter[str] = Counter()  # route template -> requests on limited routes
        self.refusals: list[tuple[float, str, tuple[str, ...], float]] = []  # (when, route, bucket, retry_after)

    @property
    def enabled(self) -> bool:
        return self.settings.enabled

    @enabled.setter
    def enabled(self, value: bool) -> None:
        self.settings.enabled = value

    # ---- the check, before a request is handled ------------------------------------------------------

    def check(self, route: str, params: dict[str, str], *, exempt_from_global: bool) -> Verdict:
        """Count the request against its bucket and the global limit; a refused request counts in neither."""
        if not self.enabled:
            return Verdict()
        now = self._clock()
        rule = self._table.get(route)
        bucket = window = None
        if rule is not None:
            name, limit = rule
            bucket = (name, *(params.get(p, "") for p in limit.major))
            window = self._window(bucket, limit.window, now)
            if window.used >= limit.requests:
                return self._refuse(route, self._headers(name, limit, window, now), limit.scope,
                                    window.opened + limit.window - now, bucket)
        if not exempt_from_global:
            self._global = self._window_of(self._global, 1.0, now)
            if self._global.used >= self.settings.global_per_second:
                return self._refuse(route, {"X-RateLimit-Global": "true"}, "global",
                                    self._global.opened + 1.0 - now, ("global",))
            self._global.used += 1
        if rule is None:
            return Verdict()
        window.used += 1
        self.requests_by_route[route] += 1
        return Verdict(self._headers(rule[0], rule[1], window, now))

    def _window(self, bucket: tuple[str, ...], seconds: float, now: float) -> _Window:
        window = self._window_of(self._windows.get(bucket), seconds, now)
        self._windows[bucket] = window
        return window

    @staticmethod
    def _window_of(window: _Window | None, seconds: float, now: float) -> _Window:
        return window if window is not None and now < window.opened + seconds else _Window(now)

    def _headers(self, name: str, limit: Limit, window: _Window, now: float) -> dict[str, str]:
        reset_after = max(0.0, window.opened + limit.window - now)
        return {"X-RateLimit-Limit": str(limit.requests),
                "X-RateLimit-Remaining": str(max(0, limit.requests - window.used)),
                "X-RateLimit-Reset": f"{self._wall() + reset_after:.3f}",
                "X-RateLimit-Reset-After": f"{reset_after:.3f}",
                "X-RateLimit-Bucket": hashlib.sha1(name.encode()).hexdigest()[:16]}

    def _refuse(self, route: str, headers: dict[str, str], scope: str, retry_after: float,
                bucket: tuple[str, ...]) -> Verdict:
        retry_after = max(0.001, retry_after)
        self.refusals.append((self._clock(), route, bucket, retry_after))
        if "X-RateLimit-Remaining" in headers:
            headers["X-RateLimit-Remaining"] = "0"
        headers.update({"Retry-After": str(math.ceil(retry_after)), "X-RateLimit-Scope": scope})
        self.served_429 += 1
        self.by_route[route] += 1
        self.by_scope[scope] += 1
        return Verdict(headers, {"message": "You are being rate limited.", "retry_after": round(retry_after, 3),
                                 "global": scope == "global"})

    # ---- invalid requests, after a request was answered --------------------------------------------------

    def answered(self, status: int, headers: dict[str, str]) -> None:
        if status in (401, 403) or (status == 429 and headers.get("X-RateLimit-Scope") != "shared"):
            self._invalid.append(self._clock())

    @property
    def invalid_requests(self) -> int:
        """401/403/429 answers in the last 10 minutes (429s of scope "shared" do not count)."""
        horizon = self._clock() - INVALID_WINDOW
        while self._invalid and self._invalid[0] < horizon:
            self._invalid.popleft()
        return len(self._invalid)

    @property
    def banned(self) -> bool:
        """Whether Discord would have banned the bot's IP for invalid requests (the fake only says so)."""
        return self.invalid_requests >= INVALID_BAN
