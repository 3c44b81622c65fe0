"""Compatibility with the real LiteLLM proxy (litellm[proxy] 1.108.7) in front of a Gemini gateway.

    python -m providers (litellm preset, or openai_images) -> LiteLLM proxy on 127.0.0.1 -> fake Gemini

One proxy serves the module (tests/fakes/litellm_proxy.py; its config is the README's). Each test
scripts the fake Gemini gateway, drives the provider CLI as an operator would, and checks both ends:
what the CLI wrote and said, and what reached Gemini through LiteLLM. Without a `litellm` command
the module is skipped, except under CI (CI=true, as .ci/run sets), where that fails the run.
"""
from __future__ import annotations

import asyncio
import base64
import json
import os
import sys
from pathlib import Path

import aiohttp
import pytest
import pytest_asyncio

from fakes.bot_helpers import result_of, start_in_thread
from fakes.cli_runner import run_cli
from fakes.driver import Driver
from fakes.fake_gateway import FakeGateway, Reply, make_png
from fakes.litellm_proxy import MASTER_KEY, UPSTREAM_KEY, LiteLLMProxy, ProxyUnavailable
from providers import gemini
from providers.client import ProviderClient
from providers.errors import BadRequestError
from providers.images import to_image
from providers.models import GenerationRequest, Turn
from providers.presets import load_provider_configs

pytestmark = pytest.mark.asyncio(loop_scope="module")

