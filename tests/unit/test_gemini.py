"""providers.gemini: requests per the YEScale seed and Google's docs, thought signatures, refusals."""
from __future__ import annotations

import base64
import json
import os

import pytest

from fakes.images import jpeg, png, webp
from providers import gemini
from providers.base import ProviderConfig
from providers.errors import MalformedResponse, NoImageError, RateLimitError, RefusedError, ServerError
from providers.images import to_image
from providers.models import GenerationRequest, Turn

YESCALE = ProviderConfig(name="yescale", format="gemini", base_url="https://api.yescale.test/v1beta",
                         api_key="ys-key", model="gemini-2.5-flash-image-preview", preset="yescale",
                         auth="x-goog-api-key")
GOOGLE_STREAM = ProviderConfig(name="google", format="gemini",
                               base_url="https://generativelanguage.googleapis.com/v1beta", api_key="AIza-key",
                               model="gemini-3-pro-image-preview", preset="google", auth="x-goog-api-key",
                               stream=True)
BEARER = ProviderConfig(name="zen", format="gemini", base_url="https://gw.test/v1beta", api_key="zk",
                        model="models/gemini-2.5-flash-image")

PNG, JPG, WEBP = png((64, 48)), jpeg((32, 16)), webp((20, 10))
PNG_B64, JPG_B64 = base64.b64encode(PNG).decode(), base64.b64encode(JPG).decode()


def raw(obj) -> bytes:
    return json.dumps(obj).encode()


# --- requests --------------------------------------------------------------------------------

def test_yescale_text_to_image_request():
    req = gemini.build_request(YESCALE, GenerationRequest(
        "Create a picture of a nano banana dish in a fancy restaurant with a Gemini theme"))
    assert (req.method, req.stream) == ("POST", False)
    assert req.url == "https://api.yescale.test/v1beta/models/gemini-2.5-flash-image-preview:generateContent"
    assert req.headers["x-goog-api-key"] == "ys-key" and "Authorization" not in req.headers
    assert req.json == {
        "contents": [{"role": "user", "parts": [
            {"text": "Create a picture of a nano banana dish in a fancy restaurant with a Gemini theme"}]}],
        "generationConfig": {"responseModalities": ["TEXT", "IMAGE"]},
    }


def test_google_stream_image_to_image_request():
    req = gemini.build_request(GOOGLE_STREAM, GenerationRequest(
        "Put the banana on the plate", images=(to_image(PNG), to_image(JPG)), aspect_ratio="16:9",
        resolution="2K", count=2))
    assert req.url == ("https://generativelanguage.googleapis.com/v1beta/models/"
                       "gemini-3-pro-image-preview:streamGenerateContent?alt=sse")
    assert req.stream is True and req.headers["x-goog-api-key"] == "AIza-key"
    assert req.json["contents"] == [{"role": "user", "parts": [
        {"text": "Put the banana on the plate"},
        {"inlineData": {"mimeType": "image/png", "data": PNG_B64}},
        {"inlineData": {"mimeType": "image/jpeg", "data": JPG_B64}}]}]
    assert req.json["generationConfig"] == {"responseModalities": ["TEXT", "IMAGE"],
                                            "imageConfig": {"aspectRatio": "16:9", "imageSize": "2K"},
                                            "thinkingConfig": {"includeThoughts": True}}  # previews
    assert "candidateCount" not in json.dumps(req.json)


def test_bearer_auth_and_model_prefix():
    req = gemini.build_request(BEARER, GenerationRequest("x", resolution="1K"))
    assert req.headers["Authorization"] == "Bearer zk" and "x-goog-api-key" not in req.headers
    assert req.url == "https://gw.test/v1beta/models/gemini-2.5-flash-image:generateContent"
    assert req.json["generationConfig"]["imageConfig"] == {"imageSize": "1K"}


# --- the YEScale seed response ---------------------------------------------------------------

SEED = {
    "candidates": [{"content": {"parts": [
        {"text": "Here is your nano banana dish in a fancy restaurant with a Gemini theme: "},
        {"inlineData": {"mimeType": "image/png", "data": PNG_B64}}], "role": "model"}, "finishReason": "STOP"}],
    "usageMetadata": {"promptTokenCount": 17, "candidatesTokenCount": 1306, "totalTokenCount": 1323,
                      "promptTokensDetails": [{"modality": "TEXT", "tokenCount": 17}],
                      "candidatesTokensDetails": [{"modality": "IMAGE", "tokenCount": 1290}]},
    "modelVersion": "gemini-2.5-flash-image-preview", "responseId": "deO6aLeTE4fYvdIPuIm_kQQ",
}


