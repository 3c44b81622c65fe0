"""The Gateway websocket: HELLO, heartbeats, IDENTIFY -> READY + GUILD_CREATE, RESUME with replay,
intent filtering, transport compression, and the test's handles to drop or hold the connection.

Sharding as Discord does it: IDENTIFY may carry `shard: [shard_id, shard_count]` (default [0, 1]);
a session gets the events of the guilds with `(guild_id >> 22) % shard_count == shard_id`, and DMs
(no guild) go to shard 0. Sharded IDENTIFYs in one bucket (`shard_id % max_concurrency`) closer
than `Settings.identify_interval` (5 s) get op 9 INVALID_SESSION; every IDENTIFY is recorded in
`identify_log`. A new IDENTIFY for the same [shard_id, shard_count] ends the older session (the fake
treats it as the same bot restarted, so a killed process's session does not keep receiving)."""
from __future__ import annotations

import asyncio
import copy
import json
import logging
import secrets
import zlib
from dataclasses import dataclass, field
from typing import Any, Callable

from aiohttp import WSMsgType, web

from .discord_state import Intents, World

log = logging.getLogger("fake_discord.gateway")

GUILD_EVENTS_NEED_GUILDS = ("GUILD_", "CHANNEL_", "THREAD_")


class Encoder:
    """Transport compression as the client asked in `?compress=`: one zlib stream per connection,
    each message flushed with Z_SYNC_FLUSH (ends 00 00 ff ff); zstd-stream when the fake can import
    zstandard, else plain text frames, which discord.py also accepts. So the fake works either way."""

    def __init__(self, compress: str | None) -> None:
        self.kind = "text"
        if compress == "zlib-stream":
            self.kind, self._z = "zlib-stream", zlib.compressobj()
        elif compress == "zstd-stream":
            try:
                import zstandard  # type: ignore
            except ImportError:
                log.info("client asked for zstd-stream; zstandard missing here, sending text frames")
            else:
                self.kind, self._zstd = "zstd-stream", zstandard.ZstdCompressor().compressobj()
                self._flush = zstandard.COMPRESSOBJ_FLUSH_BLOCK

    def encode(self, text: str) -> str | bytes:
        if self.kind == "zlib-stream":
            return self._z.compress(text.encode()) + self._z.flush(zlib.Z_SYNC_FLUSH)
        if self.kind == "zstd-stream":
            return self._zstd.compress(text.encode()) + self._zstd.flush(self._flush)
        return text


class Connection:
    """One websocket; a writer task keeps frames in order so `dispatch` can stay synchronous."""

    def __init__(self, ws: web.WebSocketResponse, encoder: Encoder, transport: Any) -> None:
        self.ws, self.encoder, self.transport = ws, encoder, transport
        self.queue: asyncio.Queue[tuple[dict, Callable[[], None] | None] | None] = asyncio.Queue()
        self.writer = asyncio.create_task(self._write())
        self.session: Session | None = None
        self.close_code: int | None = None

    def send(self, payload: dict[str, Any], on_sent: Callable[[], None] | None = None) -> None:
        self.queue.put_nowait((payload, on_sent))

    async def _write(self) -> None:
        while (item := await self.queue.get()) is not None:
            payload, on_sent = item
            frame = self.encoder.encode(json.dumps(payload, separators=(",", ":")))
            try:
                if isinstance(frame, bytes):
                    await self.ws.send_bytes(frame)
                else:
                    await self.ws.send_str(frame)
            except (ConnectionError, RuntimeError):
                return  # closed under us: the session buffer still has it for RESUME
            if on_sent:
                on_sent()


@dataclass
class Session:
    id: str
    intents: int
    seq: int = 0
    buffer: list[tuple[dict[str, Any], Callable[[], None] | None]] = field(default_factory=list)
    connection: Connection | None = None
    invalid: bool = False
    shard: tuple[int, int] = (0, 1)


