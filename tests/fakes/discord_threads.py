"""Thread and reaction routes of the fake Discord (a mixin of `discord_rest.Rest`, split out for size).

Methods use Rest's helpers: `self.world`, `self.gateway`, `self.channel()`, `self.message()`,
`self.thread_payload()`, `self.messages`.
"""
from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from .discord_messages import DiscordError, form_error, unknown
from .discord_state import ChannelType, MessageFlags, MessageRecord, P

if TYPE_CHECKING:
    from .discord_rest import ApiRequest

NO_CONTENT = object()  # handler result meaning 204 (re-exported by discord_rest)


class ThreadRoutes:
    """Threads (from a message, standalone, members, archived lists) and reactions."""

    # ---- threads -----------------------------------------------------------------------------------

    def thread_name(self, body: dict[str, Any]) -> str:
        name = (body.get("name") or "").strip()
        if not 1 <= len(name) <= 100:
            raise form_error(("name",), "BASE_TYPE_BAD_LENGTH", "Must be between 1 and 100 in length.")
        return name

    def start_thread(self, parent_id: int, name: str, body: dict[str, Any], *, type_: int,
                     thread_id: int | None = None) -> dict[str, Any]:
        world = self.world
        thread = world.create_thread(parent_id, name, owner_id=world.bot_id, thread_id=thread_id, type_=type_,
                                     auto_archive_duration=int(body.get("auto_archive_duration") or 4320),
                                     invitable=body.get("invitable", True),
                                     rate_limit_per_user=body.get("rate_limit_per_user") or 0)
        event = self.thread_payload(int(thread["id"]))
        event["newly_created"] = True
        self.gateway.dispatch("THREAD_CREATE", event)
        world.notify()
        return self.thread_payload(int(thread["id"]))

    async def thread_from_message(self, req: ApiRequest) -> Any:
        channel_id = self.channel(req, perms=P.VIEW_CHANNEL | P.CREATE_PUBLIC_THREADS)
        world = self.world
        if world.channels[channel_id]["type"] != ChannelType.GUILD_TEXT:
            raise DiscordError(400, 50024, "Cannot execute action on this channel type")
        rec = self.message(channel_id, req.int("message_id"))
        body, _ = await req.body()
        name = self.thread_name(body)
        if rec.data.get("thread") or rec.id in world.channels:
            raise DiscordError(400, 160004, "A thread has already been created for this message")
        thread = self.start_thread(channel_id, name, body, type_=ChannelType.PUBLIC_THREAD, thread_id=rec.id)
        rec.data["thread"] = copy.deepcopy(world.channels[rec.id])  # the starter message links its thread
        rec.data["flags"] |= MessageFlags.HAS_THREAD
        return thread

    async def thread_without_message(self, req: ApiRequest) -> Any:
        body, _ = await req.body()
        type_ = int(body.get("type") or ChannelType.PRIVATE_THREAD)  # Discord's default is private
        need = P.CREATE_PRIVATE_THREADS if type_ == ChannelType.PRIVATE_THREAD else P.CREATE_PUBLIC_THREADS
        channel_id = self.channel(req, perms=P.VIEW_CHANNEL | need)
        if self.world.channels[channel_id]["type"] != ChannelType.GUILD_TEXT or type_ not in (11, 12):
            raise DiscordError(400, 50024, "Cannot execute action on this channel type")
        thread = self.start_thread(channel_id, self.thread_name(body), body, type_=type_)
        if type_ == ChannelType.PUBLIC_THREAD:  # Discord announces public threads in the parent
            self.messages.create(channel_id, self.world.bot_id, {"content": thread["name"]}, [], type_=18,
                                 extra={"message_reference": {"type": 0, "channel_id": thread["id"],
                                                              "guild_id": self.world.channels[channel_id]["guild_id"]}})
        return thread

    async def get_archived_threads(self, req: ApiRequest) -> Any:
        channel_id = self.channel(req, perms=P.VIEW_CHANNEL | P.READ_MESSAGE_HISTORY)
        threads = [self.thread_payload(int(t["id"])) for t in self.world.threads(archived=True)
                   if int(t["parent_id"]) == channel_id and t["type"] == ChannelType.PUBLIC_THREAD]
        return {"threads": threads, "members": [t.pop("member") for t in threads if "member" in t],
                "has_more": False}

    def thread_id(self, req: ApiRequest) -> int:
        channel_id = self.channel(req)
        if not self.world.is_thread(channel_id):
            raise DiscordError(400, 50024, "Cannot execute action on this channel type")
        return channel_id

    async def get_thread_members(self, req: ApiRequest) -> Any:
        thread_id = self.thread_id(req)
        return [self.world.thread_member(thread_id, u) for u in sorted(self.world.thread_members[thread_id])]

    async def join_thread(self, req: ApiRequest) -> Any:
        thread_id = self.thread_id(req)
        user_id = self.world.bot_id if req.route.endswith("@me") else req.int("user_id")
        if user_id not in self.world.members:
            raise unknown("Member", 10007)
        if self.world.channels[thread_id]["thread_metadata"]["archived"]:
            raise DiscordError(400, 50083, "Thread is archived")
        if self.world.add_thread_member(thread_id, user_id):
            member = self.world.thread_member(thread_id, user_id)
            member["member"] = self.world.member_payload(user_id, channel_id=thread_id)
            self.gateway.dispatch("THREAD_MEMBERS_UPDATE", {
                "id": str(thread_id), "guild_id": self.world.channels[thread_id]["guild_id"],
                "member_count": self.world.channels[thread_id]["member_count"], "added_members": [member]})
            self.world.notify()
        return NO_CONTENT

    async def leave_thread(self, req: ApiRequest) -> Any:
        thread_id = self.thread_id(req)
        user_id = self.world.bot_id if req.route.endswith("@me") else req.int("user_id")
        members = self.world.thread_members[thread_id]
        if user_id in members:
            members.discard(user_id)
            self.world.channels[thread_id]["member_count"] = len(members)
            self.gateway.dispatch("THREAD_MEMBERS_UPDATE", {
                "id": str(thread_id), "guild_id": self.world.channels[thread_id]["guild_id"],
                "member_count": len(members), "removed_member_ids": [str(user_id)]})
            self.world.notify()
        return NO_CONTENT

    # ---- reactions ---------------------------------------------------------------------------------

    def emoji(self, req: ApiRequest) -> dict[str, Any]:
        raw = unquote(req.params["emoji"])
        if ":" in raw:  # name:id custom emoji; this guild has none
            raise unknown("Emoji", 10014)
        return {"id": None, "name": raw}

    async def add_reaction(self, req: ApiRequest) -> Any:
        channel_id = self.channel(req, perms=P.VIEW_CHANNEL | P.READ_MESSAGE_HISTORY | P.ADD_REACTIONS)
        rec = self.message(channel_id, req.int("message_id"))
        react(self, rec, self.emoji(req), self.world.bot_id, add=True)
        return NO_CONTENT

    async def remove_reaction(self, req: ApiRequest) -> Any:
        channel_id = self.channel(req, perms=P.VIEW_CHANNEL | P.READ_MESSAGE_HISTORY)
        rec = self.message(channel_id, req.int("message_id"))
        user_id = self.world.bot_id if req.route.endswith("@me") else req.int("user_id")
        react(self, rec, self.emoji(req), user_id, add=False)
        return NO_CONTENT

    async def get_reactions(self, req: ApiRequest) -> Any:
        channel_id = self.channel(req, perms=P.VIEW_CHANNEL | P.READ_MESSAGE_HISTORY)
        rec = self.message(channel_id, req.int("message_id"))
        name = self.emoji(req)["name"]
        users = rec.reactors.get(name, [])
        return [copy.deepcopy(self.world.users[u]) for u in users]

    async def clear_reactions(self, req: ApiRequest) -> Any:
        channel_id = self.channel(req, perms=P.VIEW_CHANNEL | P.MANAGE_MESSAGES)
        rec = self.message(channel_id, req.int("message_id"))
        rec.data.pop("reactions", None)
        rec.reactors.clear()
        self.world.notify()
        return NO_CONTENT



