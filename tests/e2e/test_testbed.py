"""The end-to-end test bed's own tests: a real discord.py bot (tests/fakes/sample_bot.py) in a subprocess
against the fake Discord, plus Discord's rules checked over raw REST."""
from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import sys

import aiohttp
import discord.utils
import pytest

from fakes.discord_gateway import Encoder
from fakes.driver import SITECUSTOMIZE_DIR, Driver
from fakes.fixtures import sample_bot  # noqa: F401 - module-scoped fixture
from fakes.sample_bot import png

pytestmark = pytest.mark.asyncio(loop_scope="module")


async def test_ready_commands_and_gateway(sample_bot: Driver) -> None:
    d = sample_bot
    assert {c["name"] for c in d.commands(guild=False)} == {"draw", "thread", "burst", "form", "stress", "Size"}
    first = d.fake.gateway.connections[0]
    assert (first.path, first.kind, first.compress) == ("/gateway", "identify", "zlib-stream")
    assert [r.route for r in d.requests[:2]] == ["GET /users/@me", "GET /oauth2/applications/@me"]
    assert "has connected to Gateway" in d.bot.output()


async def test_slash_defers_then_edits_with_a_file(sample_bot: Driver) -> None:
    d = sample_bot
    h = await d.slash("draw", {"prompt": "a red box"})
    assert await h.ack() == 5
    assert h.ack_latency is not None and h.ack_latency < 3
    msg = await h.response(where=lambda m: m.attachments)
    assert msg.content == "drew a red box"
    [att] = msg.attachments
    assert (att.filename, att.content_type, att.width, att.height) == ("out.png", "image/png", 4, 3)
    assert att.size == len(att.data) and att.data == png(4, 3, (255, 0, 0))
    assert await d.fetch(att.url) == att.data            # served back at the loopback CDN URL
    assert att.url.startswith(f"http://{d.cdn_host}:") and "hm=" in att.url
    assert msg.buttons()[0]["custom_id"] == "sample:again"


async def test_attachment_option_is_read_from_the_cdn(sample_bot: Driver) -> None:
    d = sample_bot
    picture = png(7, 5, (0, 128, 255))
    h = await d.slash("draw", {"prompt": "copy", "image": ("in put.png", picture)}, user="bob",
                      channel=d.dm("bob"))
    msg = await h.response(where=lambda m: m.attachments)
    assert msg.attachments[0].data == picture             # the bot downloaded the option's attachment
    assert any("/ephemeral-attachments/" in path and status == 200 for path, status in d.cdn_requests)


async def test_thread_from_response_and_messages_in_it(sample_bot: Driver) -> None:
    d = sample_bot
    h = await d.slash("thread", {"name": "cats"})
    answer = await h.response()
    thread = await d.wait_for_thread(lambda t: t["name"] == "cats")
    assert int(thread["id"]) == answer.id == answer.thread_id  # threads from a message share its id
    assert (await d.wait_for_message(thread["id"])).content == "first post"
    said = await d.say(thread["id"], "hello", files=[("a.bin", b"12345")], user="bob")
    echo = await d.wait_for_message(thread["id"], lambda m: m.content.startswith("echo"), after=said)
    assert echo.content == "echo: hello [5]"


async def test_modal_and_context_menu(sample_bot: Driver) -> None:
    d = sample_bot
    opened = await d.slash("form")
    modal = await opened.modal()
    assert modal["title"] == "Describe it" and [i["custom_id"] for i in modal["inputs"]] == ["prompt"]
    submitted = await d.submit_modal(opened, {"prompt": "a dog"})
    assert (await submitted.response()).content == "modal said: a dog"
    target = await d.say("general", "look", files=[png(1, 1, (1, 2, 3))])
    sized = await d.context_menu("Size", target)
    reply = await sized.response()
    assert reply.content == "1 attachments" and reply.ephemeral


