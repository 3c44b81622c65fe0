"""Settings: a member's defaults and a bot thread's settings, with select menus that survive restarts.

A member's defaults (shape, resolution, provider) fill in what /imagine, /edit and "Edit image"
leave out. In a bot thread the thread's settings apply instead: they sit on a settings card posted at
the top of every new thread, and changing a select menu there changes the next turns. Each select is
a DynamicItem whose custom_id names what it edits (`nb:set:thread:<conversation id>:res`,
`nb:set:me:<user id>:ratio`), so cards keep working after a restart.
"""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Optional

import discord
from discord import app_commands
from discord.ext import commands

from core.jobs import Options
from core.models import provider_sizes
from core.prices import money
from providers.models import ASPECT_RATIOS, RESOLUTIONS

from .access import denial, is_admin

if TYPE_CHECKING:
    from bot import ImageBot

log = logging.getLogger(__name__)

# select field -> (settings key, label, value meaning "nothing chosen")
SETTING_FIELDS = {"ratio": ("aspect_ratio", "Shape", "auto"), "res": ("resolution", "Resolution", "default"),
                  "provider": ("provider", "Provider", "default")}


async def with_defaults(bot: ImageBot, user_id: int, channel, options: Options) -> Options:
    """Fill what a command left out: from the bot thread's (or DM conversation's) settings there,
    else from the member's defaults. An explicit "auto" shape stays auto."""
    conv = None
    if isinstance(channel, (discord.Thread, discord.DMChannel)):
        conv = await bot.store.conversation_for_channel(channel.id)
    base = conv.options if conv is not None else await bot.store.member_defaults(user_id)
    ratio = options.aspect_ratio or base.get("aspect_ratio")
    provider = options.provider or base.get("provider")
    return Options(aspect_ratio=None if ratio == "auto" else ratio,
                   resolution=options.resolution or base.get("resolution"), count=options.count,
                   provider=provider if provider in bot.providers.names else None)


def describe(bot: ImageBot, settings: dict[str, Any]) -> dict[str, str]:
    """Readable values for an embed: shape, resolution, provider and model, price per image."""
    quota = bot.quota
    provider, model, price = quota.price_for(settings.get("provider"), settings.get("resolution"))
    default_note = " (default)" if not settings.get("provider") else ""
    return {"Shape": settings.get("aspect_ratio") or "auto",
            "Resolution": settings.get("resolution") or "model default (1K)",
            "Provider": f"{provider}{default_note} · `{model}`",
            "Price": f"≈ {money(price)} per image"}


def settings_embed(bot: ImageBot, settings: dict[str, Any], *, thread: bool, dm: bool = False) -> discord.Embed:
    if thread:
        place = "this conversation" if dm else "this thread"
        embed = discord.Embed(title="💬 Conversation settings" if dm else "🧵 Thread settings",
                              colour=discord.Colour.blurple(),
                              description=f"Write in {place} to change the image: every message is the "
                                          "next turn. These settings apply to the next turns.")
    else:
        embed = discord.Embed(title="⚙️ Your defaults", colour=discord.Colour.blurple(),
                              description="Used by /imagine, /edit and Edit image when you leave an option "
                                          "out. In a bot thread, the thread's own settings apply.")
    for name, value in describe(bot, settings).items():
        embed.add_field(name=name, value=value, inline=True)
    return embed


def settings_view(bot: ImageBot, scope: str, target: int, settings: dict[str, Any]) -> discord.ui.View:
    view = discord.ui.View(timeout=None)
    for field in SETTING_FIELDS:
        if field == "provider" and len(bot.providers.names) < 2:
            continue
        view.add_item(SettingSelect(bot, scope, target, field, settings))
    return view


