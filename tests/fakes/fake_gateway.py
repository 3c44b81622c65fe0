"""A fake Nano Banana gateway: an aiohttp server on 127.0.0.1 speaking every preset's wire format.

In a test (any URL prefix works, so point a preset's base URL at `gw.url + "/v1"`, "/api/v1",
"/v1beta" ...):

    async with FakeGateway(chat_style="markdown") as gw:
        gw.enqueue(Reply(status=429, headers={"Retry-After": "1"}))   # next answer, then defaults
        ... call the provider layer with base_url=f"{gw.url}/v1" ...
        assert gw.requests[-1].json["model"] == "nanobanana_pro"

Default answers (a real PNG, see `image_bytes` / `image_size`):
    POST .../chat/completions        chat_style "parts" (MuleRun), "markdown" (InfinityBlue),
                                     "images" (OpenRouter), or "auto" (default: by model name,
                                     nanobanana* -> markdown, vendor/model -> images, else parts);
                                     "stream": true -> SSE (LF, [DONE], usage-only chunk)
    POST .../images/generations|edits  {"created", "data": [{"b64_json"}] * n}
    POST .../models/M:generateContent  candidates with thoughtSignatures (+ thought parts: text and
                                     `thought_images` images, if `thoughts` or, for Gemini 3 models,
                                     if thinkingConfig.includeThoughts); :streamGenerateContent ->
                                     SSE (CRLF, no [DONE], `stream_delay` s between events). Gemini 3
                                     models answer 400 INVALID_ARGUMENT to an unsigned model turn.
    GET  /files/NAME                 bytes registered with add_file()
Admin API for other processes: POST /_fake/enqueue (a Reply as JSON, `body_b64` for raw bytes),
GET /_fake/requests, POST /_fake/reset.
Rate-limited mode: `gw.rate_limit = TokenBucket(N, seconds)` (or `--rate-limit N/SECONDS`): beyond N
requests per window, 429 with Retry-After (see gateway_ratelimit.py); scripted replies come after it.

From another process (the bot's end-to-end tests, the benchmark):
    python -m tests.fakes.fake_gateway --port 0 --latency 0.5 --image-bytes 1500000
prints `FAKE_GATEWAY_URL=http://127.0.0.1:PORT` on its first stdout line, serves until killed.
"""
from __future__ import annotations

import argparse
import asyncio
import base64
import io
import json
import re
import struct
import time
import zlib
from collections import deque
from dataclasses import asdict, dataclass, field
from typing import Any

from aiohttp import web

from .gateway_ratelimit import TokenBucket

# The version segment each preset's real base URL ends with (the fake accepts any prefix).
PRESET_PATHS = {"mulerun": "/v1", "mixroute": "/v1", "infinityblue": "/v1", "openrouter": "/api/v1",
                "yescale": "/v1beta", "google": "/v1beta"}
SIGNATURE_TEXT = "c2lnLXRleHQ="  # opaque thoughtSignature values the tests expect back
SIGNATURE_IMAGE = "c2lnLWltYWdl"


def make_png(size: tuple[int, int] = (64, 48), target_bytes: int | None = None,
             color: tuple[int, int, int] = (200, 30, 30)) -> bytes:
    """A valid PNG of `size` pixels, padded with an ancillary chunk to ~target_bytes (fast)."""
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, format="PNG")
    png = buf.getvalue()
    pad = (target_bytes or 0) - len(png) - 12
    if pad > 0:  # "fkPd": a private ancillary chunk that every decoder skips
        chunk = b"fkPd" + bytes(pad)
        extra = struct.pack(">I", pad) + chunk + struct.pack(">I", zlib.crc32(chunk))
        png = png[:-12] + extra + png[-12:]  # before IEND
    return png


@dataclass
class Reply:
    """One scripted answer. `body` dict/list is sent as JSON; `events` as SSE `data:` lines."""

    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    events: list[Any] | None = None  # dict -> JSON, str/bytes sent as the data payload as-is
    crlf: bool = False  # SSE framing
    done: bool = True  # end the SSE stream with data: [DONE]
    cut: bool = False  # send half of the stream, then drop the connection
    keepalive: bool = False  # an SSE ": keep-alive" comment before each event
    drop: bool = False  # close the connection without any answer
    event_delay: float = 0.0  # seconds between SSE events (each sent and flushed on its own)
    hold: asyncio.Event | None = None  # answer only once the test sets it (a job kept running on purpose)

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> "Reply":
        obj = dict(obj)
        if "body_b64" in obj:
            obj["body"] = base64.b64decode(obj.pop("body_b64"))
        return cls(**obj)


