"""The benchmark's provider: the test bed's FakeGateway in its own process, timing every answer.

    python -m bench.gateway --port 0      # prints FAKE_GATEWAY_URL=http://127.0.0.1:PORT

It runs apart from the benchmark (which hosts the fake Discord) so that serving 20 MB answers does
not slow down the fake Discord's clock, and apart from the bot, which is what is being measured.

For each model request it records, on CLOCK_MONOTONIC (shared by every process on the machine):
  t_start  the handler began (request headers arrived)
  t_body   the whole request body had arrived (the upload is the bot's time, not the gateway's)
  t_end    the whole answer had been written (after the configured latency)
The gateway's own time for a request is `t_end - t_body`: latency plus building and writing the
answer (and parsing the request). The bot's overhead is what remains of its end-to-end time.

Extra admin routes (besides the FakeGateway's /_fake/...):
  POST /_bench/config {"latency": s, "image_path": file}   change latency / answer image
                       {"hold_next": s}                    ... and hold the next answer s more
  GET  /_bench/timings                                     the records above, oldest first
  POST /_bench/reset                                       forget the records
"""
from __future__ import annotations

import argparse
import asyncio
import time
from pathlib import Path
from typing import Any

from aiohttp import web

from tests.fakes.fake_gateway import FakeGateway
from tests.fakes.gateway_ratelimit import TokenBucket


class TimedGateway(FakeGateway):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.timings: list[dict[str, Any]] = []
        self.hold_next = 0.0  # extra seconds for the next model request only (then back to `latency`)

    def default_answer(self, rec):
        reply = super().default_answer(rec)
        if self.hold_next:
            reply.delay, self.hold_next = reply.delay + self.hold_next, 0.0
        return reply

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        if path.startswith("/_bench/"):
            return await self._bench_admin(request)
        if path.startswith(("/_fake/", "/files/")):
            return await super()._handle(request)
        entry: dict[str, Any] = {"path": path, "t_start": time.monotonic(), "latency": self.latency}
        request["bench"] = entry
        resp = await super()._handle(request)
        if not resp.prepared:  # a plain Response is written after the handler: write it now, to time it
            await resp.prepare(request)
            await resp.write_eof()
        entry["t_end"] = time.monotonic()
        entry["status"] = resp.status
        self.timings.append(entry)
        return resp

    async def _record(self, request: web.Request):
        if not request.content_type.startswith("multipart/"):
            await request.read()  # cached by aiohttp; FakeGateway._record reads it again for free
        if "bench" in request:
            request["bench"]["t_body"] = time.monotonic()
            request["bench"]["request_bytes"] = request.content_length or 0
        return await super()._record(request)

    async def _bench_admin(self, request: web.Request) -> web.Response:
        action = request.path[len("/_bench/"):]
        if action == "config" and request.method == "POST":
            data = await request.json()
            if "latency" in data:
                self.latency = float(data["latency"])
            if data.get("image_path"):
                self.image = Path(data["image_path"]).read_bytes()
            limit = data.get("rate_limit")  # [requests, seconds]: a token bucket, 429 + Retry-After beyond
            self.rate_limit = TokenBucket(int(limit[0]), float(limit[1])) if limit else None
            self.thoughts = bool(data.get("thoughts"))
            self.thought_images = 2 if self.thoughts else 1
            self.stream_delay = float(data.get("stream_delay") or 0.0)
            self.hold_next = float(data.get("hold_next") or 0.0)
            return web.json_response({"latency": self.latency, "image_bytes": len(self.image)})
        if action == "timings":
            return web.json_response(self.timings)
        if action == "reset" and request.method == "POST":
            self.timings.clear()
            self.reset()
            return web.json_response({"ok": True})
        return web.json_response({"error": "unknown bench action"}, status=404)


async def _serve(args: argparse.Namespace) -> None:
    image = Path(args.image).read_bytes() if args.image else None
    async with TimedGateway(image=image, latency=args.latency, port=args.port) as gw:
        print(f"FAKE_GATEWAY_URL={gw.url}", flush=True)
        await asyncio.Event().wait()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.gateway")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--latency", type=float, default=0.0)
    parser.add_argument("--image", help="PNG file to answer with")
    try:
        asyncio.run(_serve(parser.parse_args()))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
