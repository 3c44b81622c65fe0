"""providers.client against the fake gateway: errors, retries, failover, streams, downloads, redaction."""
from __future__ import annotations

import email.utils
import json
import logging
import socket
import time

import pytest

from fakes.fake_gateway import Reply, make_png
from fakes.secret_registry import register_secret
from providers.base import ThreadRunner
from providers.client import ProviderClient, ProviderRouter
from providers.presets import load_provider_configs
from providers.errors import (AuthError, BadRequestError, ConfigError, MalformedResponse, NoImageError,
                              ProviderError, ProviderTimeout, RateLimitError, RefusedError, ServerError)
from providers.models import GenerationRequest

KEY = register_secret("sk-Zq9distinctiveTESTKEY7731", "test_client.KEY")
KEY2 = register_secret("AIzaOtherDistinctiveKeyForTests5512", "test_client.KEY2")
REQUEST = GenerationRequest("a red apple")


class Sleeps(list):
    """An injectable sleep that records the delays instead of waiting."""

    async def __call__(self, seconds: float) -> None:
        self.append(seconds)


@pytest.fixture
def sleeps():
    return Sleeps()


@pytest.fixture
def router(gw, session, sleeps):
    """router(("a", "google", {"MAX_RETRIES": 0}), ...) -> ProviderRouter against the fake."""

    def make(*specs):
        specs = specs or (("p", "google", {}),)
        env = {"PROVIDERS": ",".join(name for name, _, _ in specs)}
        for i, (name, preset, extra) in enumerate(specs):
            env.update(gw.provider_env(name, preset, KEY if i == 0 else KEY2, **extra))
        return ProviderRouter(load_provider_configs(env), session, sleep=sleeps, rng=lambda: 0.0)
    return make


def google_error(code: int, status: str, message: str, *details: dict) -> dict:
    return {"error": {"code": code, "message": message, "status": status, "details": list(details)}}


def no_retry(preset: str = "google", **extra):
    return ("p", preset, {"MAX_RETRIES": 0, **extra})


# --- status -> error ------------------------------------------------------------------------

@pytest.mark.parametrize("status, body, expected", [
    (401, {"error": {"message": "Invalid token", "type": "invalid_request_error"}}, AuthError),
    (403, google_error(403, "PERMISSION_DENIED", "Your API key was reported as leaked."), AuthError),
    (400, google_error(400, "INVALID_ARGUMENT", "API key not valid.", {"reason": "API_KEY_INVALID"}), AuthError),
    (400, google_error(400, "INVALID_ARGUMENT", "Request payload size exceeds the limit"), BadRequestError),
    (404, google_error(404, "NOT_FOUND", "models/x is not found for API version v1beta"), BadRequestError),
    (422, {"error": {"message": "bad size"}}, BadRequestError),
    (400, {"error": {"message": "Your request was rejected as a result of our safety system.",
                     "type": "invalid_request_error", "code": "content_policy_violation"}}, RefusedError),
    (408, {"error": {"message": "timeout"}}, ProviderTimeout),
    (429, google_error(429, "RESOURCE_EXHAUSTED", "Quota exceeded"), RateLimitError),
    (500, google_error(500, "INTERNAL", "An internal error has occurred."), ServerError),
    (503, {"error": {"message": "no channel", "type": "new_api_error", "code": "model_not_found"}}, ServerError),
    (502, "<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>", ServerError),
])
async def test_status_maps_to_error(router, gw, status, body, expected):
    gw.enqueue(Reply(status=status, body=body))
    with pytest.raises(expected) as info:
        await router(no_retry()).generate(REQUEST)
    err = info.value
    assert type(err) is expected or expected is RefusedError
    assert err.status == status and err.provider == "p"
    assert err.user_message and "\n" not in err.user_message
    assert len(gw.requests) == 1


async def test_html_error_page_becomes_a_short_excerpt(router, gw):
    page = "<!DOCTYPE html><html><head><title>504 Gateway Time-out</title></head><body>" + "x" * 5000
    gw.enqueue(Reply(status=504, body=page))
    with pytest.raises(ProviderTimeout) as info:  # 504 is a timeout, with a JSON body or without
        await router(no_retry()).generate(REQUEST)
    assert "504 Gateway Time-out" in info.value.detail and len(info.value.detail) < 300


