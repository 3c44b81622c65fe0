"""The table, the targets (issue 6 / SPEC §8), the machine description and bench/RESULTS.md."""
from __future__ import annotations

import os
import platform
import time
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"

# key: limit; every target is "at most" (SPEC §8, issue 6).
TARGETS = {
    "ack_p99_ms": 150,
    "overhead_median_ms": 100,
    "direct_ratio": 1.05,
    "loop_stall_max_ms": 50,
    "rss_per_4k_image_ratio": 4,
    "turn_overhead_growth": 1.10,
    "concurrent10_wall_ratio": 1.15,
    # --scale (issue 11): the same targets on PostgreSQL, and not one job lost or delivered twice.
    "pg_ack_p99_ms": 150,
    "pg_overhead_median_ms": 100,
    "scale_lost": 0,
    "scale_duplicates": 0,
}
# key: floor; these targets are "at least" (issue 13: none fail for rate limits).
MINIMA = {"ratelimited_success_ratio": 1.0}

ROWS = [  # (key, label, format)
    ("overhead_median_ms", "1. bot overhead, median (1K, 1 s latency)", "{:.1f} ms"),
    ("overhead_p95_ms", "1. bot overhead, p95", "{:.1f} ms"),
    ("e2e_median_ms", "1. end to end, median", "{:.0f} ms"),
    ("direct_median_ms", "1. direct call (python -m providers generate), median", "{:.0f} ms"),
    ("direct_ratio", "1. end to end / direct", "{:.3f}"),
    ("ack_p50_ms", "2. acknowledgement p50 (50 at once, 2 s latency)", "{:.1f} ms"),
    ("ack_p99_ms", "2. acknowledgement p99", "{:.1f} ms"),
    ("loop_stall_max_ms", "3. longest event-loop stall (scenarios 2 and 4)", "{:.1f} ms"),
    ("stall_ack_ms", "3.   during scenario 2", "{:.1f} ms"),
    ("control_stall_ack_ms", "3.   same time, idle control process (machine noise)", "{:.1f} ms"),
    ("stall_4k_ms", "3.   during scenario 4", "{:.1f} ms"),
    ("control_stall_4k_ms", "3.   same time, idle control process (machine noise)", "{:.1f} ms"),
    ("rss_peak_mb", "4. peak memory, bot + CPU worker processes + tmpfs (concurrent 4K results over SSE)", "{:.0f} MiB"),
    ("rss_baseline_mb", "4. the same before", "{:.0f} MiB"),
    ("rss_per_4k_image_mb", "4. growth per in-flight 4K image", "{:.1f} MiB"),
    ("rss_per_4k_image_ratio", "4. growth per image / decoded PNG size", "{:.2f}"),
    ("rss_bot_peak_mb", "4.   bot process alone: peak RSS", "{:.0f} MiB"),
    ("rss_bot_per_4k_image_ratio", "4.   bot process alone: growth per image / PNG size", "{:.2f}"),
    ("turn_first_ms", "5. overhead of turn 1 in a thread", "{:.1f} ms"),
    ("turn_last_ms", "5. overhead of the last turn", "{:.1f} ms"),
    ("turn_overhead_growth", "5. last turn / turn 1", "{:.2f}"),
    ("throughput_per_s", "6. throughput (0.5 s latency)", "{:.1f} /s"),
    ("concurrent_floor_ms", "7. one /imagine alone (2 s latency), default settings", "{:.0f} ms"),
    ("concurrent_wall_ms", "7. ten at once: the slowest one's wait", "{:.0f} ms"),
    ("concurrent10_wall_ratio", "7. ten at once / one alone", "{:.3f}"),
    ("preview_lead_ms", "8. first draft preview shown before the final image (Pro, streaming)", "{:.0f} ms"),
    ("ratelimited_success_ratio", "9. rate-limited gateway, 3x its allowance at once: share delivered", "{:.3f}"),
    ("ratelimited_seconds", "9.   time for all of them", "{:.1f} s"),
    ("ratelimited_time_ratio", "9.   that time / the least the gateway's rate allows", "{:.2f}"),
    ("sqlite_overhead_median_ms", "scale: bot overhead, median, one SQLite process", "{:.1f} ms"),
    ("pg_overhead_median_ms", "scale: bot overhead, median, 2 gateways + 2 workers on PostgreSQL", "{:.1f} ms"),
    ("sqlite_to_provider_median_ms", "scale:   of which sent -> request at the gateway, SQLite", "{:.1f} ms"),
    ("pg_to_provider_median_ms", "scale:   of which sent -> request at the gateway, PostgreSQL", "{:.1f} ms"),
    ("sqlite_from_provider_median_ms", "scale:   of which answer written -> result stored, SQLite", "{:.1f} ms"),
    ("pg_from_provider_median_ms", "scale:   of which answer written -> result stored, PostgreSQL", "{:.1f} ms"),
    ("sqlite_ack_p99_ms", "scale: acknowledgement p99 (a burst over 2 guilds), SQLite", "{:.1f} ms"),
    ("pg_ack_p99_ms", "scale: acknowledgement p99, PostgreSQL (2 shards, one per gateway)", "{:.1f} ms"),
    ("sqlite_ack_p50_ms", "scale:   acknowledgement p50, SQLite", "{:.1f} ms"),
    ("pg_ack_p50_ms", "scale:   acknowledgement p50, PostgreSQL", "{:.1f} ms"),
    ("worker_failover_s", "scale: worker SIGKILLed mid-job -> its result posted by the other (heartbeat 1 s)", "{:.2f} s"),
    ("scale_lost", "scale: PostgreSQL /imagine without a result", "{:d}"),
    ("scale_duplicates", "scale: PostgreSQL results delivered more than once", "{:d}"),
    ("scale_calls", "scale:   PostgreSQL /imagine in all", "{:d}"),
]


