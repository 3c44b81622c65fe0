"""Bad input end to end: mentions that must not ping, option values Discord would never send, attachment
links outside Discord, and image links in a gateway's answer that point into private networks.

One bot serves the module (one provider, `main`, no retries); a second fake server, `elsewhere`, on
127.0.0.1 stands for everything the bot must not fetch and records every request it gets. The
other bad inputs (not an image, truncated, huge, bombs, too many, empty or long prompts) are in
tests/test_bot_e2e.py.
"""
from __future__ import annotations

import sys

import pytest
import pytest_asyncio

from fakes.driver import Driver, ExternalAttachment, Message
from fakes.fake_gateway import FakeGateway, Reply, make_png
from fakes.secret_registry import register_secret
from fakes.bot_helpers import ephemeral_answer, result_of, start_in_thread

pytestmark = pytest.mark.asyncio(loop_scope="module")

API_KEY = register_secret("sk-badinput-Distinctive-Key-3371", "test_bad_input_e2e.API_KEY")
STATUS_PREFIXES = ("⏳", "🎨")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def world(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("bad-input")
    async with FakeGateway(image_size=(32, 32)) as gw, FakeGateway() as elsewhere, Driver(log_dir=tmp) as d:
        env = {"DATA_DIR": str(tmp / "data"), "DISCORD_ATTACHMENT_HOSTS": d.cdn_host,
               "STATUS_INTERVAL_SECONDS": "0.5", "PROVIDERS": "main", "USER_MAX_JOBS": "10",
               **gw.provider_env("main", "mulerun", API_KEY, MAX_RETRIES=0, TIMEOUT=20)}
        await d.start_bot([sys.executable, "bot.py"], env=env)
        yield d, gw, elsewhere


def finished(msg: Message) -> bool:
    return bool(msg.attachments) or bool(msg.content) and not msg.content.startswith(STATUS_PREFIXES)


def no_ping(msg: Message, owner: int) -> None:
    """Discord computed nobody to notify but, at most, the member who asked: no other user, no role,
    not @everyone/@here (the fake computes these from the message's allowed_mentions, as Discord)."""
    assert msg.data["mention_everyone"] is False, msg.data
    assert msg.data["mention_roles"] == [], msg.data["mention_roles"]
    assert {int(u["id"]) for u in msg.data["mentions"]} <= {owner}, [u["username"] for u in msg.data["mentions"]]


# --- mentions ----------------------------------------------------------------------------------------

def hostile_prompt(d: Driver, what: str) -> str:
    member_role = d.world.resolve("Member", "role")
    return f"@everyone @here {what} for <@&{member_role}> and <@{d.bob}> and <@!{d.carol}>"


async def test_mentions_in_a_prompt_never_ping(world):
    d, gw, _ = world
    start = d.mark()
    prompt = hostile_prompt(d, "a poster")
    h = await d.slash("imagine", {"prompt": prompt})
    msg = await h.response(where=result_of, timeout=20)
    assert "@everyone" in msg.content and f"<@{d.bob}>" in msg.content  # shown as typed...
    no_ping(msg, d.alice)  # ...but nobody else notified
    # A turn in the thread: the bot's answer there pings nobody else either.
    thread = await d.wait_for_thread(lambda t: int(t["id"]) == msg.id)
    mark = d.mark()
    await d.say(thread, hostile_prompt(d, "now bigger"), user="alice")
    turn = await d.wait_for_message(thread, result_of, after=mark, timeout=20)
    assert f"<@{d.bob}>" in turn.content
    no_ping(turn, d.alice)
    for other in d.messages(thread, author="bot", after=start) + d.messages("general", author="bot", after=start):
        no_ping(other, d.alice)


async def test_mentions_in_a_failing_prompt_never_ping(world):
    d, gw, _ = world
    gw.enqueue(Reply(status=503, body={"error": {"message": "down"}}))
    h = await d.slash("imagine", {"prompt": hostile_prompt(d, "a failure")})
    msg = await h.response(where=finished, timeout=20)
    assert "unavailable" in msg.content
    no_ping(msg, d.alice)


# --- option values ------------------------------------------------------------------------------------

async def test_unknown_provider_gets_a_clear_ephemeral_answer(world):
    d, gw, _ = world
    before = len(gw.requests)
    h = await d.slash("imagine", {"prompt": "a cat", "provider": "nope"})
    answer = await ephemeral_answer(h)
    assert answer.ephemeral and answer.content == "There is no provider called `nope`; choose one of: main."
    assert len(gw.requests) == before


@pytest.mark.parametrize("option, value, expected", [
    ("aspect_ratio", "99:1", "`99:1` is not one of the values this option accepts"),
    ("resolution", "8K", "`8K` is not one of the values this option accepts"),
    ("count", 9, "count must be from 1 to 4, not 9."),
    ("count", 0, "count must be from 1 to 4, not 0."),
])
async def test_option_values_discord_would_refuse_are_refused(world, option, value, expected):
    """Discord's client offers only the choices and the range; a forged interaction (validate=False
    in the driver) can carry anything. The bot answers privately and calls no provider."""
    d, gw, _ = world
    before = len(gw.requests)
    h = await d.slash("imagine", {"prompt": "a cat", option: value}, validate=False)
    answer = await ephemeral_answer(h)
    assert answer.ephemeral and expected in answer.content, answer.content
    assert len(gw.requests) == before


# --- attachment links that are not Discord's -------------------------------------------------------------

def foreign_urls(d: Driver, elsewhere: FakeGateway) -> dict[str, str]:
    url = elsewhere.add_file("cat.png", make_png((16, 16)))
    port = url.split(":")[2].split("/")[0]
    return {
        "loopback": url,
        # userinfo trick: reads like the trusted host, connects to 127.0.0.1
        "userinfo": f"http://{d.cdn_host}:{port}@127.0.0.1:{port}/files/cat.png",
        "lookalike": elsewhere.add_file("cat.png", make_png((16, 16)), host="localhost").replace(
            "://localhost", f"://{d.cdn_host}.127.0.0.1.nip.io"),
    }


@pytest.mark.parametrize("kind", ["loopback", "userinfo", "lookalike"])
async def test_attachment_not_hosted_by_discord_is_never_fetched(world, kind):
    d, gw, elsewhere = world
    url = foreign_urls(d, elsewhere)[kind]
    before, fetched = len(gw.requests), len(elsewhere.downloads)
    h = await d.slash("edit", {"prompt": "make it blue", "image": ExternalAttachment(url, "cat.png")})
    answer = await ephemeral_answer(h)
    assert answer.ephemeral and answer.content == "`cat.png` is not hosted by Discord, so the bot will not fetch it."
    assert len(elsewhere.downloads) == fetched and len(gw.requests) == before


async def test_attachment_not_hosted_by_discord_in_a_thread_is_never_fetched(world):
    d, gw, elsewhere = world
    _, thread = await start_in_thread(d, "a thread for a foreign link")
    before, fetched, mark = len(gw.requests), len(elsewhere.downloads), d.mark()
    await d.say(thread, "use this one", files=[ExternalAttachment(foreign_urls(d, elsewhere)["loopback"], "cat.png")])
    answer = await d.wait_for_message(thread, lambda m: "not hosted by Discord" in m.content, after=mark)
    assert not answer.attachments
    assert len(elsewhere.downloads) == fetched and len(gw.requests) == before


# --- image links in a gateway's answer ------------------------------------------------------------------

def private_urls(elsewhere: FakeGateway) -> dict[str, str]:
    return {
        "loopback-other-port": elsewhere.add_file("out.png", make_png((16, 16))),
        "localhost-name": elsewhere.add_file("out.png", make_png((16, 16)), host="localhost"),
        "ten-net": "http://10.0.0.7/out.png",
        "metadata": "http://169.254.169.254/latest/meta-data/iam/security-credentials/",
    }


@pytest.mark.parametrize("kind", ["loopback-other-port", "localhost-name", "ten-net", "metadata"])
async def test_private_image_link_in_an_answer_is_not_fetched(world, kind):
    d, gw, elsewhere = world
    url = private_urls(elsewhere)[kind]
    fetched = len(elsewhere.downloads)
    gw.enqueue(Reply(body={"choices": [{"message": {"role": "assistant", "content": [
        {"type": "text", "text": "Done."}, {"type": "image_url", "image_url": {"url": url}}]},
        "finish_reason": "stop"}]}))
    h = await d.slash("imagine", {"prompt": f"a link to {kind}"})
    msg = await h.response(where=finished, timeout=20)
    assert not msg.attachments
    assert "The image service answered with an image link the bot will not fetch." in msg.content
    assert url.split("/")[2] not in msg.content  # the address itself is not shown
    assert len(elsewhere.downloads) == fetched


# --- the restart notice ----------------------------------------------------------------------------------

async def test_restart_notice_pings_only_the_member_who_asked(world):
    """Runs last: it kills the module's bot mid-job. The notice after the restart quotes the prompt,
    which mentions other members, a role and @everyone: only the job's owner is pinged."""
    d, gw, _ = world
    reply = gw.chat_answer("gemini-2.5-flash-image-preview", stream=False)
    reply.delay = 60
    gw.enqueue(reply)
    h = await d.slash("imagine", {"prompt": hostile_prompt(d, "an interrupted job")})
    await h.response(where=lambda m: "Generating" in m.content, timeout=20)
    mark = d.mark()
    await d.kill_bot()
    await d.restart_bot()
    notice = await d.wait_for_message("general", lambda m: any(b["label"] == "Reroll" for b in m.buttons()),
                                      after=mark, timeout=20)
    assert f"<@{d.bob}>" in notice.content and "@everyone" in notice.content  # the prompt is quoted
    assert [int(u["id"]) for u in notice.data["mentions"]] == [d.alice]
    assert notice.data["mention_roles"] == [] and notice.data["mention_everyone"] is False
