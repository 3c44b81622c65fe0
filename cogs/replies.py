"""Where a job talks to its member: one status message that becomes the result.

Two kinds: an interaction's deferred response (slash commands, context menu, buttons), and a plain
message in a channel or thread (turns written in a bot thread). Both show status updates, then the
files, split over several messages when there are more than Discord allows in one.
"""
from __future__ import annotations

import io
import logging
from datetime import datetime, timedelta, timezone

import discord

from .render import OutFile, chunks

log = logging.getLogger(__name__)

# Interaction tokens live 15 minutes; keep a margin for the upload itself.
TOKEN_LIFETIME = timedelta(minutes=14)
# Invalid Webhook Token, Unknown Webhook, Unknown Interaction: the 15 minutes are over.
DEAD_TOKEN_CODES = (50027, 10015, 10062)
# Unknown Channel, Missing Access, Thread is archived (locked): the thread is gone.
THREAD_GONE_CODES = (10003, 50001, 50083)
UNKNOWN_MESSAGE = 10008


def to_discord_files(files: list[OutFile]) -> list[discord.File]:
    return [discord.File(io.BytesIO(f.data), filename=f.filename) for f in files]


class Reply:
    channel: discord.abc.Messageable
    upload_limit: int

    async def status(self, text: str, view: discord.ui.View | None, files: list[OutFile] | None = None) -> None:
        """Show a status line; `files` (a draft preview) replace what the message showed."""

    async def deliver(self, content: str, files: list[OutFile], view: discord.ui.View | None) -> discord.Message:
        ...

    async def fail(self, text: str, view: discord.ui.View | None = None) -> None: ...

    async def notice(self, text: str) -> None:
        """A side remark for the member (privately where Discord allows it)."""

    @property
    def message_id(self) -> int | None: ...

    def address(self) -> dict:
        """Where this reply goes, as JSON, for another process to answer there (cogs/addresses.py)."""


async def refuse(interaction: discord.Interaction, text: str) -> None:
    """Tell only the member why not: an ephemeral answer; once acknowledged with a public "thinking…",
    that placeholder removed first (a first follow-up would edit it in place, public)."""
    if not interaction.response.is_done():
        await interaction.response.send_message(text, ephemeral=True)
        return
    await interaction.delete_original_response()
    await interaction.followup.send(text, ephemeral=True)


def channel_address(channel, upload_limit: int, mention: str) -> dict:
    return {"channel": {"id": channel.id, "guild_id": getattr(getattr(channel, "guild", None), "id", None),
                        "type": channel.type.value, "parent_id": getattr(channel, "parent_id", None)},
            "upload_limit": upload_limit, "mention": mention}


class InteractionReply(Reply):
    """The deferred response of an interaction, edited in place; the channel once the token is old."""

    def __init__(self, interaction: discord.Interaction) -> None:
        self.interaction = interaction
        self.channel = interaction.channel
        self.upload_limit = interaction.filesize_limit
        self._message_id: int | None = None
        self._fallback: ChannelReply | None = None
        self._token_dead = False

    @property
    def message_id(self) -> int | None:
        return self._fallback.message_id if self._fallback else self._message_id

    def address(self) -> dict:
        interaction = self.interaction
        return {"interaction": {"application_id": interaction.application_id, "token": interaction.token,
                                "created_at": interaction.created_at.timestamp()},
                **channel_address(self.channel, self.upload_limit, interaction.user.mention)}

    def _expired(self) -> bool:
        if not self._token_dead and datetime.now(timezone.utc) - self.interaction.created_at > TOKEN_LIFETIME:
            self._token_dead = True
        return self._token_dead

    def _channel_reply(self) -> ChannelReply:
        if self._fallback is None:
            self._fallback = ChannelReply(self.channel, mention=self.interaction.user.mention,
                                          upload_limit=self.upload_limit)
        return self._fallback

    async def _edit(self, **fields) -> discord.Message | None:
        """Edit the original response; None when Discord says the token is no longer valid."""
        try:
            msg = await self.interaction.edit_original_response(**fields)
        except discord.HTTPException as exc:
            if exc.code not in DEAD_TOKEN_CODES:
                raise
            log.info("interaction token expired (%s); answering in the channel instead", exc.code)
            self._token_dead = True
            return None
        self._message_id = msg.id
        return msg

    async def status(self, text: str, view: discord.ui.View | None, files: list[OutFile] | None = None) -> None:
        if not self._expired():  # once the token is gone, a status line is not worth a channel message
            extra = {} if files is None else {"attachments": to_discord_files(files)}
            await self._edit(content=text, view=view, **extra)

    async def deliver(self, content: str, files: list[OutFile], view: discord.ui.View | None) -> discord.Message:
        batches = chunks(files)
        msg = None if self._expired() else await self._edit(
            content=content, attachments=to_discord_files(batches[0]), view=view)
        if msg is None:
            return await self._channel_reply().deliver(content, files, view)
        for batch in batches[1:]:
            await self.interaction.followup.send(files=to_discord_files(batch), wait=True)
        return msg

    async def fail(self, text: str, view: discord.ui.View | None = None) -> None:
        if self._expired() or await self._edit(content=text, view=view, attachments=[]) is None:
            await self._channel_reply().fail(text, view)

    async def notice(self, text: str) -> None:
        if not self._expired():
            await self.interaction.followup.send(text, ephemeral=True)


