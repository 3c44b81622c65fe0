"""A Gemini (google preset) thread through the bot: the thoughtSignatures of each answer go back to
the model verbatim on the next turns, even after the bot restarts between turns."""
from __future__ import annotations

import base64
import sys

import pytest

from fakes.bot_helpers import bot_env, result_of
from fakes.driver import Driver
from fakes.fake_gateway import FakeGateway, Reply, make_png
from fakes.secret_registry import register_secret

KEY = register_secret("AIzaGeminiThreadKey-0123456789abcdef", "test_gemini_thread_e2e.KEY")


def signed_answer(n: int) -> tuple[Reply, dict[str, str]]:
    """A Gemini answer whose text and image parts carry signatures unique to answer `n`."""
    image = base64.b64encode(make_png((40, 30), color=(30 * n, 90, 200))).decode()
    signatures = {"text": base64.b64encode(f"text-signature-{n}".encode()).decode(),
                  "image": base64.b64encode(f"image-signature-{n}".encode()).decode()}
    parts = [{"text": f"Answer {n}.", "thoughtSignature": signatures["text"]},
             {"inlineData": {"mimeType": "image/png", "data": image}, "thoughtSignature": signatures["image"]}]
    body = {"candidates": [{"content": {"role": "model", "parts": parts}, "finishReason": "STOP", "index": 0}],
            "usageMetadata": {"promptTokenCount": 5, "candidatesTokenCount": 1290}, "modelVersion": "m"}
    return Reply(body=body), signatures


def model_turn_signatures(request) -> list[dict[str, str]]:
    """For each model turn in a generateContent request: the signature on its text and image parts."""
    found = []
    for content in request.json["contents"]:
        if content.get("role") != "model":
            continue
        sig = {}
        for part in content["parts"]:
            kind = "image" if ("inlineData" in part or "inline_data" in part) else "text"
            if "thoughtSignature" in part:
                sig[kind] = part["thoughtSignature"]
        found.append(sig)
    return found


@pytest.mark.asyncio(loop_scope="function")
async def test_signatures_come_back_verbatim_across_turns_and_a_restart(tmp_path):
    async with FakeGateway() as gw, Driver(log_dir=tmp_path) as d:
        env = bot_env(d, gw, tmp_path / "data", PROVIDERS="gem",
                      **gw.provider_env("gem", "google", KEY))
        await d.start_bot([sys.executable, "bot.py"], env=env)
        first, sig1 = signed_answer(1)
        second, sig2 = signed_answer(2)
        third, _ = signed_answer(3)
        gw.enqueue(first, second, third)

        h = await d.slash("imagine", {"prompt": "a blue bird"})
        msg = await h.response(where=result_of, timeout=15)
        thread = await d.wait_for_thread(lambda t: int(t["id"]) == msg.id)
        assert model_turn_signatures(gw.requests[-1]) == []

        await d.restart_bot()  # the signatures must come from the store, not from memory
        mark = d.mark()
        await d.say(thread, "make it red")
        await d.wait_for_message(thread, result_of, after=mark, timeout=15)
        assert model_turn_signatures(gw.requests[-1]) == [sig1]

        mark = d.mark()
        await d.say(thread, "now add a hat")
        await d.wait_for_message(thread, result_of, after=mark, timeout=15)
        assert model_turn_signatures(gw.requests[-1]) == [sig1, sig2]
