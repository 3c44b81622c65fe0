"""What an operator's monitoring reads: the Prometheus endpoint and the health line in the log."""
from __future__ import annotations

import asyncio
import re
import socket
import sys

import aiohttp

from fakes.bot_helpers import bot_env, result_of
from fakes.driver import Driver
from fakes.fake_gateway import FakeGateway


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def sample(text: str, name: str, **labels: str) -> float | None:
    """The value of one Prometheus sample, or None when it is not there."""
    for line in text.splitlines():
        match = re.match(r"^([a-z_]+)(?:\{(.*)\})? (\S+)$", line)
        if not match or match.group(1) != name:
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', match.group(2) or ""))
        if all(found.get(k) == v for k, v in labels.items()):
            return float(match.group(3))
    return None


async def test_metrics_endpoint_and_health_line(tmp_path):
    port = free_port()
    async with FakeGateway() as gw, Driver(log_dir=tmp_path) as d:
        await d.start_bot([sys.executable, "bot.py"], env=bot_env(
            d, gw, tmp_path / "data", METRICS_PORT=port, HEALTH_LOG_SECONDS=0.3))
        d.rate_limit("PATCH /webhooks/{application_id}/{token}/messages/@original", retry_after=0.2, times=2)
        h = await d.slash("imagine", {"prompt": "a lamp"})
        await h.response(where=result_of, timeout=15)
        async with aiohttp.ClientSession() as http:
            for _ in range(100):  # the job counts as finished just after its result is posted
                async with http.get(f"http://127.0.0.1:{port}/metrics") as resp:
                    assert resp.status == 200
                    text = await resp.text()
                if sample(text, "nanobot_jobs_finished_total", outcome="done"):
                    break
                await asyncio.sleep(0.1)
        health = r"health: role=all shards=0 latency=\d+ ms jobs_running=0 queue_depth=0"
        for _ in range(100):  # the log is a file: poll it
            if re.search(health, d.bot.output()):
                break
            await asyncio.sleep(0.1)
        assert re.search(health, d.bot.output()), "no health line after the job"
    assert sample(text, "nanobot_jobs_finished_total", outcome="done") == 1
    assert sample(text, "nanobot_generation_seconds_count", provider="mule") == 1
    assert sample(text, "nanobot_jobs_running") == 0 and sample(text, "nanobot_jobs_queued") == 0
    assert sample(text, "nanobot_shard_latency_seconds", shard="0") is not None
    assert sample(text, "nanobot_discord_rate_limited_total") == 2
