"""What members and operators do with results, end to end: per-image Upscale and Vary (U1-U4 / V1-V4),
Remix, Delete, /describe, sizes that follow the model, the operators' log channel and the DM notice.

Two providers on one fake gateway: `pro` serves Nano Banana Pro (1K/2K/4K), `flash` serves Nano
Banana (about 1K only). One bot process serves the module.
"""
from __future__ import annotations

import re
import sys

import pytest
import pytest_asyncio

from fakes.bot_helpers import API_KEY, answer_with, ephemeral_answer, last_user_text, result_of, sent_images
from fakes.driver import Driver
from fakes.fake_gateway import FakeGateway, Reply, make_png
from fakes.images import png

pytestmark = pytest.mark.asyncio(loop_scope="module")

PRO = "gemini-3-pro-image-preview"
CUSTOM_ID = re.compile(r"^nb:(upscale|vary|reroll|remix|branch|delete|imagine):[0-9a-f]+(:[1-4])?$")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def world(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("actions-e2e")
    async with FakeGateway(image_size=(64, 64)) as gw, Driver(log_dir=tmp) as d:
        env = {
            "DATA_DIR": str(tmp / "data"), "DISCORD_ATTACHMENT_HOSTS": d.cdn_host, "STATUS_INTERVAL_SECONDS": "0.3",
            **gw.provider_env("pro", "mulerun", API_KEY, MODEL=PRO),
            **gw.provider_env("flash", "mulerun", API_KEY),  # the preset's gemini-2.5-flash-image-preview
            "PROVIDERS": "pro,flash", "LOG_CHANNEL_ID": str(d.art), "NOTIFY_AFTER_SECONDS": "0.5",
            "USER_MAX_JOBS": "8",
        }
        await d.start_bot([sys.executable, "bot.py"], env=env)
        yield d, gw


def labels(msg) -> list[str]:
    return [b["label"] for b in msg.buttons()]


def rows(msg) -> list[list[str]]:
    return [[c["label"] for c in row["components"]] for row in msg.data["components"]]


def four_distinct_answers(gw: FakeGateway) -> None:
    for n in range(4):
        gw.image = make_png((64, 64), color=(60 * n, 200 - 40 * n, 90))
        gw.enqueue(gw.chat_answer(PRO, stream=False))
    gw.image = make_png((64, 64))


async def click_for_result(d: Driver, msg, label: str, timeout: float = 15):
    """Press a button on a channel result; the new result comes inside the result's thread."""
    thread = await d.wait_for_thread(lambda t: int(t["id"]) == msg.id)
    mark = d.mark()
    note = await (await d.click(msg, label=label)).response()
    assert note.ephemeral and "Working on it in" in note.content
    return await d.wait_for_message(thread, result_of, after=mark, timeout=timeout)


def text_answer(text: str) -> Reply:
    """A chat answer with words and no image (what a model asked to describe says)."""
    message = {"role": "assistant", "content": [{"type": "text", "text": text}]}
    return Reply(body={"id": "chatcmpl-fake", "object": "chat.completion", "model": PRO,
                       "choices": [{"index": 0, "message": message, "finish_reason": "STOP"}]})


async def test_four_images_get_u1_u4_v1_v4_and_the_job_buttons_within_discords_limits(world):
    d, gw = world
    four_distinct_answers(gw)
    h = await d.slash("imagine", {"prompt": "four foxes", "count": 4})
    msg = await h.response(where=result_of, timeout=15)
    assert len(msg.attachments) == 4
    assert rows(msg) == [["U1", "U2", "U3", "U4"], ["V1", "V2", "V3", "V4"],
                         ["Reroll", "Remix", "Continue from here", "Delete"]]
    for button in msg.buttons():
        assert CUSTOM_ID.match(button["custom_id"]) and len(button["custom_id"]) <= 100, button
        assert len(button["label"]) <= 80
    ids = [b["custom_id"] for b in msg.buttons()]
    assert len(set(ids)) == len(ids)
    job = ids[0].split(":")[2]
    assert ids[:4] == [f"nb:upscale:{job}:{n}" for n in range(1, 5)]
    # The caption says what was delivered, and the model in a small details line.
    assert f"\n-# 64×64 · " in msg.content and f"{PRO} via pro" in msg.content


async def test_vary_v3_sends_the_third_image_and_names_it(world):
    d, gw = world
    four_distinct_answers(gw)
    first = await (await d.slash("imagine", {"prompt": "four owls", "count": 4})).response(where=result_of,
                                                                                            timeout=15)
    assert len({a.data for a in first.attachments}) == 4
    before = len(gw.requests)
    varied = await click_for_result(d, first, "V3")
    assert len(gw.requests) - before == 1  # one image: a variation of one picture
    request = gw.requests[before]
    assert "variation of image 3 of the 4" in last_user_text(request)
    assert sent_images(request)[-1] == first.attachments[2].data
    assert len(varied.attachments) == 1 and labels(varied)[:2] == ["Upscale", "Vary"]
    assert "**four owls · a variation of image 3**" in varied.content  # the member's words, not the instruction


async def test_upscale_sends_the_chosen_image_at_the_largest_size_even_after_a_restart(world):
    d, gw = world
    four_distinct_answers(gw)
    first = await (await d.slash("imagine", {"prompt": "four boats", "count": 4, "resolution": "1K"})).response(
        where=result_of, timeout=15)
    await d.restart_bot()  # the buttons live on in the store
    gw.image = make_png((4096, 4096), color=(1, 2, 3))
    try:
        before = len(gw.requests)
        upscaled = await click_for_result(d, first, "U2", timeout=30)
    finally:
        gw.image = make_png((64, 64))
    request = gw.requests[before]
    assert request.json["model"] == PRO
    text = last_user_text(request)
    assert text.startswith("Upscale image 2 of the 4 (the attached one) to 4K")
    assert "\n\n4K resolution." in text  # MuleRun documents no size field: the size goes in the prompt
    assert sent_images(request)[-1] == first.attachments[1].data
    assert "**four boats · image 2 upscaled to 4K**" in upscaled.content
    assert "4096×4096" in upscaled.content and "asked" not in upscaled.content
    assert "Upscale" not in labels(upscaled)  # already at the largest size


async def test_a_1k_only_model_offers_no_upscale_and_refuses_4k_with_the_sizes_it_renders(world):
    d, gw = world
    msg = await (await d.slash("imagine", {"prompt": "a small cat", "provider": "flash"})).response(
        where=result_of, timeout=15)
    assert labels(msg) == ["Vary", "Reroll", "Remix", "Continue from here", "Delete"]
    before = len(gw.requests)
    h = await d.slash("imagine", {"prompt": "a big cat", "provider": "flash", "resolution": "4K"})
    answer = await ephemeral_answer(h)
    assert answer.ephemeral and "renders 1K only" in answer.content and "`pro` can render 4K" in answer.content
    assert len(gw.requests) == before


async def test_remix_opens_the_prompt_prefilled_and_rerolls_with_the_edit_even_after_a_restart(world):
    d, gw = world
    first = await (await d.slash("imagine", {"prompt": "a red tram"})).response(where=result_of, timeout=15)
    opened = await d.click(first, label="Remix")
    modal = await opened.modal()
    [field] = modal["inputs"]
    assert field["value"] == "a red tram"
    await d.restart_bot()  # a form left open across a restart still works
    before, mark = len(gw.requests), d.mark()
    submitted = await d.submit_modal(opened, {field["custom_id"]: "a blue tram at night"})
    thread = await d.wait_for_thread(lambda t: int(t["id"]) == first.id)
    remixed = await d.wait_for_message(thread, result_of, after=mark, timeout=15)
    assert "Working on it in" in (await submitted.response()).content
    assert last_user_text(gw.requests[before]).startswith("a blue tram at night")
    assert "a blue tram at night" in remixed.content


async def test_delete_by_the_owner_or_an_admin_and_nobody_else(world):
    d, gw = world
    first = await (await d.slash("imagine", {"prompt": "a green kite"}, user="bob")).response(
        where=result_of, timeout=15)
    thread = await d.wait_for_thread(lambda t: int(t["id"]) == first.id)
    mark = d.mark()
    await d.say(thread, "make it fly higher", user="bob")
    second = await d.wait_for_message(thread, result_of, after=mark, timeout=15)
    stranger = d.add_user("dave")
    refused = await (await d.click(second, label="Delete", user=stranger)).response()
    assert refused.ephemeral and "Only <@" in refused.content and not second.deleted
    done = await (await d.click(second, label="Delete", user="bob")).response()
    assert done.ephemeral and "Deleted" in done.content
    await d.wait(lambda: second.deleted, what="the result message deleted")
    # The deleted turn left the conversation: the next turn builds on the first image again.
    before, mark = len(gw.requests), d.mark()
    await d.say(thread, "now add a tail", user="bob")
    await d.wait_for_message(thread, result_of, after=mark, timeout=15)
    request = gw.requests[before]
    assert "make it fly higher" not in str(request.json) and first.attachments[0].data in sent_images(request)
    # An admin (alice has Manage Server) may delete anyone's result.
    await (await d.click(first, label="Delete", user="alice")).response()
    await d.wait(lambda: first.deleted, what="the admin's delete")


async def test_describe_writes_a_prompt_without_an_image_charge_and_imagine_this_draws_it(world):
    d, gw = world
    picture = png((40, 30), (200, 20, 20))
    words = "A red rectangle on a plain background, flat colour, studio light."
    gw.enqueue(text_answer(words))
    before = len(gw.requests)
    h = await d.slash("describe", {"image": ("red.png", picture)})
    answer = await h.response(where=lambda m: "```" in m.content, timeout=15)
    assert words in answer.content and not answer.attachments
    assert labels(answer) == ["Imagine this", "Delete"]
    assert sent_images(gw.requests[before]) == [picture]
    assert "Write a prompt" in last_user_text(gw.requests[before])
    log_line = await d.wait_for_message("art", lambda m: "a description" in m.content)
    assert "$0.00" in log_line.content  # a text answer is not charged at image prices
    before = len(gw.requests)
    drawn = await (await d.click(answer, label="Imagine this")).response(where=result_of, timeout=15)
    assert last_user_text(gw.requests[before]).startswith(words)
    assert sent_images(gw.requests[before]) == []
    assert drawn.attachments
    # A model that draws a picture anyway: its words are the answer, the picture is neither shown nor charged.
    mark = d.mark()
    h = await d.slash("describe", {"image": ("red.png", picture)})
    answer = await h.response(where=lambda m: "```" in m.content, timeout=15)
    assert gw.text in answer.content and not answer.attachments
    [line] = await d.wait_for_messages("art", 1, lambda m: "a description" in m.content, after=mark)
    assert "$0.00" in line.content


async def test_the_log_channel_gets_one_line_per_generation(world):
    d, gw = world
    mark = d.mark()
    msg = await (await d.slash("imagine", {"prompt": "a logged lamp"}, user="carol")).response(
        where=result_of, timeout=15)
    [line] = await d.wait_for_messages("art", 1, lambda m: "a logged lamp" in m.content, after=mark)
    assert f"<@{d.carol}>" in line.content and "1 image(s)" in line.content
    assert f"/{msg.channel_id}/{msg.id}" in line.content  # a link to the result
    assert "pro (gemini-3-pro-image-preview)" in line.content and "$0.134" in line.content
    assert not line.data["mentions"]  # the log pings nobody


async def test_a_member_who_asked_is_told_by_dm_when_a_long_job_is_done(world):
    d, gw = world
    h = await d.slash("settings", {"notify": True}, user="bob")
    assert "direct message" in (await h.response()).content
    answer_with(gw, (9, 99, 9), delay=1.0)  # longer than NOTIFY_AFTER_SECONDS
    mark = d.mark()
    msg = await (await d.slash("imagine", {"prompt": "a slow snail"}, user="bob")).response(
        where=result_of, timeout=15)
    dm = await d.wait_for_message(d.dm("bob"), lambda m: "ready" in m.content, after=mark)
    assert f"/{msg.channel_id}/{msg.id}" in dm.content
    d.assert_clean()


def refusal_answer() -> Reply:
    message = {"role": "assistant", "content": [{"type": "text", "text": "I can't draw that."}]}
    return Reply(body={"id": "chatcmpl-fake", "object": "chat.completion", "model": PRO,
                       "choices": [{"index": 0, "message": message, "finish_reason": "content_filter"}]})


async def test_a_refusal_reads_as_a_sentence_with_the_raw_reason_in_the_details_line(world):
    d, gw = world
    gw.enqueue(refusal_answer())
    h = await d.slash("imagine", {"prompt": "something refused"})
    msg = await h.response(where=lambda m: "declined" in m.content or "without an image" in m.content, timeout=15)
    sentence, details = msg.content.split("\n-# ")
    assert "I can't draw that." in sentence and "content_filter" not in sentence and "pro" not in sentence
    assert details == "reason: content_filter · via pro"


async def test_show_model_info_off_keeps_provider_and_model_names_out(tmp_path):
    async with FakeGateway(image_size=(64, 64)) as gw, Driver(log_dir=tmp_path) as d:
        await d.start_bot([sys.executable, "bot.py"], env={
            "DATA_DIR": str(tmp_path / "data"), "DISCORD_ATTACHMENT_HOSTS": d.cdn_host,
            **gw.provider_env("pro", "mulerun", API_KEY, MODEL=PRO), "PROVIDERS": "pro", "SHOW_MODEL_INFO": "off"})
        msg = await (await d.slash("imagine", {"prompt": "a quiet caption"})).response(where=result_of, timeout=15)
        assert "64×64" in msg.content and PRO not in msg.content and "via pro" not in msg.content
        gw.enqueue(refusal_answer())
        h = await d.slash("imagine", {"prompt": "refused quietly"})
        refused = await h.response(where=lambda m: "I can't draw that." in m.content, timeout=15)
        assert "content_filter" not in refused.content and "-#" not in refused.content
        d.assert_clean()