async def test_resume_replays_what_happened_while_offline(sample_bot: Driver) -> None:
    d = sample_bot
    async with d.offline():
        said = await d.say(d.old_thread, "while you were away")
    echo = await d.wait_for_message(d.old_thread, lambda m: m.content.startswith("echo"), after=said)
    assert echo.content == "echo: while you were away []"
    last = d.fake.gateway.connections[-1]
    assert (last.path, last.kind) == ("/gateway-resume", "resume")
    await d.drop_connection(abrupt=True)                  # no close frame at all: still resumes
    assert d.fake.gateway.connections[-1].kind == "resume"


async def test_discord_rules_reach_the_bot_as_discord_errors(sample_bot: Driver) -> None:
    d = sample_bot
    cases = {  # kind -> (slash kwargs, expected "status code")
        "late": ({"ack_deadline": 0.1}, {"delay": 0.3}, "404 10062"),
        "double": ({}, {}, "400 40060"),
        "files11": ({}, {}, "413 40005"),
        "bigfile": ({"attachment_size_limit": 1024}, {}, "413 40005"),
        "long": ({}, {}, "400 50035"),
        "expired": ({"token_lifetime": 0.2}, {"delay": 0.4}, "401 50027"),
    }
    mark = d.mark()
    handles = {kind: await d.slash("stress", {"kind": kind, **opts}, **clocks)
               for kind, (clocks, opts, _) in cases.items()}
    for kind, (_, _, expected) in cases.items():
        status, code = map(int, expected.split())
        assert (await handles[kind].refused(code))[1:] == (status, code)
        report = await d.wait_for_message("general", lambda m, k=kind: m.content.startswith(f"stress {k}:"),
                                          after=mark)
        assert report.content == f"stress {kind}: {expected}"
    body = next(r.response for r in d.requests if r.code == 50035)
    assert body["errors"]["data"]["content"]["_errors"][0]["code"] == "BASE_TYPE_MAX_LENGTH"


async def test_faults_rate_limit_and_denied_threads(sample_bot: Driver) -> None:
    d = sample_bot
    d.rate_limit("POST /channels/{channel_id}/messages", retry_after=0.05)
    said = await d.say(d.old_thread, "slow down")
    await d.wait_for_message(d.old_thread, lambda m: m.content == "echo: slow down []", after=said)
    assert any(r.status == 429 for r in d.errors())      # discord.py waited and retried
    d.deny("art", "create_public_threads")
    d.allow_problems("50013): Missing Permissions")  # the sample bot does not catch the refusal
    h = await d.slash("thread", {"name": "nope"}, channel="art")
    await h.response()
    await d.wait(lambda: any(r.route.endswith("/threads") and r.code == 50013 for r in d.errors()), 5,
                 "the refused thread")
    assert not [t for t in d.threads() if t["name"] == "nope"]


async def test_persistent_button_after_restart(sample_bot: Driver) -> None:
    d = sample_bot
    drawn = await (await d.slash("draw", {"prompt": "keep"})).response(where=lambda m: m.attachments)
    old = d.bot
    await d.restart_bot()                                 # SIGTERM, then the same argv/cwd/env again
    assert old.returncode == 0 and d.bot.pid != old.pid and d.fake.gateway.identifies == 2
    clicked = await d.click(drawn, "sample:again")
    reply = await clicked.response()
    assert reply.content == f"again for {drawn.id} from pid {d.bot.pid}"


async def test_nothing_unknown_was_asked(sample_bot: Driver) -> None:
    sample_bot.assert_clean()


# ---- Discord's rules over raw REST (no bot process) -------------------------------------------------

