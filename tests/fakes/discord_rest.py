"""REST handlers for users, the guild, channels, messages and command sync (threads and reactions are in
discord_threads.py), plus the message service (store + gateway echo) that interaction routes share."""
from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable

from aiohttp import web

from .discord_gateway import Gateway
from .discord_messages import (MISSING_PERMISSIONS, Cdn, DiscordError, Upload, apply_edit, build_attachments,
                               check_message, form_error, new_message, read_body, unknown)
from .discord_state import DEFAULT_FILE_LIMIT, ChannelType, MessageFlags, MessageRecord, P, World, iso
from .discord_threads import NO_CONTENT, ThreadRoutes, react, remove_channel  # noqa: F401 - re-exported


@dataclass
class ApiRequest:
    request: web.Request
    params: dict[str, str]
    route: str
    log: Any  # the RequestRecord being filled
    _body: tuple[dict[str, Any], list[Upload]] | None = None

    @property
    def query(self) -> Any:
        return self.request.query

    async def body(self) -> tuple[dict[str, Any], list[Upload]]:
        if self._body is None:
            self._body = await read_body(self.request)
            self.log.body = self._body[0]
            self.log.files = [(u.filename, len(u.data)) for u in self._body[1]]
        return self._body

    def int(self, name: str) -> int:
        try:
            return int(self.params[name])
        except ValueError:
            value = self.params[name]
            raise form_error((name,), "NUMBER_TYPE_COERCE", f'Value "{value}" is not snowflake.') from None


Handler = Callable[[ApiRequest], Awaitable[Any]]


@dataclass
class Route:
    method: str
    template: str
    handler: Handler
    auth: bool = True
    regex: re.Pattern = field(init=False)

    def __post_init__(self) -> None:
        parts = re.split(r"\{(\w+)\}", self.template)  # literal, name, literal, name, ...
        pattern = "".join(re.escape(p) if i % 2 == 0 else f"(?P<{p}>[^/]+)" for i, p in enumerate(parts))
        self.regex = re.compile(f"^{pattern}$")




class Messages:
    """Create/edit/delete messages and echo them on the gateway the way Discord does."""

    def __init__(self, world: World, gateway: Gateway, cdn: Cdn) -> None:
        self.world, self.gateway, self.cdn = world, gateway, cdn

    def gateway_shape(self, rec: MessageRecord) -> dict[str, Any]:
        data = copy.deepcopy(rec.data)
        guild_id = self.world.guild_of(rec.channel_id)
        if guild_id:
            data["guild_id"] = str(guild_id)
            author_id = int(data["author"]["id"])
            if author_id in self.world.members and not data.get("webhook_id"):
                data["member"] = self.world.member_payload(author_id, with_user=False, guild_id=guild_id)
        return data

    def create(self, channel_id: int, author_id: int, body: dict[str, Any], attachments: list[dict[str, Any]],
               *, type_: int = 0, extra: dict[str, Any] | None = None, interaction_id: int | None = None
               ) -> MessageRecord:
        world = self.world
        data = new_message(world, channel_id=channel_id, author_id=author_id, body=body,
                           attachments=attachments, type_=type_, extra=extra)
        now = world.clock.now()
        ephemeral = bool(data["flags"] & MessageFlags.EPHEMERAL)
        rec = MessageRecord(data, now, now, ephemeral=ephemeral, interaction_id=interaction_id)
        world.messages.setdefault(channel_id, {})[rec.id] = rec
        if not ephemeral:
            channel = world.channels[channel_id]
            channel["last_message_id"] = data["id"]
            if channel["type"] in ChannelType.THREADS:
                channel["message_count"] += 1
                channel["total_message_sent"] += 1
            self.gateway.dispatch("MESSAGE_CREATE", self.gateway_shape(rec))
        world.notify()
        return rec

    def replace(self, rec: MessageRecord, data: dict[str, Any]) -> MessageRecord:
        rec.history.append(rec.data)
        rec.data = data
        rec.updated_at = self.world.clock.now()
        if not rec.ephemeral:
            self.gateway.dispatch("MESSAGE_UPDATE", self.gateway_shape(rec))
        self.world.notify()
        return rec

    def edit(self, rec: MessageRecord, body: dict[str, Any], uploads: list[Upload]) -> MessageRecord:
        return self.replace(rec, apply_edit(self.cdn, rec.data, body, uploads))

    def delete(self, rec: MessageRecord) -> None:
        rec.deleted = True
        rec.updated_at = self.world.clock.now()
        if not rec.ephemeral:
            event = {"id": str(rec.id), "channel_id": str(rec.channel_id)}
            if self.world.guild_of(rec.channel_id):
                event["guild_id"] = str(self.world.guild_of(rec.channel_id))
            self.gateway.dispatch("MESSAGE_DELETE", event)
        self.world.notify()