async def test_html_behind_200_is_malformed(router, gw):
    gw.enqueue(Reply(status=200, body="<html><title>Cloudflare</title></html>"))
    with pytest.raises(MalformedResponse) as info:
        await router(no_retry()).generate(REQUEST)
    assert "Cloudflare" in info.value.detail


async def test_truncated_json_is_malformed_with_short_detail(router, gw):
    gw.enqueue(Reply(body=b'{"candidates": [{"content": {"parts": [{"inlineData": {"data": "' + b"A" * 10000))
    with pytest.raises(MalformedResponse) as info:
        await router(no_retry()).generate(REQUEST)
    assert len(info.value.detail) <= 300


# --- retries ------------------------------------------------------------------------------

async def test_retry_then_success_with_backoff(router, gw, sleeps):
    gw.enqueue(Reply(status=503, body=google_error(503, "UNAVAILABLE", "overloaded")), Reply(status=500))
    result = await router().generate(REQUEST)
    assert len(result.images) == 1 and result.attempts == []
    assert len(gw.requests) == 3
    assert sleeps == [0.5, 1.0]  # exponential, rng() == 0 -> no jitter


@pytest.mark.parametrize("headers, expected", [
    ({"Retry-After": "3"}, 3.0),
    ({"Retry-After": "1.5"}, 1.5),
    ({"retry-after-ms": "2500", "Retry-After": "9"}, 2.5),
])
async def test_retry_after_headers(router, gw, sleeps, headers, expected):
    gw.enqueue(Reply(status=429, headers=headers, body={"error": {"message": "slow down"}}))
    await router().generate(REQUEST)
    assert sleeps == [expected]


async def test_retry_after_http_date(router, gw, sleeps):
    when = email.utils.formatdate(time.time() + 6, usegmt=True)
    gw.enqueue(Reply(status=503, headers={"Retry-After": when}))
    await router().generate(REQUEST)
    assert len(sleeps) == 1 and 4 <= sleeps[0] <= 6


async def test_gemini_retry_info_in_body(router, gw, sleeps):
    gw.enqueue(Reply(status=429, body=google_error(
        429, "RESOURCE_EXHAUSTED", "You exceeded your current quota.",
        {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "7s"})))
    await router().generate(REQUEST)
    assert sleeps == [7.0]


async def test_long_retry_after_gives_up_on_that_provider(router, gw, sleeps):
    gw.enqueue(Reply(status=429, headers={"Retry-After": "3600"}))
    result = await router(("a", "google", {}), ("b", "mulerun", {})).generate(REQUEST)
    assert result.provider == "b" and result.attempts == ["a"] and sleeps == []


async def test_retries_exhausted_then_failover(router, gw, sleeps):
    gw.enqueue(*[Reply(status=502)] * 3)
    result = await router(("a", "google", {}), ("b", "mulerun", {})).generate(REQUEST)
    assert result.provider == "b" and result.attempts == ["a"]
    assert [r.path for r in gw.requests].count("/v1/chat/completions") == 1
    assert len(gw.requests) == 4 and len(sleeps) == 2


async def test_start_at_a_named_provider(router, gw):
    r = router(("a", "google", {}), ("b", "mulerun", {"MAX_RETRIES": 0}), ("c", "openrouter", {}))
    assert r.names == ["a", "b", "c"] and r.get("B").config.name == "b"
    gw.enqueue(Reply(status=500))
    result = await r.generate(REQUEST, provider="b")
    assert result.provider == "a" and result.attempts == ["b"]  # b first, then PROVIDERS order
    with pytest.raises(ConfigError):
        await r.generate(REQUEST, provider="nope")


async def test_all_providers_down_gives_one_clear_error(router, gw):
    gw.enqueue(Reply(status=503), Reply(status=401))
    with pytest.raises(ServerError) as info:
        await router(no_retry(), ("b", "mulerun", {"MAX_RETRIES": 0})).generate(REQUEST)
    err = info.value
    assert err.user_message == ServerError.default_message
    assert "all providers failed" in err.detail and "b: AuthError HTTP 401" in err.detail


