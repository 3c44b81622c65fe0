"""Every preset end to end through ProviderRouter against the fake gateway.

Requests are checked field by field against the seed documents (../shared/seeds/) and the
official APIs the presets imitate; answers are checked as decoded images.
"""
from __future__ import annotations

import base64
import io

import pytest
from PIL import Image

from fakes.secret_registry import register_secret
from fakes.fake_gateway import SIGNATURE_IMAGE, SIGNATURE_TEXT, FakeGateway
from fakes.images import jpeg, png
from providers.client import ProviderRouter
from providers.presets import load_provider_configs
from providers.images import to_image
from providers.models import GenerationRequest, GenerationResult, Turn

KEY = register_secret("sk-preset-test-key-0042", "test_presets.KEY")
PROMPT = "a red apple"
INPUT = to_image(png((40, 30), color=(1, 2, 3)))
INPUT_B64 = base64.b64encode(INPUT.data).decode()
INPUT_URI = f"data:image/png;base64,{INPUT_B64}"
PRESETS = ("mulerun", "mixroute", "yescale", "infinityblue", "google", "openrouter")
CHAT_STYLE = {"infinityblue": "markdown", "openrouter": "images"}


def router_for(gw: FakeGateway, session, preset: str, **extra) -> ProviderRouter:
    gw.chat_style = CHAT_STYLE.get(preset, "parts")
    env = {"PROVIDERS": "gw", **gw.provider_env("gw", preset, KEY, **extra)}
    return ProviderRouter(load_provider_configs(env), session)


def assert_image(result: GenerationResult, expected: bytes, mime: str = "image/png", count: int = 1) -> None:
    assert len(result.images) == count
    for img in result.images:
        assert img.mime_type == mime
        with Image.open(io.BytesIO(img.data)) as decoded:
            assert decoded.size == (img.width, img.height)
    assert result.images[0].data == expected


T2I = GenerationRequest(PROMPT, aspect_ratio="16:9", resolution="2K")
EDIT = GenerationRequest(PROMPT, images=(INPUT,))


# --- mulerun (seed 000) -------------------------------------------------------------------

async def test_mulerun_text_to_image(gw, session):
    result = await router_for(gw, session, "mulerun").generate(T2I)
    rec = gw.requests[0]
    assert rec.method == "POST" and rec.path == "/v1/chat/completions"
    assert rec.header("Authorization") == f"Bearer {KEY}" and rec.header("Content-Type") == "application/json"
    assert set(rec.json) == {"model", "stream", "messages"}  # no documented option fields
    assert rec.json["model"] == "gemini-2.5-flash-image-preview" and rec.json["stream"] is False
    (message,) = rec.json["messages"]
    assert message["role"] == "user"
    (part,) = message["content"]
    # No documented option fields: the aspect ratio and resolution ride in the prompt.
    assert part["type"] == "text" and part["text"].startswith(PROMPT)
    assert "16:9" in part["text"] and "2K" in part["text"]
    assert_image(result, gw.image)
    assert result.text == gw.text and result.model == "gemini-2.5-flash-image-preview"
    assert result.usage["total_tokens"] == 1296


async def test_mulerun_edit_sends_a_data_uri_part(gw, session):
    await router_for(gw, session, "mulerun").generate(EDIT)
    content = gw.requests[0].json["messages"][0]["content"]
    assert content == [{"type": "text", "text": PROMPT},
                       {"type": "image_url", "image_url": {"url": INPUT_URI}}]


async def test_mulerun_stream(gw, session):
    result = await router_for(gw, session, "mulerun", STREAM=1).generate(T2I)
    assert gw.requests[0].json["stream"] is True
    assert_image(result, gw.image)
    assert result.usage.get("total_tokens")


# --- mixroute (seed 001) ------------------------------------------------------------------

async def test_mixroute_text_to_image(gw, session):
    result = await router_for(gw, session, "mixroute").generate(T2I)
    rec = gw.requests[0]
    assert rec.path == "/v1/images/generations" and rec.header("Authorization") == f"Bearer {KEY}"
    assert rec.json == {"model": "gemini-2.5-flash-image", "prompt": PROMPT, "size": "16:9",
                        "image_size": "2K", "n": 1, "quality": "high", "response_format": "b64_json"}
    assert_image(result, gw.image)
    assert result.text == ""


async def test_mixroute_edit_sends_contents(gw, session):
    await router_for(gw, session, "mixroute").generate(EDIT)
    body = gw.requests[0].json
    assert body["prompt"] == PROMPT and body["response_format"] == "b64_json"
    assert body["contents"] == [{"role": "user", "parts": [
        {"text": PROMPT}, {"inline_data": {"mime_type": "image/png", "data": INPUT_B64}}]}]


async def test_images_edits_multipart_variant(gw, session):
    result = await router_for(gw, session, "mixroute", IMAGES_INPUT="edits").generate(EDIT)
    rec = gw.requests[0]
    assert rec.path == "/v1/images/edits" and rec.header("Authorization") == f"Bearer {KEY}"
    assert rec.header("Content-Type").startswith("multipart/form-data")
    fields = {f.name: f.value for f in rec.form if f.filename is None}
    assert fields["model"] == "gemini-2.5-flash-image" and fields["prompt"] == PROMPT and fields["n"] == "1"
    (image,) = rec.fields("image")
    assert image.value == INPUT.data and image.content_type == "image/png"
    assert_image(result, gw.image)


# --- yescale (seed 002) and google --------------------------------------------------------

@pytest.mark.parametrize("preset, model", [("yescale", "gemini-2.5-flash-image-preview"),
                                           ("google", "gemini-2.5-flash-image")])
