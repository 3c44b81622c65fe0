"""Restarts: the conversation and the buttons survive them (SQLite, persistent views), and a bot
thread with no stored record is rebuilt from its messages."""
from __future__ import annotations

import sys

from fakes.driver import Driver
from fakes.fake_gateway import FakeGateway, make_png
from fakes.bot_helpers import bot_env, result_of, sent_images


async def test_restart_between_turns_keeps_the_thread_and_buttons(tmp_path):
    async with FakeGateway() as gw, Driver(log_dir=tmp_path) as d:
        env = bot_env(d, gw, tmp_path / "data")
        await d.start_bot([sys.executable, "bot.py"], env=env)
        gw.image = make_png((40, 40), color=(200, 0, 0))
        h = await d.slash("imagine", {"prompt": "a fox"})
        first = await h.response(where=result_of, timeout=15)
        thread = await d.wait_for_thread(lambda t: int(t["id"]) == first.id)
        gw.image = make_png((40, 40), color=(0, 200, 0))
        mark = d.mark()
        await d.say(thread, "make it winter")
        turn1 = await d.wait_for_message(thread, result_of, after=mark, timeout=15)

        await d.restart_bot()  # SIGTERM, then the same command, env and DATA_DIR

        gw.image = make_png((40, 40), color=(0, 0, 200))
        before, mark = len(gw.requests), d.mark()
        await d.say(thread, "add snow")
        turn2 = await d.wait_for_message(thread, result_of, after=mark, timeout=15)
        assert turn2.attachments[0].data == gw.image
        request = gw.requests[before]
        assert turn1.attachments[0].data in sent_images(request)  # history came back from SQLite
        assert "a fox" in str(request.json["messages"])

        # A button on a message from before the restart still works.
        before = len(gw.requests)
        click = await d.click(turn1, label="Reroll")
        assert await click.ack() == 5
        again = await click.response(where=result_of, timeout=15)
        assert again.attachments and "make it winter" in str(gw.requests[before].json["messages"][-1])
        d.assert_clean()


async def test_thread_without_a_stored_record_is_rebuilt_from_its_messages(tmp_path):
    async with FakeGateway() as gw, Driver(log_dir=tmp_path) as d:
        await d.start_bot([sys.executable, "bot.py"], env=bot_env(d, gw, tmp_path / "first"))
        gw.image = make_png((40, 40), color=(1, 100, 200))
        h = await d.slash("imagine", {"prompt": "a tower"})
        first = await h.response(where=result_of, timeout=15)
        thread = await d.wait_for_thread(lambda t: int(t["id"]) == first.id)
        await d.stop_bot()
        # A fresh database: nothing stored about this thread.
        await d.start_bot([sys.executable, "bot.py"], env=bot_env(d, gw, tmp_path / "second"))
        before, mark = len(gw.requests), d.mark()
        await d.say(thread, "paint it gold")
        answer = await d.wait_for_message(thread, result_of, after=mark, timeout=15)
        assert answer.attachments
        request = gw.requests[before]
        assert first.attachments[0].data in sent_images(request)
        assert "a tower" in str(request.json["messages"]) and "paint it gold" in str(request.json["messages"][-1])