async def test_limits_and_unknown_routes_over_rest(tmp_path) -> None:
    # Eight messages in a row in one channel: over Discord's rate limit, which is not what this tests.
    async with Driver(log_dir=tmp_path, rate_limits=False) as d, aiohttp.ClientSession(
            headers={"Authorization": f"Bot {d.world.bot_token}"}) as http:
        url = f"{d.fake.api_url}/channels/{d.general}/messages"

        async def post(payload: dict, files: int = 0, size: int = 1) -> tuple[int, dict]:
            form = aiohttp.FormData(quote_fields=False)
            form.add_field("payload_json", json.dumps(payload))
            for i in range(files):
                form.add_field(f"files[{i}]", b"x" * size, filename=f"{i}.txt")
            async with http.post(url, data=form) as resp:
                return resp.status, await resp.json()

        assert (await post({"content": "x" * 2000}))[0] == 200
        status, body = await post({"content": "x" * 2001})
        assert (status, body["code"], body["message"]) == (400, 50035, "Invalid Form Body")
        assert body["errors"]["content"]["_errors"][0]["code"] == "BASE_TYPE_MAX_LENGTH"
        assert (await post({"content": "ten"}, files=10))[0] == 200
        assert (await post({"content": "eleven"}, files=11)) == (413, {"message": "Request entity too large",
                                                                       "code": 40005})
        assert (await post({}, files=1, size=10 * 1024 * 1024 + 1))[1]["code"] == 40005
        assert (await post({}))[1]["code"] == 50006          # empty message
        d.reject_uploads()
        assert (await post({}, files=1))[1]["code"] == 40005

        async with http.get(f"{d.fake.api_url}/not/a/route") as resp:
            assert resp.status == 404 and await resp.json() == {"message": "404: Not Found", "code": 0}
        async with http.get(f"{d.fake.api_url}/channels/{d.general}/messages?limit=2") as resp:
            history = await resp.json()
        assert [m["content"] for m in history] == ["ten", "x" * 2000]   # newest first
        assert [str(r) for r in d.unknown_routes] == ["GET /not/a/route -> 404"]
        d.allow_problems("unknown route GET /not/a/route")
        async with aiohttp.ClientSession() as anonymous, anonymous.get(url) as resp:
            assert resp.status == 401


def _row(*items: dict) -> dict:
    return {"type": 1, "components": list(items)}


def _button(custom_id: str, label: str = "Go") -> dict:
    return {"type": 2, "style": 2, "label": label, "custom_id": custom_id}


async def test_component_limits_are_discords(tmp_path) -> None:
    """A view Discord would reject is rejected here too, with Discord's 50035 form error and the path
    of the offending field: 5 rows, 5 buttons a row, 100-character custom_ids, 80-character labels,
    unique custom_ids, 25 select options, 25 autocomplete choices."""
    # rate limits off: these raw posts come faster than one channel allows
    async with Driver(log_dir=tmp_path, rate_limits=False) as d, aiohttp.ClientSession(
            headers={"Authorization": f"Bot {d.world.bot_token}"}) as http:
        url = f"{d.fake.api_url}/channels/{d.general}/messages"

        async def post(components: list) -> tuple[int, dict]:
            async with http.post(url, json={"content": "x", "components": components}) as resp:
                return resp.status, await resp.json()

        def error_at(body: dict, *path: str) -> str:
            node = body["errors"]
            for key in path:
                node = node[key]
            return node["_errors"][0]["code"]

        full = [_row(*(_button(f"b{r}{c}") for c in range(5))) for r in range(5)]
        assert (await post(full))[0] == 200                                         # 5 rows of 5: fine
        status, body = await post(full + [_row(_button("extra"))])
        assert (status, body["code"]) == (400, 50035)
        assert error_at(body, "components") == "BASE_TYPE_BAD_LENGTH"
        _, body = await post([_row(*(_button(f"c{c}") for c in range(6)))])
        assert error_at(body, "components", "0", "components") == "BASE_TYPE_BAD_LENGTH"
        assert (await post([_row(_button("i" * 100))]))[0] == 200
        _, body = await post([_row(_button("i" * 101))])
        assert error_at(body, "components", "0", "components", "0", "custom_id") == "BASE_TYPE_MAX_LENGTH"
        _, body = await post([_row(_button("label", "L" * 81))])
        assert error_at(body, "components", "0", "components", "0", "label") == "BASE_TYPE_MAX_LENGTH"
        _, body = await post([_row(_button("same")), _row(_button("same"))])
        assert error_at(body, "components", "1", "components", "0", "custom_id") == "COMPONENT_CUSTOM_ID_DUPLICATED"
        options = [{"label": str(i), "value": str(i)} for i in range(26)]
        _, body = await post([_row({"type": 3, "custom_id": "menu", "options": options})])
        assert error_at(body, "components", "0", "components", "0", "options") == "BASE_TYPE_BAD_LENGTH"
        assert (await post([_row({"type": 3, "custom_id": "menu", "options": options[:25]})]))[0] == 200
        # An edit is held to the same rules.
        async with http.post(url, json={"content": "to edit"}) as resp:
            message_id = (await resp.json())["id"]
        async with http.patch(f"{url}/{message_id}", json={"components": full + full}) as resp:
            assert (resp.status, (await resp.json())["code"]) == (400, 50035)
        # Autocomplete answers: at most 25 choices.
        record = d.fake.interactions.create(4, {"name": "x", "type": 1}, user_id=d.alice, channel_id=d.general)
        callback = f"{d.fake.api_url}/interactions/{record.id}/{record.token}/callback"
        choices = [{"name": str(i), "value": str(i)} for i in range(26)]
        async with http.post(callback, json={"type": 8, "data": {"choices": choices}}) as resp:
            body = await resp.json()
        assert resp.status == 400 and error_at(body, "data", "choices") == "BASE_TYPE_MAX_LENGTH"
        async with http.post(callback, json={"type": 8, "data": {"choices": choices[:25]}}) as resp:
            assert resp.status == 204