class Rest(ThreadRoutes):
    def __init__(self, world: World, gateway: Gateway, cdn: Cdn, messages: Messages, faults: Any) -> None:
        self.world, self.gateway, self.cdn, self.messages, self.faults = world, gateway, cdn, messages, faults
        self.typing: list[tuple[int, float]] = []  # (channel id, clock time) of POST /typing

    def routes(self) -> list[Route]:
        R = Route
        return [
            R("GET", "/users/@me", self.get_me), R("GET", "/users/{user_id}", self.get_user),
            R("POST", "/users/@me/channels", self.open_dm),
            R("GET", "/oauth2/applications/@me", self.get_application),
            R("GET", "/applications/@me", self.get_application),
            R("GET", "/gateway", self.get_gateway, auth=False), R("GET", "/gateway/bot", self.get_gateway),
            R("GET", "/applications/{application_id}/commands", self.get_commands),
            R("PUT", "/applications/{application_id}/commands", self.put_commands),
            R("POST", "/applications/{application_id}/commands", self.post_command),
            R("GET", "/applications/{application_id}/commands/{command_id}", self.get_command),
            R("DELETE", "/applications/{application_id}/commands/{command_id}", self.delete_command),
            R("GET", "/applications/{application_id}/guilds/{guild_id}/commands", self.get_commands),
            R("PUT", "/applications/{application_id}/guilds/{guild_id}/commands", self.put_commands),
            R("POST", "/applications/{application_id}/guilds/{guild_id}/commands", self.post_command),
            R("GET", "/applications/{application_id}/guilds/{guild_id}/commands/{command_id}", self.get_command),
            R("DELETE", "/applications/{application_id}/guilds/{guild_id}/commands/{command_id}",
              self.delete_command),
            R("GET", "/applications/{application_id}/emojis", self.empty_items),
            R("GET", "/applications/{application_id}/entitlements", self.empty_list),
            R("GET", "/guilds/{guild_id}", self.get_guild),
            R("GET", "/guilds/{guild_id}/channels", self.get_guild_channels),
            R("GET", "/guilds/{guild_id}/roles", self.get_roles),
            R("GET", "/guilds/{guild_id}/members", self.get_members),
            R("GET", "/guilds/{guild_id}/members/{user_id}", self.get_member),
            R("GET", "/guilds/{guild_id}/threads/active", self.get_active_threads),
            R("GET", "/channels/{channel_id}", self.get_channel),
            R("PATCH", "/channels/{channel_id}", self.patch_channel),
            R("DELETE", "/channels/{channel_id}", self.delete_channel),
            R("POST", "/channels/{channel_id}/typing", self.typing_start),
            R("GET", "/channels/{channel_id}/messages", self.get_history),
            R("POST", "/channels/{channel_id}/messages", self.post_message),
            R("GET", "/channels/{channel_id}/messages/{message_id}", self.get_message),
            R("PATCH", "/channels/{channel_id}/messages/{message_id}", self.patch_message),
            R("DELETE", "/channels/{channel_id}/messages/{message_id}", self.delete_message),
            R("POST", "/channels/{channel_id}/messages/{message_id}/threads", self.thread_from_message),
            R("POST", "/channels/{channel_id}/threads", self.thread_without_message),
            R("GET", "/channels/{channel_id}/threads/archived/public", self.get_archived_threads),
            R("GET", "/channels/{channel_id}/thread-members", self.get_thread_members),
            R("PUT", "/channels/{channel_id}/thread-members/@me", self.join_thread),
            R("DELETE", "/channels/{channel_id}/thread-members/@me", self.leave_thread),
            R("PUT", "/channels/{channel_id}/thread-members/{user_id}", self.join_thread),
            R("DELETE", "/channels/{channel_id}/thread-members/{user_id}", self.leave_thread),
            R("PUT", "/channels/{channel_id}/messages/{message_id}/reactions/{emoji}/@me", self.add_reaction),
            R("DELETE", "/channels/{channel_id}/messages/{message_id}/reactions/{emoji}/@me", self.remove_reaction),
            R("DELETE", "/channels/{channel_id}/messages/{message_id}/reactions/{emoji}/{user_id}",
              self.remove_reaction),
            R("GET", "/channels/{channel_id}/messages/{message_id}/reactions/{emoji}", self.get_reactions),
            R("DELETE", "/channels/{channel_id}/messages/{message_id}/reactions", self.clear_reactions),
        ]

    # ---- helpers -----------------------------------------------------------------------------------

    def channel(self, req: ApiRequest, *, perms: int = P.VIEW_CHANNEL) -> int:
        channel_id = req.int("channel_id")
        if channel_id not in self.world.channels:
            raise unknown("Channel", 10003)
        if perms and self.world.permissions_in(self.world.bot_id, channel_id) & perms != perms:
            if not self.world.permissions_in(self.world.bot_id, channel_id) & P.VIEW_CHANNEL:
                raise DiscordError(403, 50001, "Missing Access")
            raise DiscordError(*MISSING_PERMISSIONS)
        return channel_id

    def message(self, channel_id: int, message_id: int) -> MessageRecord:
        rec = self.world.messages.get(channel_id, {}).get(message_id)
        if rec is None or rec.deleted or rec.ephemeral:
            raise unknown("Message", 10008)
        return rec

    def guild(self, req: ApiRequest) -> int:
        if req.int("guild_id") not in self.world.guilds:
            raise unknown("Guild", 10004)
        return req.int("guild_id")

    def thread_payload(self, thread_id: int) -> dict[str, Any]:
        data = copy.deepcopy(self.world.channels[thread_id])
        if self.world.bot_id in self.world.thread_members.get(thread_id, ()):
            data["member"] = self.world.thread_member(thread_id, self.world.bot_id)
        return data

    def channel_update(self, channel_id: int) -> None:
        """Tell the bot about a changed channel or thread (CHANNEL_UPDATE / THREAD_UPDATE)."""
        world = self.world
        if world.is_thread(channel_id):
            self.gateway.dispatch("THREAD_UPDATE", self.thread_payload(channel_id))
        else:
            self.gateway.dispatch("CHANNEL_UPDATE", copy.deepcopy(world.channels[channel_id]))
        world.notify()

    def writable_thread(self, channel_id: int) -> None:
        """Posting in an archived thread unarchives it unless locked (Discord's rule)."""
        meta = self.world.channels[channel_id]["thread_metadata"]
        if meta["archived"]:
            if meta.get("locked"):
                raise DiscordError(400, 50083, "Thread is archived")
            meta.update({"archived": False, "archive_timestamp": iso()})
            self.channel_update(channel_id)

    # ---- users, application, gateway -------------------------------------------------------------------

    async def get_me(self, req: ApiRequest) -> Any:
        return self.world.me_payload()

    async def get_user(self, req: ApiRequest) -> Any:
        user = self.world.users.get(req.int("user_id"))
        if user is None:
            raise unknown("User", 10013)
        return user

    async def open_dm(self, req: ApiRequest) -> Any:
        body, _ = await req.body()
        user_id = int(body.get("recipient_id", 0))
        if user_id not in self.world.users or user_id == self.world.bot_id:
            raise unknown("User", 10013)
        return self.world.dm_channel(user_id)

    async def get_application(self, req: ApiRequest) -> Any:
        return self.world.application_payload()

    async def get_gateway(self, req: ApiRequest) -> Any:
        data: dict[str, Any] = {"url": self.gateway.url}
        if req.route.endswith("/bot"):
            settings = self.world.settings
            data.update({"shards": settings.shard_count, "session_start_limit": {
                "total": 1000, "remaining": max(0, 1000 - self.gateway.identifies), "reset_after": 14_400_000,
                "max_concurrency": settings.max_concurrency}})
        return data

    async def empty_items(self, req: ApiRequest) -> Any:
        return {"items": []}

    async def empty_list(self, req: ApiRequest) -> Any:
        return []

    # ---- application commands ---------------------------------------------------------------------

    def command_list(self, req: ApiRequest) -> list[dict[str, Any]]:
        if req.int("application_id") != self.world.application_id:
            raise DiscordError(403, 50001, "Missing Access")
        if "guild_id" in req.params:
            return self.world.guild_commands.setdefault(self.guild(req), [])
        return self.world.global_commands

    def normalize_command(self, req: ApiRequest, cmd: dict[str, Any], index: int, old: list[dict]) -> dict:
        ctype = int(cmd.get("type") or 1)
        name, description = cmd.get("name") or "", cmd.get("description") or ""
        path = (str(index),) if req.request.method == "PUT" else ()
        if not 1 <= len(name) <= 32 or (ctype == 1 and not re.fullmatch(r"[-_\w]{1,32}", name)) \
                or (ctype == 1 and name != name.lower()):
            raise form_error(path + ("name",), "APPLICATION_COMMAND_INVALID_NAME", "Command name is invalid")
        if ctype == 1 and not 1 <= len(description) <= 100:
            raise form_error(path + ("description",), "BASE_TYPE_BAD_LENGTH", "Must be between 1 and 100 in length.")
        if len(cmd.get("options") or []) > 25:
            raise form_error(path + ("options",), "BASE_TYPE_MAX_LENGTH", "Must be 25 or fewer in length.")
        previous = next((c for c in old if c["name"] == name and c["type"] == ctype), None)
        data = {
            "id": previous["id"] if previous else str(self.world.snowflake()),
            "application_id": str(self.world.application_id), "version": str(self.world.snowflake()),
            "type": ctype, "name": name, "description": description if ctype == 1 else "",
            "options": copy.deepcopy(cmd.get("options") or []),
            "default_member_permissions": cmd.get("default_member_permissions"),
            "dm_permission": cmd.get("dm_permission", True), "nsfw": bool(cmd.get("nsfw")),
            "contexts": cmd.get("contexts"), "integration_types": cmd.get("integration_types") or [0],
            "name_localizations": cmd.get("name_localizations"),
            "description_localizations": cmd.get("description_localizations"),
        }
        if "guild_id" in req.params:
            data["guild_id"] = str(self.guild(req))
        return data

    async def get_commands(self, req: ApiRequest) -> Any:
        return copy.deepcopy(self.command_list(req))

    async def put_commands(self, req: ApiRequest) -> Any:
        target = self.command_list(req)
        body, _ = await req.body()
        if not isinstance(body, list):
            raise form_error((), "LIST_TYPE_CONVERT", "Only iterables may be used in a ListType")
        new = [self.normalize_command(req, c, i, target) for i, c in enumerate(body)]
        target[:] = new
        self.world.notify()
        return copy.deepcopy(new)

    async def post_command(self, req: ApiRequest) -> Any:
        target = self.command_list(req)
        body, _ = await req.body()
        data = self.normalize_command(req, body, 0, target)
        target[:] = [c for c in target if c["id"] != data["id"]] + [data]
        self.world.notify()
        return copy.deepcopy(data)

    async def get_command(self, req: ApiRequest) -> Any:
        for cmd in self.command_list(req):
            if cmd["id"] == req.params["command_id"]:
                return copy.deepcopy(cmd)
        raise unknown("application command", 10063)

    async def delete_command(self, req: ApiRequest) -> Any:
        target = self.command_list(req)
        kept = [c for c in target if c["id"] != req.params["command_id"]]
        if len(kept) == len(target):
            raise unknown("application command", 10063)
        target[:] = kept
        self.world.notify()
        return NO_CONTENT

    # ---- guild -------------------------------------------------------------------------------------

    async def get_guild(self, req: ApiRequest) -> Any:
        return self.world.guild_payload(with_counts=req.query.get("with_counts") in ("true", "1", "True"),
                                        guild_id=self.guild(req))

    async def get_guild_channels(self, req: ApiRequest) -> Any:
        guild_id = str(self.guild(req))
        return [copy.deepcopy(c) for c in self.world.channels.values()
                if c.get("guild_id") == guild_id and c["type"] not in ChannelType.THREADS]

    async def get_roles(self, req: ApiRequest) -> Any:
        return copy.deepcopy(self.world.guild_roles(self.guild(req)))

    async def get_members(self, req: ApiRequest) -> Any:
        guild_id = self.guild(req)
        after, limit = int(req.query.get("after", 0)), int(req.query.get("limit", 1))
        ids = sorted(u for u in self.world.members if u > after)[:limit]
        return [self.world.member_payload(u, guild_id=guild_id) for u in ids]

    async def get_member(self, req: ApiRequest) -> Any:
        guild_id = self.guild(req)
        user_id = req.int("user_id")
        if user_id not in self.world.members:
            raise unknown("Member", 10007)
        return self.world.member_payload(user_id, guild_id=guild_id)

    async def get_active_threads(self, req: ApiRequest) -> Any:
        threads = [self.thread_payload(int(t["id"]))
                   for t in self.world.threads(archived=False, guild_id=self.guild(req))]
        members = [t.pop("member") | {"id": t["id"], "user_id": str(self.world.bot_id)}
                   for t in threads if "member" in t]
        return {"threads": threads, "members": members}

    # ---- channels ----------------------------------------------------------------------------------

    async def get_channel(self, req: ApiRequest) -> Any:
        channel_id = self.channel(req)
        if self.world.is_thread(channel_id):
            return self.thread_payload(channel_id)
        return copy.deepcopy(self.world.channels[channel_id])

    async def patch_channel(self, req: ApiRequest) -> Any:
        channel_id = self.channel(req)
        body, _ = await req.body()
        world = self.world
        channel = world.channels[channel_id]
        if world.is_thread(channel_id):
            is_owner = int(channel["owner_id"]) == world.bot_id
            manage = world.permissions_in(world.bot_id, channel_id) & P.MANAGE_THREADS
            if not (manage or (is_owner and set(body) <= {"name", "archived", "auto_archive_duration",
                                                          "rate_limit_per_user"})):
                raise DiscordError(*MISSING_PERMISSIONS)
            meta = channel["thread_metadata"]
            for key in ("archived", "locked", "auto_archive_duration", "invitable"):
                if key in body and body[key] is not None:
                    meta[key] = body[key]
            if "archived" in body:
                meta["archive_timestamp"] = iso()
            for key in ("name", "rate_limit_per_user", "flags", "applied_tags"):
                if key in body and body[key] is not None:
                    channel[key] = body[key]
            self.channel_update(channel_id)
            return self.thread_payload(channel_id)
        if not world.permissions_in(world.bot_id, channel_id) & P.MANAGE_CHANNELS:
            raise DiscordError(*MISSING_PERMISSIONS)
        for key in ("name", "topic", "nsfw", "rate_limit_per_user", "default_auto_archive_duration"):
            if key in body:
                channel[key] = body[key]
        self.channel_update(channel_id)
        return copy.deepcopy(channel)

    async def delete_channel(self, req: ApiRequest) -> Any:
        channel_id = self.channel(req)
        world = self.world
        channel = world.channels[channel_id]
        if channel["type"] == ChannelType.DM:
            return copy.deepcopy(channel)  # "closing" a DM
        need = P.MANAGE_THREADS if world.is_thread(channel_id) else P.MANAGE_CHANNELS
        if not world.permissions_in(world.bot_id, channel_id) & need:
            raise DiscordError(*MISSING_PERMISSIONS)
        return remove_channel(self, channel_id)

    async def typing_start(self, req: ApiRequest) -> Any:
        channel_id = self.channel(req, perms=P.VIEW_CHANNEL | self.send_permission(req.int("channel_id")))
        self.typing.append((channel_id, self.world.clock.now()))
        self.world.notify()
        return NO_CONTENT

    # ---- messages ----------------------------------------------------------------------------------

    def send_permission(self, channel_id: int) -> int:
        return P.SEND_MESSAGES_IN_THREADS if self.world.is_thread(channel_id) else P.SEND_MESSAGES

    async def get_history(self, req: ApiRequest) -> Any:
        channel_id = self.channel(req, perms=P.VIEW_CHANNEL | P.READ_MESSAGE_HISTORY)
        limit = max(1, min(100, int(req.query.get("limit", 50))))
        records = [r for r in self.world.channel_messages(channel_id) if not r.ephemeral]
        if "around" in req.query:
            around = int(req.query["around"])
            older = [r for r in records if r.id <= around][-((limit + 1) // 2):]
            newer = [r for r in records if r.id > around][: limit - len(older)]
            picked = older + newer
        elif "after" in req.query:
            picked = [r for r in records if r.id > int(req.query["after"])][:limit]
        else:
            before = int(req.query.get("before", 1 << 63))
            picked = [r for r in records if r.id < before][-limit:]
        return [copy.deepcopy(r.data) for r in reversed(picked)]  # newest first, as Discord returns

    async def get_message(self, req: ApiRequest) -> Any:
        channel_id = self.channel(req, perms=P.VIEW_CHANNEL | P.READ_MESSAGE_HISTORY)
        return copy.deepcopy(self.message(channel_id, req.int("message_id")).data)

    async def post_message(self, req: ApiRequest) -> Any:
        channel_id = self.channel(req, perms=P.VIEW_CHANNEL | self.send_permission(req.int("channel_id")))
        body, uploads = await req.body()
        world = self.world
        if uploads and not world.permissions_in(world.bot_id, channel_id) & P.ATTACH_FILES:
            raise DiscordError(*MISSING_PERMISSIONS)
        limit = world.filesize_limit() if world.guild_of(channel_id) else DEFAULT_FILE_LIMIT
        check_message(world, body, uploads, size_limit=limit, creating=True, faults=self.faults)
        if world.is_thread(channel_id):
            self.writable_thread(channel_id)
        extra, type_ = {}, 0
        ref = body.get("message_reference")
        if ref and ref.get("message_id"):
            target = world.messages.get(int(ref.get("channel_id") or channel_id), {}).get(int(ref["message_id"]))
            if target is None or target.deleted:
                if ref.get("fail_if_not_exists", True):
                    raise form_error(("message_reference",), "MESSAGE_REFERENCE_UNKNOWN_MESSAGE", "Unknown message")
            else:
                type_ = 19
                extra["message_reference"] = {"type": 0, "message_id": str(target.id),
                                              "channel_id": str(target.channel_id)}
                if world.guild_of(channel_id):
                    extra["message_reference"]["guild_id"] = str(world.guild_of(channel_id))
                extra["referenced_message"] = copy.deepcopy(target.data)
        attachments = build_attachments(self.cdn, channel_id, body, uploads)
        rec = self.messages.create(channel_id, world.bot_id, body, attachments, type_=type_, extra=extra)
        return copy.deepcopy(rec.data)

    async def patch_message(self, req: ApiRequest) -> Any:
        channel_id = self.channel(req)
        rec = self.message(channel_id, req.int("message_id"))
        body, uploads = await req.body()
        if int(rec.data["author"]["id"]) != self.world.bot_id and set(body) - {"flags"}:
            raise DiscordError(403, 50005, "Cannot edit a message authored by another user")
        world = self.world
        if uploads and not world.permissions_in(world.bot_id, channel_id) & P.ATTACH_FILES:
            raise DiscordError(*MISSING_PERMISSIONS)
        if world.is_thread(channel_id) and world.channels[channel_id]["thread_metadata"]["archived"]:
            raise DiscordError(400, 50083, "Thread is archived")  # edits do not unarchive, unlike posts
        limit = self.world.filesize_limit() if self.world.guild_of(channel_id) else DEFAULT_FILE_LIMIT
        check_message(self.world, body, uploads, size_limit=limit, creating=False, faults=self.faults)
        return copy.deepcopy(self.messages.edit(rec, body, uploads).data)

    async def delete_message(self, req: ApiRequest) -> Any:
        channel_id = self.channel(req)
        rec = self.message(channel_id, req.int("message_id"))
        world = self.world
        if int(rec.data["author"]["id"]) != world.bot_id and \
                not world.permissions_in(world.bot_id, channel_id) & P.MANAGE_MESSAGES:
            raise DiscordError(*MISSING_PERMISSIONS)
        self.messages.delete(rec)
        return NO_CONTENT
