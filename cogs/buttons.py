"""Buttons on results and status messages, persistent across restarts.

Each button is a DynamicItem whose custom_id names an action and a stored job (`nb:reroll:<job>`),
so one class serves every message, before and after a restart: everything it needs is in SQLite.
"""
from __future__ import annotations

import logging
from dataclasses import replace
from typing import TYPE_CHECKING

import discord
from discord.ext import commands

from .access import denial, is_admin
from .quota import LimitError
from .replies import ChannelReply, InteractionReply

if TYPE_CHECKING:
    from bot import ImageBot

log = logging.getLogger(__name__)

VARY_PROMPT = "Make a variation of this image: keep the subject and style, change the details and composition."
LABELS = {"reroll": ("Reroll", "🎲"), "vary": ("Vary", "🔀"), "4k": ("4K", "🔍"), "branch": ("Continue from here", "↪️")}


def result_view(job_id: str, *, failed: bool = False) -> discord.ui.View:
    view = discord.ui.View(timeout=None)
    for action in (("reroll",) if failed else ("reroll", "vary", "4k", "branch")):
        view.add_item(ActionButton(action, job_id))
    return view


def cancel_view(job_id: str) -> discord.ui.View:
    view = discord.ui.View(timeout=None)
    view.add_item(CancelButton(job_id))
    return view


class ActionButton(discord.ui.DynamicItem[discord.ui.Button], template=r"nb:(?P<action>reroll|vary|4k|branch):(?P<job>[0-9a-f]+)"):
    def __init__(self, action: str, job_id: str) -> None:
        label, emoji = LABELS[action]
        super().__init__(discord.ui.Button(label=label, emoji=emoji, custom_id=f"nb:{action}:{job_id}",
                                           style=discord.ButtonStyle.secondary))
        self.action, self.job_id = action, job_id

    @classmethod
    async def from_custom_id(cls, interaction, item, match):
        return cls(match["action"], match["job"])

    async def callback(self, interaction: discord.Interaction) -> None:
        await run_action(interaction.client, interaction, self.action, self.job_id)


class CancelButton(discord.ui.DynamicItem[discord.ui.Button], template=r"nb:cancel:(?P<job>[0-9a-f]+)"):
    def __init__(self, job_id: str) -> None:
        super().__init__(discord.ui.Button(label="Cancel", emoji="✖️", custom_id=f"nb:cancel:{job_id}",
                                           style=discord.ButtonStyle.danger))
        self.job_id = job_id

    @classmethod
    async def from_custom_id(cls, interaction, item, match):
        return cls(match["job"])

    async def callback(self, interaction: discord.Interaction) -> None:
        bot: ImageBot = interaction.client
        job = bot.jobs.jobs.get(self.job_id)
        if job is None:
            await interaction.response.send_message("This job has already finished.", ephemeral=True)
            return
        if job.spec.user.id != interaction.user.id and not is_admin(bot, interaction.user):
            await interaction.response.send_message(f"Only {job.spec.user.mention} can cancel this job.",
                                                    ephemeral=True)
            return
        await interaction.response.defer()
        await bot.jobs.cancel(self.job_id)


async def run_action(bot: ImageBot, interaction: discord.Interaction, action: str, job_id: str) -> None:
    """Reroll, Vary, 4K and Continue from here: a new job built from a stored one.

    A double click must not start two jobs: the (action, job, member) key is claimed before any
    await and held until the job it started has finished.
    """
    cog = bot.get_cog("Buttons")
    key = (action, job_id, interaction.user.id)
    if key in cog.pressed:
        await interaction.response.send_message("Already on it: that button was just pressed.", ephemeral=True)
        return
    cog.pressed.add(key)
    job = None
    try:
        job = await _start_from_stored_job(bot, interaction, action, job_id)
    finally:
        if job is None or job.task is None:
            cog.pressed.discard(key)
        else:
            job.task.add_done_callback(lambda _: cog.pressed.discard(key))


async def _start_from_stored_job(bot: ImageBot, interaction: discord.Interaction, action: str, job_id: str):
    from .jobs import JobSpec, Options  # jobs imports this module for its views

    reason = denial(bot, interaction.user, interaction.channel)
    if reason:
        await interaction.response.send_message(reason, ephemeral=True)
        return
    record = await bot.storage.job(job_id)
    if record is None or record.conversation_id is None:
        await interaction.response.send_message("That result is no longer stored, so it cannot be reused.",
                                                ephemeral=True)
        return
    conv = await bot.storage.conversation(record.conversation_id)
    if action == "branch":
        if record.model_turn_id is None or conv is None:
            await interaction.response.send_message("That job has no image to continue from.", ephemeral=True)
            return
        await bot.storage.set_head(conv.id, record.model_turn_id)
        await interaction.response.send_message("The next message in this conversation builds on this image.",
                                                ephemeral=True)
        return
    user_turn = await bot.storage.turn(record.user_turn_id) if record.user_turn_id else None
    if user_turn is None or conv is None:
        await interaction.response.send_message("That result is no longer stored, so it cannot be reused.",
                                                ephemeral=True)
        return
    options = Options.from_dict(record.options)
    spec = JobSpec(kind=action, user=interaction.user, guild_id=interaction.guild_id, prompt=user_turn.text,
                   images=user_turn.images, options=options, conversation=conv, parent=user_turn.parent_id)
    if action == "vary":
        if record.model_turn_id is None:
            await interaction.response.send_message("That job has no image to vary.", ephemeral=True)
            return
        spec = replace(spec, prompt=VARY_PROMPT, images=(), parent=record.model_turn_id,
                       options=replace(options, count=1))
    elif action == "4k":
        spec = replace(spec, options=replace(options, resolution="4K"))

    ticket = bot.jobs.reserve(conv.channel_id)
    thread = bot.get_channel(conv.channel_id) if conv.channel_id else None
    try:
        try:
            await bot.jobs.admit(interaction.user, interaction.guild_id, action, spec.options, ticket)
        except LimitError as exc:
            ticket.release()
            await interaction.response.send_message(str(exc), ephemeral=True)
            return
        if thread is not None and thread.id != interaction.channel_id:
            # The click came from the thread's starter message: answer inside the thread.
            await interaction.response.send_message(f"Working on it in {thread.mention}.", ephemeral=True)
            reply = ChannelReply(thread, mention=interaction.user.mention)
        else:
            await interaction.response.defer(thinking=True)
            reply = InteractionReply(interaction)
        return await bot.jobs.submit(spec, reply, ticket)
    except BaseException:
        ticket.release()
        raise


class Buttons(commands.Cog):
    def __init__(self, bot: ImageBot) -> None:
        self.bot = bot
        self.pressed: set[tuple[str, str, int]] = set()  # clicks whose job has not finished yet

    async def cog_load(self) -> None:
        self.bot.add_dynamic_items(ActionButton, CancelButton)

    async def cog_unload(self) -> None:
        self.bot.remove_dynamic_items(ActionButton, CancelButton)


async def setup(bot: ImageBot) -> None:
    await bot.add_cog(Buttons(bot))
