"""What the job pipeline needs from wherever its results go (cogs/delivery.py for Discord): a small
interface, so core/ never touches discord.py and a worker process can post through REST alike."""
from __future__ import annotations

from typing import Protocol

from providers.models import GenerationResult, ImageData


class DeliveryForbidden(Exception):
    """The bot may not post the result there (missing Send Messages / Attach Files)."""


class Member(Protocol):
    """Who asked: a Discord user or member (roles are read when present, for role limits)."""

    id: int
    mention: str


class Delivery(Protocol):
    channel_id: int | None  # where the job was asked
    conversation_channel_id: int | None  # set when that channel is itself a conversation (a DM)
    can_open_thread: bool  # a regular channel, where a result starts a thread

    def address(self) -> dict:
        """Where the member waits (after the first status() posted the status message), as JSON: a
        process that runs the job elsewhere rebuilds the delivery from it."""

    async def status(self, text: str, job_id: str, preview: ImageData | None = None) -> None:
        """Show progress with a Cancel button, and a new interim image (shown small, marked as a
        draft) when there is one; failures are logged, never raised."""

    async def result(self, job_id: str, prompt: str, resolution: str | None, result: GenerationResult,
                     seconds: float, *, cost: float | None = None, waited: float = 0.0) -> int:
        """Post the images (or, for a text job, the words) with their caption and buttons; returns the
        message id. `cost` is what was charged, `waited` the time since the member asked (for the
        operators' log line and the member's optional DM). Raises DeliveryForbidden when the bot may
        not post there."""

    async def failure(self, job_id: str, text: str, *, retry: bool) -> None:
        """Turn the status into an error (with a Reroll button when `retry`); never raises."""

    async def open_thread(self, name: str, message_id: int, conversation_id: int) -> bool:
        """Start a thread on the result message; False (the member told why) when Discord refuses."""
