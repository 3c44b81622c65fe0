"""The six scenarios of issue 6. Each starts its own fake Discord and bot process (a clean slate:
its own database, memory and lag record) against the shared gateway process, and returns figures.

Times are seconds on CLOCK_MONOTONIC unless a name ends in _ms.
"""
from __future__ import annotations

import asyncio
import json
import os
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .harness import (DRAFT_PREVIEW, ROOT, GatewayProcess, RssSampler, bot_run, failed, poll, result_time,
                      wait_results)
from .images import image_path

MiB = 1024 * 1024
TURN_SPACING = 1.2  # seconds between a thread's turns in scenario 5 (see there)


@dataclass(frozen=True)
class Plan:
    mode: str
    overhead_calls: int = 20        # 1: sequential /imagine, 1 s latency, 1K PNG
    overhead_latency: float = 1.0
    direct_calls: int = 5           # 1: `python -m providers generate` against the same fake
    ack_jobs: int = 50              # 2: concurrent /imagine, 2 s latency
    ack_rounds: int = 3
    ack_latency: float = 2.0
    big_jobs: int = 10              # 4: concurrent 4K results over SSE, re-encoded
    big_image: str = "4k"
    big_latency: float = 1.0
    big_upload_limit: int | None = None  # None: the fake's default, Discord's 10 MiB
    conversations: int = 5          # 5: threads of `turns` turns each
    turns: int = 10
    turn_latency: float = 0.5
    throughput_jobs: int = 200      # 6: at once, 0.5 s latency
    throughput_latency: float = 0.5
    concurrent_jobs: int = 10       # 7: at once at the bot's default settings, over one alone
    concurrent_latency: float = 2.0
    floor_calls: int = 3
    preview_calls: int = 5          # 8: Nano Banana Pro streaming two drafts before the image
    preview_event_delay: float = 0.5  # between SSE events (a draft every ~1 s, as Pro thinks)
    allowed: int = 6                # 9: the gateway allows `allowed` requests per `window` s; 3x asked at once
    window: float = 12.0


PLANS = {
    "full": Plan("full"),
    "quick": Plan("quick", overhead_calls=8, direct_calls=2, ack_rounds=1, conversations=1,
                  turn_latency=0.2, throughput_jobs=60, floor_calls=2, preview_calls=2, allowed=4, window=8.0),
    # For the test suite: every code path once, tiny and fast; figures mean nothing.
    # At most five results (so five threads) per scenario: Discord starts five threads per 5 s in a
    # channel, and a sixth would only make the run wait.
    "smoke": Plan("smoke", overhead_calls=2, overhead_latency=0.05, direct_calls=1, ack_jobs=3, ack_rounds=1,
                  ack_latency=0.1, big_jobs=2, big_image="smoke-4k", big_latency=0.05, big_upload_limit=MiB,
                  conversations=1, turns=2, turn_latency=0.05, throughput_jobs=3, throughput_latency=0.05,
                  concurrent_jobs=2, concurrent_latency=0.1, floor_calls=1, preview_calls=1, preview_event_delay=0.3,
                  allowed=1, window=1.0),
}


def percentile(values: list[float], p: float) -> float:
    """Linear interpolation between closest ranks (numpy's default)."""
    data = sorted(values)
    if not data:
        return float("nan")
    k = (len(data) - 1) * p / 100
    lo, hi = int(k), min(int(k) + 1, len(data) - 1)
    return data[lo] + (data[hi] - data[lo]) * (k - lo)


def gateway_seconds(timing: dict[str, Any]) -> float:
    """The gateway's own time for one answer: from the whole request in, to the whole answer out."""
    return timing["t_end"] - timing["t_body"]


