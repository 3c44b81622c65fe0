"""/limits: admins (Manage Server, or ADMIN_USER_IDS) show and change the server's limits, give
roles their own limits, and reset a member's quota. Overrides live in SQLite, per server."""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

from core.limits import FIELDS, MEMBER_FIELDS
from core.prices import money
from providers.models import RESOLUTIONS

from .access import is_admin
from core.quota import typed_overrides

if TYPE_CHECKING:
    from bot import ImageBot

log = logging.getLogger(__name__)

SETTING_CHOICES = [app_commands.Choice(name=f.label, value=f.name) for f in FIELDS.values()]
MEMBER_SETTING_CHOICES = [c for c in SETTING_CHOICES if c.value in MEMBER_FIELDS]
VALUE_HELP = "A number, 'unlimited', or 'default' to go back to the .env value"


async def limits_embed(bot: ImageBot, guild: discord.Guild) -> discord.Embed:
    settings, defaults = bot.config, bot.config.default_limits
    overrides = await bot.store.limit_overrides(guild.id)
    server = typed_overrides(overrides.get("guild", {}))
    embed = discord.Embed(title=f"⚖️ Limits in {guild.name}", colour=discord.Colour.orange(),
                          description=f"Days and months start at midnight {settings.limits_timezone}. "
                                      "Change with `/limits set`, `/limits role`; `/limits reset` clears a "
                                      "member's quota.")
    lines = []
    for name, field in FIELDS.items():
        source = "server" if name in server else ".env"
        lines.append(f"**{field.label}**: {field.show(server.get(name, defaults.get(name)))} *({source})*")
    embed.add_field(name="Server and members", value="\n".join(lines), inline=False)
    roles = {role.id: dict(values) for role_id, values in settings.role_limits.items()
             if (role := guild.get_role(role_id)) is not None}
    for scope, values in overrides.items():
        if scope.startswith("role:") and scope[5:].isdigit():
            roles.setdefault(int(scope[5:]), {}).update(typed_overrides(values))
    if roles:
        embed.add_field(name="Role overrides (the most generous of a member's roles applies)", inline=False,
                        value="\n".join(f"<@&{role_id}>: " + ", ".join(
                            f"{FIELDS[n].label.removeprefix('Member ')} {FIELDS[n].show(v)}" for n, v in values.items())
                            for role_id, values in roles.items() if values)[:1024] or "none")
    prices = []
    for name in bot.providers.names[:10]:
        model = bot.providers.get(name).config.model
        per = " · ".join(f"{res} {money(settings.prices.per_image(name, model, res))}" for res in RESOLUTIONS)
        prices.append(f"`{name}` ({model}): {per}")
    embed.add_field(name="Prices per image", value="\n".join(prices), inline=False)
    return embed


class Admin(commands.GroupCog, group_name="limits", group_description="Server limits and quotas (admins)"):
    def __init__(self, bot: ImageBot) -> None:
        self.bot = bot
        super().__init__()

    async def _refuse(self, interaction: discord.Interaction) -> bool:
        if interaction.guild is None:
            await interaction.response.send_message("Limits are set per server; use this in a server.",
                                                    ephemeral=True)
            return True
        if not is_admin(self.bot, interaction.user):
            await interaction.response.send_message("Only admins (Manage Server) can change limits.",
                                                    ephemeral=True)
            return True
        return False

    @app_commands.command(name="show", description="The server's limits, role overrides and prices")
    async def show(self, interaction: discord.Interaction) -> None:
        if await self._refuse(interaction):
            return
        await interaction.response.send_message(embed=await limits_embed(self.bot, interaction.guild),
                                                ephemeral=True)

    @app_commands.command(name="set", description="Change one of the server's limits")
    @app_commands.describe(setting="Which limit", value=VALUE_HELP)
    @app_commands.choices(setting=SETTING_CHOICES)
    async def set_limit(self, interaction: discord.Interaction, setting: app_commands.Choice[str],
                        value: str) -> None:
        if await self._refuse(interaction):
            return
        await self._change(interaction, "guild", setting.value, value, f"**{FIELDS[setting.value].label}**")

    @app_commands.command(name="role", description="Give a role its own member limit")
    @app_commands.describe(role="The role", setting="Which member limit", value=VALUE_HELP)
    @app_commands.choices(setting=MEMBER_SETTING_CHOICES)
    async def role_limit(self, interaction: discord.Interaction, role: discord.Role,
                         setting: app_commands.Choice[str], value: str) -> None:
        if await self._refuse(interaction):
            return
        await self._change(interaction, f"role:{role.id}", setting.value, value,
                           f"**{FIELDS[setting.value].label}** for {role.mention}")

    async def _change(self, interaction: discord.Interaction, scope: str, name: str, raw: str, what: str) -> None:
        store, guild = self.bot.store, interaction.guild
        field = FIELDS[name]
        if raw.strip().lower() == "default":
            await store.clear_limit_override(guild.id, scope, name)
            text = f"{what} is back to its default."
        else:
            try:
                value = field.parse(raw)
            except ValueError as exc:
                await interaction.response.send_message(f"{exc}. {VALUE_HELP}.", ephemeral=True)
                return
            await store.set_limit_override(guild.id, scope, name, value, updated_by=interaction.user.id)
            text = f"{what} is now {field.show(value)}."
        log.info("guild %s: %s %s set to %r by %s", guild.id, scope, name, raw, interaction.user.id)
        await interaction.response.send_message(text, embed=await limits_embed(self.bot, guild), ephemeral=True)

    @app_commands.command(name="reset", description="Reset a member's quota: their images and spend count "
                                                    "from now on")
    @app_commands.describe(member="Whose quota to reset")
    async def reset(self, interaction: discord.Interaction, member: discord.Member) -> None:
        if await self._refuse(interaction):
            return
        await self.bot.store.reset_quota(interaction.guild.id, member.id, reset_by=interaction.user.id)
        log.info("guild %s: quota of %s reset by %s", interaction.guild.id, member.id, interaction.user.id)
        await interaction.response.send_message(
            f"Reset {member.mention}'s quota: today's images and this month's spend count from now on. "
            "Their usage report still shows what they made.", ephemeral=True)


async def setup(bot: ImageBot) -> None:
    await bot.add_cog(Admin(bot))
