"""A fake Discord on 127.0.0.1: REST under /api/v10, the Gateway websocket, and a CDN for attachments.

An unmodified discord.py process talks to it after `sitecustomize_dir/sitecustomize.py` redirects the
library (see tests/README.md). Tests normally use `tests/fakes/driver.py`; this module is the server
and the user-side actions (posting as a user, archiving a thread) the driver builds on.
"""
from __future__ import annotations

import copy
import json
import logging
import math
import re
import secrets
import time
import traceback
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from .discord_gateway import Gateway
from .discord_interactions import Interactions
from .discord_messages import Cdn, DiscordError, ExternalAttachment, check_message
from .discord_ratelimits import DiscordRateLimits, RateLimitSettings, Verdict
from .discord_rest import NO_CONTENT, ApiRequest, Messages, Rest, Route, react, remove_channel
from .discord_state import ChannelType, MessageRecord, P, Settings, World, iso
from .secret_registry import register_secret

log = logging.getLogger("fake_discord")
API_PREFIX = re.compile(r"^/api(?:/v(\d+))?(/.*)$")


@dataclass
class RequestRecord:
    """One REST request as the fake saw it; `route` is the matched template, None when unknown."""
    method: str
    path: str
    query: dict[str, str]
    route: str | None
    at: float
    status: int = 0
    body: Any = None
    files: list[tuple[str, int]] = field(default_factory=list)
    response: Any = None

    @property
    def code(self) -> int | None:
        return self.response.get("code") if isinstance(self.response, dict) else None

    def __str__(self) -> str:
        return f"{self.method} {self.path} -> {self.status}" + (f" ({self.code})" if self.code else "")


@dataclass
class Fault:
    method: str | None
    route: str | None        # a route template ("POST /channels/{channel_id}/messages" style) or None = any
    status: int
    body: dict[str, Any] | None
    headers: dict[str, str]
    times: float             # how many requests it still hits (math.inf = until cleared)


class Faults:
    """Failures the test switches on: a status/code for a route (once or more), too-large uploads."""

    def __init__(self) -> None:
        self.rules: list[Fault] = []
        self.upload_rejections: float = 0
        self.upload_cap: int | None = None  # files over this many bytes are refused, until cleared

    def add(self, route: str | None, status: int, body: dict | None, *, times: float = 1,
            headers: dict[str, str] | None = None) -> Fault:
        method = None
        if route and " " in route:
            method, route = route.split(" ", 1)
        fault = Fault(method, route, status, body, headers or {}, times)
        self.rules.append(fault)
        return fault

    def match(self, method: str, route: str | None, path: str) -> Fault | None:
        for fault in self.rules:
            if fault.times <= 0 or (fault.method and fault.method != method):
                continue
            if fault.route is None or fault.route in (route, path):
                fault.times -= 1
                return fault
        return None

    def take_upload_rejection(self, sizes: list[int]) -> bool:
        if self.upload_cap is not None and any(size > self.upload_cap for size in sizes):
            return True
        if self.upload_rejections > 0:
            self.upload_rejections -= 1
            return True
        return False

    def clear(self) -> None:
        self.rules.clear()
        self.upload_rejections = 0
        self.upload_cap = None


def json_response(status: int, payload: Any, headers: dict[str, str] | None = None) -> web.Response:
    # discord.py parses a body as JSON only when Content-Type is exactly application/json.
    return web.Response(status=status, body=json.dumps(payload).encode(),
                        headers={"Content-Type": "application/json", "Via": "1.1 google", **(headers or {})})


