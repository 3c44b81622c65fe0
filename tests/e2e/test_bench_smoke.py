"""`python -m bench --smoke` runs every scenario once, tiny, and ends with its JSON line.

Only the shape is checked: the benchmark's figures are never pass/fail (machines are noisy).
"""
from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
KEYS = ("overhead_median_ms", "overhead_p95_ms", "direct_ratio", "ack_p50_ms", "ack_p99_ms", "loop_stall_max_ms",
        "rss_peak_mb", "rss_per_4k_image_ratio", "turn_overhead_growth", "throughput_per_s", "concurrent10_wall_ratio",
        "preview_lead_ms", "ratelimited_success_ratio", "ratelimited_time_ratio")


def test_bench_smoke_prints_a_table_and_the_json_line(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "bench", "--smoke", "--keep", str(tmp_path)], cwd=ROOT,
                          capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.strip().splitlines()
    figures = json.loads(lines[-1])
    for key in KEYS:
        value = figures[key]
        assert isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value), key
    assert figures["mode"] == "smoke" and set(figures["targets_met"]) <= set(KEYS)
    assert any(line.startswith("| figure | value | target |") for line in lines)
