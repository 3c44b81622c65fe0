"""Live previews and draft ("thought") images: never results, reported as progress; Gemini 3 signatures;
native finish reasons; OpenAI images defaults; the fewer-images warning. Against the fake gateway."""
from __future__ import annotations

import base64
import json

import pytest

from fakes.cli_runner import run_cli
from fakes.fake_gateway import SIGNATURE_IMAGE, SIGNATURE_TEXT, Reply, make_png
from fakes.secret_registry import register_secret
from providers import gemini, openai_chat, openai_images
from providers.base import ProviderConfig
from providers.client import ProviderClient
from providers.errors import NoImageError, RefusedError
from providers.images import to_image
from providers.models import GenerationRequest, Progress, Turn
from providers.presets import load_provider_configs

KEY = register_secret("sk-previews-Distinctive-4471", "test_previews.KEY")
PRO = "gemini-3-pro-image-preview"
DRAFT, FINAL = make_png((12, 12), color=(0, 90, 0)), make_png((64, 48))


def config(gw, preset: str, **extra: str) -> ProviderConfig:
    env = {"PROVIDERS": "p", **gw.provider_env("p", preset, KEY, **extra)}
    return load_provider_configs(env)[0]


class Seen(list):
    """An on_progress callback recording what it was told."""

    def __call__(self, progress: Progress) -> None:
        self.append(progress)

    @property
    def previews(self) -> list[bytes]:
        return [p.preview.data for p in self if p.preview is not None]


