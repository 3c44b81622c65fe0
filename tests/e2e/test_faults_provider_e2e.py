"""Provider faults as a member sees them: `python bot.py` against the fake Discord and two fake gateways.

One bot serves the module, configured with three providers in failover order:

    primary   google preset (Gemini wire format) on gateway A, 2 retries, 4 s per attempt
    backup    mulerun preset (chat completions, streaming) on gateway B, 2 retries, private image
              URLs allowed (ALLOW_PRIVATE_URLS: the operator opted in)
    offline   mulerun preset pointed at a port where nothing listens (connection refused), 1 retry

Each test scripts the gateways (`enqueue`), runs /imagine as alice and reads the one message she
gets: the image, or one clear sentence. The provider layer's own tests (tests/test_client.py) prove
the mechanics; these prove what reaches the member, and that the bot keeps serving.
"""
from __future__ import annotations

import json
import socket
import sys

import pytest
import pytest_asyncio

from fakes.driver import Driver, Message
from fakes.fake_gateway import FakeGateway, Reply, make_png
from fakes.secret_registry import register_secret
from fakes.bot_helpers import result_of

pytestmark = pytest.mark.asyncio(loop_scope="module")

PRIMARY_KEY = register_secret("AIza-faults-PRIMARY-key-4417-distinct", "test_faults_provider_e2e.PRIMARY_KEY")
BACKUP_KEY = register_secret("sk-faults-BACKUP-key-9083-distinct", "test_faults_provider_e2e.BACKUP_KEY")
OFFLINE_KEY = register_secret("sk-faults-OFFLINE-key-5521-distinct", "test_faults_provider_e2e.OFFLINE_KEY")
TIMEOUT = 4.0  # seconds per attempt at the primary
PRIMARY_ATTEMPTS = 3  # MAX_RETRIES=2
STATUS_PREFIXES = ("⏳", "🎨")
# What a member must never read: internals of the bot, the HTTP layer or the gateways.
INTERNALS = ("Traceback", "Error:", "Exception", "HTTP 5", "HTTP 4", "127.0.0.1", "localhost", "aiohttp",
             "ClientConnector", "JSONDecode", "{", "}", "<html", "None")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def world(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("faults-provider")
    closed = socket.socket()  # bound, never listening: connecting is refused at once
    closed.bind(("127.0.0.1", 0))
    dead_url = f"http://127.0.0.1:{closed.getsockname()[1]}/v1"
    async with FakeGateway(image_size=(40, 30)) as gw_a, FakeGateway(image_size=(30, 40)) as gw_b, \
            Driver(log_dir=tmp) as d:
        env = {
            "DATA_DIR": str(tmp / "data"),
            "DISCORD_ATTACHMENT_HOSTS": d.cdn_host,
            "STATUS_INTERVAL_SECONDS": "0.5",
            "PROVIDERS": "primary,backup,offline",
            **gw_a.provider_env("primary", "google", PRIMARY_KEY, MAX_RETRIES=PRIMARY_ATTEMPTS - 1,
                                TIMEOUT=TIMEOUT),
            **gw_b.provider_env("backup", "mulerun", BACKUP_KEY, MAX_RETRIES=2, TIMEOUT=10, STREAM=1,
                                ALLOW_PRIVATE_URLS=1),
            "PROVIDER_OFFLINE_PRESET": "mulerun", "PROVIDER_OFFLINE_API_KEY": OFFLINE_KEY,
            "PROVIDER_OFFLINE_BASE_URL": dead_url, "PROVIDER_OFFLINE_MAX_RETRIES": "1",
            "USER_MAX_JOBS": "10",
        }
        await d.start_bot([sys.executable, "bot.py"], env=env)
        try:
            yield d, gw_a, gw_b
        finally:
            closed.close()


@pytest.fixture(autouse=True)
def fresh_gateways(world):
    """Each test starts with empty scripts and request logs on both gateways."""
    _, gw_a, gw_b = world
    gw_a.reset()
    gw_b.reset()
    gw_a.image, gw_b.image = make_png((40, 30), color=(200, 30, 30)), make_png((30, 40), color=(30, 30, 200))


def finished(msg: Message) -> bool:
    """The result, or a failure sentence: no longer a status line."""
    return bool(msg.attachments) or bool(msg.content) and not msg.content.startswith(STATUS_PREFIXES)


async def imagine(d: Driver, prompt: str, *, timeout: float = 30, **options) -> Message:
    h = await d.slash("imagine", {"prompt": prompt, **options})
    assert await h.ack() == 5
    return await h.response(where=finished, timeout=timeout)


def assert_clear(msg: Message, *expected: str) -> None:
    """A failure the member can read: no image, the expected words, no internals, no keys."""
    assert not msg.attachments, msg.content
    for words in expected:
        assert words in msg.content, (words, msg.content)
    for leak in INTERNALS + (PRIMARY_KEY, BACKUP_KEY, OFFLINE_KEY):
        assert leak not in msg.content, (leak, msg.content)


def labels(msg: Message) -> list[str]:
    return [b["label"] for b in msg.buttons()]


def gemini_body(*, parts=None, finish="STOP", finish_message=None, feedback=None) -> dict:
    candidate: dict = {"content": {"role": "model", "parts": parts or []}, "index": 0}
    if finish:
        candidate["finishReason"] = finish
    if finish_message:
        candidate["finishMessage"] = finish_message
    body: dict = {"candidates": [candidate] if finish or parts else [], "modelVersion": "gemini-2.5-flash-image"}
    if feedback:
        body["promptFeedback"] = feedback
    return body


# --- retried, then the image -------------------------------------------------------------------------

async def test_timeout_is_retried_and_the_member_gets_the_image(world):
    d, gw_a, gw_b = world
    gw_a.enqueue(Reply(delay=TIMEOUT + 3))  # the first attempt outlives its 4 s
    msg = await imagine(d, "slow gateway")
    assert msg.attachments[0].data == gw_a.image
    assert "via primary" in msg.content and "failed" not in msg.content
    assert len(gw_a.requests) == 2 and gw_b.requests == []
    assert gw_a.requests[1].received_at - gw_a.requests[0].received_at >= TIMEOUT


async def test_connection_refused_fails_over_and_the_result_says_so(world):
    d, gw_a, gw_b = world
    msg = await imagine(d, "start at the dead one", provider="offline")
    assert msg.attachments[0].data == gw_a.image
    assert "offline failed, so primary answered instead." in msg.content
    assert len(gw_a.requests) == 1


async def test_429_with_retry_after_waits_that_long_then_succeeds(world):
    d, gw_a, _ = world
    gw_a.enqueue(Reply(status=429, headers={"Retry-After": "2"},
                       body={"error": {"code": 429, "message": "Resource exhausted", "status": "RESOURCE_EXHAUSTED"}}))
    msg = await imagine(d, "busy then fine")
    assert msg.attachments[0].data == gw_a.image and "failed" not in msg.content
    first, second = gw_a.requests
    assert second.received_at - first.received_at >= 1.9  # the server's 2 s, not the 0.5 s backoff


async def test_429_without_retry_after_backs_off_then_succeeds(world):
    d, gw_a, _ = world
    gw_a.enqueue(Reply(status=429, body="Too Many Requests"), Reply(status=429, body="Too Many Requests"))
    msg = await imagine(d, "busy twice then fine")
    assert msg.attachments[0].data == gw_a.image
    first, second, third = gw_a.requests
    # exponential backoff with jitter: at least 0.375 s, then at least 0.75 s
    assert second.received_at - first.received_at >= 0.37
    assert third.received_at - second.received_at >= 0.74


@pytest.mark.parametrize("statuses", [(500,), (502,), (503,), (500, 503)])
async def test_5xx_then_success(world, statuses):
    d, gw_a, gw_b = world
    html = "<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>"
    gw_a.enqueue(*(Reply(status=s, body=html if s == 502 else {"error": {"code": s, "message": "backend error"}})
                   for s in statuses))
    msg = await imagine(d, f"flaky {statuses}")
    assert msg.attachments[0].data == gw_a.image and "failed" not in msg.content
    assert len(gw_a.requests) == len(statuses) + 1 and gw_b.requests == []


async def test_stream_cut_halfway_is_retried(world):
    d, _, gw_b = world
    cut = gw_b.chat_answer("gemini-2.5-flash-image-preview", stream=True)
    cut.cut = True
    gw_b.enqueue(cut)
    msg = await imagine(d, "a stream that stops", provider="backup")
    assert msg.attachments[0].data == gw_b.image and "via backup" in msg.content
    assert len(gw_b.requests) == 2 and all(r.json["stream"] for r in gw_b.requests)


# --- failover ------------------------------------------------------------------------------------------

async def test_all_retries_failing_fail_over_to_the_backup(world):
    d, gw_a, gw_b = world
    gw_a.enqueue(*[Reply(status=503, body={"error": {"code": 503, "message": "overloaded"}})] * PRIMARY_ATTEMPTS)
    msg = await imagine(d, "primary is down")
    assert msg.attachments[0].data == gw_b.image
    assert "via backup" in msg.content and "primary failed, so backup answered instead." in msg.content
    assert len(gw_a.requests) == PRIMARY_ATTEMPTS and len(gw_b.requests) == 1


@pytest.mark.parametrize("body", [
    "<!DOCTYPE html><html><head><title>Just a moment...</title></head><body>challenge</body></html>",
    '{"candidates": [{"content": {"parts": [{"inlineData": {"mimeType": "image/png", "data": "iVBORw0KG',
], ids=["html", "truncated-json"])
async def test_unreadable_answer_fails_over(world, body):
    d, gw_a, gw_b = world
    gw_a.enqueue(Reply(status=200, body=body))
    msg = await imagine(d, "garbage from the primary")
    assert msg.attachments[0].data == gw_b.image
    assert "primary failed, so backup answered instead." in msg.content
    assert len(gw_a.requests) == 1  # an unreadable answer is not asked for again at the same gateway


async def test_every_provider_down_gives_one_clear_message_and_the_bot_keeps_serving(world):
    d, gw_a, gw_b = world
    gw_a.enqueue(*[Reply(status=503, body={"error": {"code": 503, "message": "overloaded"}})] * PRIMARY_ATTEMPTS)
    gw_b.enqueue(*[Reply(status=502, body="<html><title>502 Bad Gateway</title></html>")] * 3)
    mark = d.mark()
    h = await d.slash("imagine", {"prompt": "nothing works"})
    msg = await h.response(where=finished, timeout=40)
    assert_clear(msg, "unavailable right now; try again in a few minutes.")
    assert labels(msg) == ["Reroll"]
    assert len(gw_a.requests) == PRIMARY_ATTEMPTS and len(gw_b.requests) == 3
    # One message: the deferred response became the failure; nothing else was posted.
    assert [m.id for m in d.messages("general", author="bot", after=mark)] == [msg.id] and not h.followups
    # The bot still serves: the Reroll button and the next command both bring an image.
    click = await d.click(msg, label="Reroll")
    assert await click.ack() == 5
    rerolled = await click.response(where=result_of, timeout=30)
    assert rerolled.attachments[0].data == gw_a.image
    after = await imagine(d, "and the next command")
    assert after.attachments[0].data == gw_a.image


# --- answers that hold no image -----------------------------------------------------------------------

async def test_200_with_no_image_and_no_text(world):
    d, gw_a, gw_b = world
    gw_a.enqueue(Reply(body=gemini_body(parts=[], finish="STOP")))
    msg = await imagine(d, "an empty answer")
    assert_clear(msg, "without an image", "try again")
    assert [b["label"] for b in msg.buttons()] == ["Reroll"]  # not retried by itself, but one click away
    assert len(gw_a.requests) == 1 and gw_b.requests == []


REFUSALS = {
    "image-safety": (gemini_body(finish="IMAGE_SAFETY", finish_message=(
        "Unable to show the generated image. The image was filtered out because it violated Google's "
        "Generative AI Prohibited Use policy. You will not be charged for blocked images.")),
        ["IMAGE_SAFETY", "violated Google's Generative AI Prohibited Use policy"]),
    "block-reason": ({"promptFeedback": {"blockReason": "PROHIBITED_CONTENT",
                                         "blockReasonMessage": "The prompt was blocked."}},
                     ["PROHIBITED_CONTENT", "The prompt was blocked."]),
    "text-only": (gemini_body(parts=[{"text": "I can't create images of real people in that setting."}]),
                  ["without an image", "I can't create images of real people in that setting."]),
}


@pytest.mark.parametrize("kind", list(REFUSALS))
async def test_refusal_is_shown_with_the_models_reason_and_not_retried(world, kind):
    d, gw_a, gw_b = world
    body, expected = REFUSALS[kind]
    gw_a.enqueue(Reply(body=body))
    msg = await imagine(d, f"something refused ({kind})")
    assert_clear(msg, *expected)
    assert "Reroll" not in labels(msg)  # the same request would be refused again
    assert len(gw_a.requests) == 1 and gw_b.requests == []  # not retried, not failed over


# --- what comes back is never trusted blindly ----------------------------------------------------------

async def test_a_key_echoed_by_the_gateway_is_masked_in_the_result(world):
    d, gw_a, _ = world
    answer = gw_a.gemini_answer("gemini-2.5-flash-image", stream=False)
    answer.body["candidates"][0]["content"]["parts"][0]["text"] = f"Made with key {PRIMARY_KEY}, enjoy."
    gw_a.enqueue(answer)
    msg = await imagine(d, "an indiscreet gateway")
    assert msg.attachments and "Made with key ***, enjoy." in msg.content
    assert PRIMARY_KEY not in json.dumps(msg.data)


async def test_private_image_url_is_fetched_when_the_operator_opted_in(world):
    """backup has PROVIDER_BACKUP_ALLOW_PRIVATE_URLS=1: a link to another local server is fetched,
    without the gateway's key (tests/test_bad_input_e2e.py covers the default: refused)."""
    d, gw_a, gw_b = world
    picture = make_png((24, 24), color=(1, 150, 1))
    url = gw_a.add_file("elsewhere.png", picture)  # 127.0.0.1, another port than gateway B
    message = {"role": "assistant", "content": [{"type": "text", "text": "Here."},
                                                {"type": "image_url", "image_url": {"url": url}}]}
    gw_b.enqueue(Reply(events=[{"choices": [{"index": 0, "delta": message, "finish_reason": "STOP"}]}]))
    msg = await imagine(d, "a picture hosted elsewhere", provider="backup")
    assert msg.attachments[0].data == picture
    [download] = gw_a.downloads
    assert download.header("Authorization") is None and download.header("x-goog-api-key") is None