class FakeDiscord:
    def __init__(self, *, settings: Settings | None = None, bot_token: str | None = None,
                 host: str = "127.0.0.1", cdn_host: str = "localhost",
                 rate_limits: bool | RateLimitSettings = True) -> None:
        # A distinctive token per fake, registered so the suite's secret scan looks for it everywhere.
        bot_token = bot_token or "MTfake." + secrets.token_urlsafe(6) + "." + secrets.token_urlsafe(27)
        register_secret(bot_token, "the fake Discord's bot token")
        self.settings = settings or Settings()
        self.host, self.cdn_host, self.port = host, cdn_host, 0
        self.world = World(self.settings, bot_token=bot_token)
        self.faults = Faults()
        # Discord's rate limits (discord_ratelimits.py): on unless a test turns them off.
        self.ratelimits = DiscordRateLimits(rate_limits if isinstance(rate_limits, RateLimitSettings)
                                            else RateLimitSettings(enabled=rate_limits))
        self.gateway = Gateway(self.world)
        self.cdn = Cdn(self.world)
        self.messages = Messages(self.world, self.gateway, self.cdn)
        self.rest = Rest(self.world, self.gateway, self.cdn, self.messages, self.faults)
        self.interactions = Interactions(self.world, self.gateway, self.cdn, self.messages, self.faults)
        self.routes: list[Route] = self.interactions.routes() + self.rest.routes()
        self.requests: list[RequestRecord] = []
        self.unknown_routes: list[RequestRecord] = []
        self.cdn_requests: list[tuple[str, int]] = []  # (path, status) of every CDN fetch
        self.internal_errors: list[str] = []  # bugs in the fake itself: tests should assert none
        self.ready_signals: list[dict[str, Any]] = []  # from sitecustomize when discord.py fires on_ready
        self._runner: web.AppRunner | None = None

    # ---- lifecycle ----------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def api_url(self) -> str:
        return f"{self.url}/api/v10"

    @property
    def cdn_base(self) -> str:
        return f"http://{self.cdn_host}:{self.port}"

    async def start(self) -> FakeDiscord:
        app = web.Application(client_max_size=1024 ** 3)
        app.router.add_get("/gateway", self.gateway.handle)
        app.router.add_get("/gateway-resume", self.gateway.handle)
        app.router.add_post("/_testbed/ready", self._ready)
        for prefix in ("/attachments/", "/ephemeral-attachments/", "/media/"):
            app.router.add_get(prefix + "{tail:.*}", self._cdn)
        app.router.add_route("*", "/api/{tail:.*}", self._api)
        app.router.add_route("*", "/{tail:.*}", self._not_found)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.world.cdn_base = self.cdn_base
        self.gateway.url = f"ws://{self.host}:{self.port}/gateway"
        self.gateway.resume_url = f"ws://{self.host}:{self.port}/gateway-resume"
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeDiscord:
        return await self.start()

    async def __aexit__(self, *exc: Any) -> None:
        await self.stop()

    # ---- HTTP handlers ------------------------------------------------------------------------------

    async def _api(self, request: web.Request) -> web.StreamResponse:
        match = API_PREFIX.match(request.path)
        path = match.group(2) if match and match.group(1) in (None, "9", "10") else request.path
        route, params = None, {}
        for candidate in self.routes:
            m = candidate.regex.match(path)
            if m and candidate.method == request.method:
                route, params = candidate, m.groupdict()
                break
        record = RequestRecord(request.method, path, dict(request.query),
                               f"{route.method} {route.template}" if route else None, self.world.clock.now())
        self.requests.append(record)
        verdict = (self.ratelimits.check(record.route, params, exempt_from_global=not route.auth)
                   if route is not None else Verdict())
        if verdict.refused is not None:
            status, payload, headers = 429, verdict.refused, verdict.headers
        else:
            status, payload, headers = await self._answer(request, route, params, record)
            headers = {**verdict.headers, **headers}
        self.ratelimits.answered(status, headers)
        record.status, record.response = status, payload
        self.world.notify()
        if status == 204:
            return web.Response(status=204, headers={"Via": "1.1 google", **headers})
        return json_response(status, payload, headers)

    async def _answer(self, request: web.Request, route: Route | None, params: dict[str, str],
                      record: RequestRecord) -> tuple[int, Any, dict[str, str]]:
        if route is None:
            self.unknown_routes.append(record)
            log.warning("fake Discord has no route for %s %s", request.method, request.path)
            return 404, {"message": "404: Not Found", "code": 0}, {}
        if route.auth and request.headers.get("Authorization") != f"Bot {self.world.bot_token}":
            return 401, {"message": "401: Unauthorized", "code": 0}, {}
        fault = self.faults.match(request.method, route.template, record.path)
        if fault is not None:
            return fault.status, fault.body, fault.headers
        req = ApiRequest(request, params, route.template, record)
        try:
            result = await route.handler(req)
        except DiscordError as err:
            if not record.body and request.can_read_body:
                try:
                    await req.body()
                except Exception:
                    pass
            return err.status, err.payload(), err.headers
        except Exception:
            self.internal_errors.append(traceback.format_exc())
            log.exception("fake Discord failed on %s %s", request.method, request.path)
            return 500, {"message": "500: Internal Server Error", "code": 0}, {}
        if result is NO_CONTENT:
            return 204, None, {}
        return 200, result, {}

    async def _cdn(self, request: web.Request) -> web.StreamResponse:
        path = request.path[len("/media"):] if request.path.startswith("/media/") else request.path
        stored = self.cdn.lookup(path)
        if stored is None or not self.cdn.verify(stored.path, request.query):
            self.cdn_requests.append((request.path, 404))
            if stored is None:
                self.unknown_routes.append(RequestRecord("GET", request.path, dict(request.query), None,
                                                         self.world.clock.now(), 404))
            return web.Response(status=404, text="This content is no longer available.")
        self.cdn_requests.append((request.path, 200))
        return web.Response(body=stored.data, headers={"Content-Type": stored.content_type})

    async def _not_found(self, request: web.Request) -> web.StreamResponse:
        record = RequestRecord(request.method, request.path, dict(request.query), None, self.world.clock.now(), 404)
        self.unknown_routes.append(record)
        return json_response(404, {"message": "404: Not Found", "code": 0})

    async def _ready(self, request: web.Request) -> web.StreamResponse:
        data = await request.json()
        data["at"] = self.world.clock.now()
        data["session"] = self.gateway.current.id if self.gateway.current else None
        self.ready_signals.append(data)
        self.world.notify()
        return web.Response(status=204)

    # ---- what users and admins do (the driver calls these) ---------------------------------------------

    def user_message(self, channel_id: int, user_id: int, content: str = "",
                     files: list[tuple[str, bytes]] = (), reply_to: MessageRecord | None = None) -> MessageRecord:
        """A user posts in a channel, thread or DM; the bot receives MESSAGE_CREATE."""
        world = self.world
        if channel_id not in world.channels:
            raise LookupError(f"no channel {channel_id}")
        body = {"content": content}
        check_message(world, body, [], size_limit=1 << 62, creating=bool(not files))
        attachments = [f.payload(world) if isinstance(f, ExternalAttachment)
                       else self.cdn.store(f[1], f[0], channel_id=channel_id) for f in files]
        if world.is_thread(channel_id):
            meta = world.channels[channel_id]["thread_metadata"]
            if meta["archived"] and not meta.get("locked"):
                meta["archived"] = False
                self.rest.channel_update(channel_id)
            world.add_thread_member(channel_id, user_id)
        extra: dict[str, Any] = {}
        if reply_to is not None:
            extra = {"message_reference": {"type": 0, "message_id": str(reply_to.id),
                                           "channel_id": str(reply_to.channel_id)},
                     "referenced_message": copy.deepcopy(reply_to.data)}
        return self.messages.create(channel_id, user_id, body, attachments, type_=19 if reply_to else 0,
                                    extra=extra)

    def react(self, message: MessageRecord, emoji: str, user_id: int, *, add: bool = True) -> None:
        react(self.rest, message, {"id": None, "name": emoji}, user_id, add=add)

    def archive_thread(self, thread_id: int, *, locked: bool = False, archived: bool = True) -> None:
        meta = self.world.channels[thread_id]["thread_metadata"]
        meta.update({"archived": archived, "locked": locked, "archive_timestamp": iso()})
        self.rest.channel_update(thread_id)

    def delete_channel(self, channel_id: int) -> None:
        remove_channel(self.rest, channel_id)

    def add_role(self, name: str, permissions: int = 0) -> int:
        """A new guild role (GUILD_ROLE_CREATE)."""
        world = self.world
        role_id = world._add_role(world.snowflake(), name, permissions, position=len(world.roles), name_key=name)
        self.gateway.dispatch("GUILD_ROLE_CREATE", {"guild_id": str(world.guild_id),
                                                    "role": copy.deepcopy(world.roles[role_id])})
        world.notify()
        return role_id

    def add_user(self, username: str, *, member: bool = True, roles: list[int] = ()) -> int:
        """A new user, by default a guild member with `roles` (GUILD_MEMBER_ADD)."""
        world = self.world
        if username in world.names:
            raise ValueError(f"name {username!r} is taken")
        user_id = world._add_user(world.snowflake(), username, global_name=username.title())
        if member:
            world._add_member(user_id, list(roles))
            event = world.member_payload(user_id)
            event["guild_id"] = str(world.guild_id)
            self.gateway.dispatch("GUILD_MEMBER_ADD", event)
        world.notify()
        return user_id

    def deny(self, channel_id: int, *permissions: str, user_id: int | None = None) -> None:
        """Deny permissions (names like "attach_files") to the bot in a channel; CHANNEL_UPDATE tells it."""
        bits = 0
        for name in permissions:
            bits |= P.NAMES[name]
        parent = self.world.deny(channel_id, bits, user_id)
        self.gateway.dispatch("CHANNEL_UPDATE", copy.deepcopy(parent))
        self.world.notify()

    def rate_limit(self, route: str, *, retry_after: float = 0.05, times: float = 1, is_global: bool = False) -> None:
        """429 with Discord's body and headers; discord.py waits retry_after and retries."""
        headers = {"Retry-After": str(max(1, math.ceil(retry_after))), "X-RateLimit-Limit": "5",
                   "X-RateLimit-Remaining": "0", "X-RateLimit-Reset": f"{time.time() + retry_after:.3f}",
                   "X-RateLimit-Reset-After": f"{retry_after:.3f}", "X-RateLimit-Bucket": "fakebucket",
                   "X-RateLimit-Scope": "user"}
        if is_global:
            headers["X-RateLimit-Global"] = "true"
        body = {"message": "You are being rate limited.", "retry_after": retry_after, "global": is_global}
        self.faults.add(route, 429, body, times=times, headers=headers)

    # ---- reads ----------------------------------------------------------------------------------------

    def commands(self, guild: bool | None = None) -> list[dict[str, Any]]:
        """Registered application commands: global, guild (guild=True) or both (None)."""
        out: list[dict[str, Any]] = []
        if guild in (None, False):
            out += self.world.global_commands
        if guild in (None, True):
            out += self.world.guild_commands.get(self.world.guild_id, [])
        return copy.deepcopy(out)

    def bot_threads(self) -> list[dict[str, Any]]:
        return [copy.deepcopy(t) for t in self.world.threads() if int(t["owner_id"]) == self.world.bot_id]

    def is_thread(self, channel_id: int) -> bool:
        return self.world.channels.get(channel_id, {}).get("type") in ChannelType.THREADS
