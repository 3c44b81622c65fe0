"""/help: what the bot does, its commands, how threads work, and the member's own limits."""
from __future__ import annotations

from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

from core.prices import money

from .access import is_admin
from .usage import remaining_line

if TYPE_CHECKING:
    from bot import ImageBot

COMMANDS = (
    ("/imagine", "an image from a prompt; optional shape, resolution (1K/2K/4K), count and provider"),
    ("/edit", "edit one image, or combine up to three, with a prompt"),
    ("/describe", "the model writes a prompt for your image; Imagine this draws it"),
    ("Edit image", "right-click a message → Apps: edit the images in it"),
    ("/settings", "your default shape, resolution and provider (in a bot thread or DM conversation, its own); "
                  "notify: a DM when a long job is done"),
    ("/usage", "your images, spend and what is left of your quota"),
    ("/forget", "in a bot thread or DM: clear the conversation's history so the next turn starts fresh"),
    ("/help", "this page"),
)
ADMIN_COMMANDS = (
    ("/usage scope:server", "the server's totals and top members, today or this month"),
    ("/limits show · set · role · reset", "the server's limits, role limits, and resetting a member's quota"),
)
THREADS = ("Every result starts a thread. Write there to change the image: each message (text, new "
           "images, or both) is the next turn, and the model sees the earlier prompts and images. The card "
           "at the top of the thread changes its shape, resolution and provider for later turns. Buttons "
           "under each image: **Upscale** (U1-U4: that picture at the largest size its model makes) and **Vary** "
           "(V1-V4); under a result: **Reroll**, **Remix** (edit the prompt), **Continue from here**, **Delete**. "
           "In direct messages, the "
           "DM itself is the conversation.")


async def help_embed(bot: ImageBot, user, guild_id: int | None) -> discord.Embed:
    quota = bot.quota
    default, model, _ = quota.price_for(None, None)
    embed = discord.Embed(
        title="🍌 Nano Banana image bot", colour=discord.Colour.yellow(),
        description=f"Makes and edits images with Google's Nano Banana models. Default: `{model}` via "
                    f"{default}. Each image costs the server money, so there are limits.")
    lines = [f"**{name}** — {what}" for name, what in COMMANDS]
    if is_admin(bot, user):
        lines += [f"**{name}** — {what} *(admins)*" for name, what in ADMIN_COMMANDS]
    embed.add_field(name="Commands", value="\n".join(lines), inline=False)
    embed.add_field(name="Threads", value=THREADS, inline=False)
    status = await quota.status(user, guild_id)
    limits, window = status.limits, status.periods
    prices = " · ".join(f"{res} {money(quota.price_for(None, res)[2])}" for res in ("1K", "2K", "4K"))
    embed.add_field(name="Your limits", inline=False, value="\n".join([
        "Images today: " + remaining_line(limits.user_daily_images, status.member_day.images, kind="images",
                                          reset=window.day_end).replace("\n", " · "),
        "Budget this month: " + remaining_line(limits.user_monthly_budget, status.member_month.cost,
                                               kind="money", reset=window.month_end).replace("\n", " · "),
        f"Jobs at once: {limits.user_max_jobs or 'no limit'}"
        + (f" · {limits.user_cooldown_seconds:g} s between jobs" if limits.user_cooldown_seconds else ""),
        f"Price per image ({default}): {prices}; failed or refused images are not charged.",
    ]))
    return embed


class Help(commands.Cog):
    def __init__(self, bot: ImageBot) -> None:
        self.bot = bot

    @app_commands.command(name="help", description="What the bot does, its commands, threads and your limits")
    async def help(self, interaction: discord.Interaction) -> None:
        embed = await help_embed(self.bot, interaction.user, interaction.guild_id)
        await interaction.response.send_message(embed=embed, ephemeral=True)


async def setup(bot: ImageBot) -> None:
    await bot.add_cog(Help(bot))
