"""The contract between the shared HTTP client and the wire-format translators.

A translator module (`openai_chat`, `openai_images`, `gemini`) is pure: it turns a
GenerationRequest into an HttpRequest and the gateway's bytes into a ParsedAnswer. It opens no
sockets and never sleeps; `providers.client` does the HTTP, retries, error mapping and redaction
once for all of them, and runs the parsers in a worker process (providers.cpu: they decode megabytes
of base64).

Every translator module exposes:

    build_request(config: ProviderConfig, request: GenerationRequest) -> HttpRequest
    parse_response(config: ProviderConfig, body: bytes) -> ParsedAnswer
    parse_stream(config: ProviderConfig, events: list[bytes]) -> ParsedAnswer
        # events: the payload of each SSE event (its `data:` lines joined), `[DONE]` excluded

Parsers raise RefusedError for explicit blocks (finishReason IMAGE_SAFETY, promptFeedback
.blockReason, finish_reason content_filter, ...) and MalformedResponse for unreadable bodies. A
ParsedAnswer with neither images nor image_urls is turned into NoImageError by the client.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from .models import ImageData

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
    # openai_images: input images as Gemini-style "contents" in the generations body (MixRoute),
    # or as multipart POST {base}/images/edits (OpenAI / gpt-image-1 style).
    images_input: Literal["contents", "edits"] = "contents"
    # Image URLs in answers that point at private/loopback addresses are fetched only when the
    # operator opts in (the gateway's own host is always allowed).
    allow_private_urls: bool = False
    max_download_bytes: int = 50 * 1024 * 1024
    max_concurrent: int = 64  # calls at once at most; the adaptive limit stays under it (providers.limiter)

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
