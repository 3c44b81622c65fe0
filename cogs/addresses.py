"""A job's delivery rebuilt from its stored address, in a process that never saw the interaction or
the message that started the job (a worker on PostgreSQL, or a gateway cancelling a queued job).

Everything goes through Discord's REST API: an interaction's original response is edited through
its webhook (the application's id and the interaction's token) while the token lives, and the
channel takes over after that; a thread turn's status message is edited in its channel.
"""
from __future__ import annotations

from datetime import datetime, timezone
from types import SimpleNamespace
from typing import TYPE_CHECKING

import discord

from .delivery import DiscordDelivery
from .replies import ChannelReply, InteractionReply

if TYPE_CHECKING:
    from bot import ImageBot


class StoredInteraction:
    """The parts of a `discord.Interaction` that `InteractionReply` uses, from a stored address."""

    def __init__(self, bot: ImageBot, data: dict, channel: discord.PartialMessageable, mention: str,
                 upload_limit: int) -> None:
        # An application-owned webhook (type 3), exactly as discord.py builds Interaction.followup.
        self.followup = discord.Webhook.from_state(
            data={"id": data["application_id"], "type": 3, "token": data["token"]}, state=bot._connection)
        self.created_at = datetime.fromtimestamp(data["created_at"], timezone.utc)
        self.channel, self.filesize_limit = channel, upload_limit
        self.user = SimpleNamespace(mention=mention)

    async def edit_original_response(self, **fields) -> discord.WebhookMessage:
        return await self.followup.edit_message("@original", **fields)


def _channel(bot: ImageBot, data: dict | None) -> discord.PartialMessageable | None:
    if not data or data.get("id") is None:
        return None
    return bot.get_partial_messageable(data["id"], guild_id=data.get("guild_id"),
                                       type=discord.ChannelType(data["type"]) if data.get("type") is not None else None)


def delivery_from_address(bot: ImageBot, address: dict) -> DiscordDelivery:
    channel = _channel(bot, address["channel"])
    mention, limit = address.get("mention") or "", address.get("upload_limit") or discord.utils.DEFAULT_FILE_SIZE_LIMIT_BYTES
    if "interaction" in address:
        reply = InteractionReply(StoredInteraction(bot, address["interaction"], channel, mention, limit))
    else:
        status, reference = address.get("status_message_id"), address.get("reference_id")
        parent = _channel(bot, {"id": address["channel"].get("parent_id"), "guild_id": address["channel"].get("guild_id"),
                                "type": discord.ChannelType.text.value})
        reply = ChannelReply(channel, mention=mention, upload_limit=limit, parent=parent,
                             reference=channel.get_partial_message(reference) if reference else None,
                             message=channel.get_partial_message(status) if status else None)
    return DiscordDelivery(bot, reply, mention, address.get("member_id"))
