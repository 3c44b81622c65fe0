"""The bot end to end: `python bot.py` (real discord.py) against the fake Discord and a fake gateway.

One bot process serves the whole module; each test filters messages with `after=` so earlier
tests' messages do not match.
"""
from __future__ import annotations

import asyncio
import base64
import sys

import pytest
import pytest_asyncio

from fakes.driver import Driver
from fakes.fake_gateway import FakeGateway, Reply, make_png
from images import jpeg, png

pytestmark = pytest.mark.asyncio(loop_scope="module")

API_KEY = "sk-e2e-VERY-SECRET-KEY-123"


def bot_env(d: Driver, gw: FakeGateway, data_dir, **extra) -> dict[str, str]:
    env = {
        "DATA_DIR": str(data_dir),
        "DISCORD_ATTACHMENT_HOSTS": d.cdn_host,
        "STATUS_INTERVAL_SECONDS": "0.3",
        **gw.provider_env("mule", "mulerun", API_KEY),
        "PROVIDERS": "mule",
    }
    env.update({k: str(v) for k, v in extra.items()})
    return env


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def world(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("bot-e2e")
    async with FakeGateway(image_size=(96, 64)) as gw, Driver(log_dir=tmp) as d:
        await d.start_bot([sys.executable, "bot.py"], env=bot_env(d, gw, tmp / "data"))
        yield d, gw


def result_of(msg) -> bool:
    return bool(msg.attachments)


def sent_images(request) -> list[bytes]:
    """The images a chat-completions request carried, decoded from their data: URIs."""
    found = []
    for message in request.json["messages"]:
        content = message["content"]
        for part in content if isinstance(content, list) else []:
            if part.get("type") == "image_url":
                found.append(base64.b64decode(part["image_url"]["url"].split(",", 1)[1]))
    return found


async def test_imagine_posts_the_image_and_starts_a_thread(world):
    d, gw = world
    gw.image = make_png((96, 64), color=(10, 200, 10))
    h = await d.slash("imagine", {"prompt": "a red apple", "aspect_ratio": "16:9", "resolution": "2K"})
    assert await h.ack() == 5 and h.ack_latency < 3
    msg = await h.response(where=result_of, timeout=15)
    [att] = msg.attachments
    assert att.data == gw.image and att.filename == "a-red-apple.png"
    assert "a red apple" in msg.content and "gemini-2.5-flash-image-preview via mule · 2K" in msg.content
    labels = [b["label"] for b in msg.buttons()]
    assert labels == ["Reroll", "Vary", "4K", "Continue from here"]
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
    for options, expected in cases:
        command = "edit" if "image" in options else "imagine"
        h = await d.slash(command, options)
        answer = await ephemeral_answer(h)
        assert expected in answer.content and answer.ephemeral, (expected, answer.content)
    assert len(gw.requests) == before


async def ephemeral_answer(h):
    """The bot's private answer: the response itself (type 4), or a followup after a deferral."""
    if await h.ack() == 4:
        return await h.response()
    return await h.followup(0)
