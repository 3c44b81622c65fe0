"""The one place that does HTTP: send, read (JSON or SSE), map errors, retry, fail over, download.

    async with aiohttp.ClientSession() as session:           # owned by the bot or the CLI
        router = ProviderRouter(load_provider_configs(os.environ), session)
        result = await router.generate(GenerationRequest("a red apple"), provider="mule")

Policy: connection errors, timeouts, 408, 429 and 5xx are retried (config.max_retries times,
exponential backoff with jitter, or the server's own Retry-After / retry-after-ms / RetryInfo
wait when it is at most RETRY_AFTER_CAP seconds; a longer wait gives up on that provider).
A 429 that says how long to wait is not a failure: the provider's limiter (providers.limiter) halves
its concurrency, and this call and every new one wait that long, for up to the provider's timeout.
Then the router fails over to the next provider in PROVIDERS order. Refusals are final; a bad
request is not sent elsewhere either.

count > 1: openai_images sends `n`; openai_chat and gemini return one image per call, so `count`
calls run concurrently and their images are merged (partial success returns what arrived).
"""
from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from types import ModuleType
from typing import Any

import aiohttp

from .base import CpuRunner, HttpRequest, ParsedAnswer, ProviderConfig, ThreadRunner
from .presets import translator_for
from .errors import (ConfigError, MalformedResponse, NoImageError, ProviderError,
                     ProviderTimeout, RateLimitError, ServerError, most_meaningful)
from .fetch import download
from .http_errors import backoff_delay, error_for_response, error_in_event, html_answer
from .images import to_image
from .limiter import AdaptiveLimiter, MemoryBudget, answer_cost, mark_caller
from .models import Attempt, GenerationRequest, GenerationResult, ImageData, OnProgress
from .payload import BIG, Chunks, joined
from .progress import ON_PROGRESS, ProgressFeed, report_drafts
from .redact import Redactor, excerpt, redact_texts
from .sse import SSEReader

log = logging.getLogger(__name__)

RETRY_AFTER_CAP = 30.0  # seconds; a server asking for longer is treated as "not now"
_AUTH_HEADERS = ("authorization", "x-goog-api-key")
_PARSE_ERRORS = (ValueError, KeyError, TypeError, IndexError, AttributeError)

Sleep = Callable[[float], Awaitable[Any]]


@dataclasses.dataclass
class _Exchange:
    """What one HTTP attempt brought back, before parsing."""

    body: bytes | Chunks | None = None  # a long answer in the pieces it came in
    events: list[bytes | Chunks] | None = None  # SSE payloads, likewise
    done: bool = False  # the stream said [DONE]
    truncated: bool = False  # the stream stopped inside an event