async def test_rate_limit_is_the_most_meaningful_failure(router, gw):
    gw.enqueue(Reply(status=500), Reply(status=429, headers={"Retry-After": "120"}))
    with pytest.raises(RateLimitError) as info:
        await router(no_retry(), ("b", "mulerun", {"MAX_RETRIES": 0})).generate(REQUEST)
    assert "120" in info.value.user_message


async def test_refusal_is_neither_retried_nor_failed_over(router, gw, sleeps):
    gw.enqueue(Reply(body={"candidates": [{"content": {}, "finishReason": "IMAGE_SAFETY",
                                           "finishMessage": "Unable to show the generated image."}]}))
    with pytest.raises(RefusedError) as info:
        await router(("a", "google", {}), ("b", "mulerun", {})).generate(REQUEST)
    assert info.value.reason == "IMAGE_SAFETY" and "Unable to show" in info.value.user_message
    assert len(gw.requests) == 1 and sleeps == []


async def test_content_policy_400_is_final(router, gw):
    gw.enqueue(Reply(status=400, body={"error": {"code": "content_policy_violation", "message": "no"}}))
    with pytest.raises(RefusedError):
        await router(("a", "mulerun", {}), ("b", "google", {})).generate(REQUEST)
    assert len(gw.requests) == 1


async def test_bad_request_does_not_fail_over(router, gw, sleeps):
    gw.enqueue(Reply(status=400, body=google_error(400, "INVALID_ARGUMENT", "bad aspect ratio")))
    with pytest.raises(BadRequestError):
        await router(("a", "google", {}), ("b", "mulerun", {})).generate(REQUEST)
    assert len(gw.requests) == 1 and sleeps == []


async def test_text_only_answer_is_no_image_with_the_text(router, gw):
    gw.enqueue(Reply(body={"choices": [{"message": {"role": "assistant", "content": "I can't draw that."},
                                        "finish_reason": "stop"}]}))
    with pytest.raises(NoImageError) as info:
        await router(("a", "mulerun", {}), ("b", "google", {})).generate(REQUEST)
    assert info.value.model_text == "I can't draw that." and len(gw.requests) == 1


async def test_timeout(router, gw):
    gw.enqueue(Reply(delay=2))
    started = time.monotonic()
    with pytest.raises(ProviderTimeout) as info:
        await router(no_retry(TIMEOUT="0.2")).generate(REQUEST)
    assert time.monotonic() - started < 1.5 and "0.2s" in info.value.detail


async def test_connection_refused_is_retried_then_a_server_error(session, sleeps):
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {"PROVIDERS": "p", "PROVIDER_P_PRESET": "google", "PROVIDER_P_API_KEY": KEY,
           "PROVIDER_P_BASE_URL": f"http://127.0.0.1:{port}/v1beta"}
    r = ProviderRouter(load_provider_configs(env), session, sleep=sleeps, rng=lambda: 0.0)
    with pytest.raises(ServerError) as info:
        await r.generate(REQUEST)
    assert len(sleeps) == 2 and "Connect" in info.value.detail


async def test_dropped_connection_is_a_server_error(router, gw):
    gw.enqueue(Reply(drop=True))
    with pytest.raises(ServerError):
        await router(no_retry()).generate(REQUEST)


# --- streaming ------------------------------------------------------------------------------

async def test_stream_cut_halfway_is_retried(router, gw, sleeps):
    gw.enqueue(Reply(events=gw.gemini_answer("m", stream=True).events, crlf=True, done=False, cut=True))
    result = await router(("p", "google", {"STREAM": 1})).generate(REQUEST)
    assert len(result.images) == 1 and len(sleeps) == 1 and len(gw.requests) == 2


async def test_stream_ending_before_the_image_is_a_server_error(router, gw):
    first = gw.gemini_answer("m", stream=True).events[0]  # the text part only, no finishReason
    gw.enqueue(Reply(events=[first], crlf=True, done=False))
    with pytest.raises(ServerError) as info:
        await router(no_retry(STREAM=1)).generate(REQUEST)
    assert "stream" in info.value.user_message


