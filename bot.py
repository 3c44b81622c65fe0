"""Entry point: `python bot.py`, configured by `.env` (see .env.example).

The bot owns the shared services (the aiohttp session, the CPU pool, the store, the provider router,
the quota keeper, the job runner) and hands each what it needs; cogs are extensions loaded in
setup_hook and reach the services through the bot.
"""
from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
import time

import aiohttp
import discord
from discord.ext import commands
from dotenv import load_dotenv

from core.config import Config
from cogs.addresses import delivery_from_address
from core.cpu import CpuPool
from core.durable import DurableQueue
from core.identify import IdentifyGate
from core.jobs import JobRunner
from core.metrics import Metrics, RateLimitCounter
from core.quota import QuotaKeeper
from providers.client import ProviderRouter
from providers.errors import ConfigError
from providers.limiter import MemoryBudget
from store import Store, open_store

log = logging.getLogger("bot")

EXTENSIONS = ("cogs.buttons", "cogs.generate", "cogs.threads", "cogs.preferences", "cogs.usage", "cogs.help",
              "cogs.admin")


class ImageBot(commands.Bot):
    store: Store
    providers: ProviderRouter
    quota: QuotaKeeper
    jobs: JobRunner

    def __init__(self, config: Config, http_session: aiohttp.ClientSession, cpu: CpuPool, metrics: Metrics,
                 role: str = "all", **shards) -> None:
        intents = discord.Intents.default()
        intents.message_content = True  # turns in threads are plain messages
        super().__init__(command_prefix=commands.when_mentioned, intents=intents, help_command=None,
                         allowed_mentions=discord.AllowedMentions.none(), **shards)
        self.config = config
        self.http_session = http_session
        self.cpu = cpu
        self.metrics = metrics
        self.role = role
        self.lag_max_ms = 0.0
        self.stopped = asyncio.Event()  # set by close(): a worker, with no gateway connection, runs until then
        self.tree.on_error = self._on_app_command_error

    async def _on_app_command_error(self, interaction: discord.Interaction,
                                    error: discord.app_commands.AppCommandError) -> None:
        """A command that fails before or inside its callback still answers the member, privately
        (discord.py's default only logs, and the member sees "The application did not respond")."""
        if isinstance(error, discord.app_commands.TransformerError):
            # An option value outside its choices or type: Discord's client cannot send one, a forged
            # interaction can.
            log.info("refused option value %r for /%s", error.value, getattr(interaction.command, "name", "?"))
            shown = str(error.value).replace("`", "'")[:80]
            text = f"`{shown}` is not one of the values this option accepts; pick one from the list."
        else:
            log.error("command /%s failed", getattr(interaction.command, "name", "?"),
                      exc_info=(type(error), error, error.__traceback__))
            text = "Something went wrong on the bot's side; the error was logged."
        try:
            if interaction.response.is_done():
                await interaction.followup.send(text, ephemeral=True)
            else:
                await interaction.response.send_message(text, ephemeral=True)
        except discord.HTTPException as exc:
            log.warning("could not tell the member about the failed command: %s", exc.status)

    async def setup_hook(self) -> None:
        config = self.config
        self.store = await open_store(config.database_path, config.database_url)
        self.store.lapse = 3 * config.heartbeat_seconds  # every process shares the .env: the same lapse
        shards = () if self.role == "worker" else self.config.shard_ids or range(self.config.shard_count or 1)
        await self.store.register_process(self.role, shards)
        self.providers = ProviderRouter(config.providers, self.http_session, cpu=self.cpu,
                                        memory_budget=MemoryBudget(config.max_inflight_mb * 1024 * 1024))
        self.quota = QuotaKeeper(store=self.store, config=config, providers=self.providers)
        self.jobs = JobRunner(store=self.store, providers=self.providers, quota=self.quota, config=config,
                              metrics=self.metrics, durable=await self._durable_queue(),
                              delivery_for=lambda record: delivery_from_address(self, record.delivery))
        self._watch_latency()
        if self.role != "worker":  # a worker answers no interaction: no commands, no cogs
            for extension in EXTENSIONS:
                await self.load_extension(extension)
            await self._sync_commands()
        if self.jobs.durable is not None and self.role != "gateway":
            self.jobs.durable.start_worker(self.store.process_id)
        pruned = await self.store.prune(self.config.retention_days)
        if pruned:
            log.info("deleted %d conversations older than %d days", pruned, self.config.retention_days)
        await self._recover()
        self._beat = asyncio.create_task(self._heartbeat())
        if self.config.lag_probe:
            asyncio.create_task(self._probe_lag())
        asyncio.create_task(self._log_health())

    async def _durable_queue(self) -> DurableQueue | None:
        """On PostgreSQL, jobs wait in procrastinate's queue on the same database (core/durable.py)."""
        if not self.config.database_url:
            return None
        config = self.config
        queue = DurableQueue(self.store.driver.pool, lambda job_id, starts: self.jobs.run_stored(job_id, starts),
                             concurrency=config.max_concurrent_jobs, heartbeat=config.heartbeat_seconds,
                             lapse=self.store.lapse, grace=config.shutdown_grace)
        await queue.open(self.store.exclusive)
        return queue

    def _watch_latency(self) -> None:
        self.metrics.shard_latency.labels("0").set_function(lambda: self.latency if self.latency == self.latency else 0)

    async def _recover(self) -> None:
        """Jobs and quota held by processes that are gone (never a live one's)."""
        interrupted = await self.jobs.recover()
        if interrupted:
            self.dispatch("jobs_interrupted", interrupted)  # cogs.buttons tells their members

    async def _heartbeat(self) -> None:
        """Tell the other processes this one is alive; take over what a process that died left."""
        while True:
            await asyncio.sleep(self.config.heartbeat_seconds)
            try:
                if not await self.store.heartbeat():
                    log.warning("this process was taken for gone (no heartbeat for %.0f s); its jobs "
                                "of that time may have been reported interrupted", self.store.lapse)
                await self._recover()
            except Exception:  # the database may be back at the next beat
                log.exception("heartbeat failed")

    async def _log_health(self) -> None:
        """One line a minute that says this process is alive and how busy it is."""
        while True:
            await asyncio.sleep(self.config.health_interval)
            running, waiting = self.jobs.counts()
            if self.jobs.durable is not None:  # the jobs waiting for any worker, not just this process's
                try:
                    waiting = await self.jobs.durable.depth()
                except Exception:  # noqa: BLE001 - the health line is no reason to stop
                    log.warning("could not read the queue's depth", exc_info=True)
            shards = "-" if self.role == "worker" else ",".join(
                map(str, getattr(self, "shard_ids", None) or [self.shard_id or 0]))
            log.info("health: role=%s shards=%s latency=%.0f ms jobs_running=%d queue_depth=%d", self.role,
                     shards, self.latency * 1000 if self.latency == self.latency else -1, running, waiting)

    async def _sync_commands(self) -> None:
        """Sync on purpose at start (to DEV_GUILD_ID for instant updates while developing), never in on_ready."""
        if self.config.dev_guild_id:
            guild = discord.Object(self.config.dev_guild_id)
            self.tree.copy_global_to(guild=guild)
            synced = await self.tree.sync(guild=guild)
        else:
            synced = await self.tree.sync()
        log.info("synced %d application commands", len(synced))

    async def _probe_lag(self) -> None:
        """Benchmark aid: how late the event loop runs a 10 ms timer. Logs each new maximum; with
        LAG_PROBE_FILE set, also appends `<CLOCK_MONOTONIC seconds> <ms>` for every lateness of 1 ms
        or more, so a benchmark can take the maximum over any time window."""
        out = open(self.config.lag_probe_file, "a", buffering=1) if self.config.lag_probe_file else None
        try:
            while True:
                start = time.monotonic()
                await asyncio.sleep(0.01)
                now = time.monotonic()
                late_ms = (now - start - 0.01) * 1000
                if out is not None and late_ms >= 1:
                    out.write(f"{now:.4f} {late_ms:.1f}\n")
                if late_ms > self.lag_max_ms:
                    self.lag_max_ms = late_ms
                    log.info("loop lag max %.1f ms", late_ms)
        finally:
            if out is not None:
                out.close()

    async def close(self) -> None:
        if hasattr(self, "jobs"):
            await self.jobs.shutdown(self.config.shutdown_grace)
        await super().close()
        self.stopped.set()
        if getattr(self, "identify_gate", None) is not None:
            await self.identify_gate.close()
        if hasattr(self, "store"):
            if hasattr(self, "_beat"):
                self._beat.cancel()
            await self.store.unregister_process()
            await self.store.close()


