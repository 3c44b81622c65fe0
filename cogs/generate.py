"""Slash commands and the "Edit image" context menu: collect a prompt and images, start a job."""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Optional

import discord
from discord import app_commands
from discord.ext import commands

from core.jobs import JobSpec, Options
from core.quota import LimitError
from providers.models import ASPECT_RATIOS, RESOLUTIONS

from .access import denial
from .delivery import DiscordDelivery
from .inputs import InputError, check_attachments_cheaply, check_prompt, image_attachments, read_images
from .preferences import with_defaults
from .replies import InteractionReply, refuse
from .threads import conversation_for_channel

if TYPE_CHECKING:
    from bot import ImageBot

log = logging.getLogger(__name__)

RATIO_CHOICES = [app_commands.Choice(name="auto (model decides / keeps the input's shape)", value="auto")] + [
    app_commands.Choice(name=ratio, value=ratio) for ratio in ASPECT_RATIOS]
DESCRIBE_PROMPT = ("Write a prompt an image model could use to recreate the attached image: one paragraph naming "
                   "the subject, setting, style, lighting, colours and composition. Answer with the prompt text "
                   "only; do not draw an image.")
RESOLUTION_CHOICES = [app_commands.Choice(name=res, value=res) for res in RESOLUTIONS]


class PromptModal(discord.ui.Modal, title="Edit image"):
    prompt = discord.ui.TextInput(label="What should change?", style=discord.TextStyle.paragraph,
                                  placeholder="e.g. make the sky purple and add a moon", max_length=2000)

    def __init__(self, cog: Generate, message: discord.Message) -> None:
        super().__init__(timeout=900)
        self.cog, self.message = cog, message

    async def on_submit(self, interaction: discord.Interaction) -> None:
        await self.cog.start(interaction, kind="context", prompt=self.prompt.value,
                             attachments=image_attachments(self.message)[: self.cog.bot.config.max_input_images],
                             options=Options())


