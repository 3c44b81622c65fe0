"""providers.parsing: error envelopes of every gateway, usage normalisation, JSON loading."""
from __future__ import annotations

import base64
import json

import pytest

from fakes.secret_registry import register_secret
from fakes.images import png
from providers.base import ProviderConfig
from providers.errors import (AuthError, BadRequestError, MalformedResponse, ProviderTimeout,
                              RateLimitError, RefusedError, ServerError)
from providers.parsing import (ImageSink, auth_headers, error_from_body, guarded, image_ref, load_json,
                               merge_usage, normalise_usage, short)

CFG = ProviderConfig(name="gw", format="openai_chat", base_url="https://gw.test/v1", api_key=register_secret("sk-secret123456", "test_parsing.KEY"),
                     model="m")


# --- Google ----------------------------------------------------------------------------------

GOOGLE_429 = {"error": {
    "code": 429, "status": "RESOURCE_EXHAUSTED",
    "message": "You exceeded your current quota, please check your plan. Please retry in 12.59s.",
    "details": [{"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": []},
                {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "12s"}]}}


def test_google_rate_limit_with_retry_info():
    err = error_from_body(429, GOOGLE_429)
    assert isinstance(err, RateLimitError)
    assert err.retry_after == 12.0
    assert err.status == 429 and "RESOURCE_EXHAUSTED".lower() in err.detail


def test_google_error_wrapped_in_a_list_and_without_status():
    err = error_from_body(None, [GOOGLE_429])
    assert isinstance(err, RateLimitError) and err.retry_after == 12.0


def test_retry_hint_from_message_text_only():
    body = {"error": {"code": 429, "message": "Quota exceeded. Please retry in 12.59s.", "status": "RESOURCE_EXHAUSTED"}}
    assert error_from_body(429, body).retry_after == pytest.approx(12.59)
    body = {"error": {"message": "Rate limit reached. Please try again in 450ms.", "code": "rate_limit_exceeded"}}
    assert error_from_body(429, body).retry_after == pytest.approx(0.45)


