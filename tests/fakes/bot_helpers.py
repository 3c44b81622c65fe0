"""Helpers shared by the bot's end-to-end tests (tests/e2e/): the bot's environment against a fake
gateway, and small readers of the fake Discord's messages and the fake gateway's requests."""
from __future__ import annotations

import asyncio
import base64

from .driver import Driver, Settings
from .fake_gateway import FakeGateway, make_png
from .secret_registry import register_secret

# Two shards in IDENTIFY buckets of their own (shard_id % max_concurrency): processes holding one
# each connect at once. Tests of the 5 s spacing within a bucket use max_concurrency=1.
TWO_BUCKETS = Settings(shard_count=2, max_concurrency=2)

API_KEY = register_secret("sk-e2e-VERY-SECRET-KEY-123", "bot_helpers.API_KEY")


def bot_env(d: Driver, gw: FakeGateway, data_dir, **extra) -> dict[str, str]:
    env = {
        "DATA_DIR": str(data_dir),
        "DISCORD_ATTACHMENT_HOSTS": d.cdn_host,
        "STATUS_INTERVAL_SECONDS": "0.3",
        "MAX_IMAGE_BYTES": str(3 * 2**20),
        "MAX_IMAGE_PIXELS": "20000000",
        **gw.provider_env("mule", "mulerun", API_KEY),
        "PROVIDERS": "mule",
    }
    env.update({k: str(v) for k, v in extra.items()})
    return env


DRAFT_PREVIEW = "draft-preview.jpg"  # what the bot calls a draft on a status message


def result_of(msg) -> bool:
    """A result: a message with images that are not a draft preview."""
    return any(a.filename != DRAFT_PREVIEW for a in msg.attachments)


def sent_images(request) -> list[bytes]:
    """The images a chat-completions request carried, decoded from their data: URIs."""
    found = []
    for message in request.json["messages"]:
        content = message["content"]
        for part in content if isinstance(content, list) else []:
            if part.get("type") == "image_url":
                found.append(base64.b64decode(part["image_url"]["url"].split(",", 1)[1]))
    return found


async def ephemeral_answer(h):
    """The bot's private answer: the response itself (type 4, or an ephemeral deferral's edit), or a
    followup after a public deferral, whose "thinking…" is gone: nothing of a refusal stays public."""
    if await h.ack() == 4 or h.original.ephemeral:
        answer = await h.response()
    else:
        answer = await h.followup(0)
        assert h.original is None or h.original.deleted, "the deferred placeholder is still in the channel"
    assert answer.ephemeral, answer
    return answer


MODEL = "gemini-2.5-flash-image-preview"


def last_user_text(request) -> str:
    content = request.json["messages"][-1]["content"]
    return content if isinstance(content, str) else " ".join(p.get("text", "") for p in content)


def answer_with(gw: FakeGateway, color, delay: float = 0.0) -> bytes:
    """Queue one answer carrying a distinct image; return that image's bytes."""
    gw.image = make_png((32, 32), color=color)
    reply = gw.chat_answer(MODEL, stream=False)
    reply.delay = delay
    gw.enqueue(reply)
    return gw.image


async def start_in_thread(d: Driver, prompt: str):
    h = await d.slash("imagine", {"prompt": prompt})
    msg = await h.response(where=result_of, timeout=15)
    thread = await d.wait_for_thread(lambda t: int(t["id"]) == msg.id)
    return msg, thread


def thread_id(thread) -> int:
    return int(thread["id"])


def held_answer(gw: FakeGateway, color) -> tuple[bytes, asyncio.Event]:
    """The next generation's answer, sent only when the returned event is set (a job kept running)."""
    gw.image = make_png((32, 32), color=color)
    reply = gw.chat_answer(MODEL, stream=False)
    reply.hold = asyncio.Event()
    gw.enqueue(reply)
    return gw.image, reply.hold


async def one_job_at_a_time_across_shards(d: Driver, gw: FakeGateway):
    """With USER_MAX_JOBS=1: alice's job held in north keeps her second one, in south (the other
    process), out; returns her first result once released."""
    _image, release = held_answer(gw, (10, 200, 10))
    running = await d.slash("imagine", {"prompt": "one at a time"}, channel="north/general")
    await d.wait(lambda: len(gw.requests) == 1, 30, "the north job at the provider")
    busy = await d.slash("imagine", {"prompt": "a second one"}, channel="south/general")
    assert "1 images in progress" in (await ephemeral_answer(busy)).content
    release.set()
    return await running.response(where=result_of, timeout=30)
