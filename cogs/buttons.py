"""What the buttons on results and status messages do (the buttons themselves: cogs/views.py; the jobs
they start: cogs/actions.py)."""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import discord
from discord.ext import commands

from store import ACTIVE_JOB_STATUSES

from .access import denial, is_admin
from .actions import GONE, start_from_stored_job
from .views import ActionButton, CancelButton, result_view

if TYPE_CHECKING:
    from bot import ImageBot

log = logging.getLogger(__name__)


REMIX_FORM = "nb:remix-form:"  # + job id: the Remix form, answered from its custom_id (see on_interaction)


class RemixModal(discord.ui.Modal, title="Remix"):
    """Reroll with the prompt edited: the stored prompt, prefilled."""

    def __init__(self, job_id: str, prompt: str) -> None:
        super().__init__(timeout=None, custom_id=f"{REMIX_FORM}{job_id}")
        self.add_item(discord.ui.TextInput(label="Prompt", style=discord.TextStyle.paragraph, custom_id="prompt",
                                           default=prompt[:4000], max_length=4000))


def submitted_text(components: list) -> str:
    """The first text input's value in a modal submission, whatever its layout (rows or labels)."""
    for item in components:
        if "value" in item:
            return str(item["value"] or "")
        found = submitted_text(item.get("components") or ([item["component"]] if item.get("component") else []))
        if found:
            return found
    return ""


class Buttons(commands.Cog):
    def __init__(self, bot: ImageBot) -> None:
        self.bot = bot
        self.pressed: set[tuple[str, str, int, int]] = set()  # clicks whose job has not finished yet

    async def press(self, interaction: discord.Interaction, action: str, job_id: str, index: int) -> None:
        if action == "branch":
            await self.branch(interaction, job_id)
        elif action == "delete":
            await self.delete(interaction, job_id)
        elif action == "remix":
            await self.open_remix(interaction, job_id)
        else:
            await self.start_once(interaction, action, job_id, index)

    async def start_once(self, interaction: discord.Interaction, action: str, job_id: str, index: int,
                         prompt: str | None = None) -> None:
        """A double click must not start two jobs: the (action, job, image, member) key is claimed
        before any await and held until the job it started has finished."""
        key = (action, job_id, index, interaction.user.id)
        if key in self.pressed:
            await interaction.response.send_message("Already on it: that button was just pressed.", ephemeral=True)
            return
        self.pressed.add(key)
        job = None
        try:
            job = await start_from_stored_job(self.bot, interaction, action, job_id, index, prompt)
        finally:
            if job is None or job.task is None:
                self.pressed.discard(key)
            else:
                job.task.add_done_callback(lambda _: self.pressed.discard(key))

    async def open_remix(self, interaction: discord.Interaction, job_id: str) -> None:
        bot = self.bot
        reason = denial(bot, interaction.user, interaction.channel)
        record = None if reason else await bot.store.job(job_id)
        turn = await bot.store.turn(record.user_turn_id) if record and record.user_turn_id else None
        if reason or turn is None:
            await interaction.response.send_message(reason or GONE, ephemeral=True)
            return
        modal = RemixModal(job_id, turn.text)
        await interaction.response.send_modal(modal)
        # Not kept in memory: on_interaction answers the submission from its custom_id, so a form
        # opened before a restart still works after it.
        modal.stop()

    @commands.Cog.listener()
    async def on_interaction(self, interaction: discord.Interaction) -> None:
        data = interaction.data or {}
        custom_id = str(data.get("custom_id") or "")
        if interaction.type is not discord.InteractionType.modal_submit or not custom_id.startswith(REMIX_FORM):
            return
        text, limit = submitted_text(data.get("components") or []).strip(), self.bot.config.max_prompt_chars
        if not text or len(text) > limit:
            await interaction.response.send_message(
                "The prompt is empty; nothing to remix." if not text else
                f"The prompt is {len(text)} characters; the limit is {limit}.", ephemeral=True)
            return
        await self.start_once(interaction, "remix", custom_id[len(REMIX_FORM):], 1, prompt=text)

    async def branch(self, interaction: discord.Interaction, job_id: str) -> None:
        bot = self.bot
        reason = denial(bot, interaction.user, interaction.channel)
        record = None if reason else await bot.store.job(job_id)
        if reason or record is None or record.model_turn_id is None or record.conversation_id is None:
            await interaction.response.send_message(reason or "That job has no image to continue from.",
                                                    ephemeral=True)
            return
        await bot.store.set_head(record.conversation_id, record.model_turn_id)
        await interaction.response.send_message("The next message in this conversation builds on this image.",
                                                ephemeral=True)

    async def delete(self, interaction: discord.Interaction, job_id: str) -> None:
        """Remove a result: its message, and its turn (and prompt) from the conversation."""
        bot = self.bot
        record = await bot.store.job(job_id)
        owner = record.user_id if record is not None else None
        if owner != interaction.user.id and not is_admin(bot, interaction.user):
            who = f"<@{owner}>" if owner else "the member who asked"
            await interaction.response.send_message(f"Only {who} or an admin can delete this result.",
                                                    ephemeral=True)
            return
        if record is not None and record.conversation_id is not None:
            turns = [t for t in (record.model_turn_id, record.user_turn_id) if t is not None]
            await bot.store.delete_turns(record.conversation_id, turns)
            await bot.store.update_job(job_id, status="deleted")
        await interaction.response.send_message("Deleted.", ephemeral=True)
        try:
            await interaction.message.delete()
        except discord.HTTPException as exc:
            log.warning("could not delete result message of job %s: %s", job_id, exc.status)

    async def cancel(self, interaction: discord.Interaction, job_id: str) -> None:
        bot = self.bot
        job = bot.jobs.jobs.get(job_id)
        # On PostgreSQL the job may wait in the queue or run on another process: the database knows it.
        record = await bot.store.job(job_id) if job is None else None
        if job is None and (record is None or record.status not in ACTIVE_JOB_STATUSES):
            await interaction.response.send_message("This job has already finished.", ephemeral=True)
            return
        owner = job.spec.user.id if job is not None else record.user_id
        if owner != interaction.user.id and not is_admin(bot, interaction.user):
            await interaction.response.send_message(f"Only <@{owner}> can cancel this job.", ephemeral=True)
            return
        await interaction.response.defer()
        await bot.jobs.cancel(job_id)

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
