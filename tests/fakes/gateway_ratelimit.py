"""The fake gateway's rate-limited mode: a token bucket of `requests` per `window` seconds.

    gw.rate_limit = TokenBucket(3, 1.0)    # 3 requests a second, bursts of 3; beyond: 429
    ...
    gw.rate_limit.rejected                 # how many 429s were served

Tokens refill continuously (`requests / window` a second) up to `requests`. A request that finds no
token gets 429 with `Retry-After` (whole seconds, as HTTP wants) and `retry-after-ms` (OpenAI's
precise hint) saying when the next token comes, and an OpenAI-style rate-limit error body.
"""
from __future__ import annotations

import math
import time
from typing import Any, Callable


class TokenBucket:
    def __init__(self, requests: int, window: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        if requests < 1 or window <= 0:
            raise ValueError("a token bucket needs requests >= 1 and window > 0")
        self.capacity, self.window, self._clock = requests, window, clock
        self.tokens = float(requests)
        self._at = clock()
        self.accepted = 0
        self.rejected = 0

    def take(self) -> float | None:
        """None if the request may pass (a token is spent), else seconds until the next token."""
        now = self._clock()
        self.tokens = min(self.capacity, self.tokens + (now - self._at) * self.capacity / self.window)
        self._at = now
        if self.tokens >= 1:
            self.tokens -= 1
            self.accepted += 1
            return None
        self.rejected += 1
        return (1 - self.tokens) * self.window / self.capacity

    @staticmethod
    def reply_fields(wait: float) -> dict[str, Any]:
        """status, headers and body of the 429 (as a Reply's keyword arguments)."""
        return {"status": 429,
                "headers": {"Retry-After": str(max(1, math.ceil(wait))), "retry-after-ms": str(math.ceil(wait * 1000))},
                "body": {"error": {"message": f"Rate limit reached: please try again in {wait * 1000:.0f}ms.",
                                   "type": "requests", "code": "rate_limit_exceeded"}}}