class ChannelReply(Reply):
    """A status message posted in a channel or thread, then edited into the result."""

    def __init__(self, channel: discord.abc.Messageable, *, reference: discord.Message | None = None,
                 mention: str = "", upload_limit: int | None = None, message: discord.PartialMessage | None = None,
                 parent: discord.abc.Messageable | None = None) -> None:
        self.channel = channel
        self.reference = reference
        self.mention = mention
        # Where a closed thread's answer goes (a channel rebuilt from an address does not know it).
        self.parent = parent or getattr(channel, "parent", None)
        guild = getattr(channel, "guild", None)
        self.upload_limit = upload_limit or (guild.filesize_limit if guild else discord.utils.DEFAULT_FILE_SIZE_LIMIT_BYTES)
        self._message: discord.Message | discord.PartialMessage | None = message  # the status, once posted
        self._prefix = ""  # set once the answer had to leave a closed thread

    @property
    def message_id(self) -> int | None:
        return self._message.id if self._message else None

    def address(self) -> dict:
        return {"status_message_id": self.message_id, "reference_id": self.reference.id if self.reference else None,
                **channel_address(self.channel, self.upload_limit, self.mention)}

    async def _send(self, **kwargs) -> discord.Message:
        if self.reference is not None:
            kwargs["reference"] = self.reference.to_reference(fail_if_not_exists=False)
            kwargs["mention_author"] = False
        return await self.channel.send(**kwargs)

    async def _post(self, **fields) -> discord.Message:
        """Send the message, or edit it if it exists; if its thread was deleted or locked meanwhile,
        go on in the thread's parent channel, saying so and naming the member."""
        sent = dict(fields)
        if self._prefix and "content" in sent:
            sent["content"] = f"{self._prefix}\n{sent['content'] or ''}".strip()
        try:
            if self._message is None:
                self._message = await self._send(**sent)
            else:
                edit = sent
                if "files" in edit:
                    edit["attachments"] = edit.pop("files")
                self._message = await self._message.edit(**edit)
            return self._message
        except discord.HTTPException as exc:
            for file in fields.get("files") or ():
                file.reset()  # the refused attempt read them: the next one sends them from the start
            if exc.code == UNKNOWN_MESSAGE and self._message is not None:
                log.info("status message %s was deleted; posting a new one", self._message.id)
                self._message = None  # somebody deleted it: the answer still deserves a message
                fields.pop("attachments", None)
                return await self._post(**fields)
            parent = self.parent
            if exc.code not in THREAD_GONE_CODES or parent is None or self._prefix:
                raise
            log.info("thread %s is gone or locked (%s); answering in its parent channel", self.channel.id, exc.code)
            self.channel, self.reference, self._message = parent, None, None
            self._prefix = f"{self.mention} (the thread was closed, so the answer is here)".strip()
            fields.pop("attachments", None)  # a fresh message has nothing to keep
            return await self._post(**fields)

    async def status(self, text: str, view: discord.ui.View | None, files: list[OutFile] | None = None) -> None:
        extra = {} if files is None else {"files": to_discord_files(files)}
        await self._post(content=text, view=view, **extra)

    async def deliver(self, content: str, files: list[OutFile], view: discord.ui.View | None) -> discord.Message:
        batches = chunks(files)
        await self._post(content=content, files=to_discord_files(batches[0]), view=view)
        for batch in batches[1:]:
            await self.channel.send(files=to_discord_files(batch))
        return self._message

    async def fail(self, text: str, view: discord.ui.View | None = None) -> None:
        if self.mention and self.mention not in text:
            text = f"{self.mention} {text}"
        if self._message is None:
            await self._post(content=text, view=view)
        else:
            await self._post(content=text, view=view, attachments=[])

    async def notice(self, text: str) -> None:
        await self.channel.send(f"{self.mention} {text}".strip())