PRO, FLASH = "gemini-3-pro-image-preview", "gemini-2.5-flash-image"
IMAGE = make_png((48, 32), color=(250, 200, 0))
USAGE = {"promptTokenCount": 9, "candidatesTokenCount": 0, "totalTokenCount": 9}


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def stack(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("litellm")
    async with FakeGateway(image=IMAGE) as gw:
        proxy = LiteLLMProxy(gw.url + "/v1beta", log_dir=tmp)
        try:
            await proxy.start()
        except ProxyUnavailable as exc:
            if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
                pytest.fail(f"CI needs the LiteLLM proxy: {exc}")
            pytest.skip(str(exc))
        try:
            yield gw, proxy
        finally:
            await proxy.close()


@pytest.fixture(autouse=True)
def fresh(stack):
    gw, _ = stack
    gw.reset()
    gw.image, gw.thoughts, gw.thought_images, gw.stream_delay = IMAGE, False, 1, 0.0


def chat_env(proxy: LiteLLMProxy, model: str = FLASH, **extra) -> dict[str, str]:
    return {"PROVIDERS": "lite", **proxy.provider_env("lite", MODEL=model, **extra)}


def images_env(proxy: LiteLLMProxy, model: str = PRO) -> dict[str, str]:
    return {"PROVIDERS": "img", "PROVIDER_IMG_FORMAT": "openai_images", "PROVIDER_IMG_BASE_URL": proxy.url + "/v1",
            "PROVIDER_IMG_API_KEY": MASTER_KEY, "PROVIDER_IMG_MODEL": model}


def upstream(gw: FakeGateway, prompt: str) -> list:
    """The Gemini requests LiteLLM made for a prompt (it is in the last user turn)."""
    return [r for r in gw.requests if prompt in json.dumps((r.json or {}).get("contents", [])[-1:])]


def inline_images(request) -> list[bytes]:
    parts = request.json["contents"][-1]["parts"]
    return [base64.b64decode((p.get("inlineData") or p.get("inline_data"))["data"]) for p in parts
            if p.get("inlineData") or p.get("inline_data")]


def written(out: str) -> list[bytes]:
    return [Path(i["path"]).read_bytes() for i in json.loads(out)["images"]]


async def test_text_to_image_edits_ratio_and_size(stack, tmp_path):
    gw, proxy = stack
    one, two = tmp_path / "one.png", tmp_path / "two.jpg"
    one.write_bytes(make_png((20, 10), color=(1, 2, 3)))
    two.write_bytes(make_png((10, 20), color=(4, 5, 6)))
    env = chat_env(proxy)
    runs = await asyncio.gather(
        run_cli("generate", "plain banana", "--out", str(tmp_path / "a"), env=env, cwd=tmp_path),
        run_cli("generate", "edit one", "--image", str(one), "--out", str(tmp_path / "b"), env=env, cwd=tmp_path),
        run_cli("generate", "fuse two", "--image", str(one), "--image", str(two), "--out", str(tmp_path / "c"),
                env=env, cwd=tmp_path),
        run_cli("generate", "wide banana", "--aspect-ratio", "16:9", "--resolution", "2K",
                "--out", str(tmp_path / "d"), env=env, cwd=tmp_path))
    for rc, out, err in runs:
        assert rc == 0 and err == "", err
        assert written(out) == [IMAGE] and MASTER_KEY not in out  # byte-identical through the proxy
    (plain,) = upstream(gw, "plain banana")
    assert plain.path == f"/v1beta/models/{FLASH}:generateContent"
    assert plain.header("x-goog-api-key") == UPSTREAM_KEY and "num_retries" not in plain.body.decode()
    assert inline_images(upstream(gw, "edit one")[0]) == [one.read_bytes()]
    assert inline_images(upstream(gw, "fuse two")[0]) == [one.read_bytes(), two.read_bytes()]
    (wide,) = upstream(gw, "wide banana")
    assert wide.json["generationConfig"]["image_config"] == {"aspect_ratio": "16:9", "image_size": "2K"}


async def test_count_and_streaming(stack, tmp_path):
    gw, proxy = stack
    (rc1, out1, err1), (rc2, out2, err2) = await asyncio.gather(
        run_cli("generate", "two bananas", "--count", "2", "--out", str(tmp_path / "n"),
                env=chat_env(proxy), cwd=tmp_path),
        run_cli("generate", "streamed banana", "--stream", "--out", str(tmp_path / "s"),
                env=chat_env(proxy), cwd=tmp_path))
    assert (rc1, err1, rc2, err2) == (0, "", 0, "")
    assert written(out1) == [IMAGE, IMAGE] and len(upstream(gw, "two bananas")) == 2
    assert written(out2) == [IMAGE] and json.loads(out2)["text"] == gw.text
    (streamed,) = upstream(gw, "streamed banana")
    assert streamed.path.endswith(f"{FLASH}:streamGenerateContent") and streamed.query == {"alt": "sse"}


async def test_thinking_model_drafts_are_previews_never_results(stack, tmp_path):
    gw, proxy = stack
    gw.thought_images, gw.stream_delay = 2, 0.05
    rc, out, err = await run_cli("generate", "pro banana", "--out", str(tmp_path / "out"),
                                 "--previews", str(tmp_path / "previews"), "-v", env=chat_env(proxy, PRO),
                                 cwd=tmp_path)
    assert rc == 0, err
    data = json.loads(out)
    assert written(out) == [IMAGE] and data["text"] == gw.text  # the drafts are not results
    assert [Path(p).read_bytes() for p in data["previews"]] == [gw.draft_image(0), gw.draft_image(1)]
    assert err.index("preview 1: ") < err.index("preview 2: ") < err.index("-> HTTP 200")  # as they came
    (req,) = upstream(gw, "pro banana")  # previews on: LiteLLM asked Gemini for the thoughts
    assert req.path.endswith(f"{PRO}:streamGenerateContent")
    assert req.json["generationConfig"]["thinkingConfig"]["includeThoughts"] is True
    # without streaming, LiteLLM's answer lists drafts and final alike in message.images
    gw.thoughts, gw.stream_delay = True, 0.0
    rc, out, err = await run_cli("generate", "quiet pro banana", "--out", str(tmp_path / "quiet"),
                                 env=chat_env(proxy, PRO, PREVIEWS="off"), cwd=tmp_path)
    assert rc == 0 and written(out) == [IMAGE], err
    assert upstream(gw, "quiet pro banana")[0].path.endswith(":generateContent")


async def test_refusals_with_their_reasons(stack, tmp_path):
    gw, proxy = stack
    gw.enqueue(Reply(body={"candidates": [{"content": {}, "finishReason": "NO_IMAGE", "index": 0,
                                           "finishMessage": "Unable to show the generated image."}],
                           "usageMetadata": USAGE}))
    rc, out, err = await run_cli("generate", "no image", env=chat_env(proxy), cwd=tmp_path)
    assert (rc, out) == (3, "") and "answered without an image (NO_IMAGE)" in err
    gw.enqueue(Reply(body={"candidates": [{"content": {"role": "model"}, "finishReason": "IMAGE_SAFETY",
                                           "index": 0}], "usageMetadata": USAGE}),
               Reply(body={"promptFeedback": {"blockReason": "PROHIBITED_CONTENT"}, "usageMetadata": USAGE}))
    for prompt in ("unsafe image", "blocked prompt"):
        rc, out, err = await run_cli("generate", prompt, env=chat_env(proxy), cwd=tmp_path)
        assert (rc, out) == (3, "") and "declined to make this image (content_filter)" in err
    assert len(gw.requests) == 3  # refusals are final: no retry anywhere


async def test_429_and_503_are_retried_once_by_the_client_honouring_the_wait(stack, tmp_path):
    gw, proxy = stack
    busy = Reply(status=429, body={"error": {"code": 429, "status": "RESOURCE_EXHAUSTED",
                                             "message": "You exceeded your current quota. Please retry in 1s."}})
    down = Reply(status=503, body={"error": {"code": 503, "status": "UNAVAILABLE",
                                             "message": "The model is overloaded. Please try again later."}})
    gw.enqueue(busy, busy)
    rc, out, err = await run_cli("generate", "busy banana", "-v", "--out", str(tmp_path), env=chat_env(proxy),
                                 cwd=tmp_path)
    assert rc == 0 and written(out) == [IMAGE], err
    assert len(gw.requests) == 3  # each 429 one upstream call (LiteLLM's own retries are off)
    assert err.count("waiting as the gateway asked: 1.00s") == 2, err  # the wait from the message
    gw.reset()
    gw.enqueue(down, down)
    rc, out, err = await run_cli("generate", "down banana", "--out", str(tmp_path), env=chat_env(proxy), cwd=tmp_path)
    assert rc == 0 and written(out) == [IMAGE] and len(gw.requests) == 3, err
    gw.reset()
    gw.enqueue(busy, busy, busy, busy)  # rate-limit waits are bounded by the provider's timeout, not retries
    rc, out, err = await run_cli("generate", "still busy", env=chat_env(proxy, MAX_RETRIES=0, TIMEOUT=2.5),
                                 cwd=tmp_path)
    assert rc == 4 and "busy" in err.lower() and len(gw.requests) == 3, err


async def test_gemini3_history_through_litellm_is_signed(stack):
    gw, proxy = stack
    history = (Turn("user", "a cat"), Turn("model", "Meow.", images=(to_image(IMAGE),)))  # rebuilt: unsigned
    request = GenerationRequest("make it bigger", history=history)
    async with aiohttp.ClientSession() as session:
        (config,) = load_provider_configs(chat_env(proxy, PRO, PREVIEWS="off"))
        result = await ProviderClient(config, session).generate(request)
        assert [i.data for i in result.images] == [IMAGE]
        (req,) = upstream(gw, "make it bigger")
        model_turn = next(c for c in req.json["contents"] if c["role"] == "model")
        assert model_turn["parts"][0]["thoughtSignature"] == gemini.SKIP_SIGNATURE
        # the same history without the placeholder: Gemini 3 (the fake, like Google) refuses it
        (plain,) = load_provider_configs(chat_env(proxy, PRO, PREVIEWS="off", CHAT_DIALECT="plain"))
        with pytest.raises(BadRequestError):
            await ProviderClient(plain, session).generate(request)


async def test_openai_images_through_litellm(stack, tmp_path):
    gw, proxy = stack
    source = tmp_path / "in.png"
    source.write_bytes(make_png((16, 16), color=(7, 7, 7)))
    env = images_env(proxy)
    gw.thoughts = True  # a thinking model: LiteLLM returns the draft among the images
    runs = await asyncio.gather(
        run_cli("generate", "wide one", "--aspect-ratio", "16:9", "--resolution", "2K", "--out",
                str(tmp_path / "a"), env=env, cwd=tmp_path),
        run_cli("generate", "edit it", "--image", str(source), "--out", str(tmp_path / "b"), env=env, cwd=tmp_path),
        run_cli("generate", "two please", "--count", "2", "--out", str(tmp_path / "c"), env=env, cwd=tmp_path))
    (rc1, out1, err1), (rc2, out2, err2), (rc3, out3, err3) = runs
    assert (rc1, err1, rc2, err2) == (0, "", 0, "")
    assert written(out1) == [IMAGE] and written(out2) == [IMAGE]  # the final image only
    (wide,) = upstream(gw, "wide one")
    assert wide.json["generationConfig"]["imageConfig"] == {"aspectRatio": "16:9", "imageSize": "2K"}
    assert inline_images(upstream(gw, "edit it")[0]) == [source.read_bytes()]  # the input arrived
    # Gemini makes one image per call whatever n says: fewer than asked is said, not hidden
    assert rc3 == 0 and err3 == "warning: asked for 2 images, got 1\n"
    assert written(out3) == [IMAGE] and json.loads(out3)["warnings"] == ["asked for 2 images, got 1"]


async def test_the_bot_through_litellm_posts_only_final_images_and_continues_a_gemini3_thread(stack, tmp_path):
    gw, proxy = stack
    gw.thought_images, gw.stream_delay = 2, 0.05
    async with Driver(log_dir=tmp_path) as d:
        await d.start_bot([sys.executable, "bot.py"], env={
            "DATA_DIR": str(tmp_path / "data"), "DISCORD_ATTACHMENT_HOSTS": d.cdn_host,
            "STATUS_INTERVAL_SECONDS": "0.3", **chat_env(proxy, PRO)})
        first, thread = await start_in_thread(d, "a bot banana")
        assert [a.data for a in first.attachments] == [IMAGE]  # never a draft
        mark = d.mark()
        await d.say(thread, "now make it green")
        second = await d.wait_for_message(thread, result_of, after=mark, timeout=30)
        assert [a.data for a in second.attachments] == [IMAGE]
        drafts = {gw.draft_image(0), gw.draft_image(1)}
        posted = [a.data for m in d.messages(thread) + d.messages("general") for a in m.attachments]
        assert not drafts & set(posted)
        (turn2,) = upstream(gw, "now make it green")  # the first answer went back signed, draft-free
        model_turns = [c for c in turn2.json["contents"] if c["role"] == "model"]
        assert model_turns and all(p.get("thoughtSignature") for c in model_turns for p in c["parts"][:1])
        assert gw.draft_image(0) not in [base64.b64decode(p["inline_data"]["data"])
                                         for c in turn2.json["contents"] for p in c["parts"] if "inline_data" in p]