async def test_stream_with_no_events_is_a_server_error(router, gw):
    gw.enqueue(Reply(events=[], done=False))
    with pytest.raises(ServerError):
        await router(no_retry(STREAM=1)).generate(REQUEST)


@pytest.mark.parametrize("preset, crlf", [("google", True), ("mulerun", False)])
async def test_eight_megabyte_single_data_line(router, gw, preset, crlf):
    gw.image = make_png((32, 32), target_bytes=6_200_000)  # ~8.3 MB of base64 in one event
    assert len(gw.image_b64) > 8_000_000
    result = await router(("p", preset, {"STREAM": 1})).generate(REQUEST)
    assert result.images[0].data == gw.image


async def test_crlf_framing_multi_line_events_and_keepalives(router, gw):
    # Pretty-printed JSON becomes several data: lines; comments come before every event.
    events = [json.dumps(e, indent=1) for e in gw.gemini_answer("m", stream=True).events]
    gw.enqueue(Reply(events=events, crlf=True, done=False, keepalive=True))
    result = await router(("p", "google", {"STREAM": 1})).generate(REQUEST)
    assert result.images[0].data == gw.image and result.text == gw.text


async def test_chat_stream_without_done(router, gw):
    gw.enqueue(Reply(events=gw.chat_answer("m", stream=True).events, done=False, keepalive=True))
    result = await router(("p", "mulerun", {"STREAM": 1})).generate(REQUEST)
    assert result.images[0].data == gw.image


async def test_error_event_inside_a_stream(router, gw, sleeps):
    gw.enqueue(Reply(events=[google_error(429, "RESOURCE_EXHAUSTED", "Please retry in 2s.")], crlf=True))
    result = await router(("p", "google", {"STREAM": 1})).generate(REQUEST)
    assert len(result.images) == 1 and sleeps == [2.0]


async def test_json_answer_to_a_stream_request_is_accepted(router, gw):
    gw.enqueue(gw.gemini_answer("m", stream=False))
    result = await router(("p", "google", {"STREAM": 1})).generate(REQUEST)
    assert len(result.images) == 1


async def test_sse_answer_to_a_plain_request_is_read_as_a_stream(router, gw):
    gw.enqueue(gw.gemini_answer("m", stream=True))
    result = await router(no_retry()).generate(REQUEST)
    assert result.images[0].data == gw.image


async def test_redirects_are_not_followed_with_the_key(router, gw):
    gw.enqueue(Reply(status=307, headers={"Location": "http://elsewhere.invalid/v1beta/x"}))
    result = await router(("a", "google", {}), ("b", "mulerun", {})).generate(REQUEST)
    assert result.provider == "b" and len(gw.requests) == 2  # not followed, not retried


# --- image URLs ---------------------------------------------------------------------------

def chat_with_urls(*urls: str) -> Reply:
    parts = [{"type": "image_url", "image_url": {"url": u}} for u in urls]
    return Reply(body={"choices": [{"message": {"role": "assistant", "content": parts},
                                    "finish_reason": "stop"}]})


async def test_image_url_on_the_gateway_host_is_downloaded_with_auth(router, gw):
    url = gw.add_file("a.png", gw.image)
    gw.enqueue(chat_with_urls(url))
    result = await router(no_retry("mulerun")).generate(REQUEST)
    assert result.images[0].data == gw.image and result.images[0].mime_type == "image/png"
    assert gw.downloads[0].header("Authorization") == f"Bearer {KEY}"


async def test_download_size_cap(router, gw):
    gw.enqueue(chat_with_urls(gw.add_file("big.png", make_png(target_bytes=300_000))))
    with pytest.raises(MalformedResponse) as info:
        await router(no_retry("mulerun", MAX_DOWNLOAD_BYTES=100_000)).generate(REQUEST)
    assert "too large" in info.value.user_message


async def test_private_address_url_is_refused(router, gw):
    gw.enqueue(chat_with_urls(gw.add_file("a.png", gw.image, host="localhost")))
    with pytest.raises(MalformedResponse) as info:
        await router(no_retry("mulerun")).generate(REQUEST)
    assert "private" in info.value.detail and gw.downloads == []


