"""What the buttons on results and status messages do (the buttons themselves: cogs/views.py)."""
from __future__ import annotations

import logging
from dataclasses import replace
from typing import TYPE_CHECKING

import discord
from discord.ext import commands

from core.jobs import JobSpec, Options
from core.quota import LimitError

from .access import denial, is_admin
from .delivery import DiscordDelivery
from .replies import ChannelReply, InteractionReply
from .views import ActionButton, CancelButton, result_view

if TYPE_CHECKING:
    from bot import ImageBot

log = logging.getLogger(__name__)

VARY_PROMPT = "Make a variation of this image: keep the subject and style, change the details and composition."


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
    reason = denial(bot, interaction.user, interaction.channel)
    if reason:
        await interaction.response.send_message(reason, ephemeral=True)
        return
    record = await bot.store.job(job_id)
    if record is None or record.conversation_id is None:
        await interaction.response.send_message("That result is no longer stored, so it cannot be reused.",
                                                ephemeral=True)
        return
    conv = await bot.store.conversation(record.conversation_id)
    if action == "branch":
        if record.model_turn_id is None or conv is None:
            await interaction.response.send_message("That job has no image to continue from.", ephemeral=True)
            return
        await bot.store.set_head(conv.id, record.model_turn_id)
        await interaction.response.send_message("The next message in this conversation builds on this image.",
                                                ephemeral=True)
        return
    user_turn = await bot.store.turn(record.user_turn_id) if record.user_turn_id else None
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

    thread = bot.get_channel(conv.channel_id) if conv.channel_id else None
    async with bot.jobs.place(conv.channel_id) as ticket:
        try:
            await bot.jobs.admit(ticket, interaction.user, interaction.guild_id, action, spec.options)
        except LimitError as exc:
            await interaction.response.send_message(str(exc), ephemeral=True)
            return
        if thread is not None and thread.id != interaction.channel_id:
            # The click came from the thread's starter message: answer inside the thread.
            await interaction.response.send_message(f"Working on it in {thread.mention}.", ephemeral=True)
            reply = ChannelReply(thread, mention=interaction.user.mention)
        else:
            await interaction.response.defer(thinking=True)
            reply = InteractionReply(interaction)
        return await bot.jobs.submit(ticket, spec, DiscordDelivery(bot, reply, interaction.user.mention))


class Buttons(commands.Cog):
    def __init__(self, bot: ImageBot) -> None:
        self.bot = bot
        self.pressed: set[tuple[str, str, int]] = set()  # clicks whose job has not finished yet

    async def cancel(self, interaction: discord.Interaction, job_id: str) -> None:
        bot = self.bot
        job = bot.jobs.jobs.get(job_id)
        if job is None:
            await interaction.response.send_message("This job has already finished.", ephemeral=True)
            return
        if job.spec.user.id != interaction.user.id and not is_admin(bot, interaction.user):
            await interaction.response.send_message(f"Only {job.spec.user.mention} can cancel this job.",
                                                    ephemeral=True)
            return
        await interaction.response.defer()
        await bot.jobs.cancel(job_id)

    async def run_action(self, interaction: discord.Interaction, action: str, job_id: str) -> None:
        await run_action(self.bot, interaction, action, job_id)

    @commands.Cog.listener()
    async def on_jobs_interrupted(self, jobs) -> None:
        """Jobs left running by a crash: tell their members where they asked, with a Reroll button."""
        await self.bot.wait_until_ready()
        for job in jobs:
            if not job.channel_id:
                continue
            # Found by another process (a shard that does not hold this guild): REST reaches it too.
            channel = self.bot.get_channel(job.channel_id) or self.bot.get_partial_messageable(job.channel_id)
            try:
                await channel.send(f"<@{job.user_id}> The bot restarted while your image was being made "
                                   f"(“{job.options.get('prompt', '')[:100]}”). Press Reroll to try again.",
                                   view=result_view(job.id, failed=True),
                                   # only the owner: the quoted prompt may hold other members' mentions
                                   allowed_mentions=discord.AllowedMentions(users=[discord.Object(job.user_id)]))
            except discord.HTTPException as exc:
                log.warning("could not tell about interrupted job %s: %s", job.id, exc.status)

    async def cog_load(self) -> None:
        self.bot.add_dynamic_items(ActionButton, CancelButton)

    async def cog_unload(self) -> None:
        self.bot.remove_dynamic_items(ActionButton, CancelButton)


async def setup(bot: ImageBot) -> None:
    await bot.add_cog(Buttons(bot))