def test_seed_response():
    answer = gemini.parse_response(YESCALE, raw(SEED))
    [img] = answer.images
    assert (img.data, img.mime_type, img.width, img.height) == (PNG, "image/png", 64, 48)
    assert answer.text == "Here is your nano banana dish in a fancy restaurant with a Gemini theme:"
    assert answer.finish_reason == "STOP" and answer.model == "gemini-2.5-flash-image-preview"
    assert answer.usage["input_tokens"] == 17 and answer.usage["total_tokens"] == 1323
    assert answer.provider_state == {"gemini_parts": [
        {"text": "Here is your nano banana dish in a fancy restaurant with a Gemini theme: "}, {"image_index": 0}]}


# --- thinking model: thought parts, signatures, two turns ------------------------------------

PRO = {
    "candidates": [{"content": {"role": "model", "parts": [
        {"text": "Planning the composition...", "thought": True},
        {"inlineData": {"mimeType": "image/png", "data": JPG_B64}, "thought": True},
        {"text": "Here is the infographic.", "thoughtSignature": "c2lnLUE="},
        {"inlineData": {"mimeType": "image/png", "data": PNG_B64}, "thoughtSignature": "c2lnLUI="}]},
        "finishReason": "STOP", "index": 0}],
    "usageMetadata": {"promptTokenCount": 14, "candidatesTokenCount": 1222, "thoughtsTokenCount": 261,
                      "totalTokenCount": 1497},
    "modelVersion": "gemini-3-pro-image-preview",
}


def test_thought_parts_are_skipped_and_signatures_kept():
    answer = gemini.parse_response(GOOGLE_STREAM, raw(PRO))
    assert [i.data for i in answer.images] == [PNG]  # the thought image (JPEG bytes) is not the answer
    assert answer.text == "Here is the infographic."
    assert answer.provider_state == {"gemini_parts": [
        {"text": "Here is the infographic.", "thoughtSignature": "c2lnLUE="},
        {"image_index": 0, "thoughtSignature": "c2lnLUI="}]}


def test_second_turn_resends_the_model_turn_verbatim():
    answer = gemini.parse_response(GOOGLE_STREAM, raw(PRO))
    state = json.loads(json.dumps(answer.provider_state))  # as stored in SQLite
    history = (Turn("user", "Create a vibrant infographic"),
               Turn("model", answer.text, images=tuple(answer.images), provider_state=state))
    req = gemini.build_request(GOOGLE_STREAM, GenerationRequest("Update it to be in Spanish", history=history))
    contents = req.json["contents"]
    assert [c["role"] for c in contents] == ["user", "model", "user"]
    assert contents[0]["parts"] == [{"text": "Create a vibrant infographic"}]
    non_thought = [p for p in PRO["candidates"][0]["content"]["parts"] if not p.get("thought")]
    assert contents[1]["parts"] == non_thought  # every thoughtSignature in place, image bytes re-inserted
    assert contents[2]["parts"] == [{"text": "Update it to be in Spanish"}]


def test_model_turn_without_state_becomes_text_and_image():
    history = (Turn("user", "a cat"), Turn("model", "Meow.", images=(to_image(JPG),)))
    contents = gemini.build_request(YESCALE, GenerationRequest("bigger", history=history)).json["contents"]
    assert contents[1] == {"role": "model", "parts": [
        {"text": "Meow."}, {"inlineData": {"mimeType": "image/jpeg", "data": JPG_B64}}]}


def test_state_uses_sniffed_mime_and_tolerates_dropped_images():
    state = {"gemini_parts": [{"text": "x", "thoughtSignature": "s1"},
                              {"image_index": 0, "thoughtSignature": "s2"},
                              {"image_index": 5, "thoughtSignature": "s3"}]}
    turn = Turn("model", "x", images=(to_image(WEBP),), provider_state=state)
    assert gemini.model_parts(turn) == [
        {"text": "x", "thoughtSignature": "s1"},
        {"inlineData": {"mimeType": "image/webp", "data": base64.b64encode(WEBP).decode()}, "thoughtSignature": "s2"}]


