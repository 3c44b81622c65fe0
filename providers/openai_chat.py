"""OpenAI chat completions (`POST {base}/chat/completions`): MuleRun, InfinityBlue, OpenRouter, new-api.

Requests follow each seed exactly (config.chat_options / chat_string_content pick the variant).
Answers are read liberally: images may sit in content parts (raw base64, data URI or URL), in a
Markdown string, in message.images / message.image, whatever the preset.

History: OpenAI messages cannot carry an assistant's image (gateways that convert to Gemini drop it
or fail), so model turns become text-only assistant messages and the images of the LAST model turn
that has any are re-sent as user image_url parts in the new user message (research §2.6): the
instruction ("make the sky purple") arrives together with the image it refers to. Earlier model
images are superseded and are not re-sent (every image costs tokens and request bytes); user turns
keep their own attachments.
"""
from __future__ import annotations

from typing import Any

from .base import HttpRequest, ParsedAnswer, ProviderConfig
from .errors import NoImageError, RefusedError, ServerError
from .gemini import SKIP_SIGNATURE
from .images import data_uri, find_markdown_images, looks_like_image_ref
from .models import GenerationRequest, ImageData, Progress, thinks
from .parsing import (NO_IMAGE_REASONS, REFUSAL_REASONS, ImageSink, auth_headers, error_from_body,
                      get, guarded, image_ref, load_json, merge_usage, normalise_usage)

_MODEL_IMAGE_PLACEHOLDER = "[image]"  # assistant turns must not be empty on some gateways


def options_hint(request: GenerationRequest) -> str:
    """The prompt suffix for gateways with no documented image options (MuleRun)."""
    bits = []
    if request.aspect_ratio:
        bits.append(f"Aspect ratio {request.aspect_ratio}")
    if request.resolution:
        bits.append(f"{request.resolution} resolution")
    return ", ".join(bits) + "." if bits else ""


def _user_message(config: ProviderConfig, text: str, images: tuple[ImageData, ...]) -> dict[str, Any]:
    if config.chat_string_content and not images:
        return {"role": "user", "content": text}  # InfinityBlue's documented shape
    parts: list[dict[str, Any]] = [{"type": "text", "text": text}] if text else []
    parts += [{"type": "image_url", "image_url": {"url": data_uri(img)}} for img in images]
    return {"role": "user", "content": parts}


def build_messages(config: ProviderConfig, request: GenerationRequest, prompt: str) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = []
    # LiteLLM turns provider_specific_fields.thought_signatures into the part's thoughtSignature:
    # Gemini 3 rejects a model turn without one, and this history has none of its own.
    signed = config.chat_dialect == "litellm" and thinks(config.model)
    for turn in request.history:
        if turn.role == "model":
            messages.append({"role": "assistant", "content": turn.text or _MODEL_IMAGE_PLACEHOLDER})
            if signed:
                messages[-1]["provider_specific_fields"] = {"thought_signatures": [SKIP_SIGNATURE]}
        elif turn.text or turn.images:
            messages.append(_user_message(config, turn.text, turn.images))
    # The image being edited is the newest model output, even if a text-only answer came after it;
    # it goes first, then the user's new attachments.
    latest = next((t.images for t in reversed(request.history) if t.role == "model" and t.images), ())
    messages.append(_user_message(config, prompt, tuple(latest) + tuple(request.images)))
    return messages