def _choices(bot: ImageBot, field: str, settings: dict[str, Any]) -> list[tuple[str, str]]:
    """(value, label) pairs for a select; the first is "nothing chosen". Sizes follow the model."""
    if field == "ratio":
        return [("auto", "Shape: auto (the model decides or keeps the input's)")] + [
            (r, f"Shape: {r}") for r in ASPECT_RATIOS]
    if field == "res":
        sizes = provider_sizes(bot.providers, settings.get("provider"))
        return [("default", "Resolution: model default (1K)")] + [(r, f"Resolution: {r}") for r in sizes]
    return [("default", f"Provider: default ({bot.providers.names[0]})")] + [
        (name, f"Provider: {name} ({bot.providers.get(name).config.model})"[:100]) for name in bot.providers.names]


class SettingSelect(discord.ui.DynamicItem[discord.ui.Select],
                    template=r"nb:set:(?P<scope>thread|me):(?P<target>[0-9]+):(?P<field>ratio|res|provider)"):
    def __init__(self, bot: ImageBot, scope: str, target: int, field: str, settings: dict[str, Any]) -> None:
        key, _, empty = SETTING_FIELDS[field]
        current = settings.get(key) or empty
        options = [discord.SelectOption(label=label, value=value, default=value == current)
                   for value, label in _choices(bot, field, settings)][:25]
        super().__init__(discord.ui.Select(custom_id=f"nb:set:{scope}:{target}:{field}", options=options,
                                           min_values=1, max_values=1))
        self.scope, self.target, self.field = scope, target, field

    @classmethod
    async def from_custom_id(cls, interaction: discord.Interaction, item, match):
        return cls(interaction.client, match["scope"], int(match["target"]), match["field"], {})

    async def callback(self, interaction: discord.Interaction) -> None:
        bot: ImageBot = interaction.client
        reason = denial(bot, interaction.user, interaction.channel)
        if reason:
            await interaction.response.send_message(reason, ephemeral=True)
            return
        key, _, empty = SETTING_FIELDS[self.field]
        value = self.item.values[0] if self.item.values else empty
        value = None if value == empty or (self.field == "provider" and value not in bot.providers.names) else value
        if self.scope == "me":
            if interaction.user.id != self.target:
                await interaction.response.send_message("These are someone else's defaults; use /settings for "
                                                        "your own.", ephemeral=True)
                return
            settings = {**await bot.store.member_defaults(self.target), key: value}
            await bot.store.update_member_defaults(self.target, settings)
        else:
            conv = await bot.store.conversation(self.target)
            if conv is None:
                await interaction.response.send_message("This thread's conversation is no longer stored.",
                                                        ephemeral=True)
                return
            refusal = thread_refusal(bot, interaction.user, conv)
            if refusal:
                await interaction.response.send_message(refusal, ephemeral=True)
                return
            settings = {**conv.options, key: value}
            await bot.store.update_options(conv.id, settings)
        log.info("%s settings %s: %s = %s", self.scope, self.target, key, value)
        dm = isinstance(interaction.channel, discord.DMChannel)
        await interaction.response.edit_message(embed=settings_embed(bot, settings, thread=self.scope == "thread", dm=dm),
                                                view=settings_view(bot, self.scope, self.target, settings))


async def post_settings_card(bot: ImageBot, thread: discord.Thread, conversation_id: int) -> None:
    """A result just opened a thread: put the settings card at its top."""
    conv = await bot.store.conversation(conversation_id)
    if conv is None:
        return
    try:
        await thread.send(embed=settings_embed(bot, conv.options, thread=True),
                          view=settings_view(bot, "thread", conv.id, conv.options))
    except discord.HTTPException as exc:
        log.warning("could not post the settings card in thread %s: %s", thread.id, exc.status)


def thread_refusal(bot: ImageBot, user, conv) -> str | None:
    """Who may change a thread's settings: whoever started it, and admins."""
    if user.id == conv.owner_id or conv.owner_id == getattr(bot.user, "id", None) or is_admin(bot, user):
        return None
    return f"Only <@{conv.owner_id}> (who started this thread) or an admin can change its settings."


