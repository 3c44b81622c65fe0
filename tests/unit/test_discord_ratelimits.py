"""The fake Discord's rate-limit bookkeeping (tests/fakes/discord_ratelimits.py) on a hand-driven clock."""
from __future__ import annotations

from fakes.discord_ratelimits import INVALID_BAN, DiscordRateLimits, Limit, RateLimitSettings

EDIT = "PATCH /channels/{channel_id}/messages/{message_id}"
EDIT_ORIGINAL = "PATCH /webhooks/{application_id}/{token}/messages/@original"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def limits(**rules) -> tuple[DiscordRateLimits, Clock]:
    clock = Clock()
    settings = RateLimitSettings(**rules)
    return DiscordRateLimits(settings, clock=clock, wall=lambda: 1.7e9 + clock.now), clock


def test_a_fixed_window_opens_with_its_first_request_and_resets_after_it():
    rl, clock = limits(message_edit=Limit(2, 5.0))
    channel = {"channel_id": "1", "message_id": "9"}
    first = rl.check(EDIT, channel, exempt_from_global=False)
    assert first.refused is None and first.headers["X-RateLimit-Remaining"] == "1"
    assert first.headers["X-RateLimit-Reset-After"] == "5.000"
    assert float(first.headers["X-RateLimit-Reset"]) == 1.7e9 + 1005.0
    clock.now += 3
    second = rl.check(EDIT, {**channel, "message_id": "10"}, exempt_from_global=False)  # same channel, same bucket
    assert second.headers["X-RateLimit-Remaining"] == "0" and second.headers["X-RateLimit-Reset-After"] == "2.000"
    refused = rl.check(EDIT, channel, exempt_from_global=False)
    assert refused.refused == {"message": "You are being rate limited.", "retry_after": 2.0, "global": False}
    assert refused.headers["Retry-After"] == "2"
    clock.now += 2
    assert rl.check(EDIT, channel, exempt_from_global=False).headers["X-RateLimit-Remaining"] == "1"


def test_each_interaction_token_has_its_own_bucket_outside_the_global_limit():
    rl, clock = limits(interaction_webhook=Limit(1, 2.0, major=("application_id", "token")), global_per_second=1)
    assert rl.check("GET /users/@me", {}, exempt_from_global=False).refused is None  # the global second is used
    a = {"application_id": "7", "token": "a"}
    assert rl.check(EDIT_ORIGINAL, a, exempt_from_global=True).refused is None
    assert rl.check(EDIT_ORIGINAL, {"application_id": "7", "token": "b"}, exempt_from_global=True).refused is None
    assert rl.check(EDIT_ORIGINAL, a, exempt_from_global=True).refused is not None
    assert rl.check("GET /users/@me", {}, exempt_from_global=False).refused["global"] is True


def test_ten_thousand_invalid_requests_in_ten_minutes_would_ban_and_then_they_age_out():
    rl, clock = limits()
    for _ in range(INVALID_BAN - 1):
        rl.answered(401, {})
    assert rl.invalid_requests == INVALID_BAN - 1 and not rl.banned
    rl.answered(429, {"X-RateLimit-Scope": "shared"})  # Discord does not count these
    rl.answered(200, {})
    assert not rl.banned
    rl.answered(403, {})
    assert rl.banned
    clock.now += 601
    assert rl.invalid_requests == 0 and not rl.banned


def test_switched_off_it_neither_limits_nor_sends_headers():
    rl, _ = limits(enabled=False, message_edit=Limit(1, 5.0))
    verdicts = [rl.check(EDIT, {"channel_id": "1"}, exempt_from_global=False) for _ in range(3)]
    assert all(v.refused is None and not v.headers for v in verdicts)
