"""With one generation slot, later jobs wait in a queue and show their position."""
from __future__ import annotations

import sys

from fakes.driver import Driver
from fakes.fake_gateway import FakeGateway
from fakes.bot_helpers import answer_with, bot_env, result_of


async def test_waiting_jobs_show_their_queue_position(tmp_path):
    async with FakeGateway() as gw, Driver(log_dir=tmp_path) as d:
        await d.start_bot([sys.executable, "bot.py"],
                          env=bot_env(d, gw, tmp_path / "data", MAX_CONCURRENT_JOBS=1))
        first_image = answer_with(gw, (10, 10, 10), delay=1.5)
        second_image = answer_with(gw, (20, 20, 20), delay=0.1)
        first = await d.slash("imagine", {"prompt": "first"}, user="alice")
        await first.response(where=lambda m: "Generating" in m.content)
        second = await d.slash("imagine", {"prompt": "second"}, user="bob")
        waiting = await second.response(where=lambda m: "queue" in m.content)
        assert "position 1" in waiting.content
        assert any(b["label"] == "Cancel" for b in waiting.buttons())
        assert (await first.response(where=result_of, timeout=15)).attachments[0].data == first_image
        assert (await second.response(where=result_of, timeout=15)).attachments[0].data == second_image