async def _imagine_once(run, gateway: GatewayProcess, prompt: str, *, user: int | None = None,
                        timeout: float = 60, channel: str = "general", sent: list | None = None,
                        **options: Any) -> tuple[float, float]:
    """One /imagine, alone: (end-to-end seconds, gateway seconds). Waits for its thread too, so the
    next call starts on a quiet bot. `sent`: the interaction is appended to it (for later counts)."""
    d = run.driver
    before = len(await gateway.timings())
    h = await d.slash("imagine", {"prompt": prompt, **options}, user=user or d.alice, channel=channel)
    if sent is not None:
        sent.append(h)
    [done] = await wait_results(run, [h], timeout)
    msg_id = h.record.original_id
    await d.wait_for_thread(lambda t: int(t["id"]) == msg_id, timeout=timeout)
    timings = (await gateway.timings())[before:]
    if len(timings) != 1:
        raise RuntimeError(f"expected one gateway request for one /imagine, got {len(timings)}")
    return done - h.dispatched_at, gateway_seconds(timings[0])


async def overhead(gateway: GatewayProcess, workdir: Path, plan: Plan) -> dict[str, Any]:
    """1. Sequential /imagine: bot overhead = end-to-end minus the gateway's own time; and the same
    fake called directly through the provider CLI."""
    image = image_path("1k")
    image_bytes = await gateway.configure(latency=plan.overhead_latency, image=image)
    async with bot_run(gateway, workdir, "overhead") as run:
        await _imagine_once(run, gateway, "warm-up")  # not counted: first connection, first imports
        e2e, own = [], []
        for i in range(plan.overhead_calls):
            total, gw = await _imagine_once(run, gateway, f"bench overhead {i}")
            e2e.append(total)
            own.append(gw)
    over = [t - g for t, g in zip(e2e, own)]
    direct = await direct_calls(gateway, workdir, plan.direct_calls)
    return {
        "overhead_median_ms": statistics.median(over) * 1000,
        "overhead_p95_ms": percentile(over, 95) * 1000,
        "direct_ratio": statistics.median(e2e) / statistics.median(direct),
        "e2e_median_ms": statistics.median(e2e) * 1000,
        "direct_median_ms": statistics.median(direct) * 1000,
        "gateway_median_ms": statistics.median(own) * 1000,
        "image_1k_mb": image_bytes / 1e6,
    }