def build_request(config: ProviderConfig, request: GenerationRequest) -> HttpRequest:
    # No "n": chat completions cannot ask Gemini for several images (candidateCount is rejected by
    # image models); the client sends one request per image when request.count > 1.
    image_config = {k: v for k, v in (("aspect_ratio", request.aspect_ratio),
                                      ("image_size", request.resolution)) if v}
    prompt = request.prompt
    if config.chat_options == "prompt" and (hint := options_hint(request)):
        prompt = f"{prompt}\n\n{hint}" if prompt else hint
    stream = config.stream or config.wants_previews  # words and drafts come only while streaming
    body: dict[str, Any] = {"model": config.model, "stream": stream,
                            "messages": build_messages(config, request, prompt)}
    if config.chat_dialect == "litellm":
        body["num_retries"] = 0  # this client retries (honouring the wait); LiteLLM's would multiply
        if config.wants_previews:  # LiteLLM then asks Gemini for includeThoughts
            body["thinking"] = {"type": "enabled", "summary": "auto"}
    if config.chat_options == "image_config":
        body["modalities"] = ["image", "text"]  # OpenRouter returns no image without it
        if image_config:
            body["image_config"] = image_config
    elif config.chat_options == "extra_body" and image_config:
        body["extra_body"] = {"google": {"image_config": image_config}}  # a literal key, as documented
    headers = {**auth_headers(config), "Content-Type": "application/json"}
    return HttpRequest("POST", f"{config.base_url}/chat/completions", headers, json=body,
                       stream=stream)


class _Answer:
    """Accumulates one answer from a full message or from stream deltas.

    Draft ("thought") images are told apart by every marker gateways give: images streamed while
    only reasoning has arrived (LiteLLM), LiteLLM's empty thinking blocks (one per thought image).
    Without a marker, a thinking model's answer is flagged last_is_final.
    """

    def __init__(self, config: ProviderConfig, stream: bool, finals: bool = True) -> None:
        self.config, self.stream, self.finals = config, stream, finals
        self.sink = ImageSink()
        self.draft_sink = ImageSink()
        self.text: list[str] = []
        self.reasoning: list[str] = []
        self.reasoned = False  # reasoning has arrived
        self.thought_images = 0  # LiteLLM: a thinking block with no words is a thought image
        self.answered = False  # answer text (not reasoning) has arrived
        self.usage: dict[str, Any] = {}
        self.model: str | None = None
        self.finish: str | None = None
        self.native_finish: str | None = None
        self.refusal: str | None = None

    def envelope(self, data: Any) -> list[Any]:
        if not isinstance(data, dict):
            raise TypeError(f"expected a JSON object, got {type(data).__name__}")
        if data.get("error"):
            raise error_from_body(None, data)
        if data.get("usage"):
            self.usage = merge_usage(self.usage, normalise_usage(data["usage"]))
        if isinstance(data.get("model"), str) and data["model"]:
            self.model = data["model"]
        choices = data.get("choices") or []
        if not isinstance(choices, list) or not all(isinstance(c, dict) for c in choices):
            raise TypeError("choices is not a list of objects")
        for choice in choices:
            if choice.get("error"):  # OpenRouter may report a mid-answer failure on the choice
                raise error_from_body(None, {"error": choice["error"]})
            self.finish = get(choice, "finish_reason", "finishReason") or self.finish
            # OpenRouter: on the choice; LiteLLM: in provider_specific_fields
            self.native_finish = (get(choice, "native_finish_reason")
                                  or get(choice.get("provider_specific_fields"), "native_finish_reason")
                                  or self.native_finish)
        # choices: [] with a reason at the top level (a gateway's translation of a blocked prompt)
        feedback = get(data, "promptFeedback", "prompt_feedback")
        self.native_finish = (self.native_finish or get(data, "native_finish_reason", "finish_reason")
                              or get(feedback, "blockReason", "block_reason"))
        return choices

    def message(self, msg: Any, sep: str) -> None:
        if not isinstance(msg, dict):
            return
        reasoning = get(msg, "reasoning_content", "reasoning")
        if isinstance(reasoning, str) and reasoning:
            self.reasoning.append(reasoning)
            self.reasoned = True
        blocks = msg.get("thinking_blocks")
        if isinstance(blocks, list):
            self.thought_images += sum(1 for b in blocks if isinstance(b, dict) and not b.get("thinking"))
        content = msg.get("content")
        if isinstance(content, dict):  # a single part instead of a list
            content = [content]
        refs, said = [], ""
        if isinstance(content, str):
            said = content
        elif isinstance(content, list):
            pieces = []
            for part in content:
                if isinstance(part, str) or (isinstance(part, dict) and part.get("type") == "text"):
                    pieces.append(part if isinstance(part, str) else str(part.get("text") or ""))
                else:
                    refs.append(image_ref(part))
            said = sep.join(pieces)
        if content is not None:
            self.text.append(said)
        self.answered = self.answered or bool(said.strip())
        refs += [image_ref(item) for item in msg.get("images") or []]  # OpenRouter, LiteLLM >= 1.77
        if msg.get("image"):  # LiteLLM < 1.77
            refs.append(image_ref(msg["image"]))
        draft = self.stream and self.reasoned and not self.answered
        for ref in refs:
            if draft:
                self.draft_sink.add(ref)
            elif self.finals:
                self.sink.add(ref)
        if isinstance(msg.get("refusal"), str) and msg["refusal"]:
            self.refusal = msg["refusal"]

    def result(self, sep: str) -> ParsedAnswer:
        text = sep.join(t for t in self.text if t)
        refs, text = find_markdown_images(text)  # after joining: Markdown may span deltas
        if not refs and looks_like_image_ref(text):
            refs, text = [text], ""
        for ref in refs:
            self.sink.add(ref)
        images, drafts = list(self.sink.images), list(self.draft_sink.images)
        last_is_final = False
        if 0 < self.thought_images < len(images):  # thought images come first
            drafts, images = drafts + images[:self.thought_images], images[self.thought_images:]
        if self.sink.empty and drafts:  # no answer text came: the last image is the final render
            images = [drafts.pop()]
        elif not drafts and len(images) > 1 and (self.reasoned or thinks(self.config.model)):
            last_is_final = True
        self.sink.check()
        if not images and not self.sink.urls:
            self.draft_sink.check()
            reasons = {str(r).upper() for r in (self.native_finish or self.finish,) if r}
            reason, said = self.native_finish or self.finish, text or self.refusal
            if reasons & REFUSAL_REASONS:
                raise RefusedError(reason=reason, model_text=said)
            if reasons & NO_IMAGE_REASONS:
                raise NoImageError(reason=reason, model_text=said)
            if "ERROR" in reasons:  # the gateway gave up mid-answer without an error object
                raise ServerError(detail=f"finish_reason {reason}")
            if self.refusal:
                raise RefusedError(reason="refusal", model_text=self.refusal)
        return ParsedAnswer(images=images, image_urls=self.sink.urls, text=text, usage=self.usage,
                            finish_reason=self.native_finish or self.finish, model=self.model,
                            drafts=drafts, last_is_final=last_is_final)


