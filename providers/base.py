"""The contract between the shared HTTP client and the wire-format translators.

A translator module (`openai_chat`, `openai_images`, `gemini`) is pure: it turns a
GenerationRequest into an HttpRequest and the gateway's bytes into a ParsedAnswer. It opens no
sockets and never sleeps; `providers.client` does the HTTP, retries, error mapping and redaction
once for all of them, and runs the parsers through a CpuRunner (the bot passes its pool of
worker processes, core.cpu.CpuPool: the parsers decode megabytes of base64).

Every translator module exposes:

    build_request(config: ProviderConfig, request: GenerationRequest) -> HttpRequest
    parse_response(config: ProviderConfig, body: bytes) -> ParsedAnswer
    parse_stream(config: ProviderConfig, events: list[bytes]) -> ParsedAnswer
        # events: the payload of each SSE event (its `data:` lines joined), `[DONE]` excluded
    stream_progress(config, event: bytes, state: dict) -> (list[Progress], state)   (optional)
        # one SSE event as it arrives: the words and interim images it shows; `state` is a small
        # picklable dict carried from one event to the next ({} for the first)

Parsers raise RefusedError for explicit blocks (finishReason IMAGE_SAFETY, promptFeedback
.blockReason, finish_reason content_filter, ...) and MalformedResponse for unreadable bodies. A
ParsedAnswer with neither images nor image_urls is turned into NoImageError by the client.
"""
from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, TypeVar

from .models import ImageData, thinks

T = TypeVar("T")


class CpuRunner(Protocol):
    """Runs CPU-heavy steps off the event loop: `run` in threads, `run_process` in worker
    processes where the owner has them (functions importable by name, arguments picklable)."""

    async def run(self, fn: Callable[..., T], /, *args: Any) -> T: ...

    async def run_process(self, fn: Callable[..., T], /, *args: Any) -> T: ...


class ThreadRunner:
    """The CpuRunner of a one-shot caller (the CLI, tests): both kinds of step in a thread."""

    async def run(self, fn: Callable[..., T], /, *args: Any) -> T:
        return await asyncio.to_thread(fn, *args)

    run_process = run


WireFormat = Literal["openai_chat", "openai_images", "gemini"]
WIRE_FORMATS: tuple[str, ...] = ("openai_chat", "openai_images", "gemini")


@dataclass(frozen=True)
class ProviderConfig:
    name: str  # lower-case, as listed in PROVIDERS
    format: WireFormat
    base_url: str  # includes the API version segment, no trailing slash
    api_key: str
    model: str
    preset: str | None = None
    stream: bool = False
    timeout: float = 300.0  # seconds for one attempt
    max_retries: int = 2
    # Auth header style: "bearer" (Authorization: Bearer KEY) or "x-goog-api-key".
    auth: Literal["bearer", "x-goog-api-key"] = "bearer"
    # openai_chat: where aspect ratio / resolution go.
    #   "extra_body": {"extra_body": {"google": {"image_config": {...}}}}   (InfinityBlue, new-api)
    #   "image_config": top-level "image_config" plus "modalities": ["image","text"]   (OpenRouter)
    #   "prompt": no documented field, so a short hint is appended to the prompt text   (MuleRun)
    chat_options: Literal["extra_body", "image_config", "prompt"] = "image_config"
    # openai_chat: a text-only user message as a plain string (InfinityBlue) or as a parts list.
    chat_string_content: bool = False
    # openai_chat: "litellm" adds LiteLLM's own request fields (its retries off, thinking shown,
    # placeholder signatures on Gemini 3 history).
    chat_dialect: Literal["plain", "litellm"] = "plain"
    # openai_images: "openai" sends what OpenAI's images API defines (pixel `size`, `n`);
    # "mixroute" sends MixRoute's fields (`size` as an aspect ratio, `image_size`, `quality`, ...).
    images_options: Literal["openai", "mixroute"] = "openai"
    # openai_images: input images as multipart POST {base}/images/edits (OpenAI's API), or as
    # Gemini-style "contents" in the generations body (MixRoute).
    images_input: Literal["contents", "edits"] = "edits"
    # Live previews (streamed thoughts and interim images); None: on for thinking models on the
    # gemini format and with the litellm dialect.
    previews: bool | None = None
    # Image URLs in answers that point at private/loopback addresses are fetched only when the
    # operator opts in (the gateway's own host is always allowed).
    allow_private_urls: bool = False
    max_download_bytes: int = 50 * 1024 * 1024
    max_concurrent: int = 64  # calls at once at most; the adaptive limit stays under it (providers.limiter)
    # The sizes this provider's model renders, when the operator lists them (a gateway's own model
    # alias the bot cannot recognise); None: from the model name (core/models.py).
    resolutions: tuple[str, ...] | None = None

    @property
    def wants_previews(self) -> bool:
        if self.previews is not None:
            return self.previews
        return thinks(self.model) and (self.format == "gemini" or self.chat_dialect == "litellm")

    def __repr__(self) -> str:  # keep the key out of every repr, log line and traceback
        return (f"ProviderConfig(name={self.name!r}, format={self.format!r}, base_url={self.base_url!r}, "
                f"model={self.model!r}, preset={self.preset!r}, api_key='***')")


@dataclass(frozen=True)
class HttpRequest:
    method: str
    url: str
    headers: dict[str, str]
    json: dict[str, Any] | None = None
    # multipart form: (field name, value, filename or None, content type or None)
    form: list[tuple[str, bytes | str, str | None, str | None]] | None = None
    stream: bool = False  # the answer is an SSE stream

    def __repr__(self) -> str:
        return f"HttpRequest({self.method} {self.url}, stream={self.stream})"


@dataclass
class ParsedAnswer:
    images: list[ImageData] = field(default_factory=list)
    image_urls: list[str] = field(default_factory=list)  # http(s) images for the client to download
    text: str = ""
    usage: dict[str, Any] = field(default_factory=dict)
    finish_reason: str | None = None
    model: str | None = None  # as the gateway names it, when it says
    provider_state: dict[str, Any] | None = None
    drafts: list[ImageData] = field(default_factory=list)  # interim images told apart: previews only
    # A thinking model's answer whose images carry no draft marker: its last ones are the finals.
    last_is_final: bool = False

    @staticmethod
    def merged(answers: list["ParsedAnswer"]) -> "ParsedAnswer":
        """One answer from the concurrent calls of a count > 1 fan-out."""
        texts = list(dict.fromkeys(a.text.strip() for a in answers if a.text and a.text.strip()))
        usage: dict[str, Any] = {}
        for a in answers:
            for key, value in (a.usage or {}).items():
                if isinstance(value, (int, float)) and not isinstance(value, bool) and \
                        isinstance(usage.get(key, 0), (int, float)):
                    usage[key] = usage.get(key, 0) + value
                else:
                    usage.setdefault(key, value)
        return ParsedAnswer(text="\n\n".join(texts), usage=usage,
                            finish_reason=answers[0].finish_reason if answers else None,
                            model=next((a.model for a in answers if a.model), None),
                            provider_state=next((a.provider_state for a in answers if a.provider_state), None))