def test_google_bad_key_is_a_400_but_auth():
    body = {"error": {"code": 400, "message": "API key not valid. Please pass a valid API key.",
                      "status": "INVALID_ARGUMENT",
                      "details": [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID"}]}}
    assert isinstance(error_from_body(400, body), AuthError)


@pytest.mark.parametrize("status, gstatus, cls", [
    (400, "INVALID_ARGUMENT", BadRequestError), (404, "NOT_FOUND", BadRequestError),
    (403, "PERMISSION_DENIED", AuthError), (500, "INTERNAL", ServerError),
    (503, "UNAVAILABLE", ServerError), (504, "DEADLINE_EXCEEDED", ProviderTimeout),
])
def test_google_statuses(status, gstatus, cls):
    body = {"error": {"code": status, "message": "something", "status": gstatus}}
    assert type(error_from_body(status, body)) is cls
    assert type(error_from_body(None, body)) is cls  # same answer from the body alone (in a stream)


# --- OpenAI / new-api / OpenRouter -----------------------------------------------------------

def test_openai_content_policy_is_a_refusal():
    body = {"error": {"message": "Your request was rejected as a result of our safety system.",
                      "type": "invalid_request_error", "param": None, "code": "content_policy_violation"}}
    err = error_from_body(400, body)
    assert isinstance(err, RefusedError) and err.reason == "content_policy_violation"
    assert not err.failover and not err.retryable


def test_openai_envelopes():
    assert isinstance(error_from_body(401, {"error": {"message": "Incorrect API key provided: sk-abc***",
                                                      "type": "invalid_request_error",
                                                      "code": "invalid_api_key"}}), AuthError)
    err = error_from_body(429, {"error": {"message": "Rate limit", "type": "requests", "code": "rate_limit_exceeded"}})
    assert isinstance(err, RateLimitError) and err.retry_after is None
    quota = error_from_body(429, {"error": {"message": "You exceeded your current quota",
                                            "type": "insufficient_quota", "code": "insufficient_quota"}})
    assert isinstance(quota, AuthError) and "credit" in quota.user_message
    assert isinstance(error_from_body(400, {"error": {"message": "bad", "type": "invalid_request_error"}}),
                      BadRequestError)


def test_new_api_envelopes():
    body = {"error": {"message": "当前分组 default 下对于模型 gemini 无可用渠道 (request id: x)",
                      "type": "new_api_error", "code": "model_not_found"}}
    assert isinstance(error_from_body(503, body), ServerError)
    quota = {"error": {"message": "用户额度不足", "type": "new_api_error", "code": "insufficient_user_quota"}}
    assert isinstance(error_from_body(403, quota), AuthError)
    assert isinstance(error_from_body(None, {"error": {"message": "Invalid signature", "type": "401"}}), AuthError)


def test_openrouter_envelope_reads_metadata_raw():
    raw = json.dumps({"error": {"code": 429, "message": "Resource exhausted. Please retry in 3s.",
                                "status": "RESOURCE_EXHAUSTED",
                                "details": [{"@type": "type.googleapis.com/google.rpc.RetryInfo",
                                             "retryDelay": "3s"}]}})
    body = {"error": {"message": "Provider returned error", "code": 429,
                      "metadata": {"raw": raw, "provider_name": "Google AI Studio"}}}
    err = error_from_body(None, body)
    assert isinstance(err, RateLimitError) and err.retry_after == 3.0
    assert "Resource exhausted" in err.detail
    server = {"error": {"message": "Provider returned error", "code": 502, "metadata": {"raw": "upstream 502"}}}
    assert isinstance(error_from_body(None, server), ServerError)


def test_openrouter_moderation_is_a_refusal():
    body = {"error": {"code": 403, "message": "Input was flagged",
                      "metadata": {"reasons": ["violence"], "flagged_input": "..."}}}
    assert isinstance(error_from_body(403, body), RefusedError)


def test_unknown_error_in_a_200_is_a_server_error_and_never_leaks_keys():
    err = error_from_body(None, {"error": "upstream said no, Bearer sk-secret123456 key=AIzaSyA1234567890123456789"})
    assert isinstance(err, ServerError)
    assert "sk-secret" not in err.detail and "AIza" not in err.detail
    assert "sk-secret" not in err.user_message


def test_text_and_odd_bodies():
    assert isinstance(error_from_body(502, b"<html>Bad gateway</html>"), ServerError)
    assert isinstance(error_from_body(400, {}), BadRequestError)
    assert isinstance(error_from_body(None, {"detail": "Not authenticated"}), ServerError)
    assert isinstance(error_from_body(401, {"detail": "Not authenticated"}), AuthError)
    assert isinstance(error_from_body(429, {"message": "slow down", "retry_after": 1.5}), RateLimitError)
    assert error_from_body(429, {"message": "slow down", "retry_after": 1.5}).retry_after == 1.5
    long = error_from_body(500, {"error": {"message": "x" * 5000}})
    assert len(long.detail) <= 300


# --- usage -----------------------------------------------------------------------------------

def test_usage_normalised_from_mulerun_and_gemini_shapes():
    mule = {"audioTokens": None, "completion_tokens": 1290, "prompt_tokens": 6, "total_tokens": 1296,
            "cache_creation_input_tokens": None}
    assert normalise_usage(mule) == {"completion_tokens": 1290, "prompt_tokens": 6, "total_tokens": 1296,
                                     "input_tokens": 6, "output_tokens": 1290}
    gem = normalise_usage({"promptTokenCount": 17, "candidatesTokenCount": 1306, "totalTokenCount": 1323,
                           "candidatesTokensDetails": [{"modality": "IMAGE", "tokenCount": 1290}]})
    assert gem["prompt_token_count"] == 17 and gem["input_tokens"] == 17
    assert gem["output_tokens"] == 1306 and gem["total_tokens"] == 1323
    assert gem["candidates_tokens_details"] == [{"modality": "IMAGE", "token_count": 1290}]
    assert normalise_usage(None) == {} and normalise_usage("12") == {}


def test_usage_merge_keeps_larger_counts():
    first = normalise_usage({"completion_tokens": 1290, "prompt_tokens": 6, "total_tokens": 1296})
    last = normalise_usage({"prompt_tokens": 13, "completion_tokens": 0, "total_tokens": 13,
                            "input_tokens": 0, "output_tokens": 0})
    merged = merge_usage(first, last)
    assert merged["input_tokens"] == 13 and merged["output_tokens"] == 1290 and merged["total_tokens"] == 1296


# --- small helpers ---------------------------------------------------------------------------

def test_load_json_errors_are_malformed_with_short_detail():
    with pytest.raises(MalformedResponse, match="could not read") as exc:
        load_json(b"<!DOCTYPE html><html><body>" + b"x" * 10000)
    assert "HTML" in exc.value.detail and len(exc.value.detail) < 300
    with pytest.raises(MalformedResponse):
        load_json(b"")
    with pytest.raises(MalformedResponse):
        load_json(b'{"choices": [')
    assert load_json(b'{"a": 1}') == {"a": 1}


def test_guarded_wraps_programming_errors():
    @guarded
    def parse(config, body):
        return body["missing"]

    with pytest.raises(MalformedResponse) as exc:
        parse(CFG, {})
    assert exc.value.provider == "gw"


def test_auth_headers():
    assert auth_headers(CFG) == {"Authorization": "Bearer sk-secret123456"}
    goog = ProviderConfig(name="g", format="gemini", base_url="u", api_key="K", model="m", auth="x-goog-api-key")
    assert auth_headers(goog) == {"x-goog-api-key": "K"}


def test_image_ref_and_sink():
    raw = base64.b64encode(png()).decode()
    assert image_ref({"type": "image_url", "image_url": {"url": raw}}) == raw
    assert image_ref({"type": "image", "image": {"base64": raw}}) == raw
    assert image_ref({"b64_json": raw}) == raw
    assert image_ref({"inlineData": {"mimeType": "image/png", "data": raw}}) == raw
    assert image_ref({"type": "text", "text": "hi"}) is None
    sink = ImageSink()
    sink.add(raw)
    sink.add(f"data:image/png;base64,{raw}")  # the same image twice is kept once
    sink.add("https://x.test/a.png")
    assert len(sink.images) == 1 and sink.urls == ["https://x.test/a.png"]
    bad = ImageSink()
    bad.add("bm90IGFuIGltYWdl")
    with pytest.raises(MalformedResponse):
        bad.check()


def test_short_redacts_and_truncates():
    assert short("Authorization: Bearer abc.def") == "Authorization: Bearer ***"
    assert len(short("y" * 1000, 50)) == 50


def test_load_json_cuts_out_huge_strings_with_the_same_result():
    from providers.parsing import BIG_STRING, load_json

    big = "QUJD" * (BIG_STRING // 4 + 10)
    body = json.dumps({"a": [big, {"b": "x\\\"y", "c": big + "=="}], "d": "\u00e9", "e": None}).encode()
    assert load_json(body) == json.loads(body) and load_json(bytearray(body)) == json.loads(body)
    escaped = json.dumps({"k": "\\" + big}).encode()  # a backslash inside: left to json.loads
    assert load_json(escaped) == json.loads(escaped)
    as_key = json.dumps({big: 1}).encode()  # a huge key is not cut out
    assert load_json(as_key) == json.loads(as_key)


def test_load_json_of_huge_strings_leaves_no_reference_cycle_holding_the_body():
    # A cycle would keep the 20 MB answer alive until the garbage collector runs: in a CPU worker
    # process (core.cpu), which allocates few objects, that was seldom, and each answer stayed.
    import gc
    import sys

    from providers.parsing import BIG_STRING

    body = json.dumps({"a": ["QUJD" * (BIG_STRING // 4 + 10)]}).encode()
    gc.collect()
    gc.disable()
    try:
        before = sys.getrefcount(body)
        assert load_json(body)["a"][0].startswith("QUJD")
        assert sys.getrefcount(body) == before
    finally:
        gc.enable()