async def test_tokens_expire_and_cdn_links_need_their_signature(tmp_path) -> None:
    async with Driver(log_dir=tmp_path) as d, aiohttp.ClientSession() as http:
        said = await d.say("general", "pic", files=[png(2, 2, (9, 9, 9))])
        url = said.attachments[0].url
        assert await d.fetch(url) == said.attachments[0].data
        async with http.get(url.split("?")[0]) as resp:     # Discord refuses unsigned attachment links
            assert resp.status == 404
        record = d.fake.interactions.create(2, {"name": "x", "type": 1}, user_id=d.alice, channel_id=d.general)
        cb = f"{d.fake.api_url}/interactions/{record.id}/{record.token}/callback"
        hook = f"{d.fake.api_url}/webhooks/{d.application_id}/{record.token}"
        async with http.post(cb, json={"type": 5}) as resp:
            assert resp.status == 204
        async with http.post(cb, json={"type": 5}) as resp:
            assert (resp.status, (await resp.json())["code"]) == (400, 40060)
        d.advance_clock(15 * 60 + 1)
        async with http.patch(hook + "/messages/@original", json={"content": "late"}) as resp:
            assert (resp.status, await resp.json()) == (401, {"message": "Invalid Webhook Token", "code": 50027})


async def test_interaction_webhooks_over_rest(tmp_path) -> None:
    """Multipart callbacks with_response, the first followup replacing a deferral, keep-lists on edit."""
    # Raw requests in a row on one token, faster than Discord allows (not what this tests).
    async with Driver(log_dir=tmp_path, rate_limits=False) as d, aiohttp.ClientSession() as http:
        def form(payload: dict, *files: tuple[str, bytes]) -> aiohttp.FormData:
            data = aiohttp.FormData(quote_fields=False)
            data.add_field("payload_json", json.dumps(payload))
            for i, (name, body) in enumerate(files):
                data.add_field(f"files[{i}]", body, filename=name, content_type="application/octet-stream")
            return data

        first = d.fake.interactions.create(2, {"name": "x", "type": 1}, user_id=d.bob, channel_id=d.general)
        async with http.post(f"{d.fake.api_url}/interactions/{first.id}/{first.token}/callback?with_response=true",
                             data=form({"type": 4, "data": {"content": "hi", "attachments": [{"id": 0}]}},
                                       ("a.png", png(3, 2, (0, 0, 0))))) as resp:
            result = await resp.json()
        assert result["interaction"] == {"id": str(first.id), "type": 2,
                                         "response_message_id": str(first.original_id),
                                         "response_message_loading": False, "response_message_ephemeral": False}
        assert result["resource"]["message"]["attachments"][0]["width"] == 3

        second = d.fake.interactions.create(2, {"name": "x", "type": 1}, user_id=d.bob, channel_id=d.general)
        hook = f"{d.fake.api_url}/webhooks/{d.application_id}/{second.token}"
        async with http.post(hook, json={"content": "too early"}) as resp:
            assert (await resp.json())["code"] == 10015        # no followups before the acknowledgement
        async with http.post(f"{d.fake.api_url}/interactions/{second.id}/{second.token}/callback",
                             json={"type": 5, "data": {"flags": 64}}) as resp:
            assert resp.status == 204
        done = form({"content": "done", "flags": 0}, ("b.txt", b"b"))
        async with http.post(hook + "?wait=true", data=done) as resp:
            replaced = await resp.json()
        assert replaced["id"] == str(second.original_id) and replaced["flags"] == 64   # ephemerality of the defer
        async with http.post(hook + "?wait=true", json={"content": "more"}) as resp:
            extra = await resp.json()
        assert extra["id"] != replaced["id"] and second.followup_ids == [int(extra["id"])]
        keep = {"content": "edited", "attachments": [{"id": replaced["attachments"][0]["id"]}, {"id": 0}]}
        async with http.patch(hook + "/messages/@original", data=form(keep, ("c.txt", b"cc"))) as resp:
            edited = await resp.json()
        assert [a["filename"] for a in edited["attachments"]] == ["b.txt", "c.txt"]
        async with http.delete(hook + f"/messages/{extra['id']}") as resp:
            assert resp.status == 204
        async with http.get(hook + f"/messages/{extra['id']}") as resp:
            assert (await resp.json())["code"] == 10008

        # Components: 7 updates the clicked message at once; 6 defers, then @original edits that message.
        clicked = d.world.find_message(first.original_id)
        for ctype, content in ((7, "updated"), (6, "edited later")):
            rec = d.fake.interactions.create(3, {"custom_id": "c", "component_type": 2}, user_id=d.bob,
                                             channel_id=d.general, message=clicked)
            cb = f"{d.fake.api_url}/interactions/{rec.id}/{rec.token}/callback"
            async with http.post(cb, json={"type": ctype, "data": {"content": content} if ctype == 7 else {}}):
                pass
            if ctype == 6:
                hook = f"{d.fake.api_url}/webhooks/{d.application_id}/{rec.token}/messages/@original"
                async with http.patch(hook, json={"content": content}) as resp:
                    assert (await resp.json())["id"] == str(clicked.id)
            assert clicked.data["content"] == content and rec.ack_type == ctype