@dataclass
class IdentifyRecord:
    """One IDENTIFY as the gateway judged it, on the fake's clock."""
    at: float
    shard: tuple[int, int] | None  # None: the IDENTIFY had no `shard` field
    bucket: int
    accepted: bool


@dataclass
class ConnectionInfo:
    """What the test can read about each gateway connection."""
    path: str
    compress: str | None
    encoding: str
    kind: str = "pending"  # identify | resume | invalid-resume | pending
    close_code: int | None = None


class Gateway:
    def __init__(self, world: World) -> None:
        self.world = world
        self.url = ""            # ws://127.0.0.1:port/gateway (set by the server)
        self.resume_url = ""     # READY's resume_gateway_url, a different path on purpose
        self.sessions: dict[str, Session] = {}
        self.current: Session | None = None
        self.connections: list[ConnectionInfo] = []
        self.identifies = 0
        self.identify_log: list[IdentifyRecord] = []
        self._bucket_identified_at: dict[int, float] = {}
        self.resumes = 0
        self.presence: dict[str, Any] | None = None
        self._open = asyncio.Event()
        self._open.set()

    # ---- test controls -----------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        return bool(self.current and self.current.connection and not self.current.connection.ws.closed)

    def hold(self) -> None:
        """New connections are accepted but get no HELLO until `release` (keeps the bot offline)."""
        self._open.clear()

    def release(self) -> None:
        self._open.set()

    async def drop(self, code: int = 4000, *, abrupt: bool = False) -> None:
        """Close the live connection the way Discord drops one; the session stays resumable."""
        session = self.current
        if not session or not session.connection:
            raise RuntimeError("no live gateway connection to drop")
        conn, session.connection = session.connection, None
        if abrupt:
            if conn.transport is not None:
                conn.transport.close()  # no close frame at all, like a network failure
        else:
            await conn.ws.close(code=code, message=b"dropped by test")
        self.world.notify()

    # ---- dispatch ---------------------------------------------------------------------------------

    def dispatch(self, event: str, data: dict[str, Any], on_sent: Callable[[], None] | None = None, *,
                 session: Session | None = None) -> bool:
        """Queue a DISPATCH for the sessions of the shard that owns the event's guild (or `session`),
        buffered for RESUME. False if no session gets it (none live, or intents filter it out)."""
        targets = [session] if session is not None else self.owners(event, data)
        delivered = False
        for target in targets:
            filtered = self._filter(target, event, data)
            if filtered is None:
                continue
            target.seq += 1
            payload = {"op": 0, "t": event, "s": target.seq, "d": filtered}
            target.buffer.append((payload, on_sent))
            if target.connection is not None:
                target.connection.send(payload, on_sent)
            delivered = True
        if not targets:
            log.debug("no session for %s; dropped", event)
        return delivered

    def owners(self, event: str, data: dict[str, Any]) -> list[Session]:
        """The live sessions whose shard receives this event."""
        guild_id = data.get("guild_id")
        if event in ("GUILD_CREATE", "GUILD_UPDATE", "GUILD_DELETE"):
            guild_id = data.get("id")
        guild_id = int(guild_id) if guild_id else None
        return [s for s in self.sessions.values()
                if not s.invalid and World.shard_of(guild_id, s.shard[1]) == s.shard[0]]

    def _filter(self, session: Session, event: str, data: dict[str, Any]) -> dict[str, Any] | None:
        intents, world = session.intents, self.world
        if event.startswith("GUILD_MEMBER_") and not intents & Intents.GUILD_MEMBERS:
            return None
        if event.startswith(GUILD_EVENTS_NEED_GUILDS) and not intents & Intents.GUILDS:
            return None
        if event.startswith("MESSAGE_REACTION"):
            need = Intents.GUILD_MESSAGE_REACTIONS if data.get("guild_id") else Intents.DIRECT_MESSAGE_REACTIONS
            return data if intents & need else None
        if event.startswith("MESSAGE_"):
            need = Intents.GUILD_MESSAGES if data.get("guild_id") else Intents.DIRECT_MESSAGES
            if not intents & need:
                return None
            author = (data.get("author") or {}).get("id")
            mentioned = any(int(u["id"]) == world.bot_id for u in data.get("mentions") or [])
            if (event != "MESSAGE_DELETE" and not intents & Intents.MESSAGE_CONTENT and data.get("guild_id")
                    and author != str(world.bot_id) and not mentioned):
                # Without the privileged MESSAGE_CONTENT intent Discord blanks these fields.
                data = copy.deepcopy(data)
                data.update({"content": "", "embeds": [], "attachments": [], "components": []})
                data.pop("poll", None)
        return data

    # ---- websocket handler ----------------------------------------------------------------------------

    async def handle(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(max_msg_size=0, autoping=True)
        await ws.prepare(request)
        info = ConnectionInfo(request.path, request.query.get("compress"), request.query.get("encoding", "json"))
        self.connections.append(info)
        conn = Connection(ws, Encoder(info.compress), request.transport)
        try:
            await self._open.wait()
            conn.send({"op": 10, "d": {"heartbeat_interval": self.world.settings.heartbeat_interval_ms,
                                       "_trace": ["[\"fake-gateway\"]"]}, "s": None, "t": None})
            async for msg in ws:
                if msg.type is not WSMsgType.TEXT:
                    if msg.type is WSMsgType.BINARY:
                        await ws.close(code=4002, message=b"Error while decoding payload.")
                    continue
                try:
                    frame = json.loads(msg.data)
                except ValueError:
                    await ws.close(code=4002, message=b"Error while decoding payload.")
                    break
                await self._on_frame(conn, info, frame)
        finally:
            info.close_code = ws.close_code
            conn.queue.put_nowait(None)
            if conn.session is not None and conn.session.connection is conn:
                conn.session.connection = None
                if ws.close_code in (1000, 1001):  # a clean close by the client ends the session
                    conn.session.invalid = True
            self.world.notify()
        return ws

    async def _on_frame(self, conn: Connection, info: ConnectionInfo, frame: dict[str, Any]) -> None:
        op, d = frame.get("op"), frame.get("d")
        if op == 1:  # heartbeat
            conn.send({"op": 11, "d": None, "s": None, "t": None})
        elif op == 2:
            await self._identify(conn, info, d or {})
        elif op == 6:
            await self._resume(conn, info, d or {})
        elif conn.session is None:
            await conn.ws.close(code=4003, message=b"Not authenticated.")
        elif op == 3:
            self.presence = d
        elif op == 8:
            self._request_members(d or {})
        elif op in (4, 12, 14, 31):
            pass  # voice state, guild sync, lazy requests, soundboard: not part of this fake
        else:
            await conn.ws.close(code=4001, message=b"Unknown opcode.")

    async def _identify(self, conn: Connection, info: ConnectionInfo, d: dict[str, Any]) -> None:
        world = self.world
        if conn.session is not None:
            await conn.ws.close(code=4005, message=b"Already authenticated.")
            return
        if d.get("token") != world.bot_token:
            await conn.ws.close(code=4004, message=b"Authentication failed.")
            return
        intents = int(d.get("intents", 0))
        if intents & Intents.PRIVILEGED & ~world.settings.privileged_intents:
            await conn.ws.close(code=4014, message=b"Disallowed intent(s).")
            return
        shard = d.get("shard")
        if shard is not None and not (isinstance(shard, list) and len(shard) == 2
                                      and all(isinstance(n, int) for n in shard) and 0 <= shard[0] < shard[1]):
            await conn.ws.close(code=4010, message=b"Invalid shard.")
            return
        if not self._identify_allowed(shard):
            info.kind = "identify-too-soon"
            conn.send({"op": 9, "d": False, "s": None, "t": None})
            world.notify()
            return
        shard_key = tuple(shard) if shard else (0, 1)
        for old in self.sessions.values():  # the same shard identifying again: a restarted bot
            if old.shard == shard_key:
                old.invalid = True
        session = Session(id=secrets.token_hex(16), intents=intents, connection=conn, shard=shard_key)
        self.sessions[session.id] = session
        self.current, conn.session, info.kind = session, session, "identify"
        self.identifies += 1
        guild_ids = [g for g in world.guilds if World.shard_of(g, shard_key[1]) == shard_key[0]]
        ready = {
            "v": 10, "user": world.me_payload(), "guilds": [{"id": str(g), "unavailable": True} for g in guild_ids],
            "session_id": session.id, "session_type": "normal", "resume_gateway_url": self.resume_url,
            "application": {"id": str(world.application_id), "flags": world.application_payload()["flags"]},
            "private_channels": [], "relationships": [], "presences": [], "guild_join_requests": [],
            "geo_ordered_rtc_regions": ["fake"], "user_settings": {}, "auth": {},
            "_trace": ["[\"fake-gateway\"]"],
        }
        if shard is not None:
            ready["shard"] = shard
        self.dispatch("READY", ready, session=session)
        for guild_id in guild_ids:
            self.dispatch("GUILD_CREATE", world.guild_create_payload(
                all_members=bool(intents & Intents.GUILD_MEMBERS), guild_id=guild_id), session=session)
        world.notify()

    def _identify_allowed(self, shard: list[int] | None) -> bool:
        """Discord's IDENTIFY rate limit per max_concurrency bucket; records every IDENTIFY."""
        settings, now = self.world.settings, self.world.clock.now()
        bucket = shard[0] % settings.max_concurrency if shard else 0
        last = self._bucket_identified_at.get(bucket)
        # Unsharded clients (one process, restarted by tests) are not held to the interval.
        allowed = shard is None or last is None or now - last >= settings.identify_interval
        if allowed:
            self._bucket_identified_at[bucket] = now
        self.identify_log.append(IdentifyRecord(now, tuple(shard) if shard else None, bucket, allowed))
        return allowed

    async def _resume(self, conn: Connection, info: ConnectionInfo, d: dict[str, Any]) -> None:
        session = self.sessions.get(d.get("session_id") or "")
        if d.get("token") != self.world.bot_token:
            await conn.ws.close(code=4004, message=b"Authentication failed.")
            return
        if session is None or session.invalid:
            info.kind = "invalid-resume"
            conn.send({"op": 9, "d": False, "s": None, "t": None})
            return
        info.kind = "resume"
        seq = int(d.get("seq") or 0)
        old = session.connection
        session.connection, conn.session = conn, session
        self.current = session
        if old is not None and not old.ws.closed:
            await old.ws.close(code=4000)
        for payload, on_sent in session.buffer:  # replay what the client missed, in order
            if payload["s"] > seq:
                conn.send(payload, on_sent)
        self.resumes += 1
        self.dispatch("RESUMED", {"_trace": ["[\"fake-gateway\"]"]}, session=session)
        self.world.notify()

    def _request_members(self, d: dict[str, Any]) -> None:
        world = self.world
        wanted = {int(u) for u in d.get("user_ids") or []}
        query = (d.get("query") or "").lower()
        guild_id = int(d.get("guild_id") or world.guild_id)
        members = [world.member_payload(uid, guild_id=guild_id) for uid, m in world.members.items()
                   if (not wanted or uid in wanted) and m["user"]["username"].lower().startswith(query)]
        limit = int(d.get("limit") or 0)
        if limit:
            members = members[:limit]
        chunk = {"guild_id": str(guild_id), "members": members, "chunk_index": 0, "chunk_count": 1}
        if d.get("nonce"):
            chunk["nonce"] = d["nonce"]
        self.dispatch("GUILD_MEMBERS_CHUNK", chunk)