def uri(data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(data).decode()


# --- Gemini: streamGenerateContent with includeThoughts ----------------------------------------------

async def test_gemini_pro_streams_thoughts_as_previews_and_returns_only_the_final_image(gw, session):
    gw.thought_images, gw.stream_delay = 2, 0.02
    seen = Seen()
    result = await ProviderClient(config(gw, "google", MODEL=PRO), session).generate(
        GenerationRequest("a banana"), on_progress=seen)
    (req,) = gw.requests
    assert req.path.endswith(f"{PRO}:streamGenerateContent") and req.query == {"alt": "sse"}
    assert req.json["generationConfig"]["thinkingConfig"] == {"includeThoughts": True}
    assert seen.previews == [gw.draft_image(0), gw.draft_image(1)]  # both drafts, in order
    first = next(p for p in seen if p.preview is not None)
    assert "Planning the composition" in first.text and gw.text not in first.text  # before the answer
    assert gw.text in seen[-1].text  # the answer's words are progress too
    assert [i.data for i in result.images] == [gw.image]  # only the final image is a result
    assert result.provider_state == {"gemini_parts": [{"text": gw.text, "thoughtSignature": SIGNATURE_TEXT},
                                                      {"image_index": 0, "thoughtSignature": SIGNATURE_IMAGE}]}


async def test_previews_off_or_a_model_that_does_not_think_ask_for_no_thoughts(gw, session):
    for cfg in (config(gw, "google", MODEL=PRO, PREVIEWS="false"), config(gw, "google")):
        seen = Seen()
        result = await ProviderClient(cfg, session).generate(GenerationRequest("x"), on_progress=seen)
        assert gw.requests[-1].path.endswith(":generateContent") and seen == []
        assert "thinkingConfig" not in gw.requests[-1].json["generationConfig"]
        assert [i.data for i in result.images] == [gw.image]


async def test_non_streamed_thought_images_are_reported_but_not_results(gw, session):
    gw.thoughts, gw.thought_images = True, 2
    seen = Seen()
    result = await ProviderClient(config(gw, "google", MODEL=PRO, PREVIEWS="0"), session).generate(
        GenerationRequest("x"), on_progress=seen)
    assert seen.previews == [gw.draft_image(0), gw.draft_image(1)]
    assert [i.data for i in result.images] == [gw.image]


async def test_a_failing_progress_callback_does_not_fail_the_generation(gw, session):
    def broken(progress: Progress) -> None:
        raise RuntimeError("status message gone")

    result = await ProviderClient(config(gw, "google", MODEL=PRO), session).generate(
        GenerationRequest("x"), on_progress=broken)
    assert [i.data for i in result.images] == [gw.image]


# --- Gemini 3: unsigned model turns ---------------------------------------------------------------

async def test_gemini3_history_without_signatures_gets_the_placeholder(gw, session):
    history = (Turn("user", "a cat"), Turn("model", "Meow.", images=(to_image(DRAFT),)))  # rebuilt: unsigned
    client = ProviderClient(config(gw, "google", MODEL=PRO, PREVIEWS="off"), session)
    await client.generate(GenerationRequest("bigger", history=history))
    model_turn = gw.requests[-1].json["contents"][1]
    assert [p.get("thoughtSignature") for p in model_turn["parts"]] == [gemini.SKIP_SIGNATURE] * 2
    # a real signature is never replaced
    signed = Turn("model", "Meow.", images=(to_image(DRAFT),), provider_state={"gemini_parts": [
        {"text": "Meow.", "thoughtSignature": "cmVhbA=="}, {"image_index": 0}]})
    await client.generate(GenerationRequest("bigger", history=(history[0], signed)))
    parts = gw.requests[-1].json["contents"][1]["parts"]
    assert [p.get("thoughtSignature") for p in parts] == ["cmVhbA==", gemini.SKIP_SIGNATURE]
    # older models get no placeholder
    await ProviderClient(config(gw, "google"), session).generate(GenerationRequest("bigger", history=history))
    assert all("thoughtSignature" not in p for p in gw.requests[-1].json["contents"][1]["parts"])


async def test_fake_gateway_rejects_an_unsigned_gemini3_model_turn_like_google(gw, session):
    body = {"contents": [{"role": "user", "parts": [{"text": "a"}]},
                         {"role": "model", "parts": [{"text": "b", "thoughtSignature": "cw=="},
                                                     {"inlineData": {"mimeType": "image/png", "data": "AA=="}}]},
                         {"role": "user", "parts": [{"text": "c"}]}]}
    async with session.post(f"{gw.url}/v1beta/models/{PRO}:generateContent", json=body) as resp:
        assert resp.status == 400
        assert (await resp.json())["error"]["status"] == "INVALID_ARGUMENT"
    async with session.post(f"{gw.url}/v1beta/models/gemini-2.5-flash-image:generateContent", json=body) as resp:
        assert resp.status == 200
    # and the client's request without the placeholder would be refused: a real BadRequestError
    unsigned = gemini.build_contents(GenerationRequest("c", history=(Turn("user", "a"), Turn("model", "b"))))
    async with session.post(f"{gw.url}/v1beta/models/{PRO}:generateContent", json={"contents": unsigned}) as resp:
        assert resp.status == 400


# --- OpenAI chat: LiteLLM's shapes ------------------------------------------------------------------

def litellm_stream(final_text: str = "Here is your banana,") -> list[dict]:
    def delta(**d):
        return {"object": "chat.completion.chunk", "model": PRO, "choices": [{"index": 0, "delta": d}]}
    return [delta(reasoning_content="**Planning the layout** ", role="assistant"),
            delta(images=[{"type": "image_url", "image_url": {"url": uri(DRAFT)}, "index": 0}]),
            delta(content=final_text, provider_specific_fields={"thought_signatures": ["c2ln"]}),
            delta(content=" plated."),
            delta(images=[{"type": "image_url", "image_url": {"url": uri(FINAL)}, "index": 0}]),
            {"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}]


async def test_litellm_stream_draft_is_a_preview_and_never_a_result(gw, session):
    gw.enqueue(Reply(events=litellm_stream()))  # all at once: generate() still waits for every preview
    seen = Seen()
    cfg = config(gw, "openrouter", MODEL=PRO, STREAM="1")
    result = await ProviderClient(cfg, session).generate(GenerationRequest("a banana"), on_progress=seen)
    assert [i.data for i in result.images] == [FINAL] and result.text == "Here is your banana, plated."
    assert seen.previews == [DRAFT]
    assert seen[0].text == "**Planning the layout** " and seen[-1].text.endswith("plated.")


async def test_litellm_stream_without_answer_text_keeps_the_last_image_as_the_final(gw, session):
    events = [e for e in litellm_stream() if "content" not in e["choices"][0]["delta"]]
    gw.enqueue(Reply(events=events))
    result = await ProviderClient(config(gw, "openrouter", MODEL=PRO, STREAM="1"), session).generate(
        GenerationRequest("x"))
    assert [i.data for i in result.images] == [FINAL]


def message_answer(message: dict, **choice) -> Reply:
    return Reply(body={"object": "chat.completion", "model": PRO,
                       "choices": [{"index": 0, "message": {"role": "assistant", **message}, **choice}]})


async def test_non_streamed_drafts_by_marker_or_by_being_a_thinking_model(gw, session):
    two = [{"type": "image_url", "image_url": {"url": uri(DRAFT)}},
           {"type": "image_url", "image_url": {"url": uri(FINAL)}}]
    gw.enqueue(  # LiteLLM: one empty thinking block per thought image
        message_answer({"content": "ok", "images": two, "reasoning_content": "plan",
                        "thinking_blocks": [{"type": "thinking", "thinking": "plan"},
                                            {"type": "thinking", "thinking": ""}]}),
        message_answer({"content": "ok", "images": two, "reasoning": "plan"}),  # no marker, but it thinks
        message_answer({"content": "ok", "images": two}),  # a model that does not think: both are results
    )
    seen = Seen()
    pro = ProviderClient(config(gw, "openrouter", MODEL=PRO), session)
    assert [i.data for i in (await pro.generate(GenerationRequest("x"), on_progress=seen)).images] == [FINAL]
    assert seen.previews == [DRAFT]
    assert [i.data for i in (await pro.generate(GenerationRequest("x"))).images] == [FINAL]
    flash = ProviderClient(config(gw, "openrouter", MODEL="gemini-2.5-flash-image"), session)
    assert [i.data for i in (await flash.generate(GenerationRequest("x"))).images] == [DRAFT, FINAL]


async def test_native_finish_reason_wins_over_content_filter(gw, session):
    gw.enqueue(message_answer({"content": None}, finish_reason="content_filter",
                              provider_specific_fields={"native_finish_reason": "NO_IMAGE"}),
               message_answer({"content": None}, finish_reason="content_filter"))
    client = ProviderClient(config(gw, "openrouter", MAX_RETRIES="0"), session)
    with pytest.raises(NoImageError) as info:
        await client.generate(GenerationRequest("x"))
    assert info.value.reason == "NO_IMAGE"
    with pytest.raises(RefusedError):  # no native reason: still a refusal
        await client.generate(GenerationRequest("x"))


def test_litellm_dialect_request_fields():
    cfg = ProviderConfig(name="l", format="openai_chat", base_url="http://h/v1", api_key="k", model=PRO,
                         preset="litellm", chat_options="image_config", chat_dialect="litellm")
    history = (Turn("user", "a cat"), Turn("model", "Meow.", images=(to_image(DRAFT),)))
    req = openai_chat.build_request(cfg, GenerationRequest("bigger", history=history, aspect_ratio="16:9"))
    body = req.json
    assert body["num_retries"] == 0 and body["image_config"] == {"aspect_ratio": "16:9"}
    assert body["stream"] is True and req.stream and body["thinking"] == {"type": "enabled", "summary": "auto"}
    assert body["messages"][1]["provider_specific_fields"] == {"thought_signatures": [gemini.SKIP_SIGNATURE]}
    plain_config = ProviderConfig(name="o", format="openai_chat", base_url="http://h/v1", api_key="k", model=PRO)
    plain = openai_chat.build_request(plain_config, GenerationRequest("x", history=history)).json
    assert not {"num_retries", "thinking"} & set(plain) and plain["stream"] is False
    assert "provider_specific_fields" not in json.dumps(plain)


# --- OpenAI images ------------------------------------------------------------------------------------

def test_openai_images_defaults_are_openais_api():
    cfg = ProviderConfig(name="i", format="openai_images", base_url="http://h/v1", api_key="k", model=PRO)
    body = openai_images.build_request(cfg, GenerationRequest("x", aspect_ratio="16:9", resolution="2K", count=2)).json
    assert body == {"model": PRO, "prompt": "x", "n": 2, "size": "2752x1536"}
    req = openai_images.build_request(cfg, GenerationRequest("x", images=(to_image(DRAFT),)))
    assert req.url == "http://h/v1/images/edits" and req.form is not None and req.json is None
    assert openai_images.pixel_size("9:16", None) == "768x1376" and openai_images.pixel_size(None, None) is None


async def test_images_drafts_by_signature_or_last_for_a_thinking_model_and_fewer_is_a_warning(gw, session):
    b64 = base64.b64encode
    gw.enqueue(Reply(body={"data": [{"b64_json": b64(DRAFT).decode(), "provider_specific_fields": None},
                                    {"b64_json": b64(FINAL).decode(),
                                     "provider_specific_fields": {"thought_signature": "c2ln"}}]}),
               Reply(body={"data": [{"b64_json": b64(DRAFT).decode()}, {"b64_json": b64(FINAL).decode()}]}))
    client = ProviderClient(config(gw, "mixroute", MODEL=PRO, IMAGES_OPTIONS="openai"), session)
    seen = Seen()
    result = await client.generate(GenerationRequest("x", count=2), on_progress=seen)
    assert [i.data for i in result.images] == [FINAL] and seen.previews == [DRAFT]
    assert result.warnings == ["asked for 2 images, got 1"]
    result = await client.generate(GenerationRequest("x"))  # unmarked: the last image is the final
    assert [i.data for i in result.images] == [FINAL] and result.warnings == []
    result = await client.generate(GenerationRequest("x", count=3))  # the fake's default: 3 distinct images
    assert len(result.images) == 3 and result.warnings == []


# --- the CLI -------------------------------------------------------------------------------------------

async def test_cli_writes_previews_as_they_arrive_and_only_the_final_to_out(gw, tmp_path):
    gw.thought_images, gw.stream_delay = 2, 0.02
    env = {"PROVIDERS": "google", **gw.provider_env("google", "google", KEY, MODEL=PRO)}
    rc, out, err = await run_cli("generate", "a banana", "--out", str(tmp_path / "out"),
                                 "--previews", str(tmp_path / "previews"), "-v", env=env, cwd=tmp_path)
    assert rc == 0, err
    data = json.loads(out)
    assert [open(p, "rb").read() for p in data["previews"]] == [gw.draft_image(0), gw.draft_image(1)]
    assert sorted(p.name for p in (tmp_path / "previews").iterdir()) == sorted(
        p.rsplit("/", 1)[-1] for p in data["previews"])
    (image,) = data["images"]
    assert open(image["path"], "rb").read() == gw.image and len(list((tmp_path / "out").iterdir())) == 1
    # logged as they arrived: before the stream was over (its HTTP line is logged at the end)
    assert err.index("preview 1: ") < err.index("preview 2: ") < err.index("-> HTTP 200")
    assert "warnings" not in data and KEY not in out + err


async def test_cli_warns_when_fewer_images_came_than_asked(gw, tmp_path):
    gw.enqueue(Reply(body={"data": [{"b64_json": base64.b64encode(FINAL).decode()}]}))
    env = {"PROVIDERS": "img", "PROVIDER_IMG_FORMAT": "openai_images", "PROVIDER_IMG_BASE_URL": gw.url + "/v1",
           "PROVIDER_IMG_API_KEY": KEY, "PROVIDER_IMG_MODEL": "gemini-2.5-flash-image"}
    rc, out, err = await run_cli("generate", "two bananas", "--count", "2", "--out", str(tmp_path),
                                 env=env, cwd=tmp_path)
    assert rc == 0 and err == "warning: asked for 2 images, got 1\n"
    data = json.loads(out)
    assert data["warnings"] == ["asked for 2 images, got 1"] and len(data["images"]) == 1
    assert gw.requests[-1].json == {"model": "gemini-2.5-flash-image", "prompt": "two bananas", "n": 2}


@pytest.fixture
def processes():
    from core.cpu import CpuPool

    cpu = CpuPool()
    cpu.start()
    assert cpu.has_processes
    yield cpu
    cpu.shutdown()


async def test_large_drafts_are_read_in_a_worker_process_and_still_come_in_order(gw, session, processes):
    # events over 64 KB (a real draft is megabytes) reach the feed as Chunks and are parsed by a
    # worker process; small ones on the loop: the order must hold across both
    big = [make_png((30, 20), target_bytes=300_000, color=(i, 0, 0)) for i in (1, 2)]

    def part(data):
        return {"inlineData": {"mimeType": "image/png", "data": base64.b64encode(data).decode()}}
    chunks = [[{"text": "thinking", "thought": True}], [{**part(big[0]), "thought": True}],
              [{"text": "more", "thought": True}], [{**part(big[1]), "thought": True}],
              [{"text": "done", "thoughtSignature": "c2ln"}], [{**part(FINAL), "thoughtSignature": "c2ln"}]]
    gw.enqueue(Reply(crlf=True, done=False, events=[
        {"candidates": [{"content": {"role": "model", "parts": p}, "index": 0}]} for p in chunks] + [
        {"candidates": [{"content": {"parts": []}, "finishReason": "STOP", "index": 0}]}]))
    seen = Seen()
    result = await ProviderClient(config(gw, "google", MODEL=PRO), session, cpu=processes).generate(
        GenerationRequest("x"), on_progress=seen)
    assert seen.previews == big and [i.data for i in result.images] == [FINAL]
    assert [p.text for p in seen if p.preview is not None] == ["thinking", "thinkingmore"]
