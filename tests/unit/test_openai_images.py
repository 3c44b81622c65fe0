"""providers.openai_images: MixRoute generations (+ contents), OpenAI-style multipart edits, parsing."""
from __future__ import annotations

import base64
import json
import os

import pytest

from fakes.images import jpeg, png, webp
from providers import openai_images
from providers.base import ProviderConfig
from providers.errors import AuthError, MalformedResponse, RefusedError
from providers.images import decode_base64, to_image
from providers.models import GenerationRequest, Turn

MIXROUTE = ProviderConfig(name="mixroute", format="openai_images", base_url="https://console.mixroute.io/v1",
                          api_key="sk-xxxxxxxxxx", model="gemini-2.5-flash-image", preset="mixroute",
                          images_input="contents", images_options="mixroute")
EDITS = ProviderConfig(name="yescale-edits", format="openai_images", base_url="https://api.yescale.test/v1",
                       api_key="sk-yyyy", model="gemini-2.5-flash-image", images_input="edits")

PNG, JPG, WEBP = png((64, 48)), jpeg((32, 16)), webp((20, 10))
PNG_B64 = base64.b64encode(PNG).decode()


def test_mixroute_text_to_image_matches_seed():
    req = openai_images.build_request(MIXROUTE, GenerationRequest(
        "A cute orange kitten sitting in a garden", aspect_ratio="16:9", resolution="2K"))
    assert (req.method, req.url, req.stream) == ("POST", "https://console.mixroute.io/v1/images/generations", False)
    assert req.headers["Authorization"] == "Bearer sk-xxxxxxxxxx"
    assert req.headers["Content-Type"] == "application/json"
    assert req.json == {"model": "gemini-2.5-flash-image", "prompt": "A cute orange kitten sitting in a garden",
                        "size": "16:9", "quality": "high", "n": 1, "response_format": "b64_json",
                        "image_size": "2K"}


def test_mixroute_defaults_omit_size_and_send_n():
    req = openai_images.build_request(MIXROUTE, GenerationRequest("x", count=3))
    assert "size" not in req.json and "image_size" not in req.json and req.json["n"] == 3


def test_mixroute_image_to_image_uses_contents():
    req = openai_images.build_request(MIXROUTE, GenerationRequest(
        "fuse them", images=(to_image(PNG), to_image(JPG)), aspect_ratio="1:1"))
    body = req.json
    assert body["prompt"] == "fuse them" and body["size"] == "1:1"
    assert body["contents"] == [{"role": "user", "parts": [
        {"text": "fuse them"},
        {"inline_data": {"mime_type": "image/png", "data": PNG_B64}},
        {"inline_data": {"mime_type": "image/jpeg", "data": base64.b64encode(JPG).decode()}}]}]


def test_mixroute_second_turn_sends_the_latest_output_image():
    out = to_image(WEBP)
    history = (Turn("user", "a cat", images=(to_image(JPG),)), Turn("model", "", images=(out,)))
    body = openai_images.build_request(MIXROUTE, GenerationRequest("make it purple", history=history)).json
    parts = body["contents"][0]["parts"]
    assert parts[0] == {"text": "make it purple"} and len(parts) == 2
    assert decode_base64(parts[1]["inline_data"]["data"]) == WEBP
    assert parts[1]["inline_data"]["mime_type"] == "image/webp"
    # a new attachment comes after the previous output
    body = openai_images.build_request(MIXROUTE, GenerationRequest(
        "add this hat", images=(to_image(PNG),), history=history)).json
    assert [decode_base64(p["inline_data"]["data"]) for p in body["contents"][0]["parts"][1:]] == [WEBP, PNG]


def test_edits_multipart_single_and_several_images():
    req = openai_images.build_request(EDITS, GenerationRequest(
        "make it night", images=(to_image(PNG),), aspect_ratio="3:2", count=2))
    assert (req.method, req.url, req.json) == ("POST", "https://api.yescale.test/v1/images/edits", None)
    assert req.headers == {"Authorization": "Bearer sk-yyyy"}  # multipart sets its own Content-Type
    assert req.form == [("model", "gemini-2.5-flash-image", None, None), ("prompt", "make it night", None, None),
                        ("n", "2", None, None), ("size", "1264x848", None, None),  # OpenAI's pixel size
                        ("image", PNG, "image1.png", "image/png")]
    req = openai_images.build_request(EDITS, GenerationRequest(
        "fuse", images=(to_image(PNG), to_image(JPG)), resolution="2K"))
    files = [f for f in req.form if f[2]]
    assert ("size", "2048x2048", None, None) in req.form and "image_size" not in [f[0] for f in req.form]
    assert files == [("image[]", PNG, "image1.png", "image/png"), ("image[]", JPG, "image2.jpg", "image/jpeg")]