async def test_private_address_allowed_when_opted_in_but_no_auth_sent(router, gw):
    gw.enqueue(chat_with_urls(gw.add_file("a.png", gw.image, host="localhost")))
    result = await router(no_retry("mulerun", ALLOW_PRIVATE_URLS=1)).generate(REQUEST)
    assert result.images[0].data == gw.image
    assert gw.downloads[0].header("Authorization") is None  # a foreign host never sees the key


async def test_non_http_url_is_refused(router, gw):
    gw.enqueue(chat_with_urls("ftp://example.com/a.png"))
    with pytest.raises(MalformedResponse):
        await router(no_retry("mulerun")).generate(REQUEST)


# --- count --------------------------------------------------------------------------------

async def test_count_runs_concurrent_calls_for_chat_and_gemini(router, gw):
    gw.latency = 0.2
    started = time.monotonic()
    result = await router(("p", "mulerun", {})).generate(GenerationRequest("x", count=3))
    assert time.monotonic() - started < 0.5  # concurrent, not 3 x 0.2 s
    assert len(result.images) == 3 and len(gw.requests) == 3
    assert result.usage["total_tokens"] == 3 * 1296


async def test_count_partial_success(router, gw):
    gw.enqueue(Reply(status=400, body={"error": {"message": "bad"}}))
    result = await router(("p", "google", {})).generate(GenerationRequest("x", count=2))
    assert len(result.images) == 1


async def test_count_sends_n_to_the_images_endpoint(router, gw):
    result = await router(("p", "mixroute", {})).generate(GenerationRequest("x", count=2))
    assert len(gw.requests) == 1 and gw.requests[0].json["n"] == 2 and len(result.images) == 2


# --- redaction ----------------------------------------------------------------------------

def error_texts(err: ProviderError) -> list[str]:
    return [str(err), repr(err), err.user_message, err.detail or "", str(err.args),
            getattr(err, "model_text", None) or ""]


@pytest.mark.parametrize("reply", [
    Reply(status=401, body={"error": {"message": f"Incorrect API key provided: {KEY}."}}),
    Reply(status=500, body=f"<html><title>upstream said Bearer {KEY}</title></html>"),
    Reply(status=400, body=google_error(400, "INVALID_ARGUMENT", f"bad request ?key={KEY}&x=1")),
    Reply(body={"choices": [{"message": {"content": f"my key is {KEY}"}, "finish_reason": "stop"}]}),
])
async def test_the_key_appears_in_no_error_and_no_log(router, gw, caplog, reply):
    caplog.set_level(logging.DEBUG)
    gw.enqueue(reply, reply, reply)
    with pytest.raises(ProviderError) as info:
        await router(("p", "mulerun", {"MAX_RETRIES": 1}), ("b", "google", {"MAX_RETRIES": 0})).generate(REQUEST)
    for text in error_texts(info.value):
        assert KEY not in text and KEY2 not in text
    assert gw.requests[0].header("Authorization") == f"Bearer {KEY}"  # it was really sent
    for record in caplog.records:
        assert KEY not in record.getMessage() and KEY2 not in record.getMessage()


async def test_reprs_hide_the_key(router):
    r = router(("p", "mulerun", {}))
    assert KEY not in repr(r) and KEY not in repr(r.get("p")) and KEY not in repr(r.get("p").config)


async def test_client_can_be_used_alone(gw, session):
    (config,) = load_provider_configs({"PROVIDERS": "p", **gw.provider_env("p", "openrouter", KEY)})
    gw.chat_style = "images"
    result = await ProviderClient(config, session).generate(GenerationRequest("x"))
    assert result.provider == "p" and result.model == "google/gemini-2.5-flash-image"
    assert result.seconds > 0 and result.text == gw.text


async def test_parsing_runs_off_the_event_loop(router, gw, monkeypatch):
    threads = []
    real = ThreadRunner.run

    async def spy(self, fn, *args):  # the router's default runner: both kinds of step in threads
        threads.append(getattr(fn, "__name__", ""))
        threads.extend(a.__name__ for a in args if callable(a) and hasattr(a, "__name__"))
        return await real(self, fn, *args)
    monkeypatch.setattr(ThreadRunner, "run", spy)
    monkeypatch.setattr(ThreadRunner, "run_process", spy)
    await router().generate(REQUEST)
    assert "parse_response" in threads and "_prepare" in threads


