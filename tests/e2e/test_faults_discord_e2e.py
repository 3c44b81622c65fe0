"""Discord misbehaving and many members at once: the result still arrives, in order, exactly once."""
from __future__ import annotations

import asyncio
import sys

import pytest
import pytest_asyncio

from fakes.driver import Driver
from fakes.fake_gateway import FakeGateway
from fakes.bot_helpers import answer_with, bot_env, last_user_text, result_of, sent_images, start_in_thread

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def world(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("faults-discord")
    async with FakeGateway(image_size=(48, 32)) as gw, Driver(log_dir=tmp) as d:
        await d.start_bot([sys.executable, "bot.py"],
                          env=bot_env(d, gw, tmp / "data", MAX_CONCURRENT_JOBS=64, USER_MAX_JOBS=20))
        yield d, gw


async def test_discord_rate_limit_on_the_result_edit_is_waited_out(world):
    d, gw = world
    d.rate_limit("PATCH /webhooks/{application_id}/{token}/messages/@original", retry_after=0.3, times=2)
    h = await d.slash("imagine", {"prompt": "rate limited"})
    msg = await h.response(where=result_of, timeout=20)
    assert msg.attachments[0].data == gw.image
    assert sum(1 for r in d.requests if r.status == 429) >= 2


async def test_gateway_drop_mid_generation_still_delivers(world):
    d, gw = world
    image = answer_with(gw, (1, 2, 250), delay=1.0)
    h = await d.slash("imagine", {"prompt": "through a reconnect"})
    await h.response(where=lambda m: "Generating" in m.content)
    await d.drop_connection()  # waits until the bot has RESUMEd
    msg = await h.response(where=result_of, timeout=20)
    assert msg.attachments[0].data == image


@pytest.mark.parametrize("close", ["locked", "deleted"])
async def test_thread_closed_before_the_result_answers_in_the_channel(world, close):
    d, gw = world
    _, thread = await start_in_thread(d, f"thread to be {close}")
    image = answer_with(gw, (200, 1, 1), delay=1.0)
    mark = d.mark()
    await d.say(thread, "one more")
    await d.wait_for_message(thread, lambda m: "Generating" in m.content, after=mark)
    if close == "locked":
        d.archive_thread(thread, locked=True)
    else:
        d.delete_thread(thread)
    msg = await d.wait_for_message("general", lambda m: m.attachments and "one more" in m.content,
                                   after=mark, timeout=20)
    assert msg.attachments[0].data == image and "thread was closed" in msg.content
    assert f"<@{d.alice}>" in msg.content


async def test_status_message_deleted_mid_job_the_answer_gets_a_new_message(world):
    d, gw = world
    _, thread = await start_in_thread(d, "status to be deleted")
    image = answer_with(gw, (7, 7, 200), delay=1.0)
    mark = d.mark()
    await d.say(thread, "again please")
    status = await d.wait_for_message(thread, lambda m: "Generating" in m.content, after=mark)
    d.delete_message(status)
    answer = await d.wait_for_message(thread, lambda m: m.attachments and not m.deleted, after=mark, timeout=20)
    assert answer.id != status.id and answer.attachments[0].data == image


async def test_double_click_starts_one_job(world):
    d, gw = world
    h = await d.slash("imagine", {"prompt": "click me twice"})
    first = await h.response(where=result_of, timeout=20)
    # The thread follows the result at the pace Discord allows in the channel; the click comes after it.
    await d.wait_for_thread(lambda t: int(t["id"]) == first.id, timeout=20)
    answer_with(gw, (9, 99, 9), delay=0.8)
    before = len(gw.requests)
    one, two = await asyncio.gather(d.click(first, label="Vary"), d.click(first, label="Vary"))
    answers = sorted([(await one.response()).content, (await two.response()).content])
    assert "Already on it" in answers[0] and "Working on it in" in answers[1]
    thread = next(t for t in d.threads() if int(t["id"]) == first.id)
    await d.wait_for_message(thread, result_of, after=first, timeout=20)
    await asyncio.sleep(0.5)  # a second job, if one had started, would have reached the gateway by now
    assert len(gw.requests) - before == 1


async def test_burst_of_ten_messages_in_one_thread_in_order_none_dropped(world):
    d, gw = world
    first, thread = await start_in_thread(d, "burst")
    base = len(gw.requests)
    mark = d.mark()
    # Ten distinct answers, served in the order the requests arrive.
    for n in range(10):
        answer_with(gw, (20 * n, 255 - 20 * n, 99), delay=0.05)
    for n in range(10):
        await d.say(thread, f"step{n} please", user="bob")
    answers = await d.wait_for_messages(thread, 10, result_of, after=mark, timeout=60)
    requests = gw.requests[base:base + 10]
    assert [last_user_text(r).split()[0] for r in requests] == [f"step{n}" for n in range(10)]
    assert [a.content.split("**")[1] for a in answers] == [f"step{n} please" for n in range(10)]
    # Each turn builds on the one before: its request carries the previous answer's image.
    previous = [first, *answers[:-1]]
    for n, (before, request) in enumerate(zip(previous, requests)):
        assert before.attachments[0].data in sent_images(request), f"step{n} did not see the answer before it"


async def test_fifty_members_at_once_across_channels(world):
    d, gw = world
    users = [d.add_user(f"member{n}") for n in range(50)]
    gw.latency = 0.5
    try:
        handles = await asyncio.gather(*[
            d.slash("imagine", {"prompt": f"picture {n}"}, user=user, channel="general" if n % 2 else "art")
            for n, user in enumerate(users)])
        results = await asyncio.gather(*[h.response(where=result_of, timeout=60) for h in handles])
    finally:
        gw.latency = 0.0
    assert all(h.ack_latency < 3 for h in handles)
    assert [r.content.split("**")[1] for r in results] == [f"picture {n}" for n in range(50)]
    assert all(r.attachments[0].data == gw.image for r in results)
    # Every result gets its thread, at the pace Discord allows in each channel (25 threads a channel:
    # several windows of the thread-creation limit), none given up.
    ids = {r.id for r in results}
    await d.wait(lambda: len(ids & {int(t["id"]) for t in d.threads()}) == len(ids), 90, "a thread per result")


# Permission tests come last: a denied permission stays denied for the rest of the module.
async def test_no_permission_to_create_threads_is_said_plainly(world):
    d, gw = world
    d.deny("art", "create_public_threads")
    h = await d.slash("imagine", {"prompt": "no threads here"}, channel="art")
    msg = await h.response(where=result_of, timeout=20)
    assert msg.attachments
    note = await h.followup(0, where=lambda m: "could not start a thread" in m.content)
    assert note.ephemeral and not any(int(t["id"]) == msg.id for t in d.threads())


async def test_no_permission_to_attach_files_in_a_thread_is_said_plainly(world):
    d, gw = world
    _, thread = await start_in_thread(d, "files forbidden")
    d.deny(thread, "attach_files")
    mark = d.mark()
    await d.say(thread, "try anyway")
    msg = await d.wait_for_message(thread, lambda m: "not allowed to post images" in m.content, after=mark,
                                   timeout=20)
    assert "Traceback" not in msg.content and not msg.attachments