def machine() -> dict[str, Any]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"nproc": os.cpu_count(), "cpu": cpu, "python": platform.python_version(),
            "system": f"{platform.system()} {platform.release()}"}


def load_average() -> list[float]:
    try:
        return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]
    except OSError:
        return []


def verdicts(figures: dict[str, Any]) -> dict[str, bool]:
    met = {key: figures[key] <= limit for key, limit in TARGETS.items() if isinstance(figures.get(key), (int, float))}
    met.update({key: figures[key] >= floor for key, floor in MINIMA.items() if isinstance(figures.get(key), (int, float))})
    return met


def table(figures: dict[str, Any]) -> str:
    met = verdicts(figures)
    lines = [f"| figure | value | target |", "| --- | ---: | --- |"]
    for key, label, fmt in ROWS:
        if key not in figures:
            continue
        value = fmt.format(figures[key])
        target = ""
        if key in TARGETS or key in MINIMA:
            bound = f"<= {TARGETS[key]:g}" if key in TARGETS else f">= {MINIMA[key]:g}"
            target = f"{bound} " + ("met" if met.get(key) else "**missed**")
        lines.append(f"| {label} | {value} | {target} |")
    return "\n".join(lines)


def header(figures: dict[str, Any]) -> str:
    m = figures["machine"]
    return (f"{time.strftime('%Y-%m-%d %H:%M', time.localtime(figures['started']))} · `--{figures['mode']}`"
            f" · {m['nproc']} CPUs ({m['cpu']}) · Python {m['python']} · {m['system']}"
            f" · {figures['duration_s']:.0f} s · load {fmt_load(figures.get('load_before'))} before,"
            f" {fmt_load(figures.get('load_after'))} after")


def fmt_load(load) -> str:
    return "/".join(f"{x:.1f}" for x in load) if load else "?"


def record(figures: dict[str, Any], note: str = "") -> None:
    """Append this run to bench/RESULTS.md."""
    new = not RESULTS.exists()
    with RESULTS.open("a") as f:
        if new:
            f.write("# Benchmark results\n\nEvery recorded run of `python -m bench`, oldest first "
                    "(how: bench/README.md). Figures from a shared, noisy machine.\n")
        f.write(f"\n## {header(figures)}\n\n")
        if note:
            f.write(note.strip() + "\n\n")
        f.write(table(figures) + "\n")