class ProviderClient:
    """One configured provider: build, send, retry, parse. Its only state is its limiter (calls at once)."""

    def __init__(self, config: ProviderConfig, session: aiohttp.ClientSession, *,
                 translator: ModuleType | None = None, redactor: Redactor | None = None,
                 sleep: Sleep = asyncio.sleep, rng: Callable[[], float] = random.random,
                 retry_after_cap: float = RETRY_AFTER_CAP, cpu: CpuRunner | None = None,
                 budget: MemoryBudget | None = None) -> None:
        self.config = config
        self._cpu = cpu or ThreadRunner()
        self.limiter = AdaptiveLimiter(max_limit=config.max_concurrent, budget=budget, sleep=sleep)
        self._session = session
        self._translator = translator or translator_for(config)
        self._redact = redactor or Redactor([config.api_key])
        self._redact.add(config.api_key)
        self._sleep = sleep
        self._rng = rng
        self._cap = retry_after_cap

    def __repr__(self) -> str:
        return f"ProviderClient({self.config!r})"

    async def generate(self, request: GenerationRequest, *,
                       on_progress: OnProgress | None = None) -> GenerationResult:
        """`on_progress`: called with the model's words and interim images as a stream arrives."""
        started = time.monotonic()
        token = ON_PROGRESS.set(on_progress) if on_progress is not None else None
        try:
            fan_out = request.count > 1 and self.config.format != "openai_images"
            cost = answer_cost(request.resolution, 1 if fan_out else request.count)
            # Building and serialising the body base64-encodes every input image: off the loop,
            # and once even when several identical calls go out.
            http, body = await self._cpu.run(
                self._prepare, dataclasses.replace(request, count=1) if fan_out else request)
            if fan_out:
                answer, images = await self._fan_out(http, body, request.count, cost)
            else:
                answer, images = await self._call(http, body, cost, request.count)
        except ProviderError as exc:
            exc.provider = exc.provider or self.config.name
            raise self._redact.error(exc)
        finally:
            if token is not None:
                ON_PROGRESS.reset(token)
        seconds = time.monotonic() - started
        log.info("%s: %d image(s) from %s in %.2fs (%d bytes)", self.config.name, len(images),
                 answer.model or self.config.model, seconds, sum(len(i.data) for i in images))
        # The model's words are shown to members and stored: a gateway echoing the key (in its own
        # text, or in a text part kept for the next turn) must not carry it there.
        return GenerationResult(images=images, text=self._redact.exact(answer.text), usage=answer.usage,
                                provider=self.config.name, model=answer.model or self.config.model,
                                seconds=seconds, provider_state=redact_texts(answer.provider_state, self._redact),
                                warnings=[f"asked for {request.count} images, got {len(images)}"]
                                if len(images) < request.count else [])

    async def _fan_out(self, http: HttpRequest, body: bytes | None,
                       count: int, cost: int) -> tuple[ParsedAnswer, list[ImageData]]:
        outcomes = await asyncio.gather(*(self._call(http, body, cost) for _ in range(count)),
                                        return_exceptions=True)
        good = [o for o in outcomes if not isinstance(o, BaseException)]
        for outcome in outcomes:
            if isinstance(outcome, BaseException) and (not good or not isinstance(outcome, ProviderError)):
                raise outcome  # nothing arrived, or a bug / cancellation: do not hide it
        if len(good) < len(outcomes):
            log.warning("%s: %d of %d concurrent calls failed; returning the rest", self.config.name,
                        len(outcomes) - len(good), len(outcomes))
        return ParsedAnswer.merged([a for a, _ in good]), [img for _, imgs in good for img in imgs]

    async def _call(self, http: HttpRequest, body: bytes | None, cost: int,
                    expected: int = 1) -> tuple[ParsedAnswer, list[ImageData]]:
        answer = await self._with_retries(http, body, cost)
        if not http.stream:  # a stream's drafts were reported as they came
            await report_drafts(answer.drafts, self.config.name)
        images = list(answer.images)
        if answer.image_urls:
            images += await self._download_all(http, answer.image_urls)
        if answer.last_is_final:  # a thinking model's drafts, unmarked: the last images are the finals
            images = images[-expected:]
        if not images:
            reason = answer.finish_reason
            raise NoImageError(provider=self.config.name, model_text=answer.text or None,
                               reason=None if not reason or reason.lower() == "stop" else reason)
        return answer, images

    def _prepare(self, request: GenerationRequest) -> tuple[HttpRequest, bytes | None]:
        http = self._translator.build_request(self.config, request)
        body = json.dumps(http.json, ensure_ascii=False).encode() if http.json is not None else None
        return http, body

    async def _with_retries(self, http: HttpRequest, body: bytes | None, cost: int) -> ParsedAnswer:
        retries, waited = 0, 0.0  # waited: seconds spent on the gateway's own Retry-After for rate limits
        while True:
            try:
                async with self.limiter.call(cost, retry=bool(retries or waited)):
                    return await self._attempt(http, body)
            except ProviderError as exc:
                exc.provider = exc.provider or self.config.name
                self._redact.error(exc)
                hint = getattr(exc, "retry_after", None)
                # The gateway said when: wait, without using up a retry, as long as one attempt may take.
                told = (isinstance(exc, RateLimitError) and hint is not None and hint <= self._cap
                        and waited + hint <= self.config.timeout)
                if not exc.retryable or (retries >= self.config.max_retries and not told):
                    raise
                if hint and hint > self._cap:
                    log.warning("%s: asked to wait %.0fs (over %.0fs): giving up on this provider",
                                self.config.name, hint, self._cap)
                    raise
                delay = hint or backoff_delay(retries, self._rng())
                waited, retries = (waited + delay, retries) if told else (waited, retries + 1)
                what = "waiting as the gateway asked" if told else f"retry {retries}/{self.config.max_retries}"
                log.warning("%s: %s (%s); %s: %.2fs (%s)", self.config.name, type(exc).__name__,
                            exc.detail or exc, what, delay, self.limiter)
                await (self.limiter.pause(delay) if hint else self._sleep(delay))

    async def _attempt(self, http: HttpRequest, body: bytes | None) -> ParsedAnswer:
        cfg = self.config
        started = time.monotonic()
        data: Any = body if http.form is None else _form(http.form)
        headers = {k: v for k, v in http.headers.items()
                   if not (http.form is not None and k.lower() == "content-type")}
        if body is not None:
            headers.setdefault("Content-Type", "application/json")
        try:
            # No redirects: a POST carrying the key must not be forwarded to another host.
            async with self._session.request(http.method, http.url, data=data, headers=headers,
                                             allow_redirects=False,
                                             timeout=aiohttp.ClientTimeout(total=cfg.timeout)) as resp:
                status = resp.status
                if 300 <= status < 400:
                    raise MalformedResponse(provider=cfg.name, status=status, detail=self._redact(
                        f"HTTP {status} redirect to {resp.headers.get('Location', '?')}: "
                        f"set PROVIDER_{cfg.name.upper()}_BASE_URL to the final address"))
                if not 200 <= status < 300:
                    raw = await self._read_body(resp)
                    self._log_http(http, status, started, body, len(raw))
                    raise error_for_response(status, resp.headers, raw, self._redact, cfg.name)
                ctype = resp.headers.get("Content-Type", "")
                if (http.stream and "json" not in ctype) or "event-stream" in ctype:
                    exchange = await self._read_stream(resp)
                else:
                    exchange = _Exchange(body=await self._read_body(resp, pieces=True))
                self._log_http(http, status, started, body,
                               len(exchange.body or b"") + sum(map(len, exchange.events or ())))
        except (asyncio.TimeoutError, TimeoutError):
            raise ProviderTimeout(provider=cfg.name,
                                  detail=f"no complete answer within {cfg.timeout:g}s") from None
        except aiohttp.ClientError as exc:
            raise ServerError(provider=cfg.name,
                              detail=self._redact(f"{type(exc).__name__}: {exc}")) from None
        return await self._parse(http, status, exchange)

    async def _parse(self, http: HttpRequest, status: int, ex: _Exchange) -> ParsedAnswer:
        cfg, tr = self.config, self._translator
        try:
            if ex.events is None:
                assert ex.body is not None
                if _head(ex.body, 1024).lstrip()[:1] not in (b"{", b"["):  # HTML error page behind a 200
                    raise html_answer(cfg.name, status, _head(ex.body, 8192), self._redact)
                answer = await self._cpu.run_process(_parse_body, tr.parse_response, cfg, ex.body)
            else:
                if not ex.events:
                    raise ServerError("The image service's stream ended before any answer.",
                                      provider=cfg.name, detail="SSE stream with no events")
                answer = await self._cpu.run_process(_parse_stream, tr.parse_stream, cfg, ex.events)
        except MalformedResponse as exc:
            if ex.truncated:  # a stream cut mid-event: the gateway dropped us, worth a retry
                raise ServerError("The image service's stream stopped halfway.", provider=cfg.name,
                                  detail="SSE stream ended inside an event") from None
            exc.detail = self._redact(exc.detail) or excerpt(_head(ex.body or b"", 8192), self._redact)
            raise
        except ProviderError:
            raise
        except _PARSE_ERRORS as exc:
            raise MalformedResponse(provider=cfg.name, detail=self._redact(
                f"{type(exc).__name__} while parsing: {exc}"[:300])) from None
        if (ex.events is not None and not answer.images and not answer.image_urls
                and not ex.done and not answer.finish_reason):
            raise ServerError("The image service's stream stopped before the image arrived.",
                              provider=cfg.name, detail=f"stream ended after {len(ex.events)} events")
        return answer

    async def _read_body(self, resp: aiohttp.ClientResponse, *, pieces: bool = False) -> bytes | Chunks:
        """The whole body; with `pieces`, a long one as Chunks (joined where it is parsed)."""
        limit = 4 * self.config.max_download_bytes
        chunks: list[bytes] = []
        size = 0
        async for chunk in resp.content.iter_any():
            chunks.append(chunk)
            size += len(chunk)
            if size > limit:
                raise MalformedResponse(provider=self.config.name, detail=f"answer over {limit} bytes")
        return Chunks(chunks) if pieces and size > BIG else b"".join(chunks)

    async def _read_stream(self, resp: aiohttp.ClientResponse) -> _Exchange:
        limit = 4 * self.config.max_download_bytes
        reader = SSEReader()
        events: list[bytes | Chunks] = []
        feed = ProgressFeed(self.config, self._translator, self._cpu)

        def take(batch: list[bytes | Chunks]) -> None:
            for event in batch:
                # An error object is short; a long payload (Chunks) is an image, parsed later.
                err = error_in_event(event, self._redact, self.config.name) if isinstance(event, bytes) else None
                if err is not None:
                    raise err
                events.append(event)
                feed.put(event)

        try:
            async for chunk in resp.content.iter_any():
                take(reader.feed(chunk))
                if reader.bytes_read > limit:
                    raise MalformedResponse(provider=self.config.name, detail=f"stream over {limit} bytes")
            take(reader.close())
        except BaseException:
            feed.cancel()
            raise
        await feed.close()
        return _Exchange(events=events, done=reader.done, truncated=reader.truncated)

    async def _download_all(self, http: HttpRequest, urls: Sequence[str]) -> list[ImageData]:
        auth = {k: v for k, v in http.headers.items() if k.lower() in _AUTH_HEADERS}
        images: list[ImageData] = []
        first_error: ProviderError | None = None
        for url in urls:
            try:
                data, _declared = await download(self._session, url, self.config, auth, self._redact)
                images.append(await self._cpu.run(to_image, data))
            except ValueError:
                first_error = first_error or MalformedResponse(
                    provider=self.config.name, detail="downloaded file is not an image")
            except ProviderError as exc:
                first_error = first_error or exc
                log.warning("%s: image download failed: %s", self.config.name, exc.detail or exc)
        if not images and first_error is not None:
            first_error.provider = self.config.name
            raise first_error
        return images

    def _log_http(self, http: HttpRequest, status: int, started: float, sent: bytes | None,
                  received: int) -> None:
        log.info("%s: %s %s model=%s -> HTTP %d in %.2fs (sent %d bytes, received %d bytes)",
                 self.config.name, http.method, self._redact(http.url.split("?")[0]), self.config.model,
                 status, time.monotonic() - started, len(sent or b""), received)


