"""The test-facing API of the end-to-end test bed (see tests/README.md).

    async with Driver() as d:
        await d.start_bot([sys.executable, "bot.py"], env={...})
        h = await d.slash("draw", {"prompt": "a cat"}, user="alice", channel="general")
        msg = await h.response(where=lambda m: m.attachments)
        assert msg.attachments[0].data.startswith(b"\\x89PNG")

Everything runs on 127.0.0.1 with random ports; the bot is a real subprocess with a real discord.py.
Waiting is event-driven (the fake notifies on every change); the only deliberate sleep is the "human
delay" before acting on a message the bot has just produced (see discord-notes: a view is registered
only after its send request returns, so a click within microseconds could beat it; humans cannot).
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import aiohttp

from .discord_interactions import APPLICATION_COMMAND, AUTOCOMPLETE, MESSAGE_COMPONENT, MODAL_SUBMIT, modal_values
from .discord_messages import ExternalAttachment
from .discord_process import BotProcess
from .discord_ratelimits import RateLimitSettings
from .discord_server import FakeDiscord, RequestRecord
from .discord_state import MessageRecord, P, Settings
from .discord_views import Attachment, Interaction, Message, walk_components

__all__ = ["Attachment", "BotProcess", "Driver", "ExternalAttachment", "Interaction", "Message", "Settings"]

SITECUSTOMIZE_DIR = Path(__file__).resolve().parent / "sitecustomize_dir"


TRACEBACK = "Traceback (most recent call last)"


class Driver:
    """Starts the fake Discord and the bot process, and acts as Discord's users.

    Every Driver is checked after each test (tests/e2e/conftest.py) and when it closes: a route the
    fake does not know, an error inside the fake, or a traceback in a bot log fails the test, so a
    handler that crashes after its visible part cannot pass. A test that provokes one on purpose
    says so with `allow_problems(...)`.
    """

    live: list[Driver] = []  # open drivers, for the per-test check

    def __init__(self, *, settings: Settings | None = None, log_dir: str | Path | None = None,
                 human_delay: tuple[float, float] = (0.05, 0.1), seed: int = 0,
                 guild_ready_timeout: float = 0.05, rate_limits: bool | RateLimitSettings = True) -> None:
        self.fake = FakeDiscord(settings=settings, rate_limits=rate_limits)
        self.world = self.fake.world
        self.human_delay = human_delay
        self._random = random.Random(seed)
        self._tmp = None if log_dir else tempfile.TemporaryDirectory(prefix="fake-discord-")
        self.log_dir = Path(log_dir or self._tmp.name)
        self.guild_ready_timeout = guild_ready_timeout
        self.bot: BotProcess | None = None
        self.runs: list[BotProcess] = []
        self._checked: dict[str, int] = {}  # what check_clean has already looked at
        self._allowed: list[str] = []  # problems a test provokes on purpose (substrings)

    # ---- lifecycle -------------------------------------------------------------------------------------

    async def start(self) -> Driver:
        await self.fake.start()
        Driver.live.append(self)
        return self

    async def close(self) -> None:
        if self in Driver.live:
            Driver.live.remove(self)
        try:
            for run in self.runs:
                try:
                    await run.stop(timeout=5)
                except Exception:  # keep stopping the others; SIGKILL as a last resort
                    await run.kill()
        finally:
            try:
                self.dump_messages()
            except Exception as exc:  # a dump must never hide the test's own outcome
                print(f"fake Discord: could not dump messages to {self.log_dir}: {exc!r}", file=sys.stderr)
            await self.fake.stop()
            try:
                self.check_clean()
            finally:
                if self._tmp is not None:
                    self._tmp.cleanup()

    async def __aenter__(self) -> Driver:
        return await self.start()

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    def dump_messages(self, path: str | Path | None = None) -> Path:
        """Write what users saw: every message the fake stored (each version, ephemeral and deleted
        ones too), channel and thread names, the modals and autocomplete choices the bot sent, one
        JSON object a line, to `log_dir/discord-messages.jsonl` (the secret scan reads it)."""
        path = Path(path or self.log_dir / "discord-messages.jsonl")
        path.parent.mkdir(parents=True, exist_ok=True)
        world = self.world
        with open(path, "w", encoding="utf-8") as out:
            def write(obj: dict[str, Any]) -> None:
                out.write(json.dumps(obj, ensure_ascii=False, default=str) + "\n")
            for channel_id, channel in world.channels.items():
                write({"channel_id": channel_id, "name": channel.get("name"), "topic": channel.get("topic")})
            for channel_id, records in world.messages.items():
                for rec in records.values():
                    for n, version in enumerate([*rec.history, rec.data]):
                        write({"channel_id": channel_id, "message_id": rec.id, "version": n,
                               "ephemeral": rec.ephemeral, "deleted": rec.deleted,
                               **{k: version.get(k) for k in ("content", "embeds", "components", "attachments")}})
            for rec in self.fake.interactions.records.values():
                if rec.modal is not None or rec.choices:
                    write({"interaction_id": rec.id, "name": rec.name, "modal": rec.modal, "choices": rec.choices})
        return path

    # ---- seeded ids ------------------------------------------------------------------------------------

    guild_id = property(lambda self: self.world.guild_id)
    bot_id = property(lambda self: self.world.bot_id)
    application_id = property(lambda self: self.world.application_id)
    general = property(lambda self: self.world.general_id)      # text channel
    art = property(lambda self: self.world.art_id)              # a second text channel
    old_thread = property(lambda self: self.world.seed_thread_id)  # an active thread made by a user
    alice = property(lambda self: self.world.alice)             # member with Manage Server
    bob = property(lambda self: self.world.bob)                 # plain member
    carol = property(lambda self: self.world.carol)             # guild owner (no roles)
    cdn_host = property(lambda self: self.fake.cdn_host)        # host of attachment URLs

    def add_user(self, name: str, *, member: bool = True, roles: Iterable[Any] = ()) -> int:
        """Another user (a guild member unless member=False) with roles given by id or name."""
        return self.fake.add_user(name, member=member, roles=[self.world.resolve(r, "role") for r in roles])

    def add_guild(self, name: str, *, shard: tuple[int, int] | None = None) -> int:
        """Another guild with one text channel, `"<name>/general"` (World.add_guild); `shard=(id, count)`
        puts it on that shard. A bot already connected gets its GUILD_CREATE on the owning shard."""
        guild_id = self.world.add_guild(name, shard=shard)
        self.fake.gateway.dispatch("GUILD_CREATE", self.world.guild_create_payload(all_members=False,
                                                                                   guild_id=guild_id))
        self.world.notify()
        return guild_id

    def add_role(self, name: str, *permissions: str) -> int:
        """A new role with named permissions ("manage_guild", "send_messages", ...: discord_state.P)."""
        bits = 0
        for perm in permissions:
            bits |= getattr(P, perm.upper())
        return self.fake.add_role(name, bits)

    def dm(self, user: Any) -> int:
        """The bot's DM channel with a user."""
        return int(self.world.dm_channel(self.world.resolve(user, "user"))["id"])

    def channel_id(self, channel: Any) -> int:
        if isinstance(channel, (Message, Interaction)):
            return channel.channel_id
        return self.world.resolve(channel, "channel")

    @property
    def env(self) -> dict[str, str]:
        """Variables the bot process gets on top of its own env (PYTHONPATH is added in start_bot)."""
        return {
            "FAKE_DISCORD_URL": self.fake.url,
            "FAKE_DISCORD_GATEWAY": self.fake.gateway.url,
            "FAKE_DISCORD_CDN": self.fake.cdn_base,
            "FAKE_DISCORD_CDN_HOST": self.fake.cdn_host,
            "FAKE_DISCORD_GUILD_READY_TIMEOUT": str(self.guild_ready_timeout),
            "DISCORD_TOKEN": self.world.bot_token,
            "PYTHONUNBUFFERED": "1",
        }

    # ---- the bot process -------------------------------------------------------------------------------

    async def start_bot(self, argv: Sequence[str] | None = None, *, cwd: str | Path | None = None,
                        env: dict[str, str] | None = None, wait: bool = True, commands: bool = True,
                        timeout: float = 30) -> BotProcess:
        """Launch the bot (default: `python bot.py` in the repo root) redirected to this fake."""
        if self.bot is not None and self.bot.running:
            raise RuntimeError("a bot process is already running; stop_bot() first")
        self.bot = await self._launch(argv, cwd, env)
        if wait:
            await self.wait_ready(timeout=timeout, commands=commands)
        return self.bot

    async def start_another_bot(self, argv: Sequence[str] | None = None, *, cwd: str | Path | None = None,
                                env: dict[str, str] | None = None, wait: bool = True, commands: bool = True,
                                timeout: float = 30) -> BotProcess:
        """One more process beside the current bot (another shard, a worker), redirected like
        `start_bot`; `bot` stays the first one. `close()` stops it with the others."""
        process = await self._launch(argv, cwd, env)
        if wait:
            await self.wait_ready(timeout=timeout, commands=commands, bot=process)
        return process

    async def _launch(self, argv: Sequence[str] | None, cwd: str | Path | None,
                      env: dict[str, str] | None) -> BotProcess:
        base = {**os.environ, **self.env, **(env or {})}  # the test's env wins (e.g. a bad token on purpose)
        base["PYTHONPATH"] = os.pathsep.join(p for p in (str(SITECUSTOMIZE_DIR), base.get("PYTHONPATH")) if p)
        argv = list(argv or [sys.executable, "bot.py"])
        cwd = cwd or Path(__file__).resolve().parents[2]
        process = BotProcess(argv, cwd, base, self.log_dir / f"bot-{len(self.runs) + 1}.log", env)
        self.runs.append(process)
        await process.start(self.world.notify)
        return process

    async def wait_ready(self, timeout: float = 30, commands: bool = True, *, bot: BotProcess | None = None) -> None:
        """Until discord.py fired on_ready in the current process, or `bot` (and commands are registered)."""
        bot = bot or self.bot
        if bot is None:
            raise RuntimeError("no bot started")

        def check() -> bool:
            if not bot.running:
                raise RuntimeError(f"bot exited with {bot.returncode} before ready; its log:\n{bot.output()[-4000:]}")
            ready = any(s.get("pid") == bot.pid for s in self.fake.ready_signals)
            return ready and (not commands or bool(self.fake.commands()))
        try:
            await self.wait(check, timeout, "the bot to be ready")
        except TimeoutError as exc:
            raise TimeoutError(f"{exc}; bot log:\n{bot.output()[-4000:]}") from None

    async def stop_bot(self, timeout: float = 10) -> int:
        """SIGTERM (then SIGKILL after `timeout`); returns the exit code."""
        return await self.bot.stop(timeout) if self.bot else 0

    async def kill_bot(self) -> int:
        return await self.bot.kill() if self.bot else 0

    async def restart_bot(self, *, kill: bool = False, **kwargs: Any) -> BotProcess:
        """Stop the bot and start it again with the same argv, cwd and env (so the same data dir)."""
        old = self.bot
        await (self.kill_bot() if kill else self.stop_bot())
        return await self.start_bot(old.argv, cwd=old.cwd, env=old.user_env, **kwargs)

    # ---- waiting ---------------------------------------------------------------------------------------

    async def wait(self, check: Callable[[], Any], timeout: float = 10, what: str = "condition") -> Any:
        """Re-check after every change in the fake until `check()` is truthy; returns its value."""
        return await self.world.wait_for(check, timeout, what)

    def messages(self, channel: Any, *, author: Any = None, after: Any = None,
                 include_ephemeral: bool = True) -> list[Message]:
        """Messages in a channel/thread/DM, oldest first (`author`: "bot", a user or None for all)."""
        channel_id = self.channel_id(channel)
        author_id = self.bot_id if author == "bot" else (self.world.resolve(author, "user") if author else None)
        after_id = after.id if isinstance(after, Message) else int(after or 0)
        out = []
        for rec in self.world.channel_messages(channel_id):
            if rec.id <= after_id or (author_id and int(rec.data["author"]["id"]) != author_id):
                continue
            if rec.ephemeral and not include_ephemeral:
                continue
            out.append(Message(self.fake, rec))
        return out

    async def wait_for_message(self, channel: Any, where: Callable[[Message], Any] | None = None, *,
                               author: Any = "bot", after: Any = None, timeout: float = 10) -> Message:
        """The first message (in order) matching `where`; re-evaluated on every create and edit."""
        msgs = await self.wait_for_messages(channel, 1, where, author=author, after=after, timeout=timeout)
        return msgs[0]

    async def wait_for_messages(self, channel: Any, count: int, where: Callable[[Message], Any] | None = None,
                                *, author: Any = "bot", after: Any = None, timeout: float = 10) -> list[Message]:
        def check() -> list[Message] | None:
            found = [m for m in self.messages(channel, author=author, after=after)
                     if not m.loading and (where is None or where(m))]
            return found[:count] if len(found) >= count else None
        return await self.wait(check, timeout, f"{count} message(s) in {channel}")

    def mark(self) -> int:
        """A snowflake 'now': pass as `after=` to only see messages created from here on."""
        return self.world.snowflake()

    def threads(self, *, bot_only: bool = True) -> list[dict[str, Any]]:
        return self.fake.bot_threads() if bot_only else [dict(t) for t in self.world.threads()]

    async def wait_for_thread(self, where: Callable[[dict], Any] | None = None, timeout: float = 10) -> dict:
        def check() -> dict | None:
            return next((t for t in self.threads() if where is None or where(t)), None)
        return await self.wait(check, timeout, "a thread created by the bot")

    def commands(self, guild: bool | None = None) -> list[dict[str, Any]]:
        return self.fake.commands(guild)

    requests: list[RequestRecord] = property(lambda self: self.fake.requests)  # type: ignore[assignment]
    unknown_routes: list[RequestRecord] = property(lambda self: self.fake.unknown_routes)  # type: ignore
    cdn_requests = property(lambda self: self.fake.cdn_requests)
    typing = property(lambda self: self.fake.rest.typing)

    def errors(self) -> list[RequestRecord]:
        """REST requests the fake answered with 4xx/5xx (429s from injected faults included)."""
        return [r for r in self.fake.requests if r.status >= 400]

    def interactions(self) -> list[Interaction]:
        return [Interaction(self, r) for r in self.fake.interactions.records.values()]

    def assert_clean(self) -> None:
        """No unknown routes were hit, the fake itself never crashed, no bot log has a traceback."""
        self.check_clean()

    def allow_problems(self, *substrings: str) -> None:
        """Tracebacks (or fake errors) containing one of these are expected from now on (a bot logs
        them when it gets to it, so the allowance stays for the driver's life)."""
        self._allowed.extend(substrings)

    def problems(self) -> list[str]:
        """What went wrong since the last check (each problem reported once)."""
        found = [f"unknown route {r}" for r in self.fake.unknown_routes[self._checked.get("routes", 0):]]
        found += [f"fake Discord error: {e}" for e in self.fake.internal_errors[self._checked.get("errors", 0):]]
        self._checked["routes"], self._checked["errors"] = len(self.fake.unknown_routes), len(self.fake.internal_errors)
        for run in self.runs:
            key = str(run.log_path)
            try:
                text = run.log_path.read_text("utf-8", "replace")
            except FileNotFoundError:
                continue
            new, self._checked[key] = text[self._checked.get(key, 0):], len(text)
            for block in new.split(TRACEBACK)[1:]:
                found.append(f"traceback in {run.log_path.name}: {TRACEBACK}{block[:1500]}")
        return [p for p in found if not any(a in p for a in self._allowed)]

    def check_clean(self) -> None:
        found = self.problems()
        assert not found, "\n\n".join(found)

    async def fetch(self, url: str) -> bytes:
        """GET a URL the way the bot would (e.g. an attachment URL through the fake CDN)."""
        async with aiohttp.ClientSession() as session, session.get(url) as resp:
            resp.raise_for_status()
            return await resp.read()

    # ---- what users do ---------------------------------------------------------------------------------

    async def _human_pause(self, message: Message | None, since: float | None = None) -> None:
        """Let a human's reaction time pass since the bot produced `message` (or since `since`)."""
        if message is None and since is None:
            return
        delay = self._random.uniform(*self.human_delay)
        age = self.world.clock.now() - (since if since is not None else message.record.updated_at)
        if age < delay:
            await asyncio.sleep(delay - age)

    def _files(self, files: Iterable[Any]) -> list[tuple[str, bytes]]:
        out: list[Any] = []
        for i, f in enumerate(files):
            if isinstance(f, ExternalAttachment):
                out.append(f)
            elif isinstance(f, (bytes, bytearray)):
                out.append((f"file{i}.png" if bytes(f[:4]) == b"\x89PNG" else f"file{i}.bin", bytes(f)))
            elif isinstance(f, (str, Path)):
                out.append((Path(f).name, Path(f).read_bytes()))
            else:
                name, data = f
                out.append((name, bytes(data)))
        return out

    def _message(self, message: Any) -> Message:
        if isinstance(message, Message):
            return message
        rec = self.world.find_message(int(getattr(message, "id", message)))
        if rec is None:
            raise LookupError(f"no message {message}")
        return Message(self.fake, rec)

    async def slash(self, command: str, options: dict[str, Any] | None = None, *, user: Any = "alice",
                    channel: Any = "general", ack_deadline: float | None = None,
                    token_lifetime: float | None = None, attachment_size_limit: int | None = None,
                    validate: bool = True) -> Interaction:
        """Run `/command [sub] options` as `user` in `channel`. Attachment options take bytes, a path,
        (filename, bytes) or an ExternalAttachment; user/role/channel options take ids or names. Clocks
        may be shortened per call. validate=False sends values outside the choices or min/max as given
        (Discord's own client cannot; a forged interaction could)."""
        channel_id, user_id = self.channel_id(channel), self.world.resolve(user, "user")
        options = dict(options or {})
        interaction_id = self.world.snowflake()
        for name, value in options.items():
            if isinstance(value, (bytes, bytearray, Path)) or (isinstance(value, tuple) and len(value) == 2
                                                             and isinstance(value[1], (bytes, bytearray))):
                options[name] = self._files([value])[0]
        data = self.fake.interactions.command_data(command, options, channel_id=channel_id,
                                                   interaction_id=interaction_id, validate=validate)
        return self._interact(APPLICATION_COMMAND, data, user_id, channel_id, None, interaction_id,
                              ack_deadline, token_lifetime, attachment_size_limit)

    async def context_menu(self, name: str, target: Any, *, user: Any = "alice", **clocks: Any) -> Interaction:
        """Run a message context-menu command (Apps > name) on `target` (a Message or message id);
        a user context-menu command when `target` is a user name or id."""
        user_id = self.world.resolve(user, "user")
        if isinstance(target, Message) or (isinstance(target, int) and self.world.find_message(target)):
            message = self._message(target)
            await self._human_pause(message)
            channel_id = message.channel_id
            cmd = self.fake.interactions.find_command(name, channel_id, 3)
            data = {"id": cmd["id"], "name": name, "type": 3, "target_id": str(message.id),
                    "resolved": {"messages": {str(message.id): dict(message.data)}}}
        else:
            channel_id = self.channel_id(clocks.pop("channel", "general"))
            target_id = self.world.resolve(target, "user")
            cmd = self.fake.interactions.find_command(name, channel_id, 2)
            resolved = {"users": {str(target_id): self.world.users[target_id]}}
            if target_id in self.world.members:
                resolved["members"] = {str(target_id): self.world.member_payload(target_id, with_user=False)}
            data = {"id": cmd["id"], "name": name, "type": 2, "target_id": str(target_id), "resolved": resolved}
        if cmd.get("guild_id"):
            data["guild_id"] = cmd["guild_id"]
        return self._interact(APPLICATION_COMMAND, data, user_id, channel_id, None, None,
                              clocks.get("ack_deadline"), clocks.get("token_lifetime"),
                              clocks.get("attachment_size_limit"))

    async def click(self, message: Any, custom_id: str | None = None, *, label: str | None = None,
                    user: Any = "alice", **clocks: Any) -> Interaction:
        """Click a button on a message, found by custom_id or label."""
        message = self._message(message)
        await self._human_pause(message)
        buttons = [b for b in message.buttons() if (custom_id is None or b.get("custom_id") == custom_id)
                   and (label is None or b.get("label") == label)]
        if not buttons:
            raise LookupError(f"no button {custom_id or label!r} on {message}; buttons: {message.buttons()}")
        button = buttons[0]
        if button.get("disabled") or not button.get("custom_id"):
            raise ValueError(f"button {button} cannot be clicked (disabled or a link)")
        data = {"custom_id": button["custom_id"], "component_type": 2, "id": button.get("id")}
        return self._interact(MESSAGE_COMPONENT, data, self.world.resolve(user, "user"), message.channel_id,
                              message.record, None, clocks.get("ack_deadline"), clocks.get("token_lifetime"),
                              clocks.get("attachment_size_limit"))

    async def select(self, message: Any, custom_id: str, values: list[str], *, user: Any = "alice") -> Interaction:
        """Choose values in a string select menu on a message."""
        message = self._message(message)
        await self._human_pause(message)
        menu = next((c for c in walk_components(message.components) if c.get("custom_id") == custom_id), None)
        if menu is None or menu.get("type") != 3:
            raise LookupError(f"no string select {custom_id!r} on {message}")
        data = {"custom_id": custom_id, "component_type": 3, "values": list(values), "id": menu.get("id")}
        return self._interact(MESSAGE_COMPONENT, data, self.world.resolve(user, "user"), message.channel_id,
                              message.record, None, None, None, None)

    async def submit_modal(self, opened: Interaction, values: dict[str, str], *, user: Any = None) -> Interaction:
        """Fill in and submit the modal the bot opened in answer to `opened`."""
        modal = await opened.modal()
        # discord.py stores the modal only after its callback request returns: give it a human moment.
        await self._human_pause(None, since=opened.record.acked_at)
        data = {"custom_id": modal["custom_id"], "components": modal_values(modal, values)}
        user_id = self.world.resolve(user, "user") if user is not None else opened.record.user_id
        message = self.world.find_message(opened.record.message_id) if opened.record.message_id else None
        return self._interact(MODAL_SUBMIT, data, user_id, opened.channel_id, message, None, None, None, None)

    async def autocomplete(self, command: str, options: dict[str, Any], focused: str, *, user: Any = "alice",
                           channel: Any = "general", timeout: float = 10) -> list[dict[str, Any]]:
        """Type into `focused` and return the choices the bot offers."""
        channel_id = self.channel_id(channel)
        options = {**options, focused: options.get(focused, "")}
        data = self.fake.interactions.command_data(command, options, channel_id=channel_id, interaction_id=0,
                                                   focused=focused)
        h = self._interact(AUTOCOMPLETE, data, self.world.resolve(user, "user"), channel_id, None, None,
                           None, None, None)
        return await self.wait(lambda: h.record.choices if h.record.choices is not None else None, timeout,
                               "autocomplete choices") or []

    def _interact(self, type_: int, data: dict[str, Any], user_id: int, channel_id: int,
                  message: MessageRecord | None, interaction_id: int | None, ack_deadline: float | None,
                  token_lifetime: float | None, size_limit: int | None) -> Interaction:
        if not self.fake.gateway.connected and self.fake.gateway.current is None:
            raise RuntimeError("the bot is not connected to the gateway")
        rec = self.fake.interactions.create(type_, data, user_id=user_id, channel_id=channel_id, message=message,
                                            interaction_id=interaction_id, ack_deadline=ack_deadline,
                                            token_lifetime=token_lifetime, size_limit=size_limit)
        return Interaction(self, rec)

    async def say(self, channel: Any, content: str = "", *, files: Iterable[Any] = (), user: Any = "alice",
                  reply_to: Any = None) -> Message:
        """Post a message as a user (text and/or files) in a channel, thread or DM."""
        reply = self._message(reply_to).record if reply_to is not None else None
        rec = self.fake.user_message(self.channel_id(channel), self.world.resolve(user, "user"), content,
                                     self._files(files), reply_to=reply)
        return Message(self.fake, rec)

    async def react(self, message: Any, emoji: str, *, user: Any = "alice", add: bool = True) -> None:
        message = self._message(message)
        await self._human_pause(message)
        self.fake.react(message.record, emoji, self.world.resolve(user, "user"), add=add)

    # ---- the gateway -----------------------------------------------------------------------------------

    async def drop_connection(self, *, code: int = 4000, abrupt: bool = False, wait_resumed: bool = True,
                              timeout: float = 20) -> None:
        """Drop the bot's websocket; by default wait until it has RESUMEd on resume_gateway_url."""
        resumes = self.fake.gateway.resumes
        await self.fake.gateway.drop(code, abrupt=abrupt)
        if wait_resumed:
            await self.wait(lambda: self.fake.gateway.resumes > resumes, timeout, "the bot to RESUME")

    @contextlib.asynccontextmanager
    async def offline(self, *, code: int = 4000, timeout: float = 20):
        """Inside the block the bot is disconnected and cannot get back in; what the test injects is
        queued. On exit the bot may reconnect; the block's exit waits until it has RESUMEd."""
        resumes = self.fake.gateway.resumes
        self.fake.gateway.hold()
        try:
            await self.fake.gateway.drop(code)
            yield
        finally:
            self.fake.gateway.release()
        await self.wait(lambda: self.fake.gateway.resumes > resumes, timeout, "the bot to RESUME")

    # ---- Discord's rules and faults --------------------------------------------------------------------

    def advance_clock(self, seconds: float) -> None:
        """Jump the fake's clock (ack deadlines, token expiry) without waiting."""
        self.world.clock.advance(seconds)

    def fail(self, route: str | None, status: int, code: int = 0, message: str = "", *, times: float = 1) -> None:
        """Answer `route` ("POST /channels/{channel_id}/messages", a concrete path, or None for any)."""
        self.fake.faults.add(route, status, {"message": message or f"{status}", "code": code}, times=times)

    def rate_limit(self, route: str, *, retry_after: float = 0.05, times: float = 1) -> None:
        self.fake.rate_limit(route, retry_after=retry_after, times=times)

    def reject_uploads(self, times: float = 1) -> None:
        """The next `times` requests with files get 413 / 40005 Request entity too large."""
        self.fake.faults.upload_rejections += times

    def reject_uploads_over(self, size: int | None) -> None:
        """Refuse (413 / 40005) every upload with a file over `size` bytes, as Discord does when a
        server's real allowance is smaller than the bot was told; None lifts it."""
        self.fake.faults.upload_cap = size

    def deny(self, channel: Any, *permissions: str) -> None:
        """Deny the bot permissions in a channel (e.g. "create_public_threads", "attach_files")."""
        self.fake.deny(self.channel_id(channel), *permissions)

    def archive_thread(self, thread: Any, *, locked: bool = False) -> None:
        self.fake.archive_thread(self.channel_id(thread), locked=locked)

    def delete_thread(self, thread: Any) -> None:
        self.fake.delete_channel(self.channel_id(thread))

    def delete_message(self, message: Any) -> None:
        """A moderator deletes a message (MESSAGE_DELETE); later edits of it answer 10008."""
        self.fake.messages.delete(self._message(message).record)
