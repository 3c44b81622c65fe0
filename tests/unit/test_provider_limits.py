"""What the provider layer refuses to take from a gateway: unbounded bodies, other local services,
and the bot's own key in the model's words.

The size caps are checked while the bytes stream in: a server that never stops sending (chunked,
no Content-Length) is cut off just past the cap, never read into memory whole.
"""
from __future__ import annotations

import asyncio

import aiohttp
import pytest
from aiohttp import web

from fakes.fake_gateway import FakeGateway, Reply
from fakes.secret_registry import register_secret
from providers.base import ProviderConfig
from providers.client import ProviderRouter
from providers.presets import load_provider_configs
from providers.errors import MalformedResponse
from providers.fetch import download
from providers.models import GenerationRequest
from providers.redact import Redactor

KEY = register_secret("sk-limits-Distinctive-Key-6620", "test_provider_limits.KEY")
CAP = 1024 * 1024  # MAX_DOWNLOAD_BYTES in these tests
ENDLESS = 256 * 1024 * 1024  # what the endless server would send if nobody stopped reading
SLACK = 48 * 1024 * 1024  # socket buffers on both sides may hold a few MiB past the cap


class EndlessServer:
    """Streams `prefix` then filler in 64 KiB chunks, chunked (no Content-Length), until the client
    hangs up or ENDLESS bytes went out; records how much it managed to write."""

    def __init__(self, content_type: str, prefix: bytes, filler: bytes) -> None:
        self.content_type, self.prefix, self.filler = content_type, prefix, filler
        self.written = 0
        self.stopped = asyncio.Event()
        self.url = ""
        self._runner: web.AppRunner | None = None

    async def __aenter__(self) -> EndlessServer:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.2)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"
        return self

    async def __aexit__(self, *exc) -> None:
        await self._runner.cleanup()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        await request.read()
        resp = web.StreamResponse(headers={"Content-Type": self.content_type})
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        chunk = self.filler * (65536 // len(self.filler))
        try:
            await resp.write(self.prefix)
            self.written = len(self.prefix)
            while self.written < ENDLESS:
                await resp.write(chunk)
                self.written += len(chunk)
            await resp.write_eof()
        except (ConnectionError, RuntimeError):  # the client hung up: what we want
            pass
        finally:
            self.stopped.set()
        return resp

    async def assert_cut_off(self) -> None:
        await asyncio.wait_for(self.stopped.wait(), 20)
        assert self.written < CAP + SLACK, f"the client read on: {self.written} bytes sent"


def config(base_url: str, **extra) -> ProviderConfig:
    env = {"PROVIDERS": "p", "PROVIDER_P_PRESET": "mulerun", "PROVIDER_P_API_KEY": KEY,
           "PROVIDER_P_BASE_URL": base_url, "PROVIDER_P_MAX_RETRIES": "0",
           "PROVIDER_P_MAX_DOWNLOAD_BYTES": str(CAP)}
    env.update({f"PROVIDER_P_{k}": str(v) for k, v in extra.items()})
    (cfg,) = load_provider_configs(env)
    return cfg


async def test_image_download_without_content_length_is_cut_off_at_the_cap():
    async with EndlessServer("image/png", b"\x89PNG\r\n\x1a\n", b"\0") as server, aiohttp.ClientSession() as session:
        cfg = config(server.url + "/v1", ALLOW_PRIVATE_URLS=1)
        with pytest.raises(MalformedResponse) as info:
            await download(session, server.url + "/image.png", cfg, {}, Redactor([KEY]))
        assert "too large" in info.value.user_message and str(CAP) in info.value.detail
        await server.assert_cut_off()


@pytest.mark.parametrize("stream", [False, True], ids=["json-body", "sse-stream"])
async def test_an_endless_gateway_answer_is_cut_off(stream):
    if stream:  # one SSE event that never ends
        server = EndlessServer("text/event-stream", b'data: {"choices": [{"delta": {"content": "', b"A")
    else:  # one JSON body that never ends
        server = EndlessServer("application/json", b'{"choices": [{"message": {"content": "', b"A")
    async with server, aiohttp.ClientSession() as session:
        router = ProviderRouter([config(server.url + "/v1", STREAM=int(stream))], session)
        with pytest.raises(MalformedResponse) as info:
            await router.generate(GenerationRequest("a red apple"))
        assert f"over {4 * CAP} bytes" in info.value.detail
        await server.assert_cut_off()


async def test_another_port_on_the_gateways_private_host_is_refused():
    """The gateway's own origin is trusted for image links; another service on its host is not."""
    async with FakeGateway() as gw, FakeGateway() as other, aiohttp.ClientSession() as session:
        url = other.add_file("a.png", other.image)  # 127.0.0.1 like the gateway, another port
        gw.enqueue(Reply(body={"choices": [{"message": {"role": "assistant", "content": [
            {"type": "image_url", "image_url": {"url": url}}]}, "finish_reason": "stop"}]}))
        router = ProviderRouter([config(gw.url + "/v1")], session)
        with pytest.raises(MalformedResponse) as info:
            await router.generate(GenerationRequest("a red apple"))
        assert "will not fetch" in info.value.user_message and other.downloads == []
        # The same link on the gateway's own origin is fetched (with the key: it is the gateway).
        gw.enqueue(Reply(body={"choices": [{"message": {"role": "assistant", "content": [
            {"type": "image_url", "image_url": {"url": gw.add_file("a.png", gw.image)}}]},
            "finish_reason": "stop"}]}))
        result = await router.generate(GenerationRequest("a red apple"))
        assert result.images[0].data == gw.image and gw.downloads[0].header("Authorization") == f"Bearer {KEY}"


async def test_the_models_text_is_masked_of_the_key_and_nothing_else():
    async with FakeGateway(chat_style="parts") as gw, aiohttp.ClientSession() as session:
        gw.text = f"The bearer of this key=value note: {KEY}."
        router = ProviderRouter([config(gw.url + "/v1")], session)
        result = await router.generate(GenerationRequest("a red apple"))
        assert result.text == "The bearer of this key=value note: ***."
