"""Conversations in bot threads and DMs: every message there is the next turn.

The conversation lives in SQLite. If a bot thread has no record (a fresh database), it is rebuilt
from the thread's own messages through the Discord API instead of failing.
"""
from __future__ import annotations

import logging
import re
from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

from core.errors import InputError
from core.jobs import JobSpec, Options
from store import Conversation

from .access import denial, is_admin
from .delivery import DiscordDelivery
from .inputs import check_prompt, image_attachments, read_images
from .replies import ChannelReply

if TYPE_CHECKING:
    from bot import ImageBot

log = logging.getLogger(__name__)

IMAGES_ONLY_PROMPT = "Use the attached image(s) to continue."
_CAPTION_PROMPT = re.compile(r"\*\*(.+?)\*\*", re.S)


async def conversation_for_channel(bot: ImageBot, channel, *, exclude: int | None = None) -> Conversation | None:
    conv = await bot.store.conversation_for_channel(channel.id)
    if conv is None and isinstance(channel, discord.Thread) and channel.owner_id == bot.user.id:
        conv = await rebuild_from_thread(bot, channel, exclude=exclude)
    return conv


async def rebuild_from_thread(bot: ImageBot, thread: discord.Thread, *, exclude: int | None) -> Conversation:
    """Recreate a bot thread's conversation from its messages: the bot's images become model turns."""
    messages: list[discord.Message] = []
    if thread.parent is not None:
        try:  # a thread started on a message shares that message's id
            messages.append(await thread.parent.fetch_message(thread.id))
        except discord.HTTPException:
            pass
    async for message in thread.history(limit=100, oldest_first=True):
        if message.id != exclude:
            messages.append(message)
    messages = messages[-max(1, bot.config.history_turns * 2):]
    store = bot.store
    conv = await store.create_conversation(owner_id=thread.owner_id or bot.user.id,
                                             guild_id=thread.guild.id, channel_id=thread.id)
    parent, last_role = None, None
    for message in messages:
        try:
            images = await read_images(bot.cpu, image_attachments(message)[: bot.config.max_input_images], bot.config)
        except InputError:
            images = []
        if message.author.id == bot.user.id:
            if not images:
                continue  # status lines and errors are not turns
            if last_role != "user":  # the prompt of a channel result lives in its caption
                found = _CAPTION_PROMPT.search(message.content or "")
                parent = await store.add_turn(conversation_id=conv.id, parent_id=parent, role="user",
                                                text=found.group(1) if found else "")
            parent = await store.add_turn(conversation_id=conv.id, parent_id=parent, role="model",
                                            images=images, message_id=message.id)
            last_role = "model"
        elif not message.author.bot and (message.content or images):
            parent = await store.add_turn(conversation_id=conv.id, parent_id=parent, role="user",
                                            text=message.content, images=images, message_id=message.id)
            last_role = "user"
    if parent is not None:
        await store.set_head(conv.id, parent)
    log.info("rebuilt conversation for thread %s from %d messages", thread.id, len(messages))
    return await store.conversation(conv.id)


class Threads(commands.Cog):
    def __init__(self, bot: ImageBot) -> None:
        self.bot = bot

    @app_commands.command(name="forget", description="Clear this conversation's history (in a bot thread or DM)")
    async def forget(self, interaction: discord.Interaction) -> None:
        """The next turn starts fresh; the messages stay, the model no longer sees them."""
        conv = await self.bot.store.conversation_for_channel(interaction.channel_id)
        if conv is None:
            await interaction.response.send_message("There is no conversation here to clear; use this in a "
                                                    "bot thread or a DM with the bot.", ephemeral=True)
            return
        if interaction.user.id != conv.owner_id and not is_admin(self.bot, interaction.user):
            await interaction.response.send_message("Only the member who started this conversation or an admin "
                                                    "can clear it.", ephemeral=True)
            return
        turns = await self.bot.store.clear_conversation(conv.id)
        await interaction.response.send_message(
            f"Cleared {turns} stored turns: the next message here starts a fresh image.", ephemeral=True)

    @commands.Cog.listener()
    async def on_message(self, message: discord.Message) -> None:
        channel = message.channel
        if message.author.bot or message.type not in (discord.MessageType.default, discord.MessageType.reply):
            return
        if not isinstance(channel, (discord.Thread, discord.DMChannel)):
            return
        bot = self.bot
        try:
            async with bot.jobs.place(channel.id) as ticket:  # before any await: turns keep their arrival order
                conv = await conversation_for_channel(bot, channel, exclude=message.id)
                if conv is None and not isinstance(channel, discord.DMChannel):
                    return  # somebody else's thread
                reason = denial(bot, message.author, channel)
                if reason:
                    raise InputError(reason)
                prompt = check_prompt(message.content, bot.config, required=False)
                images = await read_images(bot.cpu, image_attachments(message), bot.config)
                if not prompt and not images:
                    return
                options = Options.from_dict(conv.options if conv else {})
                spec = JobSpec(kind="turn", user=message.author, guild_id=getattr(message.guild, "id", None),
                               prompt=prompt or IMAGES_ONLY_PROMPT, images=tuple(images),
                               options=Options(options.aspect_ratio, options.resolution, 1, options.provider),
                               conversation=conv, parent="head")
                await bot.jobs.admit(ticket, message.author, spec.guild_id, spec.kind, spec.options)
                reply = ChannelReply(channel, reference=message, mention=message.author.mention)
                delivery = DiscordDelivery(bot, reply, message.author.mention, message.author.id)
                await bot.jobs.submit(ticket, spec, delivery)
        except InputError as exc:  # a LimitError too
            await message.reply(str(exc), mention_author=False, delete_after=60)


async def setup(bot: ImageBot) -> None:
    await bot.add_cog(Threads(bot))