class ShardedImageBot(ImageBot, commands.AutoShardedBot):
    """SHARD_COUNT set: connects SHARD_IDS of that many shards (all of them without SHARD_IDS). On
    PostgreSQL the IDENTIFYs of every process take turns through the database (core/identify.py)."""

    identify_gate: IdentifyGate | None = None

    def __init__(self, config: Config, *args, **kwargs) -> None:
        super().__init__(config, *args, shard_count=config.shard_count,
                         shard_ids=list(config.shard_ids) if config.shard_ids else None, **kwargs)

    async def setup_hook(self) -> None:
        await super().setup_hook()
        if self.config.database_url:
            limits = await self.fetch_session_start_limits()
            self.identify_gate = IdentifyGate(self.store, limits.max_concurrency)

    def _watch_latency(self) -> None:
        for shard_id in self.config.shard_ids or range(self.config.shard_count):
            self.metrics.shard_latency.labels(str(shard_id)).set_function(
                lambda shard_id=shard_id: dict(self.latencies).get(shard_id, 0.0))

    async def before_identify_hook(self, shard_id: int | None, *, initial: bool = False) -> None:
        if self.identify_gate is None:  # one process: discord.py's own spacing
            await super().before_identify_hook(shard_id, initial=initial)
        else:
            await self.identify_gate.wait_turn(shard_id or 0)


