"""The bot end to end: `python bot.py` (real discord.py) against the fake Discord and a fake gateway.

One bot process serves the whole module; each test filters messages with `after=` so earlier
tests' messages do not match.
"""
from __future__ import annotations

import base64
import io
import sys

from PIL import Image

import pytest
import pytest_asyncio

from fakes.driver import Driver
from fakes.fake_gateway import FakeGateway, make_png
from fakes.bot_helpers import (API_KEY, MODEL, answer_with, bot_env, ephemeral_answer, last_user_text, result_of,
                               sent_images, start_in_thread, thread_id)
from fakes.images import jpeg, png

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def world(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("bot-e2e")
    async with FakeGateway(image_size=(96, 64)) as gw, Driver(log_dir=tmp) as d:
        # The operator says this gateway's model renders every size (so /imagine may ask for 2K and 4K).
        await d.start_bot([sys.executable, "bot.py"], env=bot_env(d, gw, tmp / "data",
                                                                  PROVIDER_MULE_RESOLUTIONS="1K,2K,4K"))
        yield d, gw


async def test_imagine_posts_the_image_and_starts_a_thread(world):
    d, gw = world
    gw.image = make_png((96, 64), color=(10, 200, 10))
    h = await d.slash("imagine", {"prompt": "a red apple", "aspect_ratio": "16:9", "resolution": "2K"})
    assert await h.ack() == 5 and h.ack_latency < 3
    msg = await h.response(where=result_of, timeout=15)
    [att] = msg.attachments
    assert att.data == gw.image and att.filename == "a-red-apple.png"
    # The caption says what was delivered (96×64, short of the 2K asked for), then the model.
    assert "a red apple" in msg.content and "96×64 (2K asked)" in msg.content
    assert "gemini-2.5-flash-image-preview via mule" in msg.content
    labels = [b["label"] for b in msg.buttons()]
    assert labels == ["Upscale", "Vary", "Reroll", "Remix", "Continue from here", "Delete"]
    thread = await d.wait_for_thread(lambda t: int(t["id"]) == msg.id)
    assert thread["name"] == "a red apple"
    request = gw.requests[-1]
    assert request.json["messages"][-1]["content"][0]["text"].startswith("a red apple")
    assert "16:9" in request.json["messages"][-1]["content"][0]["text"]
    d.assert_clean()


async def test_three_turns_in_a_thread_each_carry_the_previous_image(world):
    d, gw = world
    colors = [(250, 0, 0), (0, 250, 0), (0, 0, 250), (250, 250, 0)]
    gw.image = make_png((64, 64), color=colors[0])
    h = await d.slash("imagine", {"prompt": "a cat"})
    first = await h.response(where=result_of, timeout=15)
    thread = await d.wait_for_thread(lambda t: int(t["id"]) == first.id)
    previous = first.attachments[0].data
    for turn, color in enumerate(colors[1:], start=1):
        gw.image = make_png((64, 64), color=color)
        before = len(gw.requests)
        mark = d.mark()
        await d.say(thread, f"turn {turn}: make it brighter")
        answer = await d.wait_for_message(thread, result_of, after=mark, timeout=15)
        assert answer.attachments[0].data == gw.image
        request = gw.requests[before]
        assert previous in sent_images(request), f"turn {turn} did not send the previous image"
        texts = [m["content"] if isinstance(m["content"], str) else " ".join(
            p.get("text", "") for p in m["content"]) for m in request.json["messages"]]
        assert any("a cat" in t for t in texts) and f"turn {turn}" in texts[-1]
        previous = answer.attachments[0].data


async def test_edit_with_two_attachments_sends_both(world):
    d, gw = world
    a, b = png((40, 30), (1, 2, 3)), jpeg((50, 20), (200, 100, 50))
    before = len(gw.requests)
    h = await d.slash("edit", {"prompt": "put the cat on the sofa", "image": ("cat.png", a),
                               "image2": ("sofa.jpg", b)})
    msg = await h.response(where=result_of, timeout=15)
    assert msg.attachments[0].data == gw.image
    assert sent_images(gw.requests[before]) == [a, b]


async def test_context_menu_edits_the_messages_image(world):
    d, gw = world
    source = png((30, 30), (9, 9, 9))
    target = await d.say("general", "look at this", files=[("photo.png", source)], user="bob")
    opened = await d.context_menu("Edit image", target, user="bob")
    modal = await opened.modal()
    [field] = modal["inputs"]
    before = len(gw.requests)
    submitted = await d.submit_modal(opened, {field["custom_id"]: "make it snow"})
    assert await submitted.ack() == 5
    msg = await submitted.response(where=result_of, timeout=15)
    assert msg.attachments[0].data == gw.image
    assert sent_images(gw.requests[before]) == [source]


async def test_bad_inputs_get_an_ephemeral_answer_and_no_provider_call(world):
    d, gw = world
    before = len(gw.requests)
    cases = [
        ({"prompt": "   "}, "prompt is empty"),
        ({"prompt": "x" * 2100}, "limit is 2000"),
        ({"prompt": "fix", "image": ("notes.png", b"just some text, not a picture")}, "not an image"),
        ({"prompt": "fix", "image": ("cut.png", png((300, 300))[:200])}, "damaged or truncated"),
    ]
    bomb = io.BytesIO()
    Image.new("1", (12000, 12000)).save(bomb, format="PNG")  # ~20 KB on disk, 144 megapixels
    cases += [
        ({"prompt": "fix", "image": ("huge.png", b"\x89PNG" + bytes(3 * 2**20 + 10))}, "images may be at most 3 MiB"),
        ({"prompt": "fix", "image": ("bomb.png", bomb.getvalue())}, "the limit is 20 megapixels"),
    ]
    for options, expected in cases:
        command = "edit" if "image" in options else "imagine"
        h = await d.slash(command, options)
        answer = await ephemeral_answer(h)
        assert expected in answer.content and answer.ephemeral, (expected, answer.content)
    assert len(gw.requests) == before


async def test_reroll_vary_and_upscale_buttons(world):
    d, gw = world
    first, thread = await start_in_thread(d, "a lighthouse")
    # Reroll on the channel message: the same request again, answered inside the thread.
    before, mark = len(gw.requests), d.mark()
    click = await d.click(first, label="Reroll")
    note = await click.response()
    assert note.ephemeral and "Working on it in" in note.content
    rerolled = await d.wait_for_message(thread, result_of, after=mark, timeout=15)
    assert last_user_text(gw.requests[before]).startswith("a lighthouse")
    assert "Reroll" in [b["label"] for b in rerolled.buttons()]
    # Vary on the thread's result: a variation request that carries the image being varied.
    before, mark = len(gw.requests), d.mark()
    varied_click = await d.click(rerolled, label="Vary")
    assert await varied_click.ack() == 5
    varied = await varied_click.response(where=result_of, timeout=15)
    assert varied.channel_id == thread_id(thread)
    assert "variation of this image" in last_user_text(gw.requests[before])
    assert sent_images(gw.requests[before])[-1] == rerolled.attachments[0].data  # the input of the last turn
    # Upscale: the varied image itself is the input, at the largest size (MuleRun documents no size
    # field, so the size is in the prompt).
    before = len(gw.requests)
    upscale = await d.click(varied, label="Upscale")
    result = await upscale.response(where=result_of, timeout=15)
    assert last_user_text(gw.requests[before]).startswith("Upscale the attached image to 4K")
    assert "4K resolution" in last_user_text(gw.requests[before])
    assert sent_images(gw.requests[before])[-1] == varied.attachments[0].data
    assert "(4K asked)" in result.content


async def test_continue_from_here_branches_the_thread(world):
    d, gw = world
    first, thread = await start_in_thread(d, "a castle")
    mark = d.mark()
    await d.say(thread, "add a dragon")
    second = await d.wait_for_message(thread, result_of, after=mark, timeout=15)
    assert second.attachments[0].data == gw.image
    branch = await d.click(first, label="Continue from here")
    assert "builds on this image" in (await branch.response()).content
    before, mark = len(gw.requests), d.mark()
    await d.say(thread, "make it night")
    await d.wait_for_message(thread, result_of, after=mark, timeout=15)
    request = gw.requests[before]
    texts = " ".join(m["content"] if isinstance(m["content"], str) else " ".join(
        p.get("text", "") for p in m["content"]) for m in request.json["messages"])
    assert "a castle" in texts and "add a dragon" not in texts
    assert first.attachments[0].data in sent_images(request)


async def test_cancel_stops_a_running_job(world):
    d, gw = world
    answer_with(gw, (5, 5, 5), delay=5)
    h = await d.slash("imagine", {"prompt": "slow picture"})
    status = await h.response(where=lambda m: any(b["label"] == "Cancel" for b in m.buttons()))
    assert "Generating" in status.content
    click = await d.click(status, label="Cancel")
    assert await click.ack() == 6
    final = await h.response(where=lambda m: "Cancelled" in m.content, timeout=10)
    assert not final.attachments and not final.buttons()


async def test_ack_is_immediate_while_the_provider_is_slow(world):
    d, gw = world
    image = answer_with(gw, (7, 70, 170), delay=3.5)
    h = await d.slash("imagine", {"prompt": "patience"})
    assert await h.ack() == 5
    assert h.ack_latency < 1.0  # Discord's hard limit is 3 s; the bot defers at once
    msg = await h.response(where=result_of, timeout=20)
    assert msg.attachments[0].data == image


async def test_turns_of_one_thread_run_in_order_while_threads_run_in_parallel(world):
    d, gw = world
    _, thread_a = await start_in_thread(d, "thread a")
    _, thread_b = await start_in_thread(d, "thread b")
    base = len(gw.requests)
    images = [answer_with(gw, (40 * i, 10, 10), delay=0.8) for i in range(1, 5)]
    mark = d.mark()
    for n in (1, 2, 3):
        await d.say(thread_a, f"a{n}")
    await d.say(thread_b, "b1", user="bob")  # alice has 3 jobs running or queued: USER_MAX_JOBS
    answers_a = await d.wait_for_messages(thread_a, 3, result_of, after=mark, timeout=20)
    answer_b = await d.wait_for_message(thread_b, result_of, after=mark, timeout=20)
    requests = gw.requests[base:base + 4]
    served = {last_user_text(r).split()[0]: (r, images[i]) for i, r in enumerate(requests)}
    # a2 was built after a1's answer (it carries a1's image), a3 after a2's: one at a time, in order.
    assert served["a1"][1] in sent_images(served["a2"][0])
    assert served["a2"][1] in sent_images(served["a3"][0])
    assert [m.attachments[0].data for m in answers_a] == [served[k][1] for k in ("a1", "a2", "a3")]
    # b1 did not wait for thread a: it reached the gateway before a3, which had to wait for a1 and a2.
    assert requests.index(served["b1"][0]) < requests.index(served["a3"][0])
    assert answer_b.updated_at < answers_a[2].updated_at


async def test_4k_result_over_the_upload_limit_is_reencoded_to_fit(world):
    from fakes.images import noisy_png

    d, gw = world
    gw.image = noisy_png((2100, 1800))
    assert len(gw.image) > 10 * 2**20
    h = await d.slash("imagine", {"prompt": "a huge noisy picture", "resolution": "4K"})
    msg = await h.response(where=result_of, timeout=60)
    [att] = msg.attachments
    assert att.size <= 10 * 2**20 and att.filename.endswith(".jpg") and att.data[:3] == b"\xff\xd8\xff"
    assert (att.width, att.height) == (2100, 1800)
    assert "re-encoded as JPG" in msg.content
    gw.image = make_png((96, 64))


async def test_bad_input_in_a_thread_is_answered_there_without_a_provider_call(world):
    d, gw = world
    _, thread = await start_in_thread(d, "thread for bad input")
    before, mark = len(gw.requests), d.mark()
    await d.say(thread, "use these", files=[(f"p{i}.png", png((8, 8))) for i in range(4)])
    answer = await d.wait_for_message(thread, lambda m: "at most 3" in m.content, after=mark)
    assert not answer.attachments
    await d.say(thread, "and this", files=[("doc.png", b"%PDF-1.4 not an image")])
    await d.wait_for_message(thread, lambda m: "not an image" in m.content, after=mark)
    assert len(gw.requests) == before


async def test_imagine_inside_a_bot_thread_continues_it(world):
    d, gw = world
    first, thread = await start_in_thread(d, "a boat")
    before = len(gw.requests)
    h = await d.slash("imagine", {"prompt": "now at sunset"}, channel=thread)
    msg = await h.response(where=result_of, timeout=15)
    assert msg.channel_id == thread_id(thread)
    assert first.attachments[0].data in sent_images(gw.requests[before])
    assert len(d.threads()) == len({t["id"] for t in d.threads()})  # no thread inside the thread


async def test_direct_messages_are_one_conversation(world):
    d, gw = world
    dm = d.dm("bob")
    gw.image = make_png((20, 20), color=(90, 0, 90))
    h = await d.slash("imagine", {"prompt": "a violet star"}, user="bob", channel=dm)
    first = await h.response(where=result_of, timeout=15)
    before, mark = len(gw.requests), d.mark()
    await d.say(dm, "give it a tail", user="bob")
    await d.wait_for_message(dm, result_of, after=mark, timeout=15)
    assert first.attachments[0].data in sent_images(gw.requests[before])


async def test_result_after_the_token_expired_goes_to_the_channel(world):
    d, gw = world
    image = answer_with(gw, (3, 33, 133), delay=1.5)
    mark = d.mark()
    h = await d.slash("imagine", {"prompt": "late bloomer"}, token_lifetime=0.8)
    assert await h.ack() == 5
    msg = await d.wait_for_message("general", lambda m: m.attachments and "late bloomer" in m.content,
                                   after=mark, timeout=15)
    assert msg.attachments[0].data == image
    assert any(code == 50027 for _, _, code in h.errors)


async def test_upload_rejected_by_discord_is_retried_smaller(world):
    from fakes.images import noisy_png

    d, gw = world
    gw.image = noisy_png((1100, 1000))
    cap = 10 * 2**20 // 4  # the interaction promised 10 MiB; Discord takes 2.5 MiB
    assert len(gw.image) > cap
    d.reject_uploads_over(cap)
    try:
        h = await d.slash("imagine", {"prompt": "second try"})
        msg = await h.response(where=result_of, timeout=60)
    finally:
        d.reject_uploads_over(None)
        original, gw.image = gw.image, make_png((96, 64))
    [att] = msg.attachments
    assert att.size <= cap and att.size < len(original) and att.data[:3] == b"\xff\xd8\xff"  # re-encoded smaller
    assert (att.width, att.height) == (1100, 1000)
    assert [code for _, _, code in h.errors].count(40005) == 2  # at 10 MiB and at 5 MiB


async def test_provider_autocomplete_lists_configured_providers(world):
    d, gw = world
    choices = await d.autocomplete("imagine", {"prompt": "x"}, "provider")
    assert [c["value"] for c in choices] == ["mule"]
    assert "gemini-2.5-flash-image-preview" in choices[0]["name"]


async def test_count_four_returns_four_files(world):
    d, gw = world
    before = len(gw.requests)
    h = await d.slash("imagine", {"prompt": "four apples", "count": 4})
    msg = await h.response(where=result_of, timeout=15)
    assert [a.filename for a in msg.attachments] == [f"four-apples-{n}.png" for n in range(1, 5)]
    assert len(gw.requests) - before == 4  # chat answers one image per call: four calls at once


async def test_forget_clears_the_history_for_its_owner_or_an_admin(world):
    d, gw = world
    h = await d.slash("imagine", {"prompt": "a windmill"}, user="bob")
    first = await h.response(where=result_of, timeout=15)
    thread = await d.wait_for_thread(lambda t: int(t["id"]) == first.id)
    denied = await d.slash("forget", {}, user=d.add_user("stranger"), channel=thread)
    assert "Only the member who started" in (await denied.response()).content
    cleared = await d.slash("forget", {}, user="bob", channel=thread)  # bob started it
    assert "Cleared 2 stored turns" in (await cleared.response()).content
    by_admin = await d.slash("forget", {}, user="alice", channel=thread)  # alice has Manage Server
    assert "Cleared 0 stored turns" in (await by_admin.response()).content
    before, mark = len(gw.requests), d.mark()
    await d.say(thread, "a fresh start", user="bob")
    await d.wait_for_message(thread, result_of, after=mark, timeout=15)
    assert sent_images(gw.requests[before]) == [] and "a windmill" not in str(gw.requests[before].json)
