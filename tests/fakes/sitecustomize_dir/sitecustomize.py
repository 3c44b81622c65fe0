"""Test-side redirect of an unmodified discord.py process to the fake Discord.

Python imports `sitecustomize` at start-up when it is on the path, so the test bed puts this directory
first on PYTHONPATH. With FAKE_DISCORD_URL unset it does nothing. With it set, an import hook waits for
the `discord` package to finish importing and then points it at the fake:

- REST: `discord.http.Route.BASE` (interaction callbacks and webhooks use the same class), also after
  `discord.http._set_api_version`, which rewrites BASE;
- Gateway: `DiscordWebSocket.DEFAULT_GATEWAY` (READY's resume_gateway_url covers reconnects);
- CDN: `discord.asset.Asset.BASE` (attachments need nothing: they are fetched from their own URL);
- FAKE_DISCORD_GUILD_READY_TIMEOUT: discord.py waits this long after the last GUILD_CREATE before
  on_ready (2 s by default); the fake sends every guild at once, so tests may shorten the wait;
- readiness: when discord.py fires on_ready it POSTs {pid} to FAKE_DISCORD_URL/_testbed/ready, so the
  driver waits for the event instead of sleeping.
"""
from __future__ import annotations

import importlib.abc
import importlib.util
import os
import sys

_URL = os.environ.get("FAKE_DISCORD_URL", "").rstrip("/")


def _patch(discord) -> None:  # noqa: ANN001 - the discord module
    import asyncio

    import aiohttp
    import yarl

    http = sys.modules["discord.http"]
    gateway = sys.modules["discord.gateway"]
    asset = sys.modules["discord.asset"]
    state = sys.modules["discord.state"]

    http.Route.BASE = f"{_URL}/api/v{http.INTERNAL_API_VERSION}"
    original_set_version = http._set_api_version

    def _set_api_version(value: int) -> None:
        original_set_version(value)
        http.Route.BASE = f"{_URL}/api/v{value}"

    http._set_api_version = _set_api_version
    gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(
        os.environ.get("FAKE_DISCORD_GATEWAY") or _URL.replace("http", "ws", 1) + "/gateway")
    asset.Asset.BASE = os.environ.get("FAKE_DISCORD_CDN") or _URL

    ready_timeout = os.environ.get("FAKE_DISCORD_GUILD_READY_TIMEOUT")
    if ready_timeout:
        original_init = state.ConnectionState.__init__

        def __init__(self, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003
            original_init(self, *args, **kwargs)
            self.guild_ready_timeout = float(ready_timeout)

        state.ConnectionState.__init__ = __init__

    original_call_handlers = state.ConnectionState.call_handlers
    pending: set = set()

    async def _signal_ready() -> None:
        try:
            async with aiohttp.ClientSession() as session:
                await session.post(f"{_URL}/_testbed/ready", json={"pid": os.getpid()})
        except Exception as exc:  # the bot must not fail because the test bed is gone
            print(f"sitecustomize: could not signal readiness: {exc!r}", file=sys.stderr)

    def call_handlers(self, key: str, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003
        if key == "ready":
            task = asyncio.get_running_loop().create_task(_signal_ready())
            pending.add(task)
            task.add_done_callback(pending.discard)
        return original_call_handlers(self, key, *args, **kwargs)

    state.ConnectionState.call_handlers = call_handlers


class _PatchAfterImport(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Wraps the loader of the top-level `discord` package so `_patch` runs once it is fully imported."""

    def find_spec(self, fullname, path, target=None):  # noqa: ANN001
        if fullname != "discord":
            return None
        sys.meta_path.remove(self)
        try:
            spec = importlib.util.find_spec("discord")
        finally:
            sys.meta_path.insert(0, self)
        if spec is None or spec.loader is None:
            return None
        self._wrapped = spec.loader
        spec.loader = self
        return spec

    def create_module(self, spec):  # noqa: ANN001
        return self._wrapped.create_module(spec)

    def exec_module(self, module) -> None:  # noqa: ANN001
        self._wrapped.exec_module(module)
        sys.meta_path.remove(self)
        module.__loader__ = module.__spec__.loader = self._wrapped  # leave no trace of the hook
        _patch(module)


if _URL:
    if "discord" in sys.modules:
        _patch(sys.modules["discord"])
    else:
        sys.meta_path.insert(0, _PatchAfterImport())
