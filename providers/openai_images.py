"""OpenAI Images (`POST {base}/images/generations`, `/images/edits`): OpenAI-style gateways, MixRoute.

By default the request is what OpenAI's images API defines: `n`, a pixel `size` (which gateways in
front of Gemini, LiteLLM among them, map back to an aspect ratio and a resolution) and input images
as a multipart upload to /images/edits (one `image` part, or repeated `image[]` parts as the OpenAI
SDK sends a list). MixRoute (seed 001, images_options "mixroute") reads `size` as an aspect ratio
and `image_size` as the resolution, wants `quality` and `response_format`, and takes input images
as Gemini-style `contents` in the generations body (images_input "contents").

Images endpoints keep no history, so a conversation is reduced to its latest image: the images of
the newest earlier turn that has any (normally the last model output), followed by the images
attached to this request.
"""
from __future__ import annotations

from typing import Any

from .base import HttpRequest, ParsedAnswer, ProviderConfig
from .images import b64
from .models import GenerationRequest, ImageData, thinks
from .parsing import (ImageSink, auth_headers, error_from_body, get, guarded, image_ref, load_json,
                      normalise_usage)


# Gemini 3's pixel sizes at 1K; 2K and 4K are twice and four times as wide and high.
_SIZES_1K = {"1:1": (1024, 1024), "2:3": (848, 1264), "3:2": (1264, 848), "3:4": (896, 1200),
             "4:3": (1200, 896), "4:5": (928, 1152), "5:4": (1152, 928), "9:16": (768, 1376),
             "16:9": (1376, 768), "21:9": (1584, 672)}
_SCALE = {"1K": 1, "2K": 2, "4K": 4}


def pixel_size(aspect_ratio: str | None, resolution: str | None) -> str | None:
    """OpenAI's `size` for a ratio and a resolution ("16:9", "2K" -> "2752x1536"); a resolution
    alone is square; neither: None (the model's default)."""
    if not aspect_ratio and not resolution:
        return None
    width, height = _SIZES_1K[aspect_ratio or "1:1"]
    scale = _SCALE[resolution or "1K"]
    return f"{width * scale}x{height * scale}"


def _size_fields(config: ProviderConfig, request: GenerationRequest) -> dict[str, str]:
    if config.images_options == "mixroute":
        return {k: v for k, v in (("size", request.aspect_ratio), ("image_size", request.resolution)) if v}
    size = pixel_size(request.aspect_ratio, request.resolution)
    return {"size": size} if size else {}


def input_images(request: GenerationRequest) -> tuple[ImageData, ...]:
    latest = next((turn.images for turn in reversed(request.history) if turn.images), ())
    return tuple(latest) + tuple(request.images)


def build_request(config: ProviderConfig, request: GenerationRequest) -> HttpRequest:
    images = input_images(request)
    if images and config.images_input == "edits":
        return _edits_request(config, request, images)
    body: dict[str, Any] = {"model": config.model, "prompt": request.prompt, "n": request.count,
                            **_size_fields(config, request)}
    if config.images_options == "mixroute":
        body.update(quality="high", response_format="b64_json")
    if images:  # seed 001: "contents: Used for image-to-image or multi-turn conversations"
        parts: list[dict[str, Any]] = [{"text": request.prompt}]
        parts += [{"inline_data": {"mime_type": img.mime_type, "data": b64(img)}} for img in images]
        body["contents"] = [{"role": "user", "parts": parts}]
    headers = {**auth_headers(config), "Content-Type": "application/json"}
    return HttpRequest("POST", f"{config.base_url}/images/generations", headers, json=body)


def _edits_request(config: ProviderConfig, request: GenerationRequest,
                   images: tuple[ImageData, ...]) -> HttpRequest:
    form: list[tuple[str, bytes | str, str | None, str | None]] = [
        ("model", config.model, None, None),
        ("prompt", request.prompt, None, None),
        ("n", str(request.count), None, None),
    ]
    form += [(key, value, None, None) for key, value in _size_fields(config, request).items()]
    name = "image" if len(images) == 1 else "image[]"
    form += [(name, img.data, f"image{i + 1}.{img.extension}", img.mime_type) for i, img in enumerate(images)]
    # no Content-Type header: the client's multipart writer sets it with the boundary
    return HttpRequest("POST", f"{config.base_url}/images/edits", auth_headers(config), form=form)


def _parse_data(data: dict[str, Any], sink: ImageSink, drafts: ImageSink | None = None) -> None:
    items = data.get("data") or []
    if isinstance(items, dict):
        items = [items]
    # LiteLLM marks each final image of a Gemini answer with its thought signature: when some are
    # marked, the others are drafts.
    signed = [isinstance(i, dict) and bool(get(i.get("provider_specific_fields"), "thought_signature"))
              for i in items]
    for item, is_signed in zip(items, signed):
        draft = drafts is not None and any(signed) and not is_signed
        (drafts if draft else sink).add(image_ref(item))  # b64_json (raw or data URI) or url


@guarded
def parse_response(config: ProviderConfig, body: bytes) -> ParsedAnswer:
    data = load_json(body)
    if isinstance(data, dict) and "data" not in data:
        # Liberal: some gateways answer the images endpoint in another wire format.
        if "candidates" in data or "promptFeedback" in data:
            from . import gemini
            return gemini.parse_response(config, body)
        if "choices" in data:
            from . import openai_chat
            return openai_chat.parse_response(config, body)
    if not isinstance(data, dict):
        raise TypeError(f"expected a JSON object, got {type(data).__name__}")
    if data.get("error"):
        raise error_from_body(None, data)
    sink, drafts = ImageSink(), ImageSink()
    _parse_data(data, sink, drafts)
    sink.check()
    # data: [] is how gateways report a safety block here; the client turns it into NoImageError.
    return ParsedAnswer(images=sink.images, image_urls=sink.urls, usage=normalise_usage(data.get("usage")),
                        model=data.get("model") if isinstance(data.get("model"), str) else None,
                        drafts=drafts.images, last_is_final=drafts.empty and thinks(config.model))


@guarded
def parse_stream(config: ProviderConfig, events: list[bytes]) -> ParsedAnswer:
    # gpt-image style streams: partial images, then one `...completed` event per final image.
    sink, usage = ImageSink(), {}
    for event in events:
        if not event or event.isspace():  # keep-alives; isspace() does not copy megabytes
            continue
        data = load_json(event)
        if not isinstance(data, dict):
            continue
        if data.get("error"):
            raise error_from_body(None, data)
        kind = str(data.get("type") or "")
        if "partial_image" in kind:
            continue
        if "data" in data:
            _parse_data(data, sink)
        elif data.get("b64_json") or data.get("url"):
            sink.add(image_ref(data))
        usage = normalise_usage(data.get("usage")) or usage
    sink.check()
    return ParsedAnswer(images=sink.images, image_urls=sink.urls, usage=usage)