async def test_sitecustomize_redirects_only_when_asked() -> None:
    probe = ("import discord.http as h, discord.gateway as g, discord.asset as a;"
             "h._set_api_version(9); print(h.Route.BASE, g.DiscordWebSocket.DEFAULT_GATEWAY, a.Asset.BASE)")

    async def run(**env: str) -> str:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", probe, stdout=asyncio.subprocess.PIPE,
            env={**os.environ, "PYTHONPATH": str(SITECUSTOMIZE_DIR), **env})
        return (await proc.communicate())[0].decode().strip()

    assert await run(FAKE_DISCORD_URL="http://127.0.0.1:9", FAKE_DISCORD_CDN="http://localhost:9") == \
        "http://127.0.0.1:9/api/v9 ws://127.0.0.1:9/gateway http://localhost:9"
    assert (await run()).startswith("https://discord.com/api/v9 wss://gateway.discord.gg/")


async def test_zlib_stream_frames_decode_with_discord_py() -> None:
    encoder, decoder = Encoder("zlib-stream"), discord.utils._ZlibDecompressionContext()
    for payload in ({"op": 10, "d": {"heartbeat_interval": 1}}, {"op": 11, "d": None}):
        frame = encoder.encode(json.dumps(payload))
        assert frame.endswith(b"\x00\x00\xff\xff") and json.loads(decoder.decompress(frame)) == payload
    assert Encoder(None).encode("{}") == "{}"             # no compress= -> text frames
    if importlib.util.find_spec("zstandard") is None:     # a zstd-capable client then gets text frames
        assert Encoder("zstd-stream").encode("{}") == "{}"