# --- building blocks ------------------------------------------------------------------------

def feed_all(data: bytes, step: int):
    from providers.sse import SSEReader

    reader, events = SSEReader(), []
    for i in range(0, len(data), step):
        events += reader.feed(data[i:i + step])
    return reader, events + reader.close()


@pytest.mark.parametrize("step", [1, 2, 7, 1000])
def test_sse_reader_framing(step):
    data = (b": OPENROUTER PROCESSING\r\n\r\ndata: {\"a\":1}\r\n\r\nevent: x\nid: 3\ndata:{\ndata:  \"b\": 2\n"
            b"data: }\n\n: ping\n\ndata: [DONE]\n\n")
    reader, events = feed_all(data, step)
    assert events == [b'{"a":1}', b'{\n "b": 2\n}'] and reader.done and not reader.truncated


def test_sse_reader_flags_a_stream_cut_inside_an_event():
    reader, events = feed_all(b'data: {"a":1}\n\ndata: {"b":', 5)
    assert events == [b'{"a":1}', b'{"b":'] and reader.truncated and not reader.done


@pytest.mark.parametrize("crlf", [False, True])
def test_sse_reader_keeps_a_long_line_in_the_pieces_it_came_in(crlf):
    from providers.payload import Chunks, joined
    from providers.sse import SSEReader

    nl = b"\r\n" if crlf else b"\n"
    value = bytes(range(256)).replace(b"\n", b"").replace(b"\r", b"") * 1200  # ~300 KB
    data = b": ping" + nl + nl + b"data: " + value + nl + b"data: tail" + nl + nl + b"data: {}" + nl + nl
    reader, pieces = SSEReader(), [data[i:i + 16384] for i in range(0, len(data), 16384)]
    events = [e for piece in pieces for e in reader.feed(piece)] + reader.close()
    assert len(events) == 2 and isinstance(events[0], Chunks) and events[1] == b"{}"
    assert joined(events[0]) == value + b"\ntail" and len(events[0]) == len(value) + 5
    assert events[0].head(4) == value[:4]
    # Whole chunks are kept as they are, not copied: only the first and the last piece are new.
    kept = {id(p) for p in pieces}
    assert sum(id(p) in kept for p in events[0].pieces) >= len(events[0].pieces) - 4


async def test_a_long_html_page_behind_200_is_malformed(router, gw):
    gw.enqueue(Reply(status=200, body="<html><title>Just a moment</title>" + "<p>x</p>" * 40000 + "</html>"))
    with pytest.raises(MalformedResponse) as info:
        await router(no_retry()).generate(REQUEST)
    assert "Just a moment" in info.value.detail and len(info.value.detail) <= 300


def test_sse_reader_is_linear_on_huge_lines():
    big = b"data: " + b"Q" * 8_000_000 + b"\r\n\r\n"
    started = time.monotonic()
    _, events = feed_all(big, 16 * 1024)
    assert len(events[0]) == 8_000_000 and time.monotonic() - started < 2


def test_retry_after_header_parsing():
    from providers.http_errors import retry_after_header

    assert retry_after_header({"retry-after-ms": "250"}) == 0.25
    assert retry_after_header({"retry-after": "12"}) == 12
    assert retry_after_header({"retry-after": "garbage"}) is None
    assert retry_after_header({"retry-after": "0"}) is None
    past = email.utils.formatdate(time.time() - 60, usegmt=True)
    assert retry_after_header({"retry-after": past}) is None


def test_redactor_patterns():
    from providers.redact import Redactor

    redact = Redactor([KEY])
    text = redact(f"{KEY} Authorization: Bearer abc.def x-goog-api-key: zzz ?key=AIzaXYZ&b=1 sk-abcdefghijkl")
    assert KEY not in text and "abc.def" not in text and "zzz" not in text and "AIzaXYZ" not in text
    assert "sk-abcdefghijkl" not in text and text.count("***") >= 5
