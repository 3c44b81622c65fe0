"""`python -m bench [--quick | --smoke] [--only NAME ...] [--scale] [--no-record] [--note TEXT]`

Runs the real bot (`python bot.py`, real discord.py) against the test bed's fake Discord and a fake
gateway process, scenario by scenario, prints a table and, as the last line, one JSON object.
Full and quick runs are appended to bench/RESULTS.md unless --no-record; --smoke never is.
`--scale` (with or without --quick) runs the SQLite / PostgreSQL comparison instead (bench/scale.py).
"""
from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path

from .harness import ControlProbe, GatewayProcess
from .images import image_path
from .report import header, load_average, machine, record, table, verdicts
from .scale import SCALE_PLANS, scale
from .scenarios import PLANS, SCENARIOS

ORDER = ["overhead", "ack", "4k", "turns", "throughput", "concurrent", "previews", "ratelimited"]


async def run_scale(plan_name: str, workdir: Path) -> dict:
    image_path("1k")
    figures: dict = {"mode": "scale" + (" --quick" if plan_name == "quick" else ""), "started": time.time(),
                     "machine": machine()}
    gateway = await GatewayProcess(workdir / "gateway.log").start()
    figures["load_before"] = load_average()
    try:
        figures.update(await scale(gateway, workdir / "scale", SCALE_PLANS[plan_name]))
    finally:
        await gateway.close()
    figures["load_after"] = load_average()
    figures["duration_s"] = time.time() - figures["started"]
    figures["targets_met"] = verdicts(figures)
    return figures


async def run(plan_name: str, only: list[str], workdir: Path) -> dict:
    plan = PLANS[plan_name]
    for name in ("1k", plan.big_image):
        image_path(name)  # made once, cached (a few seconds the first time)
    figures: dict = {"mode": plan_name, "started": time.time(), "machine": machine()}
    gateway = await GatewayProcess(workdir / "gateway.log").start()
    gateway.control = await ControlProbe(workdir / "lag-control.txt").start()
    figures["load_before"] = load_average()
    try:
        for name in ORDER:
            if only and name not in only:
                continue
            began = time.monotonic()
            print(f"[bench] {name} ...", file=sys.stderr, flush=True)
            figures.update(await SCENARIOS[name](gateway, workdir / name, plan))
            print(f"[bench] {name} done in {time.monotonic() - began:.1f} s", file=sys.stderr, flush=True)
    finally:
        await gateway.control.close()
        await gateway.close()
    figures["load_after"] = load_average()
    stalls = [figures[k] for k in ("stall_ack_ms", "stall_4k_ms") if k in figures]
    if stalls:
        figures["loop_stall_max_ms"] = max(stalls)
    figures["duration_s"] = time.time() - figures["started"]
    figures["targets_met"] = verdicts(figures)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="a reduced run, under a minute")
    size.add_argument("--smoke", action="store_true", help="every path once, tiny (for the test suite)")
    parser.add_argument("--only", action="append", choices=ORDER, default=[], help="run only this scenario")
    parser.add_argument("--scale", action="store_true",
                        help="one SQLite process against 2 gateways + 2 workers on PostgreSQL (issue 11)")
    parser.add_argument("--no-record", action="store_true", help="do not append to bench/RESULTS.md")
    parser.add_argument("--note", default="", help="a line to store with the run in RESULTS.md")
    parser.add_argument("--keep", metavar="DIR", help="keep logs (bot, gateway, lag probe) in DIR")
    args = parser.parse_args()
    mode = "smoke" if args.smoke else "quick" if args.quick else "full"
    if args.scale and (args.smoke or args.only):
        parser.error("--scale runs on its own, full or --quick (not with --smoke or --only)")
    with tempfile.TemporaryDirectory(prefix="nano-bench-") as tmp:
        workdir = Path(args.keep or tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        figures = asyncio.run(run_scale(mode, workdir) if args.scale else run(mode, args.only, workdir))
    print(header(figures))
    print(table(figures))
    if mode != "smoke" and not args.no_record and not args.only:
        record(figures, args.note)
    print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in figures.items()}))


if __name__ == "__main__":
    main()