async def run(config: Config, role: str) -> None:
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=15)
    # Worker processes for parsing answers and re-encoding images, for as long as the bot runs.
    # They take about half a second to start; until then that work runs in threads.
    cpu = CpuPool()
    starting = asyncio.create_task(asyncio.to_thread(cpu.start))
    metrics = Metrics()
    if config.metrics_port:
        metrics.serve(config.metrics_port)
    counter = RateLimitCounter(metrics.discord_rate_limits.inc)
    counter.attach()
    try:
        async with aiohttp.ClientSession(timeout=timeout) as session:
            sharded = config.shard_count and role != "worker"
            bot = (ShardedImageBot if sharded else ImageBot)(config, session, cpu, metrics, role)
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, lambda: asyncio.create_task(bot.close()))
            async with bot:
                if role == "worker":  # REST only: log in (which runs setup_hook), work until stopped
                    await bot.login(config.discord_token)
                    log.info("worker ready: taking jobs from the queue")
                    await bot.stopped.wait()
                else:
                    await bot.start(config.discord_token)
    finally:
        await starting  # never raises: workers that cannot start leave the work in threads
        await asyncio.to_thread(cpu.shutdown)
        counter.detach()
        metrics.stop()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python bot.py", description="The Nano Banana Discord bot.")
    parser.add_argument("--role", choices=ROLES, default="all",
                        help="all: everything in this process (default); gateway/worker: one part of a "
                             "deployment on several processes sharing DATABASE_URL")
    role = parser.parse_args().role
    load_dotenv()
    try:
        # A gateway process only takes jobs: the provider keys are the workers' business.
        config = Config.from_env(os.environ, require_provider_keys=role != "gateway")
        check_role(role, config)
    except ConfigError as exc:
        for line in str(exc).splitlines():
            print(f"configuration error: {line}", file=sys.stderr)
        sys.exit(2)
    discord.utils.setup_logging(level=logging.INFO)
    config.data_dir.mkdir(parents=True, exist_ok=True)
    try:
        asyncio.run(run(config, role))
    except discord.PrivilegedIntentsRequired:
        fail("Discord refused the Message Content intent: enable it for this bot in the developer portal "
             "(Bot → Privileged Gateway Intents → Message Content Intent); thread turns need it.", 2)
    except discord.LoginFailure:
        fail("Discord rejected DISCORD_TOKEN: copy the bot's token again from the developer portal.", 2)
    except (aiohttp.ClientConnectionError, OSError) as exc:
        fail(f"Cannot reach Discord ({type(exc).__name__}); check the network and try again.", 1)


ROLES = ("all", "gateway", "worker")


def check_role(role: str, config: Config) -> None:
    if role == "all":
        return
    if not config.database_url:
        raise ConfigError(f"--role {role} needs DATABASE_URL=postgresql://... (the processes share one "
                          "database); with SQLite everything runs in one process: --role all")


def fail(message: str, code: int) -> None:
    """One clear line instead of a traceback for the start-up failures an operator can fix."""
    log.error("%s", message)
    print(f"error: {message}", file=sys.stderr)
    sys.exit(code)


if __name__ == "__main__":
    main()