class ProviderRouter:
    """Every configured provider, with failover in PROVIDERS order."""

    def __init__(self, configs: Sequence[ProviderConfig], session: aiohttp.ClientSession, *,
                 sleep: Sleep = asyncio.sleep, rng: Callable[[], float] = random.random,
                 translators: Callable[[ProviderConfig], ModuleType] = translator_for,
                 cpu: CpuRunner | None = None, memory_budget: MemoryBudget | None = None) -> None:
        if not configs:
            raise ConfigError("PROVIDERS is not set: no provider configured")
        self._redact = Redactor(c.api_key for c in configs)
        self._clients = {c.name: ProviderClient(c, session, translator=translators(c), sleep=sleep, rng=rng,
                                                redactor=self._redact, cpu=cpu, budget=memory_budget)
                         for c in configs}

    @property
    def names(self) -> list[str]:
        return list(self._clients)

    def get(self, name: str) -> ProviderClient:
        try:
            return self._clients[name.lower()]
        except KeyError:
            raise ConfigError(f"unknown provider {name!r}; configured: {', '.join(self._clients)}") from None

    def __repr__(self) -> str:
        return f"ProviderRouter({self.names})"

    def queue_position(self, task: asyncio.Task | None) -> int:
        """1-based place in its provider's queue of a call made by `task` (which called generate); 0: none."""
        return next((p for c in self._clients.values() if (p := c.limiter.position(task))), 0)

    async def generate(self, request: GenerationRequest, *, provider: str | None = None,
                       on_progress: OnProgress | None = None) -> GenerationResult:
        mark_caller()
        first = self.get(provider).config.name if provider else self.names[0]
        order = [first] + [n for n in self.names if n != first]
        errors: list[ProviderError] = []
        attempts: list[Attempt] = []
        for name in order:
            try:
                result = await self._clients[name].generate(request, on_progress=on_progress)
            except ProviderError as exc:
                if not exc.failover:
                    raise
                errors.append(exc)
                attempts.append(Attempt(name, self._redact(exc.operator_message)))
                if name != order[-1]:
                    log.warning("%s failed (%s: %s); failing over", name, type(exc).__name__,
                                exc.detail or exc)
                continue
            result.attempts = attempts
            return result
        raise most_meaningful(errors)


# Run in a worker process (core.cpu.CpuPool.run_process): joining a 4K answer's 23 MB is a copy the
# event loop should not make. Module-level, so that they can be pickled by name.
def _parse_body(parse: Callable[[ProviderConfig, bytes], ParsedAnswer], config: ProviderConfig,
                body: bytes | Chunks) -> ParsedAnswer:
    return parse(config, joined(body))


def _parse_stream(parse: Callable[[ProviderConfig, list[bytes]], ParsedAnswer], config: ProviderConfig,
                  events: list[bytes | Chunks]) -> ParsedAnswer:
    return parse(config, [joined(e) for e in events])


def _head(body: bytes | Chunks, n: int) -> bytes:
    return body.head(n) if isinstance(body, Chunks) else body[:n]


def _form(fields: list[tuple[str, bytes | str, str | None, str | None]]) -> aiohttp.FormData:
    # Rebuilt per attempt: aiohttp's FormData can be sent only once.
    form = aiohttp.FormData(default_to_multipart=True)
    for name, value, filename, ctype in fields:
        if isinstance(value, (bytes, bytearray)) and filename is None:
            filename = name
        form.add_field(name, value, filename=filename, content_type=ctype)
    return form