@dataclass
class FormField:
    name: str
    value: bytes | str
    filename: str | None = None
    content_type: str | None = None


@dataclass
class RecordedRequest:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]  # last value per (case-preserved) name; use header() to look up
    body: bytes
    json: Any = None
    form: list[FormField] | None = None
    received_at: float = field(default_factory=time.monotonic)  # when the request arrived

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers.items() if k.lower() == name.lower()), None)

    def fields(self, name: str) -> list[FormField]:
        return [f for f in self.form or [] if f.name == name]

    def summary(self) -> dict[str, Any]:
        """JSON-friendly view for the admin API (form file bytes replaced by their size)."""
        out = {k: v for k, v in asdict(self).items() if k not in ("body", "form")}
        out["body_bytes"] = len(self.body)
        if self.form is not None:
            out["form"] = [{"name": f.name, "filename": f.filename, "content_type": f.content_type,
                            "value": f.value if isinstance(f.value, str) else f"<{len(f.value)} bytes>"}
                           for f in self.form]
        return out


class FakeGateway:
    def __init__(self, *, image: bytes | None = None, image_size: tuple[int, int] = (64, 48),
                 image_bytes: int | None = None, chat_style: str = "auto", thoughts: bool = False,
                 text: str = "Here is your image.", latency: float = 0.0, thought_images: int = 1,
                 stream_delay: float = 0.0, host: str = "127.0.0.1", port: int = 0) -> None:
        self.image = image or make_png(image_size, image_bytes)
        self.thought_image = make_png((8, 8), color=(0, 0, 0))
        self.chat_style = chat_style
        self.thoughts = thoughts
        self.thought_images = thought_images
        self.stream_delay = stream_delay
        self.text = text
        self.latency = latency
        self.requests: list[RecordedRequest] = []
        self.files: dict[str, tuple[bytes, str]] = {}
        self.downloads: list[RecordedRequest] = []  # GET /files/... (not model calls)
        self.rate_limit: TokenBucket | None = None  # rate-limited mode, off by default
        self._queue: deque[Reply] = deque()
        self._host, self._port = host, port
        self._runner: web.AppRunner | None = None
        self._b64_cache: tuple[bytes, str] | None = None
        self._variants: dict[tuple[int, bytes], str] = {}
        self.url = ""

    # --- lifecycle ------------------------------------------------------------------------
    async def start(self) -> "FakeGateway":
        app = web.Application(client_max_size=512 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        # A short shutdown: tests that time out leave a slow handler behind; do not wait for it.
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.2)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self._host, self._port)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://{self._host}:{port}"
        return self

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> "FakeGateway":
        return await self.start()

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    # --- scripting ------------------------------------------------------------------------
    def enqueue(self, *replies: Reply) -> None:
        """Answer the next model requests with these, in order; then the defaults again."""
        self._queue.extend(replies)

    def add_file(self, name: str, data: bytes, content_type: str = "image/png", host: str | None = None) -> str:
        """Serve `data` at /files/NAME; returns its URL (optionally with another host name)."""
        self.files[name] = (data, content_type)
        base = self.url if host is None else self.url.replace(self._host, host)
        return f"{base}/files/{name}"

    def provider_env(self, name: str, preset: str, api_key: str, **extra: Any) -> dict[str, str]:
        """PROVIDER_<NAME>_* variables for a preset pointed at this fake (extra: STREAM=1, ...)."""
        prefix = f"PROVIDER_{name.upper()}_"
        env = {prefix + "PRESET": preset, prefix + "API_KEY": api_key,
               prefix + "BASE_URL": self.url + PRESET_PATHS[preset]}
        env.update({prefix + k.upper(): str(v) for k, v in extra.items()})
        return env

    def reset(self) -> None:
        self.requests.clear()
        self.downloads.clear()
        self._queue.clear()

    @property
    def mime_type(self) -> str:
        head = self.image[:12]
        if head.startswith(b"\xff\xd8"):
            return "image/jpeg"
        return "image/webp" if head[8:12] == b"WEBP" else "image/png"

    @property
    def image_b64(self) -> str:
        if self._b64_cache is None or self._b64_cache[0] is not self.image:
            self._b64_cache = (self.image, base64.b64encode(self.image).decode())
        return self._b64_cache[1]

    # --- default answers, one per format ---------------------------------------------------
    def chat_answer(self, model: str, stream: bool) -> Reply:
        text, b64 = self.text, self.image_b64
        usage = {"prompt_tokens": 6, "completion_tokens": 1290, "total_tokens": 1296}
        key = "delta" if stream else "message"
        uri = f"data:{self.mime_type};base64,{b64}"
        style = self.chat_style
        if style == "auto":  # pick the shape of the gateway that uses this model name
            style = "markdown" if model.startswith("nanobanana") else "images" if "/" in model else "parts"
        if style == "markdown":  # InfinityBlue: Markdown inside the content string
            message: dict[str, Any] = {"role": "assistant", "content": f"{text}\n\n![image]({uri})"}
        elif style == "images":  # OpenRouter: message.images
            message = {"role": "assistant", "content": text,
                       "images": [{"type": "image_url", "image_url": {"url": uri}}]}
        else:  # MuleRun: content parts, raw base64
            parts = [{"type": "text", "text": text}] if text else []
            message = {"role": "assistant", "content": parts + [{"type": "image_url", "image_url": {"url": b64}}]}
        choice = {"index": 0, key: message, "finish_reason": "STOP" if style == "parts" else "stop"}
        if not stream:
            return Reply(body={"id": "chatcmpl-fake", "object": "chat.completion", "created": int(time.time()),
                               "model": model, "choices": [choice], "usage": usage})
        usage_chunk = {"id": "", "object": "chat.completion.chunk", "model": model, "choices": [],
                       "usage": {**usage, "completion_tokens": 0}}
        return Reply(events=[{"choices": [choice], "usage": usage}, usage_chunk])

    def images_answer(self, n: int) -> Reply:
        return Reply(body={"created": int(time.time()),
                           "data": [{"b64_json": self.variant_b64(i)} for i in range(max(1, n))]})

    def variant_b64(self, i: int) -> str:
        """Base64 of the answer image, made distinct per index (an extra ancillary chunk)."""
        if i == 0:
            return self.image_b64
        if (i, self.image) not in self._variants:
            chunk = b"fkId" + struct.pack(">I", i)
            extra = struct.pack(">I", 4) + chunk + struct.pack(">I", zlib.crc32(chunk))
            png = self.image[:-12] + extra + self.image[-12:]
            self._variants[(i, self.image)] = base64.b64encode(png).decode()
        return self._variants[(i, self.image)]

    def draft_image(self, i: int) -> bytes:
        """The i-th interim "thought" image (0 is `thought_image`; the others differ)."""
        return self.thought_image if i == 0 else make_png((8 + 4 * i, 8), color=(0, 40 * i, 0))

    def gemini_parts(self, thoughts: bool | None = None) -> list[dict[str, Any]]:
        """Like Gemini 3: thought parts (no signature) first, then the signed answer."""
        thought: list[dict[str, Any]] = [{"text": "**Planning the composition**\n\n", "thought": True}]
        for i in range(self.thought_images):
            thought.append({"inlineData": {"mimeType": "image/png",
                                           "data": base64.b64encode(self.draft_image(i)).decode()},
                            "thought": True})
            thought.append({"text": f"**Refining draft {i + 1}**\n\n", "thought": True})
        return (thought if (self.thoughts if thoughts is None else thoughts) else []) + [
            {"text": self.text, "thoughtSignature": SIGNATURE_TEXT},
            {"inlineData": {"mimeType": self.mime_type, "data": self.image_b64}, "thoughtSignature": SIGNATURE_IMAGE},
        ]

    def gemini_answer(self, model: str, stream: bool, body: dict[str, Any] | None = None) -> Reply:
        usage = {"promptTokenCount": 17, "candidatesTokenCount": 1290, "totalTokenCount": 1307}
        asked = (body or {}).get("generationConfig", {}).get("thinkingConfig", {}).get("includeThoughts")
        parts = self.gemini_parts(True if asked is True and GEMINI_3.search(model) else None)
        if not stream:
            return Reply(body={"candidates": [{"content": {"role": "model", "parts": parts},
                                               "finishReason": "STOP", "index": 0}],
                               "usageMetadata": usage, "modelVersion": model, "responseId": "fake"})
        events = [{"candidates": [{"content": {"role": "model", "parts": [part]}, "index": 0}],
                   "modelVersion": model} for part in parts]
        events.append({"candidates": [{"content": {"role": "model", "parts": [{"text": ""}]},
                                       "finishReason": "STOP", "index": 0}],
                       "usageMetadata": usage, "modelVersion": model})
        return Reply(events=events, crlf=True, done=False, event_delay=self.stream_delay)

    def default_answer(self, rec: RecordedRequest) -> Reply:
        body = rec.json if isinstance(rec.json, dict) else {}
        if rec.path.endswith("/chat/completions"):
            return self.chat_answer(str(body.get("model", "")), bool(body.get("stream")))
        if rec.path.endswith(("/images/generations", "/images/edits")):
            n = body.get("n") if rec.form is None else next((f.value for f in rec.fields("n")), 1)
            return self.images_answer(int(n or 1))
        match = re.search(r"/models/([^/:]+):(generateContent|streamGenerateContent)$", rec.path)
        if match:
            return self.gemini_answer(match.group(1), match.group(2) == "streamGenerateContent", body)
        return Reply(status=404, body={"error": {"message": f"no route for {rec.path}"}})

    # --- serving ----------------------------------------------------------------------------
    async def _handle(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        if path.startswith("/_fake/"):
            return await self._admin(request)
        if path.startswith("/files/") and request.method == "GET":
            self.downloads.append(RecordedRequest("GET", path, dict(request.query), dict(request.headers), b""))
            found = self.files.get(path[len("/files/"):])
            if found is None:
                return web.Response(status=404)
            return web.Response(body=found[0], content_type=found[1])
        rec = await self._record(request)
        self.requests.append(rec)
        wait = self.rate_limit.take() if self.rate_limit is not None else None
        if wait is not None:
            reply = Reply(**TokenBucket.reply_fields(wait))
        else:
            reply = unsigned_model_turn(rec) or (self._queue.popleft() if self._queue else self.default_answer(rec))
        if self.latency or reply.delay:
            await asyncio.sleep(self.latency + reply.delay)
        if reply.hold is not None:
            await reply.hold.wait()
        return await self._send(request, reply)

    async def _record(self, request: web.Request) -> RecordedRequest:
        rec = RecordedRequest(method=request.method, path=request.path, query=dict(request.query),
                              headers=dict(request.headers), body=b"")
        if request.content_type.startswith("multipart/"):
            rec.form = []
            reader = await request.multipart()
            async for part in reader:
                data = await part.read()  # type: ignore[union-attr]
                value: bytes | str = data if part.filename else data.decode()
                rec.form.append(FormField(part.name or "", value, part.filename,
                                          part.headers.get("Content-Type")))
        else:
            rec.body = await request.read()
            try:
                rec.json = json.loads(rec.body) if rec.body else None
            except ValueError:
                rec.json = None
        return rec

    async def _send(self, request: web.Request, reply: Reply) -> web.StreamResponse:
        if reply.drop:
            assert request.transport is not None
            request.transport.close()
            return web.Response()
        if reply.events is None:
            body = reply.body
            if isinstance(body, (dict, list)):
                body, ctype = json.dumps(body).encode(), "application/json"
            else:
                body = body.encode() if isinstance(body, str) else (body or b"")
                ctype = "text/html" if body[:1] == b"<" else "application/json"
            headers = {"Content-Type": ctype, **reply.headers}
            return web.Response(status=reply.status, body=body, headers=headers)
        nl = b"\r\n" if reply.crlf else b"\n"
        frames = []
        for event in reply.events:
            payload = json.dumps(event).encode() if isinstance(event, (dict, list)) else \
                (event.encode() if isinstance(event, str) else event)
            frames.append((b": keep-alive" + nl + nl if reply.keepalive else b"")
                          + b"".join(b"data: " + line + nl for line in payload.split(b"\n")) + nl)
        if reply.done:
            frames.append(b"data: [DONE]" + nl + nl)
        resp = web.StreamResponse(status=reply.status,
                                  headers={"Content-Type": "text/event-stream", **reply.headers})
        await resp.prepare(request)
        if reply.event_delay and not reply.cut:
            for i, frame in enumerate(frames):
                if i:
                    await asyncio.sleep(reply.event_delay)
                await resp.write(frame)
            await resp.write_eof()
            return resp
        out = b"".join(frames)
        if reply.cut:
            await resp.write(bytes(out[: len(out) // 2]))
            await asyncio.sleep(0.01)
            assert request.transport is not None
            request.transport.close()  # drop mid-stream: the client sees an incomplete chunked body
            return resp
        await resp.write(bytes(out))
        await resp.write_eof()
        return resp

    async def _admin(self, request: web.Request) -> web.Response:
        action = request.path[len("/_fake/"):]
        if action == "enqueue" and request.method == "POST":
            data = await request.json()
            for item in data if isinstance(data, list) else [data]:
                self.enqueue(Reply.from_json(item))
            return web.json_response({"queued": len(self._queue)})
        if action == "requests":
            return web.json_response([r.summary() for r in self.requests])
        if action == "reset" and request.method == "POST":
            self.reset()
            return web.json_response({"ok": True})
        return web.json_response({"error": {"message": "unknown admin action"}}, status=404)


GEMINI_3 = re.compile(r"gemini-3")


def unsigned_model_turn(rec: RecordedRequest) -> Reply | None:
    """Gemini 3's rule: in the history, a model turn's first part and each of its images carry the
    thoughtSignature the model gave them (or Google's placeholder); else 400 INVALID_ARGUMENT."""
    match = re.search(r"/models/([^/:]+):(?:stream)?[gG]enerateContent$", rec.path)
    if not match or not GEMINI_3.search(match.group(1)) or not isinstance(rec.json, dict):
        return None
    for c, content in enumerate(rec.json.get("contents") or []):
        if not isinstance(content, dict) or content.get("role") != "model":
            continue
        parts = [p for p in content.get("parts") or [] if isinstance(p, dict) and p.get("thought") is not True]
        for i, part in enumerate(parts):
            needs = i == 0 or "inlineData" in part or "inline_data" in part
            if needs and not (part.get("thoughtSignature") or part.get("thought_signature")):
                return Reply(status=400, body={"error": {"code": 400, "status": "INVALID_ARGUMENT", "message": (
                    f"Unable to submit request because a model part is missing a thought_signature in "
                    f"content position {c + 1}, part position {i + 1}. Learn more: "
                    "https://ai.google.dev/gemini-api/docs/thought-signatures")}})
    return None


async def _serve(args: argparse.Namespace) -> None:
    size = tuple(int(x) for x in args.image_size.lower().split("x"))
    gw = FakeGateway(image_size=size, image_bytes=args.image_bytes, chat_style=args.chat_style,  # type: ignore[arg-type]
                     thoughts=args.thoughts, latency=args.latency, host=args.host, port=args.port,
                     thought_images=args.thought_images, stream_delay=args.stream_delay)
    if args.rate_limit:
        count, seconds = args.rate_limit.split("/")
        gw.rate_limit = TokenBucket(int(count), float(seconds))
    async with gw:
        print(f"FAKE_GATEWAY_URL={gw.url}", flush=True)
        await asyncio.Event().wait()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.fakes.fake_gateway", description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port (printed)")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds before each model answer")
    parser.add_argument("--image-bytes", type=int, default=None, help="pad the answer PNG to ~this size")
    parser.add_argument("--image-size", default="1024x1024", help="answer PNG pixels, WxH")
    parser.add_argument("--chat-style", choices=("auto", "parts", "markdown", "images"), default="auto")
    parser.add_argument("--thoughts", action="store_true", help="Gemini answers include thought parts")
    parser.add_argument("--thought-images", type=int, default=1, help="interim images among the thoughts")
    parser.add_argument("--stream-delay", type=float, default=0.0, help="seconds between SSE events")
    parser.add_argument("--rate-limit", metavar="N/SECONDS", help="allow N model requests per window, then 429")
    try:
        asyncio.run(_serve(parser.parse_args()))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
