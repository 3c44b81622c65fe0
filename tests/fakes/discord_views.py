"""Read-only views the driver hands to tests: stored messages, their attachments, and interactions."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Iterable

from .discord_interactions import InteractionRecord
from .discord_server import FakeDiscord
from .discord_state import MessageFlags, MessageRecord

if TYPE_CHECKING:
    from .driver import Driver


class Attachment:
    def __init__(self, fake: FakeDiscord, data: dict[str, Any]) -> None:
        self._fake, self.raw = fake, data
        self.id = int(data["id"])
        self.filename: str = data["filename"]
        self.url: str = data["url"]
        self.proxy_url: str = data["proxy_url"]
        self.size: int = data["size"]
        self.content_type: str | None = data.get("content_type")
        self.width: int | None = data.get("width")
        self.height: int | None = data.get("height")

    @property
    def data(self) -> bytes:
        """The stored bytes (what the CDN URL serves)."""
        return self._fake.world.files[self.id].data

    def __repr__(self) -> str:
        return f"<Attachment {self.filename} {self.size}B {self.content_type}>"


class Message:
    """A live view of a stored message: attributes show its current state (edits included)."""

    def __init__(self, fake: FakeDiscord, record: MessageRecord) -> None:
        self._fake, self.record = fake, record

    id = property(lambda self: self.record.id)
    channel_id = property(lambda self: self.record.channel_id)
    data = property(lambda self: self.record.data)
    content = property(lambda self: self.record.data["content"])
    author_id = property(lambda self: int(self.record.data["author"]["id"]))
    flags = property(lambda self: int(self.record.data["flags"]))
    embeds = property(lambda self: self.record.data["embeds"])
    components = property(lambda self: self.record.data["components"])
    deleted = property(lambda self: self.record.deleted)
    ephemeral = property(lambda self: self.record.ephemeral)
    loading = property(lambda self: bool(self.flags & MessageFlags.LOADING))
    edits = property(lambda self: len(self.record.history))
    # On the fake's clock (`driver.world.clock.now()`), like Interaction.dispatched_at / acked_at.
    created_at = property(lambda self: self.record.created_at)
    updated_at = property(lambda self: self.record.updated_at)

    @property
    def attachments(self) -> list[Attachment]:
        return [Attachment(self._fake, a) for a in self.record.data["attachments"]]

    @property
    def thread_id(self) -> int | None:
        """The thread started from this message, if any (its id equals the message id)."""
        return self.id if self.id in self._fake.world.channels and self._fake.is_thread(self.id) else None

    def buttons(self) -> list[dict[str, Any]]:
        return [c for c in walk_components(self.components) if c.get("type") == 2]

    def __repr__(self) -> str:
        return f"<Message {self.id} in {self.channel_id} by {self.author_id}: {self.content[:60]!r}>"


def walk_components(components: Iterable[dict[str, Any]]) -> Iterable[dict[str, Any]]:
    for c in components:
        yield c
        yield from walk_components(c.get("components") or [])
        for key in ("component", "accessory"):
            if isinstance(c.get(key), dict):
                yield from walk_components([c[key]])


class Interaction:
    """What a test holds after acting: acknowledgement, original response, followups, modal."""

    def __init__(self, driver: Driver, record: InteractionRecord) -> None:
        self._driver, self.record = driver, record

    id = property(lambda self: self.record.id)
    channel_id = property(lambda self: self.record.channel_id)
    ack_type = property(lambda self: self.record.ack_type)
    ack_latency = property(lambda self: self.record.ack_latency)  # seconds from dispatch to acknowledgement
    dispatched_at = property(lambda self: self.record.dispatched_at)  # fake clock: INTERACTION_CREATE sent
    acked_at = property(lambda self: self.record.acked_at)
    errors = property(lambda self: list(self.record.errors))     # (route, status, code) the fake refused

    def _state(self) -> str:
        rec = self.record
        sent = "sent" if rec.dispatched_at is not None else "never sent (was the bot connected?)"
        return f"INTERACTION_CREATE {sent}, ack type {rec.ack_type}, refusals {rec.errors}"

    async def _wait(self, check: Callable[[], Any], timeout: float, what: str) -> Any:
        try:
            return await self._driver.wait(check, timeout, f"{what} of interaction {self.id} ({self.record.name})")
        except TimeoutError as exc:
            raise TimeoutError(f"{exc}; {self._state()}") from None

    async def ack(self, timeout: float = 10) -> int:
        """Wait for the acknowledgement; returns the callback type (4, 5, 6, 7, 8, 9)."""
        return await self._wait(lambda: self.record.ack_type, timeout, "the acknowledgement")

    async def response(self, where: Callable[[Message], Any] | None = None, timeout: float = 10) -> Message:
        """The original response once it is no longer "thinking" and `where` (if given) holds."""
        def check() -> Message | None:
            rec = self._driver.fake.world.find_message(self.record.original_id or 0)
            if rec is None or rec.deleted:
                return None
            msg = Message(self._driver.fake, rec)
            return msg if not msg.loading and (where is None or where(msg)) else None
        return await self._wait(check, timeout, "the original response")

    @property
    def original(self) -> Message | None:
        """The original response as it stands now (perhaps still "thinking", perhaps deleted)."""
        rec = self._driver.fake.world.find_message(self.record.original_id or 0)
        return None if rec is None else Message(self._driver.fake, rec)

    @property
    def followups(self) -> list[Message]:
        world = self._driver.fake.world
        return [Message(self._driver.fake, world.find_message(i)) for i in self.record.followup_ids]

    async def followup(self, index: int = 0, where: Callable[[Message], Any] | None = None,
                       timeout: float = 10) -> Message:
        def check() -> Message | None:
            found = [m for m in self.followups if not m.deleted and (where is None or where(m))]
            return found[index] if len(found) > index else None
        return await self._wait(check, timeout, f"followup #{index}")

    async def modal(self, timeout: float = 10) -> dict[str, Any]:
        """The modal the bot answered with: {"title", "custom_id", "components", "inputs": [...]}."""
        modal = await self._wait(lambda: self.record.modal, timeout, "the modal")
        inputs = [c for c in walk_components(modal["components"]) if c.get("type") == 4]
        labels = {id(c["component"]): c.get("label") for c in walk_components(modal["components"])
                  if c.get("type") == 18 and isinstance(c.get("component"), dict)}
        for c in inputs:
            c.setdefault("label", labels.get(id(c)))
        return {**modal, "inputs": inputs}

    async def refused(self, code: int | None = None, timeout: float = 10) -> tuple[str, int, int]:
        """Wait until the fake refuses a request for this interaction (optionally with `code`)."""
        def check() -> tuple[str, int, int] | None:
            return next((e for e in self.record.errors if code is None or e[2] == code), None)
        return await self._wait(check, timeout, f"a refusal ({code})")

    def __repr__(self) -> str:
        return f"<Interaction {self.id} {self.record.name!r} ack={self.ack_type}>"