class Generate(commands.Cog):
    def __init__(self, bot: ImageBot) -> None:
        self.bot = bot
        self.edit_menu = app_commands.ContextMenu(name="Edit image", callback=self.edit_image_menu)
        bot.tree.add_command(self.edit_menu)

    async def cog_unload(self) -> None:
        self.bot.tree.remove_command(self.edit_menu.name, type=self.edit_menu.type)

    @app_commands.command(name="imagine", description="Generate an image from a prompt")
    @app_commands.describe(prompt="What to draw", aspect_ratio="Shape of the image", resolution="1K, 2K or 4K",
                           count="How many images (1-4)", provider="Which configured gateway to use")
    @app_commands.choices(aspect_ratio=RATIO_CHOICES, resolution=RESOLUTION_CHOICES)
    async def imagine(self, interaction: discord.Interaction, prompt: str,
                      aspect_ratio: Optional[app_commands.Choice[str]] = None,
                      resolution: Optional[app_commands.Choice[str]] = None,
                      count: Optional[app_commands.Range[int, 1, 4]] = None,
                      provider: Optional[str] = None) -> None:
        await self.start(interaction, kind="imagine", prompt=prompt, attachments=[],
                         options=self._options(aspect_ratio, resolution, count, provider))

    @app_commands.command(name="edit", description="Edit or combine images with a prompt")
    @app_commands.describe(prompt="What to change or how to combine them", image="The image to edit",
                           image2="A second image (optional)", image3="A third image (optional)",
                           aspect_ratio="Shape of the result", resolution="1K, 2K or 4K",
                           provider="Which configured gateway to use")
    @app_commands.choices(aspect_ratio=RATIO_CHOICES, resolution=RESOLUTION_CHOICES)
    async def edit(self, interaction: discord.Interaction, prompt: str, image: discord.Attachment,
                   image2: Optional[discord.Attachment] = None, image3: Optional[discord.Attachment] = None,
                   aspect_ratio: Optional[app_commands.Choice[str]] = None,
                   resolution: Optional[app_commands.Choice[str]] = None,
                   provider: Optional[str] = None) -> None:
        attachments = [a for a in (image, image2, image3) if a is not None]
        await self.start(interaction, kind="edit", prompt=prompt, attachments=attachments,
                         options=self._options(aspect_ratio, resolution, None, provider))

    @app_commands.command(name="describe", description="Have the model write a prompt for an image")
    @app_commands.describe(image="The image to describe", provider="Which configured gateway to use")
    async def describe(self, interaction: discord.Interaction, image: discord.Attachment,
                       provider: Optional[str] = None) -> None:
        await self.start(interaction, kind="describe", prompt=DESCRIBE_PROMPT, attachments=[image],
                         options=Options(provider=provider or None))

    @imagine.autocomplete("provider")
    @edit.autocomplete("provider")
    @describe.autocomplete("provider")
    async def provider_autocomplete(self, interaction: discord.Interaction, current: str):
        return [app_commands.Choice(name=f"{name} ({self.bot.providers.get(name).config.model})"[:100], value=name)
                for name in self.bot.providers.names if current.lower() in name.lower()][:25]

    async def edit_image_menu(self, interaction: discord.Interaction, message: discord.Message) -> None:
        if not image_attachments(message):
            await interaction.response.send_message("That message has no image to edit.", ephemeral=True)
            return
        await interaction.response.send_modal(PromptModal(self, message))

    def _options(self, ratio, resolution, count, provider) -> Options:
        return Options(aspect_ratio=None if ratio is None else ratio.value,  # "auto" is resolved in start
                       resolution=resolution.value if resolution else None, count=1 if count is None else count,
                       provider=provider or None)

    async def start(self, interaction: discord.Interaction, *, kind: str, prompt: str,
                    attachments: list[discord.Attachment], options: Options) -> None:
        """Check what needs no lookup, acknowledge, then reserve, read the images and queue the job."""
        bot, config = self.bot, self.bot.config
        try:
            reason = denial(bot, interaction.user, interaction.channel)
            if reason:
                raise InputError(reason)
            prompt = check_prompt(prompt, config)
            check_attachments_cheaply(attachments, config)
            if options.provider and options.provider not in bot.providers.names:
                raise InputError(f"There is no provider called `{options.provider}`; choose one of: "
                                 f"{', '.join(bot.providers.names)}.")
            if not 1 <= options.count <= 4:  # Discord enforces the option's range; a forged interaction does not
                raise InputError(f"count must be from 1 to 4, not {options.count}.")
        except InputError as exc:
            await refuse(interaction, str(exc))
            return
        # /describe stands alone: it neither continues a conversation nor takes image defaults.
        in_conversation_channel = isinstance(interaction.channel, (discord.Thread, discord.DMChannel)) \
            and kind != "describe"
        async with bot.jobs.place(interaction.channel_id if in_conversation_channel else None) as ticket:
            # Acknowledged before any database work, so "thinking…" shows at once however busy the store.
            await interaction.response.defer(thinking=True)
            try:
                if kind != "describe":
                    options = await with_defaults(bot, interaction.user.id, interaction.channel, options)
                await bot.jobs.admit(ticket, interaction.user, interaction.guild_id, kind, options)
                images = await read_images(bot.cpu, attachments, config)
            except (LimitError, InputError) as exc:
                await refuse(interaction, str(exc))
                return
            conv = await conversation_for_channel(bot, interaction.channel) if in_conversation_channel else None
            spec = JobSpec(kind=kind, user=interaction.user, guild_id=interaction.guild_id, prompt=prompt,
                           images=tuple(images), options=options, conversation=conv, parent="head")
            reply = InteractionReply(interaction)
            delivery = DiscordDelivery(bot, reply, interaction.user.mention, interaction.user.id)
            await bot.jobs.submit(ticket, spec, delivery)


async def setup(bot: ImageBot) -> None:
    await bot.add_cog(Generate(bot))
