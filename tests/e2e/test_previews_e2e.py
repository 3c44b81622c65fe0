"""Live previews through the bot: Nano Banana Pro's draft images appear on the status message while
it streams, then the final image replaces them; a draft is never a result, never history, never charged."""
from __future__ import annotations

import base64
import sys

import pytest

from fakes.bot_helpers import bot_env, result_of
from fakes.driver import Driver
from fakes.fake_gateway import FakeGateway, Reply, make_png
from fakes.secret_registry import register_secret

KEY = register_secret("AIzaPreviewsKey-5566778899aabbccdd", "test_previews_e2e.KEY")
PRO = "gemini-3-pro-image-preview"


def inline_images(request) -> list[bytes]:
    return [base64.b64decode(part["inlineData"]["data"]) for content in request.json["contents"]
            for part in content["parts"] if "inlineData" in part]


@pytest.mark.asyncio(loop_scope="function")
async def test_a_draft_appears_on_the_status_then_the_final_image_replaces_it(tmp_path):
    async with FakeGateway(thoughts=True, thought_images=2, stream_delay=0.6) as gw, Driver(log_dir=tmp_path) as d:
        gw.image = make_png((64, 48), color=(250, 200, 0))
        env = bot_env(d, gw, tmp_path / "data", PROVIDERS="gem", STATUS_INTERVAL_SECONDS=0.3,
                      **gw.provider_env("gem", "google", KEY, MODEL=PRO))
        await d.start_bot([sys.executable, "bot.py"], env=env)
        h = await d.slash("imagine", {"prompt": "a banana on a plate"})
        result = await h.response(where=result_of, timeout=30)

        request = gw.requests[-1]
        assert request.path.endswith(f"/models/{PRO}:streamGenerateContent")
        assert request.json["generationConfig"]["thinkingConfig"]["includeThoughts"] is True
        # The status message showed a marked, small draft before the final image came.
        versions = [*result.record.history, result.record.data]
        drafts = [v for v in versions if any(a["filename"] == "draft-preview.jpg" for a in v["attachments"])]
        assert drafts, [v["content"] for v in versions]
        assert all("Draft preview" in v["content"] for v in drafts)
        assert any("💭" in v["content"] and "Planning the composition" in v["content"] for v in versions)
        first_draft = versions.index(drafts[0])
        assert first_draft < len(versions) - 1
        # The result is the final image alone: the draft is gone, never a result.
        assert [a.data for a in result.attachments] == [gw.image]
        assert "Draft preview" not in result.content

        # Never history: the next turn sends the final image back, not the drafts.
        thread = await d.wait_for_thread(lambda t: int(t["id"]) == result.id)
        mark = d.mark()
        await d.say(thread, "add a fork")
        await d.wait_for_message(thread, result_of, after=mark, timeout=30)
        assert inline_images(gw.requests[-1]) == [gw.image]
        # Never charged: one image per generation in the member's usage.
        usage = await d.slash("usage", {})
        answer = await usage.response(timeout=10)
        text = str(answer.embeds) + answer.content
        assert "**2** images · $0.268" in text, text  # two generations of one image each at the Pro price


@pytest.mark.asyncio(loop_scope="function")
async def test_fewer_images_than_asked_is_said_in_the_result(tmp_path):
    async with FakeGateway() as gw, Driver(log_dir=tmp_path) as d:
        env = bot_env(d, gw, tmp_path / "data", PROVIDERS="mix", **gw.provider_env("mix", "mixroute", KEY))
        await d.start_bot([sys.executable, "bot.py"], env=env)
        gw.enqueue(Reply(body={"data": [{"b64_json": base64.b64encode(gw.image).decode()}]}))
        h = await d.slash("imagine", {"prompt": "two pears", "count": 2})
        result = await h.response(where=result_of, timeout=15)
    assert gw.requests[-1].json["n"] == 2
    assert len(result.attachments) == 1 and "Asked for 2 images, got 1." in result.content