def test_edits_config_without_images_uses_generations():
    req = openai_images.build_request(EDITS, GenerationRequest("plain"))
    assert req.url.endswith("/images/generations") and req.form is None


# --- parsing ---------------------------------------------------------------------------------

def test_seed_response():
    body = json.dumps({"created": 1709459123, "data": [{"b64_json": PNG_B64}]}).encode()
    answer = openai_images.parse_response(MIXROUTE, body)
    [img] = answer.images
    assert (img.data, img.mime_type, img.width, img.height) == (PNG, "image/png", 64, 48)
    assert answer.usage == {} and answer.image_urls == []


def test_several_items_data_uri_urls_and_usage():
    body = json.dumps({"created": 1762156444807, "data": [
        {"b64_json": f"data:image/jpeg;base64,{base64.b64encode(JPG).decode()}"},
        {"b64_json": base64.encodebytes(WEBP).decode(), "revised_prompt": "x"},
        {"url": "https://cdn.test/1.png"}],
        "usage": {"input_tokens": 10, "output_tokens": 1290, "total_tokens": 1300,
                  "input_tokens_details": {"image_tokens": 0, "text_tokens": 10}}}).encode()
    answer = openai_images.parse_response(MIXROUTE, body)
    assert [(i.mime_type, i.data) for i in answer.images] == [("image/jpeg", JPG), ("image/webp", WEBP)]
    assert answer.image_urls == ["https://cdn.test/1.png"]
    assert answer.usage["total_tokens"] == 1300


def test_empty_data_is_an_empty_answer():
    answer = openai_images.parse_response(MIXROUTE, b'{"created": 1, "data": []}')
    assert answer.images == [] and answer.image_urls == []


def test_large_image():
    big = png((8, 8)) + os.urandom(8 * 1024 * 1024)
    body = json.dumps({"data": [{"b64_json": base64.b64encode(big).decode()}]}).encode()
    assert openai_images.parse_response(MIXROUTE, body).images[0].data == big


def test_errors_and_malformed():
    with pytest.raises(AuthError):
        openai_images.parse_response(MIXROUTE, b'{"error": {"message": "Invalid signature", "type": "401"}}')
    with pytest.raises(RefusedError):
        openai_images.parse_response(MIXROUTE, json.dumps({"error": {
            "message": "Your request was rejected as a result of our safety system.",
            "code": "content_policy_violation"}}).encode())
    for body in (b"<html>oops</html>", b'{"data": [{"b64_json": "not an image"}]}', b'{"data": "x"}'):
        with pytest.raises(MalformedResponse):
            openai_images.parse_response(MIXROUTE, body)


def test_other_wire_formats_behind_the_images_endpoint():
    gem = {"candidates": [{"content": {"parts": [{"inlineData": {"mimeType": "image/png", "data": PNG_B64}}]},
                           "finishReason": "STOP"}]}
    assert openai_images.parse_response(MIXROUTE, json.dumps(gem).encode()).images[0].data == PNG
    chat = {"choices": [{"message": {"content": f"![image](data:image/png;base64,{PNG_B64})"}}]}
    assert openai_images.parse_response(MIXROUTE, json.dumps(chat).encode()).images[0].data == PNG


def test_stream_events():
    evs = [json.dumps(e).encode() for e in (
        {"type": "image_generation.partial_image", "b64_json": base64.b64encode(JPG).decode()},
        {"type": "image_generation.completed", "b64_json": PNG_B64, "usage": {"total_tokens": 5}})]
    answer = openai_images.parse_stream(MIXROUTE, evs)
    assert [i.data for i in answer.images] == [PNG] and answer.usage["total_tokens"] == 5