def react(rest: Any, rec: MessageRecord, emoji: dict[str, Any], user_id: int, *, add: bool) -> None:
    """Add/remove one user's reaction and dispatch MESSAGE_REACTION_ADD/REMOVE."""
    world = rest.world
    reactors = rec.reactors
    users = reactors.setdefault(emoji["name"], [])
    if (user_id in users) == add:
        return
    users.append(user_id) if add else users.remove(user_id)
    rec.data["reactions"] = [
        {"emoji": {"id": None, "name": name}, "count": len(ids), "count_details": {"burst": 0, "normal": len(ids)},
         "me": world.bot_id in ids, "me_burst": False, "burst_colors": []}
        for name, ids in reactors.items() if ids]
    event: dict[str, Any] = {"user_id": str(user_id), "channel_id": str(rec.channel_id), "message_id": str(rec.id),
                             "emoji": emoji, "burst": False, "type": 0}
    if world.guild_of(rec.channel_id):
        event["guild_id"] = str(world.guild_of(rec.channel_id))
        if add:
            event["member"] = world.member_payload(user_id, channel_id=rec.channel_id)
            event["message_author_id"] = rec.data["author"]["id"]
    rest.gateway.dispatch("MESSAGE_REACTION_ADD" if add else "MESSAGE_REACTION_REMOVE", event)
    world.notify()


def remove_channel(rest: Any, channel_id: int) -> Any:
    """Delete a thread or channel and tell the bot (THREAD_DELETE / CHANNEL_DELETE)."""
    world = rest.world
    channel = world.channels.pop(channel_id)
    if channel["type"] in ChannelType.THREADS:
        rest.gateway.dispatch("THREAD_DELETE", {"id": channel["id"], "guild_id": channel["guild_id"],
                                                "parent_id": channel["parent_id"], "type": channel["type"]})
    else:
        rest.gateway.dispatch("CHANNEL_DELETE", copy.deepcopy(channel))
    world.notify()
    return channel
