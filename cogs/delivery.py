"""Results to Discord: the job pipeline's Delivery (core/delivery.py) over a Reply (an interaction's
response, or a message in a channel or thread), with captions, files that fit, buttons and threads."""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import discord

from core.delivery import DeliveryForbidden
from core.models import can_upscale
from providers.models import GenerationResult, ImageData

from . import render
from .announce import announce
from .preferences import post_settings_card
from .replies import Reply
from .views import cancel_view, describe_view, result_view

if TYPE_CHECKING:
    from bot import ImageBot

log = logging.getLogger(__name__)


class DiscordDelivery:
    def __init__(self, bot: ImageBot, reply: Reply, mention: str, member_id: int | None = None) -> None:
        self.bot, self.reply, self.mention = bot, reply, mention
        self.member_id = member_id
        channel = reply.channel
        self.channel_id = getattr(channel, "id", None)
        # A DM is one conversation by itself (a bot thread's conversation is found before submitting).
        # (By type: a worker knows a channel only by its stored id and type.)
        kind = getattr(channel, "type", None)
        self.conversation_channel_id = channel.id if kind is discord.ChannelType.private else None
        self.can_open_thread = kind in (discord.ChannelType.text, discord.ChannelType.news)
        self._message: discord.Message | None = None

    def address(self) -> dict:
        return {**self.reply.address(), "member_id": self.member_id}

    async def status(self, text: str, job_id: str, preview: ImageData | None = None) -> None:
        files = None
        if preview is not None:  # downscaled off the loop: a draft is a small picture
            try:
                small = await self.bot.cpu.run_process(render.preview_jpeg, preview)
                files = [render.OutFile("draft-preview.jpg", small)]
            except Exception as exc:  # noqa: BLE001 - an unreadable draft is not worth a status line
                log.info("job %s: draft preview not shown: %s", job_id, exc)
        try:
            await self.reply.status(text, cancel_view(job_id), files)
        except discord.HTTPException as exc:
            log.debug("status update for %s failed: %s", job_id, exc.status)

    async def result(self, job_id: str, prompt: str, resolution: str | None, result: GenerationResult,
                     seconds: float, *, cost: float | None = None, waited: float = 0.0) -> int:
        """Post the result; if Discord still finds a file too large, re-encode smaller and try again."""
        bot, limit = self.bot, self.reply.upload_limit
        for attempt in range(3):
            files, notes = await render.prepare(bot.cpu, result.images, prompt, limit)
            notes += [w[:1].upper() + w[1:] + "." for w in result.warnings]  # e.g. fewer images than asked
            if result.attempts and bot.config.show_model_info:  # names providers: a detail operators may hide
                failed = ", ".join(a.provider for a in result.attempts)
                notes.append(f"{failed} failed, so {result.provider} answered instead.")
            if result.images:
                content = render.caption(prompt=prompt, model=result.model, provider=result.provider,
                                         resolution=resolution, seconds=seconds, model_text=result.text,
                                         notes=notes, author_mention=self.mention, images=result.images,
                                         details=bot.config.show_model_info)
                view = result_view(job_id, images=len(result.images),
                                   upscale=can_upscale(bot.providers, result.provider, resolution))
            else:  # a text job (/describe): the words are the result
                content = render.description(result.text, self.mention, result, bot.config.show_model_info, seconds)
                view = describe_view(job_id)
            try:
                self._message = await self.reply.deliver(content, files, view)
            except discord.Forbidden as exc:
                log.warning("job %s: Discord refused the post (%s)", job_id, exc.code)
                raise DeliveryForbidden() from exc
            except discord.HTTPException as exc:
                if (exc.status != 413 and exc.code != 40005) or attempt == 2:
                    raise
                log.info("job %s: Discord refused %d bytes of files; re-encoding under %d", job_id,
                         sum(len(f.data) for f in files), limit // 2)
                limit //= 2
                continue
            await announce(bot, self._message, self.member_id, prompt, result, cost, waited)
            return self._message.id
        raise AssertionError("unreachable")

    async def failure(self, job_id: str, text: str, *, retry: bool) -> None:
        try:
            await self.reply.fail(text, result_view(job_id, failed=True) if retry else None)
        except discord.HTTPException as exc:
            log.warning("could not tell the member about job %s: %s", job_id, exc.status)

    async def open_thread(self, name: str, message_id: int, conversation_id: int) -> bool:
        channel, message = self.reply.channel, self._message
        try:
            if isinstance(channel, discord.PartialMessageable):  # a worker knows the channel by id only
                channel = await self.bot.fetch_channel(channel.id)
            thread = await channel.create_thread(name=render.trim(name, 90) or "Image",
                                                 message=message or discord.Object(message_id),
                                                 auto_archive_duration=1440)
        except discord.HTTPException as exc:
            log.warning("could not start a thread on %s: %s", message_id, exc.status)
            why = "the bot may not create threads here" if exc.status == 403 else "Discord refused it"
            try:
                await self.reply.notice(f"I could not start a thread for this image ({why}); use the buttons "
                                        "or reply with /edit to keep refining it.")
            except discord.HTTPException:
                pass
            return False
        await post_settings_card(self.bot, thread, conversation_id)
        return True