def test_consecutive_user_turns_are_merged():
    history = (Turn("user", "first try"),)  # its answer failed and was not stored
    contents = gemini.build_request(YESCALE, GenerationRequest("again", history=history)).json["contents"]
    assert contents == [{"role": "user", "parts": [{"text": "first try"}, {"text": "again"}]}]


# --- streaming -------------------------------------------------------------------------------

def chunk(parts, **extra):
    return raw({"candidates": [{"content": {"role": "model", "parts": parts}, **extra}]})


def test_stream_with_late_signature_only_part():
    evs = [
        chunk([{"text": "thinking...", "thought": True}]),
        chunk([{"text": "Here "}]),
        chunk([{"text": "it is."}]),
        chunk([{"inlineData": {"mimeType": "image/png", "data": PNG_B64}, "thoughtSignature": "SIG_IMG"}]),
        chunk([{"text": "", "thoughtSignature": "SIG_TEXT"}], finishReason="STOP"),
        raw({"usageMetadata": {"promptTokenCount": 9, "candidatesTokenCount": 1290}, "modelVersion": "m-3"}),
    ]
    answer = gemini.parse_stream(GOOGLE_STREAM, evs)
    assert [i.data for i in answer.images] == [PNG] and answer.text == "Here it is."
    assert answer.finish_reason == "STOP" and answer.model == "m-3" and answer.usage["output_tokens"] == 1290
    assert answer.provider_state == {"gemini_parts": [
        {"text": "Here it is.", "thoughtSignature": "SIG_TEXT"},
        {"image_index": 0, "thoughtSignature": "SIG_IMG"}]}


def test_stream_signature_with_nothing_to_attach_to_is_kept():
    evs = [chunk([{"inlineData": {"mimeType": "image/png", "data": PNG_B64}, "thoughtSignature": "A"}]),
           chunk([{"thoughtSignature": "B"}], finishReason="STOP")]
    state = gemini.parse_stream(GOOGLE_STREAM, evs).provider_state
    assert state == {"gemini_parts": [{"image_index": 0, "thoughtSignature": "A"},
                                      {"text": "", "thoughtSignature": "B"}]}


def test_stream_image_safety_after_thoughts():
    evs = [chunk([{"inlineData": {"mimeType": "image/png", "data": PNG_B64}, "thought": True}]),
           raw({"candidates": [{"content": {"role": "model"}, "finishReason": "IMAGE_SAFETY",
                                "finishMessage": "Unable to show the generated image."}]})]
    with pytest.raises(RefusedError) as exc:
        gemini.parse_stream(GOOGLE_STREAM, evs)
    assert exc.value.reason == "IMAGE_SAFETY" and exc.value.model_text == "Unable to show the generated image."


def test_stream_error_event():
    evs = [chunk([{"text": "a"}]), raw({"error": {"code": 503, "message": "The model is overloaded.",
                                                  "status": "UNAVAILABLE"}})]
    with pytest.raises(ServerError):
        gemini.parse_stream(GOOGLE_STREAM, evs)


def test_json_array_of_responses():
    body = b"[" + chunk([{"text": "Hi "}]) + b"," + chunk([{"text": "there"}]) + b"," + chunk(
        [{"inlineData": {"mimeType": "image/png", "data": PNG_B64}}], finishReason="STOP") + b"]"
    answer = gemini.parse_response(YESCALE, body)
    assert len(answer.images) == 1 and answer.text == "Hi there"
    assert answer.provider_state["gemini_parts"][0] == {"text": "Hi there"}


# --- shapes and quirks -----------------------------------------------------------------------

def test_snake_case_interleaved_several_images_and_wrapped_base64():
    body = {"candidates": [{"content": {"parts": [
        {"text": "One:"}, {"inline_data": {"mime_type": "image/png", "data": base64.encodebytes(JPG).decode()}},
        {"text": "Two:"}, {"inline_data": {"mime_type": "image/png", "data": base64.b64encode(WEBP).decode()}}]},
        "finish_reason": "STOP"}], "usage_metadata": {"prompt_token_count": 4}, "model_version": "v"}
    answer = gemini.parse_response(YESCALE, raw(body))
    assert [(i.mime_type, i.data) for i in answer.images] == [("image/jpeg", JPG), ("image/webp", WEBP)]
    assert answer.text == "One:\nTwo:" and answer.usage["input_tokens"] == 4 and answer.model == "v"
    assert [p.get("image_index") for p in answer.provider_state["gemini_parts"]] == [None, 0, None, 1]