@guarded
def parse_response(config: ProviderConfig, body: bytes) -> ParsedAnswer:
    answer = _Answer(config, stream=False)
    for choice in answer.envelope(load_json(body)):
        answer.message(get(choice, "message", "delta"), "\n")
    return answer.result("\n")


@guarded
def parse_stream(config: ProviderConfig, events: list[bytes]) -> ParsedAnswer:
    answer = _Answer(config, stream=True)
    for event in events:
        if not event or event.isspace():  # keep-alives; isspace() does not copy megabytes
            continue
        for choice in answer.envelope(load_json(event)):
            answer.message(get(choice, "delta", "message"), "")
    return answer.result("")


@guarded
def stream_progress(config: ProviderConfig, event: bytes,
                    state: dict[str, Any]) -> tuple[list[Progress], dict[str, Any]]:
    """One SSE chunk's words (reasoning and answer) and draft images (see providers.base)."""
    if not event or event.isspace():
        return [], state
    answer = _Answer(config, stream=True, finals=False)  # final images are not decoded here
    answer.reasoned, answer.answered = bool(state.get("reasoned")), bool(state.get("answered"))
    for choice in answer.envelope(load_json(event)):
        answer.message(get(choice, "delta", "message"), "")
    _refs, words = find_markdown_images("".join(answer.reasoning + answer.text))
    # words only: not an image's base64 (a Markdown image cut across deltas, a bare data URI)
    words = "" if "base64," in words or looks_like_image_ref(words) else words
    pieces = [Progress(text=words)] if words else []
    pieces += [Progress(preview=img) for img in answer.draft_sink.images]
    return pieces, {"reasoned": answer.reasoned, "answered": answer.answered}
