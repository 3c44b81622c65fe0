"""Who may use the bot where: allowed guilds, channels and roles, DMs, and admins."""
from __future__ import annotations

from typing import TYPE_CHECKING

import discord

if TYPE_CHECKING:
    from bot import ImageBot


def is_admin(bot: ImageBot, user: discord.abc.User) -> bool:
    if user.id in bot.config.admin_user_ids:
        return True
    perms = getattr(user, "guild_permissions", None)
    return bool(perms and perms.manage_guild)


def denial(bot: ImageBot, user: discord.abc.User, channel) -> str | None:
    """A sentence saying why `user` may not use the bot in `channel`, or None when allowed."""
    config = bot.config
    if is_admin(bot, user):
        return None
    guild = getattr(channel, "guild", None)
    if guild is None:
        return None if config.allow_dms else "The bot does not work in direct messages; use it in a server."
    if config.allowed_guilds and guild.id not in config.allowed_guilds:
        return "The bot is not enabled in this server."
    if config.allowed_channels:
        ids = {channel.id, getattr(channel, "parent_id", None)}
        if not ids & config.allowed_channels:
            return "The bot is not enabled in this channel."
    if config.allowed_roles:
        roles = {role.id for role in getattr(user, "roles", [])}
        if not roles & config.allowed_roles:
            return "You need one of the roles this server allows to use the bot."
    return None
