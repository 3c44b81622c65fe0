"""The fake Discord's world: ids, clock, seeded guild/users/channels, and payload builders.

Everything is kept in Discord's own JSON shapes (the objects discord.py parses), so the REST and
gateway layers can hand them out almost unchanged. Field names follow Discord's API reference; when
in doubt, discord.py's parsers (state.py, guild.py, message.py, threads.py) decide what must be there.
"""
from __future__ import annotations

import asyncio
import copy
import itertools
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Callable

DISCORD_EPOCH_MS = 1420070400000
MiB = 1024 * 1024
DEFAULT_FILE_LIMIT = 10 * MiB
# Guild.filesize_limit in discord.py: premium tier -> bytes per file.
TIER_FILE_LIMITS = {0: 10 * MiB, 1: 10 * MiB, 2: 50 * MiB, 3: 100 * MiB}


class P:
    """Permission bits (Discord's "Permissions" table)."""
    CREATE_INSTANT_INVITE = 1 << 0
    ADMINISTRATOR = 1 << 3
    MANAGE_CHANNELS = 1 << 4
    MANAGE_GUILD = 1 << 5
    ADD_REACTIONS = 1 << 6
    VIEW_CHANNEL = 1 << 10
    SEND_MESSAGES = 1 << 11
    MANAGE_MESSAGES = 1 << 13
    EMBED_LINKS = 1 << 14
    ATTACH_FILES = 1 << 15
    READ_MESSAGE_HISTORY = 1 << 16
    MENTION_EVERYONE = 1 << 17
    USE_EXTERNAL_EMOJIS = 1 << 18
    USE_APPLICATION_COMMANDS = 1 << 31
    MANAGE_THREADS = 1 << 34
    CREATE_PUBLIC_THREADS = 1 << 35
    CREATE_PRIVATE_THREADS = 1 << 36
    SEND_MESSAGES_IN_THREADS = 1 << 38
    ALL = (1 << 51) - 1

    EVERYONE_DEFAULT = (CREATE_INSTANT_INVITE | ADD_REACTIONS | VIEW_CHANNEL | SEND_MESSAGES | EMBED_LINKS
                        | ATTACH_FILES | READ_MESSAGE_HISTORY | USE_EXTERNAL_EMOJIS | USE_APPLICATION_COMMANDS
                        | CREATE_PUBLIC_THREADS | CREATE_PRIVATE_THREADS | SEND_MESSAGES_IN_THREADS)
    BOT_DEFAULT = EVERYONE_DEFAULT | MANAGE_MESSAGES | MANAGE_THREADS

    NAMES = {"send_messages": SEND_MESSAGES, "attach_files": ATTACH_FILES, "embed_links": EMBED_LINKS,
             "create_public_threads": CREATE_PUBLIC_THREADS, "create_private_threads": CREATE_PRIVATE_THREADS,
             "send_messages_in_threads": SEND_MESSAGES_IN_THREADS, "add_reactions": ADD_REACTIONS,
             "read_message_history": READ_MESSAGE_HISTORY, "view_channel": VIEW_CHANNEL,
             "manage_messages": MANAGE_MESSAGES, "manage_threads": MANAGE_THREADS}


class Intents:
    GUILDS = 1 << 0
    GUILD_MEMBERS = 1 << 1
    GUILD_MESSAGES = 1 << 9
    GUILD_MESSAGE_REACTIONS = 1 << 10
    DIRECT_MESSAGES = 1 << 12
    DIRECT_MESSAGE_REACTIONS = 1 << 13
    MESSAGE_CONTENT = 1 << 15
    PRIVILEGED = GUILD_MEMBERS | (1 << 8) | MESSAGE_CONTENT


class ChannelType:
    GUILD_TEXT = 0
    DM = 1
    GUILD_CATEGORY = 4
    PUBLIC_THREAD = 11
    PRIVATE_THREAD = 12
    THREADS = (10, 11, 12)


class MessageFlags:
    HAS_THREAD = 1 << 5
    EPHEMERAL = 1 << 6
    LOADING = 1 << 7
    SUPPRESS_NOTIFICATIONS = 1 << 12
    IS_COMPONENTS_V2 = 1 << 15


