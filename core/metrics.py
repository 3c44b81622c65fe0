"""What an operator's monitoring reads: a Prometheus endpoint (METRICS_PORT, off by default) and
one health line a minute in the log.

Each bot process owns one `Metrics` with a registry of its own (no module-level state), and
serves it on its own port; Prometheus scrapes every process and adds them up.
"""
from __future__ import annotations

import logging
from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

log = logging.getLogger(__name__)

LATENCY_BUCKETS = (0.5, 1, 2, 4, 8, 15, 30, 60, 120, 300)


class Metrics:
    def __init__(self) -> None:
        self.registry = registry = CollectorRegistry()
        self.jobs_queued = Gauge("nanobot_jobs_queued", "Jobs waiting for their turn or a slot", registry=registry)
        self.jobs_running = Gauge("nanobot_jobs_running", "Generations in flight", registry=registry)
        self.jobs_finished = Counter("nanobot_jobs_finished", "Jobs by outcome", ["outcome"], registry=registry)
        self.generation_seconds = Histogram("nanobot_generation_seconds", "Provider latency of a generation",
                                            ["provider", "model"], buckets=LATENCY_BUCKETS, registry=registry)
        self.provider_errors = Counter("nanobot_provider_errors", "Gateway errors after retries, by kind",
                                       ["provider", "kind"], registry=registry)
        self.discord_rate_limits = Counter("nanobot_discord_rate_limited", "Discord 429 answers", registry=registry)
        self.shard_latency = Gauge("nanobot_shard_latency_seconds", "Gateway heartbeat latency", ["shard"],
                                   registry=registry)
        self._server = None

    def serve(self, port: int, host: str = "0.0.0.0") -> None:
        """Expose /metrics on `port` (a thread of prometheus_client's own)."""
        self._server, _thread = start_http_server(port, addr=host, registry=self.registry)
        log.info("metrics on http://%s:%d/metrics", host, port)

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server = None


class RateLimitCounter(logging.Handler):
    """discord.py reports a 429 only in its log (discord.http for REST, discord.webhook.async_ for
    interaction webhooks): count those records, one per 429 answer."""

    LOGGERS = ("discord.http", "discord.webhook.async_")

    def __init__(self, count: Callable[[], None]) -> None:
        super().__init__(logging.WARNING)
        self._count = count

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if message.startswith("We are being rate limited") or " is rate limited. Retrying" in message:
            self._count()

    def attach(self) -> None:
        for name in self.LOGGERS:
            logging.getLogger(name).addHandler(self)

    def detach(self) -> None:
        for name in self.LOGGERS:
            logging.getLogger(name).removeHandler(self)
