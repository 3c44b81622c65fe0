"""After a result is posted: the operators' log line (LOG_CHANNEL_ID) and the member's optional DM
when a long job is done (/settings notify). Neither may fail the job: errors are logged only."""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import discord

from core.prices import money
from providers.models import GenerationResult

from .render import trim

if TYPE_CHECKING:
    from bot import ImageBot

log = logging.getLogger(__name__)
NO_PINGS = discord.AllowedMentions.none()


async def announce(bot: ImageBot, message: discord.Message, member_id: int | None, prompt: str,
                   result: GenerationResult, cost: float | None, waited: float) -> None:
    await _log_line(bot, message, member_id, prompt, result, cost)
    if member_id is not None and waited >= bot.config.notify_after:
        await _notify(bot, message, member_id)


def log_line(member_id: int | None, prompt: str, link: str, result: GenerationResult, cost: float | None) -> str:
    what = f"{len(result.images)} image(s)" if result.images else "a description"
    price = money(cost) if cost is not None else "cost unknown"
    return (f"<@{member_id}> · “{trim(' '.join(prompt.split()), 300)}” · {what}: {link} · "
            f"{result.provider} ({result.model}) · {price}")


async def _log_line(bot: ImageBot, message: discord.Message, member_id: int | None, prompt: str,
                    result: GenerationResult, cost: float | None) -> None:
    channel_id = bot.config.log_channel_id
    if channel_id is None:
        return
    channel = bot.get_channel(channel_id)
    if channel is None:
        log.warning("LOG_CHANNEL_ID %s: the bot cannot see that channel", channel_id)
        return
    try:
        await channel.send(log_line(member_id, prompt, message.jump_url, result, cost), allowed_mentions=NO_PINGS)
    except discord.HTTPException as exc:
        log.warning("could not write to the log channel %s: %s", channel_id, exc.status)


async def _notify(bot: ImageBot, message: discord.Message, member_id: int) -> None:
    if isinstance(message.channel, discord.DMChannel):
        return  # the result itself arrived in their DMs
    try:
        if not (await bot.store.member_defaults(member_id)).get("notify"):
            return
        user = bot.get_user(member_id) or await bot.fetch_user(member_id)
        await user.send(f"Your image is ready: {message.jump_url}", allowed_mentions=NO_PINGS)
    except discord.HTTPException as exc:  # DMs closed, for one
        log.info("could not DM member %s about their result: %s", member_id, exc.status)
