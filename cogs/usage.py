"""/usage: a member's images, spend and what is left of their quotas; for admins, a server's totals,
top members and models over a day or a month."""
from __future__ import annotations

from typing import TYPE_CHECKING, Optional

import discord
from discord import app_commands
from discord.ext import commands

from core.prices import money

from .access import denial, is_admin
from core.quota import QuotaStatus

if TYPE_CHECKING:
    from bot import ImageBot

PERIOD_NAMES = {"day": "today", "month": "this month"}


def images(n: int, bold: bool = False) -> str:
    number = f"**{n}**" if bold else str(n)
    return f"{number} image" if n == 1 else f"{number} images"


def remaining_line(limit, used: float, *, kind: str, reset: float) -> str:
    """"**3** of 5 images left · resets in 4 hours", or "no limit"."""
    if limit is None:
        return "no limit"
    if kind == "money":
        left = f"**{money(max(0.0, limit - used))}** of {money(limit)} left"
    else:
        left = f"**{max(0, int(limit) - int(used))}** of {int(limit)} images left"
    return f"{left}\nresets <t:{int(reset)}:R>"


def member_embed(user: discord.abc.User, place: str, status: QuotaStatus, day, month) -> discord.Embed:
    limits, window = status.limits, status.periods
    embed = discord.Embed(title=f"📊 Usage of {user.display_name}", description=place,
                          colour=discord.Colour.green())
    embed.add_field(name="Today", value=f"{images(day.images, True)} · {money(day.cost)}")
    embed.add_field(name="This month", value=f"{images(month.images, True)} · {money(month.cost)}")
    embed.add_field(name="\u200b", value="\u200b")  # a new row
    embed.add_field(name="Daily images", value=remaining_line(
        limits.user_daily_images, status.member_day.images, kind="images", reset=window.day_end))
    embed.add_field(name="Monthly budget", value=remaining_line(
        limits.user_monthly_budget, status.member_month.cost, kind="money", reset=window.month_end))
    if status.guild_day is not None and (limits.guild_daily_images is not None or
                                         limits.guild_monthly_budget is not None):
        parts = []
        if limits.guild_daily_images is not None:
            parts.append(f"{max(0, limits.guild_daily_images - status.guild_day.images)} of "
                         f"{limits.guild_daily_images} images left today")
        if limits.guild_monthly_budget is not None:
            parts.append(f"{money(max(0.0, limits.guild_monthly_budget - status.guild_month.cost))} of "
                         f"{money(limits.guild_monthly_budget)} left this month")
        embed.add_field(name="Whole server", value="\n".join(parts))
    footer = [f"{limits.user_max_jobs or 'any number of'} jobs at once"]
    if limits.user_cooldown_seconds:
        footer.append(f"{limits.user_cooldown_seconds:g} s between jobs")
    footer.append(f"failed or refused images are not charged ({month.not_charged} this month)")
    embed.set_footer(text=" · ".join(footer))
    return embed


async def server_embed(bot: ImageBot, guild: discord.Guild, period: str) -> discord.Embed:
    store, quota = bot.store, bot.quota
    limits, window = await quota.limits_for(None, guild.id), quota.window()
    since = window.day_start if period == "day" else window.month_start
    totals = await store.usage_totals(guild.id, since)
    embed = discord.Embed(title=f"📊 {guild.name} · {PERIOD_NAMES[period]}", colour=discord.Colour.gold(),
                          description=f"{images(totals.images, True)} · **{money(totals.cost)}** spent"
                                      f"\n-# {totals.not_charged} failed or refused, not charged")
    if period == "day" and limits.guild_daily_images is not None:
        used = await store.quota_use(guild.id, None, window.day_start)
        embed.add_field(name="Server quota", value=remaining_line(
            limits.guild_daily_images, used.images, kind="images", reset=window.day_end))
    if period == "month" and limits.guild_monthly_budget is not None:
        used = await store.quota_use(guild.id, None, window.month_start)
        embed.add_field(name="Server budget", value=remaining_line(
            limits.guild_monthly_budget, used.cost, kind="money", reset=window.month_end))
    top = await store.top_users(guild.id, since, 10)
    embed.add_field(name="Top members", inline=False, value="\n".join(
        f"{n}. <@{user_id}> — {images(count)} · {money(cost)}" for n, (user_id, count, cost) in
        enumerate(top, start=1)) or "nobody yet")
    models = await store.usage_by_model(guild.id, since)
    if models:
        embed.add_field(name="By model", inline=False, value="\n".join(
            f"`{model}` {res} — {images(count)} · {money(cost)}".replace("  ", " ")
            for model, res, count, cost in models))
    return embed


class Usage(commands.Cog):
    def __init__(self, bot: ImageBot) -> None:
        self.bot = bot

    @app_commands.command(name="usage", description="Images and spend: yours, or the server's (admins)")
    @app_commands.describe(scope="Your own usage, or the whole server's (admins)",
                           period="For the server view: today or this month",
                           member="Admins: another member's usage")
    @app_commands.choices(
        scope=[app_commands.Choice(name="mine", value="me"), app_commands.Choice(name="server", value="server")],
        period=[app_commands.Choice(name="today", value="day"),
                app_commands.Choice(name="this month", value="month")])
    async def usage(self, interaction: discord.Interaction, scope: Optional[app_commands.Choice[str]] = None,
                    period: Optional[app_commands.Choice[str]] = None,
                    member: Optional[discord.Member] = None) -> None:
        bot, user, guild = self.bot, interaction.user, interaction.guild
        reason = denial(bot, user, interaction.channel)
        wants_server = scope is not None and scope.value == "server"
        other = member is not None and member.id != user.id
        if not reason and (wants_server or other) and guild is None:
            reason = "That view exists only in a server."
        if not reason and (wants_server or other) and not is_admin(bot, user):
            reason = "Only admins (Manage Server) can see the server's or another member's usage."
        if reason:
            await interaction.response.send_message(reason, ephemeral=True)
            return
        if wants_server:
            embed = await server_embed(bot, guild, period.value if period else "month")
        else:
            who = member or user
            status = await bot.quota.status(who, interaction.guild_id)
            guild_id = interaction.guild_id or 0
            day = await bot.store.usage_totals(guild_id, status.periods.day_start, user_id=who.id)
            month = await bot.store.usage_totals(guild_id, status.periods.month_start, user_id=who.id)
            place = f"in **{guild.name}**" if guild else "in direct messages"
            embed = member_embed(who, place, status, day, month)
        await interaction.response.send_message(embed=embed, ephemeral=True)


async def setup(bot: ImageBot) -> None:
    await bot.add_cog(Usage(bot))