class Snowflakes:
    """Monotonic, time-based snowflakes, so ids sort like Discord's (history paging relies on it)."""

    def __init__(self) -> None:
        self._last = 0

    def __call__(self) -> int:
        candidate = (int(time.time() * 1000) - DISCORD_EPOCH_MS) << 22
        self._last = max(candidate, self._last + 1)
        return self._last


def snowflake_time(snowflake: int) -> datetime:
    return datetime.fromtimestamp(((snowflake >> 22) + DISCORD_EPOCH_MS) / 1000, tz=timezone.utc)


def iso(dt: datetime | None = None) -> str:
    return (dt or datetime.now(timezone.utc)).isoformat()


class Clock:
    """Monotonic seconds for deadlines; `advance` lets a test jump ahead (expire tokens) without waiting."""

    def __init__(self) -> None:
        self.offset = 0.0

    def now(self) -> float:
        return time.monotonic() + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += seconds


@dataclass
class Settings:
    """Discord's rules with the numbers Discord uses; tests shorten the clocks."""
    ack_deadline: float = 3.0             # initial response window, seconds
    token_lifetime: float = 15 * 60.0     # interaction token validity, seconds
    max_files: int = 10
    max_content: int = 2000
    attachment_size_limit: int = DEFAULT_FILE_LIMIT  # per-interaction upload allowance (payload field)
    premium_tier: int = 0                 # drives the guild's filesize limit for channel messages
    heartbeat_interval_ms: int = 41250
    shard_count: int = 1                  # GET /gateway/bot's recommended `shards`
    max_concurrency: int = 1              # IDENTIFYs allowed per bucket (shard_id % max_concurrency) ...
    identify_interval: float = 5.0        # ... per this many seconds; sooner: op 9 (sharded IDENTIFYs only)
    privileged_intents: int = Intents.PRIVILEGED  # what the "Developer Portal" allows
    signed_urls: bool = True              # CDN URLs need their ex/is/hm query, as Discord's do


@dataclass
class MessageRecord:
    """One stored message: Discord's REST shape plus the fake's bookkeeping."""
    data: dict[str, Any]
    created_at: float
    updated_at: float
    ephemeral: bool = False
    deleted: bool = False
    interaction_id: int | None = None
    history: list[dict[str, Any]] = field(default_factory=list)  # earlier versions, oldest first
    reactors: dict[str, list[int]] = field(default_factory=dict)  # emoji name -> user ids

    @property
    def id(self) -> int:
        return int(self.data["id"])

    @property
    def channel_id(self) -> int:
        return int(self.data["channel_id"])


@dataclass
class StoredFile:
    id: int
    filename: str
    data: bytes
    content_type: str
    width: int | None = None
    height: int | None = None
    path: str = ""  # CDN path, e.g. /attachments/{channel}/{id}/{name}