async def test_gemini_text_to_image(gw, session, preset, model):
    result = await router_for(gw, session, preset).generate(T2I)
    rec = gw.requests[0]
    assert rec.path == f"/v1beta/models/{model}:generateContent"
    assert rec.header("x-goog-api-key") == KEY and rec.header("Authorization") is None
    assert rec.json == {"contents": [{"role": "user", "parts": [{"text": PROMPT}]}],
                        "generationConfig": {"responseModalities": ["TEXT", "IMAGE"],
                                             "imageConfig": {"aspectRatio": "16:9", "imageSize": "2K"}}}
    assert_image(result, gw.image)
    assert result.text == gw.text and result.model == model
    assert result.usage["total_tokens"] == 1307


@pytest.mark.parametrize("preset", ["yescale", "google"])
async def test_gemini_edit_sends_inline_data(gw, session, preset):
    await router_for(gw, session, preset).generate(EDIT)
    assert gw.requests[0].json["contents"] == [{"role": "user", "parts": [
        {"text": PROMPT}, {"inlineData": {"mimeType": "image/png", "data": INPUT_B64}}]}]


async def test_google_stream_skips_thoughts_and_keeps_signatures(gw, session):
    gw.thoughts = True
    result = await router_for(gw, session, "google", STREAM=1).generate(T2I)
    rec = gw.requests[0]
    assert rec.path == "/v1beta/models/gemini-2.5-flash-image:streamGenerateContent"
    assert rec.query == {"alt": "sse"}
    assert_image(result, gw.image)  # the final image, not the thought image
    assert result.text == gw.text
    signatures = [p.get("thoughtSignature") for p in result.provider_state["gemini_parts"]]
    assert signatures == [SIGNATURE_TEXT, SIGNATURE_IMAGE]


# --- infinityblue (seed 003) --------------------------------------------------------------

async def test_infinityblue_text_to_image(gw, session):
    gw.image = jpeg((64, 48))  # the seed answers data:image/jpeg inside Markdown
    result = await router_for(gw, session, "infinityblue").generate(T2I)
    rec = gw.requests[0]
    assert rec.path == "/v1/chat/completions" and rec.header("Authorization") == f"Bearer {KEY}"
    assert rec.json == {"model": "nanobanana_pro", "stream": False,
                        "messages": [{"role": "user", "content": PROMPT}],
                        "extra_body": {"google": {"image_config": {"aspect_ratio": "16:9", "image_size": "2K"}}}}
    assert_image(result, gw.image, mime="image/jpeg")
    assert result.text == gw.text  # the Markdown image is taken out of the text


async def test_infinityblue_edit(gw, session):
    await router_for(gw, session, "infinityblue").generate(EDIT)
    (message,) = gw.requests[0].json["messages"]
    assert message["content"] == [{"type": "text", "text": PROMPT},
                                  {"type": "image_url", "image_url": {"url": INPUT_URI}}]
    assert "extra_body" not in gw.requests[0].json  # no options asked for


# --- openrouter ---------------------------------------------------------------------------

async def test_openrouter_text_to_image(gw, session):
    result = await router_for(gw, session, "openrouter").generate(T2I)
    rec = gw.requests[0]
    assert rec.path == "/api/v1/chat/completions" and rec.header("Authorization") == f"Bearer {KEY}"
    assert rec.json == {"model": "google/gemini-2.5-flash-image", "stream": False,
                        "messages": [{"role": "user", "content": [{"type": "text", "text": PROMPT}]}],
                        "modalities": ["image", "text"],
                        "image_config": {"aspect_ratio": "16:9", "image_size": "2K"}}
    assert_image(result, gw.image)
    assert result.text == gw.text


async def test_openrouter_edit(gw, session):
    await router_for(gw, session, "openrouter").generate(EDIT)
    content = gw.requests[0].json["messages"][0]["content"]
    assert content[1] == {"type": "image_url", "image_url": {"url": INPUT_URI}}


# --- every preset: a second turn carries the first turn's image ---------------------------

@pytest.mark.parametrize("preset", PRESETS)
async def test_second_turn_carries_the_first_image(gw, session, preset):
    router = router_for(gw, session, preset)
    gw.image = png((64, 48), color=(200, 0, 0))
    first = await router.generate(GenerationRequest(PROMPT))
    first_b64 = base64.b64encode(first.images[0].data).decode()
    gw.image = png((64, 48), color=(0, 0, 200))
    history = (Turn("user", PROMPT), Turn("model", first.text, tuple(first.images), first.provider_state))
    second = await router.generate(GenerationRequest("make the sky purple", history=history))
    assert_image(second, gw.image)
    body = gw.requests[1].json
    assert first_b64 in gw.requests[1].body.decode()
    if preset in ("google", "yescale"):  # the model turn resent verbatim, signatures included
        assert [c["role"] for c in body["contents"]] == ["user", "model", "user"]
        assert body["contents"][1]["parts"] == [
            {"text": gw.text, "thoughtSignature": SIGNATURE_TEXT},
            {"inlineData": {"mimeType": "image/png", "data": first_b64}, "thoughtSignature": SIGNATURE_IMAGE}]
    elif preset == "mixroute":  # no history: the latest image is the input
        assert body["prompt"] == "make the sky purple"
        assert body["contents"][0]["parts"][1] == {"inline_data": {"mime_type": "image/png", "data": first_b64}}
    else:  # chat: the previous output comes back as a user image part
        last = body["messages"][-1]
        assert last["role"] == "user"
        assert {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{first_b64}"}} in last["content"]
        assert any(p.get("text") == "make the sky purple" or p.get("text", "").startswith("make the sky")
                   for p in last["content"])