async def direct_calls(gateway: GatewayProcess, workdir: Path, n: int) -> list[float]:
    """`python -m providers generate` (the CLI path) against the same fake, `n` times in a row.

    The figure taken is the CLI's own "seconds" (ProviderRouter.generate: build, send, read, parse),
    not the process's run time, which would add the interpreter's start-up to the direct call."""
    out_dir = workdir / "direct"
    env = {**os.environ, **gateway.provider_env(), "PROVIDERS": "mule",
           "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)}
    seconds = []
    for i in range(n):
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "providers", "generate", f"bench direct {i}", "--out", str(out_dir),
            cwd=workdir, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        stdout, stderr = await proc.communicate()
        if proc.returncode != 0:
            raise RuntimeError(f"python -m providers generate failed ({proc.returncode}): {stderr.decode()[-500:]}")
        seconds.append(json.loads(stdout.decode().strip().splitlines()[-1])["seconds"])
    return seconds


async def ack(gateway: GatewayProcess, workdir: Path, plan: Plan) -> dict[str, Any]:
    """2. `ack_jobs` /imagine dispatched at once (different members), `ack_rounds` times; each round
    waits for every result. Acknowledgement = INTERACTION_CREATE sent -> callback received."""
    await gateway.configure(latency=plan.ack_latency, image=image_path("1k"))
    latencies, stalls, control = [], 0.0, 0.0
    async with bot_run(gateway, workdir, "ack", users=plan.ack_jobs) as run:
        await _imagine_once(run, gateway, "warm-up")
        d = run.driver
        for r in range(plan.ack_rounds):
            start = time.monotonic()
            handles = [await d.slash("imagine", {"prompt": f"bench ack {r}.{i}"}, user=run.user(i))
                       for i in range(plan.ack_jobs)]
            await poll(lambda: all(h.record.acked_at for h in handles), 30, "acknowledgements")
            await wait_results(run, handles, 60 + plan.ack_jobs)
            stalls = max(stalls, run.lag_max(start, time.monotonic()))
            control = max(control, gateway.control.max(start, time.monotonic()) if gateway.control else 0.0)
            latencies += [h.ack_latency for h in handles]
            await asyncio.sleep(0.5)  # thread creations finish before the next round
    return {"ack_p50_ms": percentile(latencies, 50) * 1000, "ack_p99_ms": percentile(latencies, 99) * 1000,
            "ack_max_ms": max(latencies) * 1000, "ack_samples": len(latencies), "stall_ack_ms": stalls,
            "control_stall_ack_ms": control}


async def big_images(gateway: GatewayProcess, workdir: Path, plan: Plan) -> dict[str, Any]:
    """4. `big_jobs` concurrent 4K results, each one base64 SSE line, re-encoded to fit the upload limit.
    Memory is the bot's and its CPU worker processes', plus the tmpfs their payloads cross through.
    Growth = peak minus the same just before dispatch; the peak is the larger of the 20 ms samples
    (bot + workers + tmpfs) and an upper bound (every process's VmHWM added up, plus tmpfs)."""
    big = image_path(plan.big_image)
    await gateway.configure(latency=plan.big_latency, image=image_path("1k"))
    options = {"provider": "mulesse", "resolution": "4K"}
    async with bot_run(gateway, workdir, "4k", users=plan.big_jobs) as run:
        d = run.driver
        limit = {"attachment_size_limit": plan.big_upload_limit} if plan.big_upload_limit else {}
        await _imagine_once(run, gateway, "warm-up", **options)  # a 1K answer over SSE: warms the path
        image_bytes = await gateway.configure(latency=plan.big_latency, image=big)
        await asyncio.sleep(0.3)  # let the warm-up's leftovers settle
        sampler = RssSampler(run.pid)
        baseline_bot, baseline = sampler.baseline()
        hwm_reset = sampler.reset_peak()
        sampler.start()
        start = time.monotonic()
        handles = [await d.slash("imagine", {"prompt": f"bench 4k {i}", **options}, user=run.user(i), **limit)
                   for i in range(plan.big_jobs)]
        done = await wait_results(run, handles, 120 + 10 * plan.big_jobs)
        end = time.monotonic()
        await sampler.stop()
        peaks = sampler.peaks(hwm_reset)
        (workdir / "rss-4k.txt").write_text("".join(  # kept with --keep: time, bot, workers, tmpfs (bytes)
            f"{t:.3f} {bot} {workers} {tmpfs}\n" for t, bot, workers, tmpfs in sampler.samples))
        stalls = run.lag_max(start, end)
        control = gateway.control.max(start, end) if gateway.control else 0.0
        peak = max(peaks["sampled"], peaks["bound"])
        upload_limit = plan.big_upload_limit or 10 * MiB
        sizes = []
        for h in handles:
            [att] = run.driver.world.find_message(h.record.original_id).data["attachments"]
            sizes.append(att["size"])
            if att["size"] > upload_limit or not att["filename"].endswith((".jpg", ".webp")):
                raise RuntimeError(f"4K result not re-encoded within the limit: {att['filename']} {att['size']}")
    growth = max(0, peak - baseline) / plan.big_jobs
    growth_bot = max(0, peaks["bot"] - baseline_bot) / plan.big_jobs
    return {
        "rss_peak_mb": peak / MiB, "rss_baseline_mb": baseline / MiB, "rss_per_4k_image_mb": growth / MiB,
        "rss_per_4k_image_ratio": growth / image_bytes, "image_4k_mb": image_bytes / 1e6,
        "rss_sampled_peak_mb": peaks["sampled"] / MiB, "rss_bot_peak_mb": peaks["bot"] / MiB,
        "rss_bot_per_4k_image_ratio": growth_bot / image_bytes, "worker_processes": len(sampler.pids) - 1,
        "sent_4k_mb": statistics.median(sizes) / 1e6, "big_jobs": plan.big_jobs,
        "big_seconds": max(done) - min(h.dispatched_at for h in handles), "stall_4k_ms": stalls,
        "control_stall_4k_ms": control,
    }


async def turns(gateway: GatewayProcess, workdir: Path, plan: Plan) -> dict[str, Any]:
    """5. /imagine opens a thread, then `turns` messages in it, each waiting for its result.
    Turn overhead = user message sent -> result stored, minus the gateway's own time; per turn
    number, the median over `conversations` threads. Turns are at least TURN_SPACING s apart, as a
    person writes them: Discord lets a channel take 5 new messages and 5 edits per 5 s, and a faster
    burst would measure those limits (the fake enforces them) instead of the bot."""
    await gateway.configure(latency=plan.turn_latency, image=image_path("1k"))
    per_turn: list[list[float]] = [[] for _ in range(plan.turns)]
    async with bot_run(gateway, workdir, "turns") as run:
        d = run.driver
        for c in range(plan.conversations):
            before = len(await gateway.timings())
            h = await d.slash("imagine", {"prompt": f"bench conversation {c}"})
            await wait_results(run, [h], 60)
            msg_id = h.record.original_id
            thread = await d.wait_for_thread(lambda t: int(t["id"]) == msg_id, timeout=30)
            last_said = 0.0
            for n in range(plan.turns):
                await asyncio.sleep(max(0.0, last_said + TURN_SPACING - time.monotonic()))
                last_said = time.monotonic()
                before = len(await gateway.timings())
                said = await d.say(thread, f"turn {n + 1}: make it a little brighter", user="alice")

                def answered():
                    for m in d.messages(thread, author="bot", after=said):
                        ref = (m.data.get("message_reference") or {}).get("message_id")
                        if m.data.get("attachments") and ref and int(ref) == said.id:
                            return m
                    return None

                result = await poll(answered, 60, f"the answer to turn {n + 1}")
                timings = (await gateway.timings())[before:]
                if len(timings) != 1:
                    raise RuntimeError(f"expected one gateway request for a turn, got {len(timings)}")
                per_turn[n].append(result.updated_at - said.created_at - gateway_seconds(timings[0]))
    medians = [statistics.median(t) for t in per_turn]
    return {"turn_overhead_growth": medians[-1] / medians[0], "turn_first_ms": medians[0] * 1000,
            "turn_last_ms": medians[-1] * 1000, "turn_overheads_ms": [round(m * 1000, 1) for m in medians]}


async def throughput(gateway: GatewayProcess, workdir: Path, plan: Plan) -> dict[str, Any]:
    """6. `throughput_jobs` /imagine at once (MAX_CONCURRENT_JOBS=1000, so only config limits them):
    jobs / (last result stored - first dispatch)."""
    await gateway.configure(latency=plan.throughput_latency, image=image_path("1k"))
    async with bot_run(gateway, workdir, "throughput", users=50) as run:
        await _imagine_once(run, gateway, "warm-up")
        d = run.driver
        handles = [await d.slash("imagine", {"prompt": f"bench throughput {i}"}, user=run.user(i))
                   for i in range(plan.throughput_jobs)]
        done = await wait_results(run, handles, 120 + plan.throughput_jobs)
    elapsed = max(done) - min(h.dispatched_at for h in handles)
    return {"throughput_per_s": plan.throughput_jobs / elapsed, "throughput_seconds": elapsed,
            "throughput_jobs": plan.throughput_jobs}


async def concurrent(gateway: GatewayProcess, workdir: Path, plan: Plan) -> dict[str, Any]:
    """7. `concurrent_jobs` /imagine at once (different members) with the bot's default settings,
    over the same run's floor: one /imagine alone. At 1.0 none waited for another."""
    await gateway.configure(latency=plan.concurrent_latency, image=image_path("1k"))
    async with bot_run(gateway, workdir, "concurrent", users=plan.concurrent_jobs, defaults=True) as run:
        await _imagine_once(run, gateway, "warm-up")
        floor = statistics.median([(await _imagine_once(run, gateway, f"bench floor {i}"))[0]
                                   for i in range(plan.floor_calls)])
        d = run.driver
        handles = [await d.slash("imagine", {"prompt": f"bench concurrent {i}"}, user=run.user(i))
                   for i in range(plan.concurrent_jobs)]
        done = await wait_results(run, handles, 60 + 10 * plan.concurrent_jobs)
    wall = max(d - h.dispatched_at for d, h in zip(done, handles))  # the slowest one's own wait
    return {"concurrent10_wall_ratio": wall / floor, "concurrent_wall_ms": wall * 1000,
            "concurrent_floor_ms": floor * 1000, "concurrent_jobs": plan.concurrent_jobs}


async def previews(gateway: GatewayProcess, workdir: Path, plan: Plan) -> dict[str, Any]:
    """8. Nano Banana Pro on Gemini's stream: how long before the final image the first draft
    preview was on the status message (the member sees something that much sooner)."""
    await gateway.configure(latency=0.0, image=image_path("1k"), thoughts=True, stream_delay=plan.preview_event_delay)
    leads: list[float] = []
    async with bot_run(gateway, workdir, "previews") as run:
        d = run.driver
        for i in range(plan.preview_calls):
            h = await d.slash("imagine", {"prompt": f"bench preview {i}", "provider": "gempro"})
            first: list[float] = []

            def check():
                rec = d.world.find_message(h.record.original_id or 0)
                if not first and rec is not None and any(a["filename"] == DRAFT_PREVIEW
                                                         for a in rec.data.get("attachments") or []):
                    first.append(rec.updated_at)
                return result_time(run, h)

            done = await poll(check, 60, "a previewed result", interval=0.005)
            if not first:
                raise RuntimeError("no draft preview was shown before the result")
            leads.append(done - first[0])
            msg_id = h.record.original_id
            await d.wait_for_thread(lambda t: int(t["id"]) == msg_id, timeout=30)
    return {"preview_lead_ms": statistics.median(leads) * 1000, "preview_calls": plan.preview_calls}


async def ratelimited(gateway: GatewayProcess, workdir: Path, plan: Plan) -> dict[str, Any]:
    """9. A gateway that allows `allowed` requests per `window` s (a token bucket; 429 with Retry-After
    beyond), asked for three times that at once with the bot's default settings: how many succeed
    (none should fail for rate limits: they wait), and how long they took against the least the
    gateway allows (the bucket starts full: the other two thirds need two windows)."""
    await gateway.configure(latency=0.1, image=image_path("1k"), rate_limit=(plan.allowed, plan.window))
    asked = 3 * plan.allowed
    async with bot_run(gateway, workdir, "ratelimited", users=asked, defaults=True) as run:
        d = run.driver
        handles = [await d.slash("imagine", {"prompt": f"bench limited {i}"}, user=run.user(i)) for i in range(asked)]
        outcome: dict[int, float | None] = {}

        def check() -> bool:
            for i, h in enumerate(handles):
                if i not in outcome:
                    if (t := result_time(run, h)) is not None:
                        outcome[i] = t
                    elif failed(run, h) is not None:
                        outcome[i] = None
            return len(outcome) == asked

        await poll(check, 60 + 10 * plan.window, "every rate-limited job to end")
    done = [t for t in outcome.values() if t is not None]
    elapsed = max(done) - min(h.dispatched_at for h in handles) if done else float("nan")
    return {"ratelimited_success_ratio": len(done) / asked, "ratelimited_seconds": elapsed,
            "ratelimited_time_ratio": elapsed / (2 * plan.window), "ratelimited_asked": asked}


SCENARIOS = {"overhead": overhead, "ack": ack, "4k": big_images, "turns": turns, "throughput": throughput,
             "concurrent": concurrent, "previews": previews, "ratelimited": ratelimited}