def test_eight_megabyte_image():
    big = png((8, 8)) + os.urandom(8 * 1024 * 1024)
    body = {"candidates": [{"content": {"parts": [{"inlineData": {"mimeType": "image/png",
                                                                  "data": base64.b64encode(big).decode()}}]}}]}
    assert gemini.parse_response(YESCALE, raw(body)).images[0].data == big


@pytest.mark.parametrize("content, reason, cls", [
    ({}, "IMAGE_OTHER", NoImageError),
    ({"role": "model"}, "IMAGE_PROHIBITED_CONTENT", RefusedError),
    ({"parts": None}, "IMAGE_SAFETY", RefusedError),
    ({"parts": None}, "NO_IMAGE", NoImageError),
    ({"parts": []}, "PROHIBITED_CONTENT", RefusedError),
    (None, "SAFETY", RefusedError),
    ({}, "RECITATION", RefusedError),
    ({}, "IMAGE_RECITATION", RefusedError),
    ({}, "BLOCKLIST", RefusedError),
    ({}, "SPII", RefusedError),
    ({}, "MAX_TOKENS", NoImageError),
])
def test_finish_reasons_without_image(content, reason, cls):
    cand = {"finishReason": reason, "finishMessage": "Unable to show the generated image. You will not be charged."}
    if content is not None:
        cand["content"] = content
    with pytest.raises(cls) as exc:
        gemini.parse_response(YESCALE, raw({"candidates": [cand]}))
    assert type(exc.value) is cls and exc.value.reason == reason
    assert exc.value.model_text.startswith("Unable to show")


def test_refusal_text_falls_back_to_model_text():
    body = chunk([{"text": "I can't make that."}], finishReason="IMAGE_SAFETY")
    with pytest.raises(RefusedError) as exc:
        gemini.parse_response(YESCALE, body)
    assert exc.value.model_text == "I can't make that."


def test_prompt_blocked_without_candidates():
    with pytest.raises(RefusedError) as exc:
        gemini.parse_response(YESCALE, raw({"promptFeedback": {"blockReason": "PROHIBITED_CONTENT"},
                                            "usageMetadata": {"promptTokenCount": 8}}))
    assert exc.value.reason == "PROHIBITED_CONTENT" and exc.value.provider == "yescale"


def test_text_only_stop_is_an_empty_answer():
    answer = gemini.parse_response(YESCALE, chunk([{"text": "Sorry, no."}], finishReason="STOP"))
    assert answer.images == [] and answer.text == "Sorry, no."


def test_errors_in_200_bodies():
    err = {"error": {"code": 429, "message": "Please retry in 7s.", "status": "RESOURCE_EXHAUSTED"}}
    with pytest.raises(RateLimitError) as exc:
        gemini.parse_response(YESCALE, raw([err]))
    assert exc.value.retry_after == 7.0


@pytest.mark.parametrize("body", [b"<html>502</html>", b"", b'"x"', b'{"candidates": [{"content": {"parts": "x"}}]}',
                                  raw({"candidates": [{"content": {"parts": [{"inlineData": {"data": "QUJD"}}]}}]})])
def test_malformed(body):
    with pytest.raises(MalformedResponse):
        gemini.parse_response(YESCALE, body)


def test_file_data_parts():
    body = chunk([{"fileData": {"mimeType": "image/png", "fileUri": "https://files.test/a.png"}},
                  {"fileData": {"mimeType": "image/png", "fileUri": "gs://bucket/b.png"}}], finishReason="STOP")
    answer = gemini.parse_response(YESCALE, body)
    assert answer.image_urls == ["https://files.test/a.png"]
    assert len(answer.provider_state["gemini_parts"]) == 2  # resent verbatim next turn


def test_empty_history_turns_are_skipped():
    history = (Turn("user", ""), Turn("model", ""), Turn("user", "draw"), Turn("model", "ok", images=(to_image(PNG),)))
    contents = gemini.build_request(YESCALE, GenerationRequest("again", history=history)).json["contents"]
    assert [c["role"] for c in contents] == ["user", "model", "user"]
    assert contents[0]["parts"] == [{"text": "draw"}]
