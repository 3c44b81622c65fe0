"""The records the store hands out and takes in: plain frozen dataclasses, no database types."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from providers.models import ImageData

ACTIVE_JOB_STATUSES = ("queued", "running")
# Usage rows that count against quotas, and the statuses of a generation that charged nothing.
COUNTED = ("reserved", "charged")
NOT_CHARGED = ("failed", "refused", "cancelled", "interrupted", "released")


@dataclass(frozen=True)
class StoredTurn:
    id: int
    conversation_id: int
    parent_id: int | None
    role: str
    text: str
    images: tuple[ImageData, ...]
    provider_state: dict[str, Any] | None
    provider: str | None
    model: str | None
    message_id: int | None


@dataclass(frozen=True)
class Conversation:
    id: int
    channel_id: int | None
    guild_id: int | None
    owner_id: int
    head_turn_id: int | None
    options: dict[str, Any]  # the thread's aspect ratio, resolution and provider


@dataclass(frozen=True)
class JobRecord:
    id: str
    kind: str
    status: str
    user_id: int
    guild_id: int | None
    channel_id: int | None
    message_id: int | None
    conversation_id: int | None
    user_turn_id: int | None
    model_turn_id: int | None
    options: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    delivery: dict[str, Any] | None = None  # where the member waits, for a process that did not take the job
    queue_id: int | None = None  # the durable queue's job (PostgreSQL)


def job_from_row(row: Any) -> JobRecord:
    return JobRecord(row["id"], row["kind"], row["status"], row["user_id"], row["guild_id"], row["channel_id"],
                     row["message_id"], row["conversation_id"], row["user_turn_id"], row["model_turn_id"],
                     json.loads(row["options"]), row["error"],
                     json.loads(row["delivery"]) if row["delivery"] else None, row["queue_id"])


@dataclass(frozen=True)
class UsageEntry:
    guild_id: int  # 0 in direct messages
    user_id: int
    kind: str
    provider: str
    model: str
    resolution: str | None
    images: int
    cost: float
    conversation_id: int | None = None


@dataclass(frozen=True)
class QuotaCheck:
    """One window to check at admission: a member's (user_id set) or the whole server's (None)."""

    name: str
    guild_id: int
    user_id: int | None
    since: float
    max_images: int | None = None
    max_cost: float | None = None


@dataclass(frozen=True)
class QuotaUse:
    images: int
    cost: float


class QuotaExceeded(Exception):
    def __init__(self, check: QuotaCheck, used: QuotaUse) -> None:
        super().__init__(check.name)
        self.check, self.used = check, used


class MemberBusy(Exception):
    """The member already has `active` generations reserved, in any process: their jobs-at-once limit."""

    def __init__(self, active: int, limit: int) -> None:
        super().__init__(f"{active} of {limit} jobs at once")
        self.active, self.limit = active, limit


class CoolingDown(Exception):
    """The member's last reservation, in any process, was less than their cooldown ago."""

    def __init__(self, wait: float) -> None:
        super().__init__(f"{wait:.1f} s left")
        self.wait = wait


@dataclass(frozen=True)
class UsageTotals:
    images: int  # charged images
    cost: float  # charged cost
    jobs: int  # charged generations
    not_charged: int  # failed, refused, cancelled or interrupted generations