class World:
    """Seeded state: one guild with text channels, a thread, roles, three members and DM channels;
    `add_guild` adds more guilds (for sharding), each with its own roles and a text channel."""

    def __init__(self, settings: Settings, *, bot_token: str, cdn_base: str = "") -> None:
        self.settings = settings
        self.bot_token = bot_token
        self.cdn_base = cdn_base  # set by the server once its port is known
        self.clock = Clock()
        self.snowflake = Snowflakes()
        self._waiters: set[asyncio.Future] = set()  # see notify()/wait_for()
        self._component_ids = itertools.count(1)

        sf = self.snowflake
        self.application_id = sf()
        self.bot_id = self.application_id  # bot user id == application id for modern apps
        self.guild_id = sf()
        self.users: dict[int, dict[str, Any]] = {}
        self.members: dict[int, dict[str, Any]] = {}
        self.roles: dict[int, dict[str, Any]] = {}
        self.channels: dict[int, dict[str, Any]] = {}  # guild channels, threads and DMs
        self.messages: dict[int, dict[int, MessageRecord]] = {}  # channel id -> message id -> record
        self.files: dict[int, StoredFile] = {}
        self.thread_members: dict[int, set[int]] = {}
        self.global_commands: list[dict[str, Any]] = []
        self.guild_commands: dict[int, list[dict[str, Any]]] = {}
        self.names: dict[str, int] = {}  # friendly names -> ids, for the driver

        self._add_user(self.bot_id, "Nano Test Bot", bot=True, discriminator="4242")
        self.role_everyone = self._add_role(self.guild_id, "@everyone", P.EVERYONE_DEFAULT, position=0)
        self.role_moderator = self._add_role(sf(), "Moderator", P.EVERYONE_DEFAULT | P.MANAGE_GUILD
                                             | P.MANAGE_MESSAGES | P.MANAGE_THREADS, position=2, name_key="moderator")
        self.role_member = self._add_role(sf(), "Member", 0, position=1, name_key="member")
        self.role_bot = self._add_role(sf(), "Nano Test Bot", P.BOT_DEFAULT, position=3, managed=True,
                                       tags={"bot_id": str(self.bot_id)}, name_key="bot")
        self.alice = self._add_user(sf(), "alice", global_name="Alice")
        self.bob = self._add_user(sf(), "bob", global_name="Bob")
        self.carol = self._add_user(sf(), "carol", global_name="Carol")
        self.owner_id = self.carol  # the owner is neither test user, so owner rights never hide a bug
        self._add_member(self.bot_id, [self.role_bot])
        self._add_member(self.alice, [self.role_moderator, self.role_member])  # has Manage Server
        self._add_member(self.bob, [self.role_member])
        self._add_member(self.carol, [])

        self.category_id = self._add_channel(sf(), "Text Channels", ChannelType.GUILD_CATEGORY, position=0)
        self.general_id = self._add_channel(sf(), "general", ChannelType.GUILD_TEXT, position=0,
                                            parent_id=self.category_id)
        self.art_id = self._add_channel(sf(), "art", ChannelType.GUILD_TEXT, position=1, parent_id=self.category_id)
        self.seed_thread_id = self.create_thread(self.general_id, "old-thread", owner_id=self.bob)["id"]
        self.seed_thread_id = int(self.seed_thread_id)
        self.names["old-thread"] = self.seed_thread_id
        self.dm_channels: dict[int, int] = {}
        for user_id in (self.alice, self.bob, self.carol):
            self.dm_channel(user_id)
        # Every guild: name, owner, system channel. Guilds added by add_guild keep their own roles
        # (role id -> guild) and their members' roles there; everyone is a member of every guild.
        self.guilds: dict[int, dict[str, Any]] = {
            self.guild_id: {"name": "Test Guild", "owner_id": self.owner_id, "system_channel_id": self.general_id}}
        self.role_guild: dict[int, int] = {}
        self.guild_member_roles: dict[int, dict[int, list[int]]] = {}

    def add_guild(self, name: str, *, shard: tuple[int, int] | None = None) -> int:
        """Another guild with @everyone, the bot's role and one text channel (`"<name>/general"` for
        `resolve`); owned by carol, every user a member. `shard=(shard_id, shard_count)` picks an id
        whose events that shard owns: `(guild_id >> 22) % shard_count == shard_id`."""
        guild_id = self.snowflake()
        if shard is not None:
            shard_id, count = shard
            while (guild_id >> 22) % count != shard_id:
                guild_id += 1 << 22  # one millisecond later: the next shard
            self.snowflake._last = max(self.snowflake._last, guild_id)
        self._add_role(guild_id, "@everyone", P.EVERYONE_DEFAULT, position=0)
        bot_role = self._add_role(self.snowflake(), "Nano Test Bot", P.BOT_DEFAULT, position=1, managed=True,
                                  tags={"bot_id": str(self.bot_id)})
        self.role_guild.update({guild_id: guild_id, bot_role: guild_id})
        self.guild_member_roles[guild_id] = {self.bot_id: [bot_role]}
        general = self._add_channel(self.snowflake(), "general", ChannelType.GUILD_TEXT, position=0,
                                    guild_id=guild_id, name_key=f"{name}/general")
        self.guilds[guild_id] = {"name": name, "owner_id": self.owner_id, "system_channel_id": general}
        self.names["guild:" + name] = guild_id
        return guild_id

    @staticmethod
    def shard_of(guild_id: int | None, shard_count: int) -> int:
        """The shard that receives a guild's events (Discord's formula); DMs go to shard 0."""
        return (guild_id >> 22) % shard_count if guild_id else 0

    # ---- seeding helpers -------------------------------------------------------------------------

    def _add_user(self, user_id: int, username: str, *, bot: bool = False, global_name: str | None = None,
                  discriminator: str = "0") -> int:
        self.users[user_id] = {
            "id": str(user_id), "username": username, "discriminator": discriminator,
            "global_name": global_name, "avatar": None, "bot": bot,
            "public_flags": 0, "banner": None, "accent_color": None,
            "avatar_decoration_data": None, "collectibles": None, "primary_guild": None,
        }
        self.names[username] = user_id
        return user_id

    def _add_role(self, role_id: int, name: str, permissions: int, *, position: int, managed: bool = False,
                  tags: dict | None = None, name_key: str | None = None) -> int:
        role = {
            "id": str(role_id), "name": name, "color": 0,
            "colors": {"primary_color": 0, "secondary_color": None, "tertiary_color": None},
            "hoist": False, "icon": None, "unicode_emoji": None, "position": position,
            "permissions": str(permissions), "managed": managed, "mentionable": False, "flags": 0,
        }
        if tags:
            role["tags"] = tags
        self.roles[role_id] = role
        if name_key:
            self.names["role:" + name_key.lower()] = role_id
        return role_id

    def _add_member(self, user_id: int, roles: list[int]) -> None:
        self.members[user_id] = {
            "user": self.users[user_id], "nick": None, "avatar": None, "banner": None,
            "roles": [str(r) for r in roles], "joined_at": iso(), "premium_since": None,
            "deaf": False, "mute": False, "flags": 0, "pending": False,
            "communication_disabled_until": None,
        }

    def _add_channel(self, channel_id: int, name: str, type_: int, *, position: int,
                     parent_id: int | None = None, guild_id: int | None = None, name_key: str | None = None) -> int:
        self.channels[channel_id] = {
            "id": str(channel_id), "type": type_, "guild_id": str(guild_id or self.guild_id), "name": name,
            "position": position, "permission_overwrites": [], "parent_id": str(parent_id) if parent_id else None,
            "nsfw": False, "topic": None, "last_message_id": None, "rate_limit_per_user": 0,
            "default_auto_archive_duration": 1440, "default_thread_rate_limit_per_user": 0, "flags": 0,
        }
        self.messages[channel_id] = {}
        self.names[name_key or name] = channel_id
        return channel_id

    def dm_channel(self, user_id: int) -> dict[str, Any]:
        """The bot's DM channel with a user (created on first use, like POST /users/@me/channels)."""
        if user_id not in self.dm_channels:
            channel_id = self.snowflake()
            self.channels[channel_id] = {
                "id": str(channel_id), "type": ChannelType.DM, "last_message_id": None, "flags": 0,
                "recipients": [self.users[user_id]],
            }
            self.messages[channel_id] = {}
            self.dm_channels[user_id] = channel_id
            self.names["dm:" + self.users[user_id]["username"]] = channel_id
        return self.channels[self.dm_channels[user_id]]

    # ---- lookups ---------------------------------------------------------------------------------

    def resolve(self, ref: Any, kind: str = "") -> int:
        """Turn an id, a name ("general", "alice", "dm:alice") or a payload dict into an id."""
        if isinstance(ref, dict):
            return int(ref["id"])
        if hasattr(ref, "id"):
            return int(ref.id)
        if isinstance(ref, int) or (isinstance(ref, str) and ref.isdigit()):
            return int(ref)
        key = ref.lstrip("#@")
        if kind == "role" and "role:" + key.lower() in self.names:
            return self.names["role:" + key.lower()]
        if key in self.names:
            return self.names[key]
        for channel_id, channel in self.channels.items():  # threads created at runtime, by name
            if channel.get("name") == key:
                return channel_id
        raise KeyError(f"unknown {kind or 'name'}: {ref!r}")

    def is_thread(self, channel_id: int) -> bool:
        return self.channels.get(channel_id, {}).get("type") in ChannelType.THREADS

    def is_dm(self, channel_id: int) -> bool:
        return self.channels.get(channel_id, {}).get("type") == ChannelType.DM

    def guild_of(self, channel_id: int) -> int | None:
        gid = self.channels.get(channel_id, {}).get("guild_id")
        return int(gid) if gid else None

    def threads(self, *, archived: bool | None = None, guild_id: int | None = None) -> list[dict[str, Any]]:
        out = [c for c in self.channels.values() if c["type"] in ChannelType.THREADS
               and (guild_id is None or c["guild_id"] == str(guild_id))]
        if archived is not None:
            out = [c for c in out if c["thread_metadata"]["archived"] == archived]
        return out

    # ---- permissions (Discord's documented algorithm) ---------------------------------------------

    def member_roles(self, user_id: int, guild_id: int | None = None) -> list[int]:
        """A member's role ids in a guild (the seeded guild by default)."""
        if guild_id in self.guild_member_roles:
            return self.guild_member_roles[guild_id].get(user_id, [])
        return [int(r) for r in self.members.get(user_id, {}).get("roles", [])]

    def base_permissions(self, user_id: int, guild_id: int | None = None) -> int:
        guild_id = guild_id or self.guild_id
        if user_id == self.guilds[guild_id]["owner_id"]:
            return P.ALL
        if user_id not in self.members:
            return 0
        perms = int(self.roles[guild_id]["permissions"])
        for role_id in self.member_roles(user_id, guild_id):
            perms |= int(self.roles[role_id]["permissions"])
        return P.ALL if perms & P.ADMINISTRATOR else perms

    def permissions_in(self, user_id: int, channel_id: int) -> int:
        channel = self.channels[channel_id]
        if channel["type"] == ChannelType.DM:
            return P.VIEW_CHANNEL | P.SEND_MESSAGES | P.ATTACH_FILES | P.EMBED_LINKS | P.READ_MESSAGE_HISTORY \
                | P.ADD_REACTIONS | P.USE_APPLICATION_COMMANDS
        if channel["type"] in ChannelType.THREADS:  # threads inherit the parent's overwrites
            channel = self.channels[int(channel["parent_id"])]
        guild_id = int(channel["guild_id"])
        perms = self.base_permissions(user_id, guild_id)
        if perms & P.ADMINISTRATOR:
            return P.ALL
        overwrites = {int(o["id"]): o for o in channel.get("permission_overwrites", [])}
        member_roles = self.member_roles(user_id, guild_id)

        def apply(ow: dict | None, p: int) -> int:
            return p if ow is None else (p & ~int(ow["deny"])) | int(ow["allow"])

        perms = apply(overwrites.get(guild_id), perms)
        allow = deny = 0
        for role_id in member_roles:
            ow = overwrites.get(role_id)
            if ow and ow["type"] == 0:
                allow |= int(ow["allow"])
                deny |= int(ow["deny"])
        perms = (perms & ~deny) | allow
        member_ow = overwrites.get(user_id)
        return apply(member_ow if member_ow and member_ow["type"] == 1 else None, perms)

    def deny(self, channel_id: int, bits: int, user_id: int | None = None) -> dict[str, Any]:
        """Add a member overwrite that denies `bits` (default: for the bot) in a channel or thread's parent."""
        channel = self.channels[channel_id]
        if channel["type"] in ChannelType.THREADS:
            channel = self.channels[int(channel["parent_id"])]
        target = user_id or self.bot_id
        for ow in channel["permission_overwrites"]:
            if int(ow["id"]) == target:
                ow["deny"] = str(int(ow["deny"]) | bits)
                ow["allow"] = str(int(ow["allow"]) & ~bits)
                return channel
        channel["permission_overwrites"].append({"id": str(target), "type": 1, "allow": "0", "deny": str(bits)})
        return channel

    # ---- payload builders -------------------------------------------------------------------------

    def member_payload(self, user_id: int, *, channel_id: int | None = None, with_user: bool = True,
                       guild_id: int | None = None) -> dict:
        member = copy.deepcopy(self.members[user_id])
        guild_id = guild_id or (self.guild_of(channel_id) if channel_id is not None else None)
        if guild_id in self.guild_member_roles:
            member["roles"] = [str(r) for r in self.member_roles(user_id, guild_id)]
        if not with_user:
            member.pop("user")
        if channel_id is not None:  # interactions carry the invoker's permissions in that channel
            member["permissions"] = str(self.permissions_in(user_id, channel_id))
        return member

    def channel_payload(self, channel_id: int, *, for_user: int | None = None) -> dict:
        channel = copy.deepcopy(self.channels[channel_id])
        if for_user is not None and channel["type"] != ChannelType.DM:
            channel["permissions"] = str(self.permissions_in(for_user, channel_id))
        return channel

    def guild_roles(self, guild_id: int | None = None) -> list[dict[str, Any]]:
        guild_id = guild_id or self.guild_id
        return [r for role_id, r in self.roles.items() if self.role_guild.get(role_id, self.guild_id) == guild_id]

    def guild_payload(self, *, with_counts: bool = False, guild_id: int | None = None) -> dict[str, Any]:
        guild_id = guild_id or self.guild_id
        info = self.guilds[guild_id]
        data = {
            "id": str(guild_id), "name": info["name"], "icon": None, "icon_hash": None, "splash": None,
            "discovery_splash": None, "banner": None, "description": None, "owner_id": str(info["owner_id"]),
            "region": "deprecated", "afk_channel_id": None, "afk_timeout": 300, "widget_enabled": False,
            "verification_level": 0, "default_message_notifications": 1, "explicit_content_filter": 0,
            "mfa_level": 0, "nsfw_level": 0, "nsfw": False, "application_id": None,
            "system_channel_id": str(info["system_channel_id"]), "system_channel_flags": 0, "rules_channel_id": None,
            "public_updates_channel_id": None, "safety_alerts_channel_id": None, "max_members": 500000,
            "max_presences": None, "max_video_channel_users": 25, "max_stage_video_channel_users": 50,
            "vanity_url_code": None, "premium_tier": self.settings.premium_tier,
            "premium_subscription_count": {0: 0, 1: 2, 2: 7, 3: 14}[self.settings.premium_tier],
            "premium_progress_bar_enabled": False, "preferred_locale": "en-US", "features": [],
            "roles": self.guild_roles(guild_id), "emojis": [], "stickers": [], "incidents_data": None,
        }
        if with_counts:
            data["approximate_member_count"] = len(self.members)
            data["approximate_presence_count"] = 0
        return copy.deepcopy(data)

    def guild_create_payload(self, *, all_members: bool, guild_id: int | None = None) -> dict[str, Any]:
        """GUILD_CREATE: the guild plus channels, active threads (with the bot's membership), members."""
        guild_id = guild_id or self.guild_id
        data = self.guild_payload(guild_id=guild_id)
        members = self.members if all_members else {self.bot_id: self.members[self.bot_id]}
        threads = []
        for thread in self.threads(archived=False, guild_id=guild_id):
            thread = copy.deepcopy(thread)
            if self.bot_id in self.thread_members.get(int(thread["id"]), ()):
                thread["member"] = self.thread_member(int(thread["id"]), self.bot_id, with_ids=True)
            threads.append(thread)
        data.update({
            "joined_at": iso(), "large": False, "unavailable": False, "lazy": True,
            "member_count": len(self.members),
            "members": [self.member_payload(user_id, guild_id=guild_id) for user_id in members],
            "channels": [copy.deepcopy(c) for c in self.channels.values()
                         if c["type"] not in ChannelType.THREADS and c.get("guild_id") == str(guild_id)],
            "threads": threads, "presences": [], "voice_states": [], "stage_instances": [],
            "guild_scheduled_events": [], "soundboard_sounds": [], "embedded_activities": [],
        })
        return data

    def application_payload(self) -> dict[str, Any]:
        return {
            "id": str(self.application_id), "name": "Nano Test Bot", "icon": None, "description": "",
            "summary": "", "type": None, "bot_public": True, "bot_require_code_grant": False,
            "verify_key": "0" * 64, "owner": copy.deepcopy(self.users[self.carol]), "team": None,
            # GATEWAY_MESSAGE_CONTENT_LIMITED | GATEWAY_GUILD_MEMBERS_LIMITED | APPLICATION_COMMAND_BADGE:
            # an unverified app with both privileged intents switched on in the Developer Portal.
            "flags": (1 << 19) | (1 << 15) | (1 << 23),
            "redirect_uris": [], "interactions_endpoint_url": None, "tags": [],
            "install_params": None, "integration_types_config": {"0": {}},
            "approximate_guild_count": len(self.guilds), "bot": copy.deepcopy(self.users[self.bot_id]),
        }

    def me_payload(self) -> dict[str, Any]:
        me = copy.deepcopy(self.users[self.bot_id])
        me.update({"verified": True, "mfa_enabled": False, "locale": "en-US", "email": None, "flags": 0})
        return me

    def filesize_limit(self) -> int:
        return TIER_FILE_LIMITS[self.settings.premium_tier]

    # ---- threads ----------------------------------------------------------------------------------

    def create_thread(self, parent_id: int, name: str, *, owner_id: int, thread_id: int | None = None,
                      type_: int = ChannelType.PUBLIC_THREAD, auto_archive_duration: int = 1440,
                      invitable: bool = True, rate_limit_per_user: int = 0) -> dict[str, Any]:
        thread_id = thread_id or self.snowflake()
        now = iso()
        thread = {
            "id": str(thread_id), "guild_id": self.channels[parent_id]["guild_id"], "parent_id": str(parent_id),
            "owner_id": str(owner_id), "type": type_, "name": name, "last_message_id": None,
            "message_count": 0, "member_count": 0, "total_message_sent": 0,
            "rate_limit_per_user": rate_limit_per_user or 0, "flags": 0, "applied_tags": [],
            "thread_metadata": {"archived": False, "auto_archive_duration": auto_archive_duration,
                                "archive_timestamp": now, "locked": False, "create_timestamp": now},
        }
        if type_ == ChannelType.PRIVATE_THREAD:
            thread["thread_metadata"]["invitable"] = invitable
        self.channels[thread_id] = thread
        self.messages[thread_id] = {}
        self.thread_members[thread_id] = set()
        self.add_thread_member(thread_id, owner_id)
        return thread

    def add_thread_member(self, thread_id: int, user_id: int) -> bool:
        members = self.thread_members.setdefault(thread_id, set())
        if user_id in members:
            return False
        members.add(user_id)
        self.channels[thread_id]["member_count"] = min(len(members), 50)
        return True

    def thread_member(self, thread_id: int, user_id: int, *, with_ids: bool = True) -> dict[str, Any]:
        data: dict[str, Any] = {"join_timestamp": iso(), "flags": 1}
        if with_ids:
            data.update({"id": str(thread_id), "user_id": str(user_id)})
        return data

    # ---- messages & files ---------------------------------------------------------------------------

    def channel_messages(self, channel_id: int, *, include_deleted: bool = False) -> list[MessageRecord]:
        records = self.messages.get(channel_id, {}).values()
        return sorted((r for r in records if include_deleted or not r.deleted), key=lambda r: r.id)

    def find_message(self, message_id: int) -> MessageRecord | None:
        for records in self.messages.values():
            if message_id in records:
                return records[message_id]
        return None

    def next_component_id(self) -> int:
        return next(self._component_ids)

    def notify(self) -> None:
        """Wake every `wait_for`; called after each change (new message, edit, ack, thread...)."""
        waiters, self._waiters = self._waiters, set()
        for fut in waiters:
            if not fut.done():
                fut.set_result(None)

    async def wait_for(self, check: Callable[[], Any], timeout: float, what: str = "condition") -> Any:
        """Re-evaluate `check` after every state change until it returns something truthy."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            result = check()
            if result:
                return result
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
            fut = loop.create_future()
            self._waiters.add(fut)
            try:
                await asyncio.wait_for(fut, remaining)
            except asyncio.TimeoutError:
                self._waiters.discard(fut)


def expires_at(seconds: float) -> str:
    return iso(datetime.now(timezone.utc) + timedelta(seconds=seconds))
