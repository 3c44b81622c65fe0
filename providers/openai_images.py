"""OpenAI Images (`POST {base}/images/generations`, `/images/edits`): MixRoute and DALL-E style gateways.

MixRoute (seed 001) reads `size` as an aspect ratio and `image_size` as the resolution, and takes
input images as Gemini-style `contents` in the generations body. The edits variant is OpenAI's
multipart upload (one `image` part, or repeated `image[]` parts as the OpenAI SDK sends a list).

Images endpoints keep no history, so a conversation is reduced to its latest image: the images of
the newest earlier turn that has any (normally the last model output), followed by the images
attached to this request.
"""
from __future__ import annotations

from typing import Any

from .base import HttpRequest, ParsedAnswer, ProviderConfig
from .images import b64
from .models import GenerationRequest, ImageData
from .parsing import (ImageSink, auth_headers, error_from_body, guarded, image_ref, load_json,
                      normalise_usage)


def input_images(request: GenerationRequest) -> tuple[ImageData, ...]:
    latest = next((turn.images for turn in reversed(request.history) if turn.images), ())
    return tuple(latest) + tuple(request.images)


def build_request(config: ProviderConfig, request: GenerationRequest) -> HttpRequest:
    images = input_images(request)
    if images and config.images_input == "edits":
        return _edits_request(config, request, images)
    body: dict[str, Any] = {"model": config.model, "prompt": request.prompt}
    if request.aspect_ratio:
        body["size"] = request.aspect_ratio
    if request.resolution:
        body["image_size"] = request.resolution
    body.update(n=request.count, quality="high", response_format="b64_json")
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
    if request.aspect_ratio:
        form.append(("size", request.aspect_ratio, None, None))
    if request.resolution:
        form.append(("image_size", request.resolution, None, None))
    name = "image" if len(images) == 1 else "image[]"
    form += [(name, img.data, f"image{i + 1}.{img.extension}", img.mime_type) for i, img in enumerate(images)]
    # no Content-Type header: the client's multipart writer sets it with the boundary
    return HttpRequest("POST", f"{config.base_url}/images/edits", auth_headers(config), form=form)


def _parse_data(data: dict[str, Any], sink: ImageSink) -> None:
    items = data.get("data") or []
    if isinstance(items, dict):
        items = [items]
    for item in items:
        sink.add(image_ref(item))  # b64_json (raw or data URI) or url


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
    sink = ImageSink()
    _parse_data(data, sink)
    sink.check()
    # data: [] is how gateways report a safety block here; the client turns it into NoImageError.
    return ParsedAnswer(images=sink.images, image_urls=sink.urls, usage=normalise_usage(data.get("usage")),
                        model=data.get("model") if isinstance(data.get("model"), str) else None)


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