class Preferences(commands.Cog):
    def __init__(self, bot: ImageBot) -> None:
        self.bot = bot

    async def cog_load(self) -> None:
        self.bot.add_dynamic_items(SettingSelect)

    async def cog_unload(self) -> None:
        self.bot.remove_dynamic_items(SettingSelect)

    @app_commands.command(name="settings", description="Your default shape, resolution and provider; "
                                                       "in a bot thread, the thread's settings")
    @app_commands.describe(aspect_ratio="Default shape (auto: the model decides)",
                           resolution="Default resolution", provider="Default gateway",
                           notify="Send me a direct message when a job that waited over a minute is done")
    @app_commands.choices(
        aspect_ratio=[app_commands.Choice(name="auto (no default)", value="auto")] + [
            app_commands.Choice(name=r, value=r) for r in ASPECT_RATIOS],
        resolution=[app_commands.Choice(name="model default", value="default")] + [
            app_commands.Choice(name=r, value=r) for r in RESOLUTIONS])
    async def settings(self, interaction: discord.Interaction,
                       aspect_ratio: Optional[app_commands.Choice[str]] = None,
                       resolution: Optional[app_commands.Choice[str]] = None,
                       provider: Optional[str] = None, notify: Optional[bool] = None) -> None:
        bot = self.bot
        reason = denial(bot, interaction.user, interaction.channel)
        if reason:
            await interaction.response.send_message(reason, ephemeral=True)
            return
        if provider and provider != "default" and provider not in bot.providers.names:
            await interaction.response.send_message(
                f"There is no provider called `{provider}`; choose one of: {', '.join(bot.providers.names)}.",
                ephemeral=True)
            return
        changes = {}
        if aspect_ratio is not None:
            changes["aspect_ratio"] = None if aspect_ratio.value == "auto" else aspect_ratio.value
        if resolution is not None:
            changes["resolution"] = None if resolution.value == "default" else resolution.value
        if provider:
            changes["provider"] = None if provider == "default" else provider
        if notify is not None:  # always the member's own, wherever it is set
            mine = await bot.store.member_defaults(interaction.user.id)
            await bot.store.update_member_defaults(interaction.user.id, {**mine, "notify": notify})
            if not changes:
                await interaction.response.send_message(
                    "I will send you a direct message when a long job is done." if notify else
                    "No more direct messages about finished jobs.", ephemeral=True)
                return
        conv = None  # in a bot thread or a DM conversation, /settings is about that conversation
        dm = isinstance(interaction.channel, discord.DMChannel)
        if dm or isinstance(interaction.channel, discord.Thread):
            conv = await bot.store.conversation_for_channel(interaction.channel.id)
        if conv is not None:
            refusal = thread_refusal(bot, interaction.user, conv) if changes else None
            if refusal:
                await interaction.response.send_message(refusal, ephemeral=True)
                return
            settings = {**conv.options, **changes}
            if changes:
                await bot.store.update_options(conv.id, settings)
            scope, target = "thread", conv.id
        else:
            settings = {**await bot.store.member_defaults(interaction.user.id), **changes}
            if changes:
                await bot.store.update_member_defaults(interaction.user.id, settings)
            scope, target = "me", interaction.user.id
        await interaction.response.send_message(
            ("Saved. " if changes else "") + "Change a setting with the menus below.",
            embed=settings_embed(bot, settings, thread=scope == "thread", dm=dm),
            view=settings_view(bot, scope, target, settings), ephemeral=True)

    @settings.autocomplete("provider")
    async def provider_autocomplete(self, interaction: discord.Interaction, current: str):
        names = ["default"] + self.bot.providers.names
        return [app_commands.Choice(name=name if name == "default" else
                                    f"{name} ({self.bot.providers.get(name).config.model})"[:100], value=name)
                for name in names if current.lower() in name.lower()][:25]


async def setup(bot: ImageBot) -> None:
    await bot.add_cog(Preferences(bot))
