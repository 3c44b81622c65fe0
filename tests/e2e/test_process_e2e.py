"""The bot process stopping: SIGTERM lets running jobs finish and tells queued ones; after SIGKILL the
next start finds the jobs that were running and tells their members, with a Reroll button."""
from __future__ import annotations

import asyncio
import sqlite3
import sys

from fakes.driver import Driver
from fakes.fake_gateway import FakeGateway
from fakes.bot_helpers import answer_with, bot_env, result_of


async def test_sigterm_finishes_running_jobs_and_tells_queued_ones(tmp_path):
    async with FakeGateway() as gw, Driver(log_dir=tmp_path) as d:
        data = tmp_path / "data"
        await d.start_bot([sys.executable, "bot.py"],
                          env=bot_env(d, gw, data, MAX_CONCURRENT_JOBS=1, SHUTDOWN_GRACE_SECONDS=10))
        running_image = answer_with(gw, (1, 1, 1), delay=1.5)
        running = await d.slash("imagine", {"prompt": "finish me"}, user="alice")
        await running.response(where=lambda m: "Generating" in m.content)
        queued = await d.slash("imagine", {"prompt": "wait for me"}, user="bob")
        await queued.response(where=lambda m: "queue" in m.content)

        stopping = asyncio.create_task(d.stop_bot(timeout=20))
        told = await queued.response(where=lambda m: "restarting" in m.content, timeout=10)
        assert [b["label"] for b in told.buttons()] == ["Reroll"]
        late = await d.slash("imagine", {"prompt": "too late"}, user="carol")
        refusal = await (late.response() if await late.ack() == 4 else late.followup(0))
        assert refusal.ephemeral and "restarting" in refusal.content
        finished = await running.response(where=result_of, timeout=15)
        assert finished.attachments[0].data == running_image
        assert await stopping == 0
        assert len(gw.requests) == 1  # the queued job never reached the gateway

        statuses = dict(sqlite3.connect(data / "bot.sqlite3").execute("SELECT options, status FROM jobs"))
        assert sorted(statuses.values()) == ["done", "interrupted"]


async def test_sigterm_interrupts_jobs_that_outlast_the_grace_period(tmp_path):
    async with FakeGateway() as gw, Driver(log_dir=tmp_path) as d:
        await d.start_bot([sys.executable, "bot.py"],
                          env=bot_env(d, gw, tmp_path / "data", SHUTDOWN_GRACE_SECONDS=0.5))
        answer_with(gw, (2, 2, 2), delay=10)
        h = await d.slash("imagine", {"prompt": "very slow"})
        await h.response(where=lambda m: "Generating" in m.content)
        await d.wait(lambda: gw.requests, what="the request at the gateway")
        assert await d.stop_bot(timeout=10) == 0
        told = await h.response(where=lambda m: "restarting" in m.content)
        assert [b["label"] for b in told.buttons()] == ["Reroll"] and not told.attachments


async def test_after_sigkill_the_next_start_tells_members_and_reroll_works(tmp_path):
    async with FakeGateway() as gw, Driver(log_dir=tmp_path) as d:
        data = tmp_path / "data"
        await d.start_bot([sys.executable, "bot.py"], env=bot_env(d, gw, data))
        answer_with(gw, (3, 3, 3), delay=10)
        h = await d.slash("imagine", {"prompt": "lost in a crash"})
        await h.response(where=lambda m: "Generating" in m.content)
        await d.wait(lambda: gw.requests, what="the request at the gateway")  # killed mid-request
        await d.kill_bot()
        db = sqlite3.connect(data / "bot.sqlite3")
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert db.execute("SELECT status FROM jobs").fetchall() == [("running",)]
        db.close()

        mark = d.mark()
        await d.restart_bot()
        notice = await d.wait_for_message("general", lambda m: "restarted while your image" in m.content,
                                          after=mark, timeout=15)
        assert "lost in a crash" in notice.content and f"<@{d.alice}>" in notice.content
        image = answer_with(gw, (4, 4, 4))
        click = await d.click(notice, label="Reroll")
        result = await click.response(where=result_of, timeout=15)
        assert result.attachments[0].data == image
        db = sqlite3.connect(data / "bot.sqlite3")
        assert ("interrupted",) in db.execute("SELECT status FROM jobs").fetchall()
