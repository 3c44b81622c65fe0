"""Gemini native (`{base}/models/{model}:generateContent` / `:streamGenerateContent?alt=sse`).

Google's own API, YEScale and other pass-through gateways. Multi-turn follows Google's sample: the
model turn is resent verbatim with its thoughtSignatures (required context for gemini-3 image models).

provider_state format (kept with a model Turn, JSON-serialisable):
    {"gemini_parts": [part, ...]}
the answer's non-thought parts in order, exactly as received except that an image part's
inlineData/inline_data object is replaced by "image_index": i, an index into ParsedAnswer.images
(= Turn.images). Every other key (thoughtSignature, text, fileData, ...) is kept as received.
Streamed text pieces are merged into one text part, and a signature-only part arriving later is
attached to the preceding part that has no signature.

Gemini 3 models reject a model turn without its signature (history rebuilt from Discord, written by
another provider or model): such parts carry Google's documented placeholder, never in place of a
real signature. Thinking models stream with includeThoughts when previews are on: thought text and
thought images are reported as progress and as ParsedAnswer.drafts, never as results.
"""
from __future__ import annotations

from typing import Any

from .base import HttpRequest, ParsedAnswer, ProviderConfig
from .errors import NoImageError, RefusedError
from .images import b64, parse_image_ref
from .models import GenerationRequest, ImageData, Progress, Turn, thinks
from .parsing import (NO_IMAGE_REASONS, REFUSAL_REASONS, ImageSink, auth_headers, error_from_body, get,
                      guarded, load_json, merge_usage, normalise_usage)

_SIGNATURE_KEYS = ("thoughtSignature", "thought_signature")
_BLOB_KEYS = ("inlineData", "inline_data")
_OK_REASONS = {"STOP", "FINISH_REASON_UNSPECIFIED"}
SKIP_SIGNATURE = "skip_thought_signature_validator"  # Google's placeholder for history it did not sign


def _image_part(img: ImageData) -> dict[str, Any]:
    return {"inlineData": {"mimeType": img.mime_type, "data": b64(img)}}


def _user_parts(text: str, images: tuple[ImageData, ...]) -> list[dict[str, Any]]:
    parts: list[dict[str, Any]] = [{"text": text}] if text or not images else []
    return parts + [_image_part(img) for img in images]


def model_parts(turn: Turn, sign: bool = False) -> list[dict[str, Any]]:
    """A model turn as Gemini parts: from provider_state verbatim when present, else text + images.
    `sign` (Gemini 3): every part without a signature gets the placeholder one."""
    parts = _model_parts(turn)
    if sign:
        parts = [p if _signature(p) or p.get("thought") is True else {**p, "thoughtSignature": SKIP_SIGNATURE}
                 for p in parts]
    return parts


def _model_parts(turn: Turn) -> list[dict[str, Any]]:
    saved = (turn.provider_state or {}).get("gemini_parts")
    if not isinstance(saved, list) or not saved:
        return _user_parts(turn.text, turn.images) if turn.text or turn.images else []
    parts, used = [], set()
    for part in saved:
        if not isinstance(part, dict):
            continue
        if "image_index" not in part:
            parts.append(dict(part))
            continue
        index = part["image_index"]
        if isinstance(index, int) and 0 <= index < len(turn.images):  # an image the bot dropped: skip
            used.add(index)
            rest = {k: v for k, v in part.items() if k != "image_index"}
            # the sniffed type, not the declared one: the stored bytes are the truth
            parts.append({**_image_part(turn.images[index]), **rest})
    parts += [_image_part(img) for i, img in enumerate(turn.images) if i not in used]
    return parts


def build_contents(request: GenerationRequest, sign: bool = False) -> list[dict[str, Any]]:
    contents: list[dict[str, Any]] = []
    turns = [*request.history, Turn(role="user", text=request.prompt, images=request.images)]
    for i, turn in enumerate(turns):
        role = "model" if turn.role == "model" else "user"
        if role == "model":
            parts = model_parts(turn, sign)
        elif turn.text or turn.images or i == len(turns) - 1:
            parts = _user_parts(turn.text, turn.images)
        else:
            continue  # an empty earlier user turn: Gemini rejects empty text parts
        if not parts:
            continue
        if contents and contents[-1]["role"] == role:  # e.g. a user turn whose answer failed
            contents[-1]["parts"].extend(parts)
        else:
            contents.append({"role": role, "parts": parts})
    return contents


def build_request(config: ProviderConfig, request: GenerationRequest) -> HttpRequest:
    # candidateCount is not used (image models reject it); the client repeats the call for count > 1.
    generation_config: dict[str, Any] = {"responseModalities": ["TEXT", "IMAGE"]}
    image_config = {k: v for k, v in (("aspectRatio", request.aspect_ratio),
                                      ("imageSize", request.resolution)) if v}
    if image_config:
        generation_config["imageConfig"] = image_config
    previews = config.wants_previews
    if previews:  # thoughts (text and interim images) stream first, seconds before the final image
        generation_config["thinkingConfig"] = {"includeThoughts": True}
    body = {"contents": build_contents(request, sign=thinks(config.model)),
            "generationConfig": generation_config}
    model = config.model.removeprefix("models/")
    stream = config.stream or previews
    action = "streamGenerateContent?alt=sse" if stream else "generateContent"
    headers = {**auth_headers(config), "Content-Type": "application/json"}
    return HttpRequest("POST", f"{config.base_url}/models/{model}:{action}", headers, json=body,
                       stream=stream)


class _Reader:
    """Accumulates GenerateContentResponse chunks (one for generateContent, many when streaming)."""

    def __init__(self, stream: bool, drafts: bool = True) -> None:
        self.stream = stream
        self.keep_drafts = drafts  # decode thought images (not when a stream already reported them)
        self.sink = ImageSink()
        self.segments: list[list[str]] = []  # text runs; an image between them starts a new run
        self.parts: list[dict[str, Any]] = []  # provider_state parts
        self.usage: dict[str, Any] = {}
        self.model: str | None = None
        self.finish: str | None = None
        self.finish_message: str | None = None
        self.block: tuple[str, str | None] | None = None
        self.candidates = 0
        self.thought_text: list[str] = []
        self.drafts: list[ImageData] = []  # thought images

    def chunk(self, data: Any) -> None:
        if isinstance(data, list):  # a JSON array of responses (streaming without alt=sse)
            self.stream = len(data) > 1
            for item in data:
                self.chunk(item)
            return
        if not isinstance(data, dict):
            raise TypeError(f"expected a JSON object, got {type(data).__name__}")
        if data.get("error"):
            raise error_from_body(None, data)
        self.usage = merge_usage(self.usage, normalise_usage(get(data, "usageMetadata", "usage_metadata")))
        self.model = get(data, "modelVersion", "model_version") or self.model
        feedback = get(data, "promptFeedback", "prompt_feedback")
        if reason := get(feedback, "blockReason", "block_reason"):
            self.block = (str(reason), get(feedback, "blockReasonMessage", "block_reason_message"))
        candidates = get(data, "candidates") or []
        if not isinstance(candidates, list) or not all(isinstance(c, dict) for c in candidates):
            raise TypeError("candidates is not a list of objects")
        for cand in candidates:
            self.candidates += 1
            self.finish = get(cand, "finishReason", "finish_reason") or self.finish
            self.finish_message = get(cand, "finishMessage", "finish_message") or self.finish_message
            content = cand.get("content")
            parts = (get(content, "parts") if isinstance(content, dict) else None) or []
            if not isinstance(parts, list):
                raise TypeError("content.parts is not a list")
            for part in parts:
                if isinstance(part, dict) and part.get("thought") is True:
                    self.thought(part)
                elif isinstance(part, dict):
                    self.part(part)

    def thought(self, part: dict[str, Any]) -> None:
        """Reasoning: never a result, never resent; its words and images are progress."""
        if isinstance(part.get("text"), str) and part["text"]:
            self.thought_text.append(part["text"])
        data = get(get(part, *_BLOB_KEYS), "data")
        if self.keep_drafts and isinstance(data, str) and data:
            try:
                draft = parse_image_ref(data)
            except ValueError:
                return  # an unreadable draft costs nothing: it was only a preview
            if isinstance(draft, ImageData):
                self.drafts.append(draft)

    def part(self, part: dict[str, Any]) -> None:
        blob = get(part, *_BLOB_KEYS)
        if blob is not None:
            found = self.sink.add(get(blob, "data"))
            if found is not None:
                rest = {k: v for k, v in part.items() if k not in _BLOB_KEYS}
                self.parts.append({"image_index": self.sink.index(found), **rest})
            self.segments.append([])
            return
        file_data = get(part, "fileData", "file_data")
        if file_data is not None:
            uri = get(file_data, "fileUri", "file_uri")
            if isinstance(uri, str) and uri.lower().startswith(("http://", "https://")):
                self.sink.add(uri)  # gs:// and Files API names cannot be fetched by the client
            self.parts.append(dict(part))
            self.segments.append([])
            return
        text = part.get("text")
        signature = next((k for k in _SIGNATURE_KEYS if part.get(k)), None)
        if isinstance(text, str) and text:
            if not self.segments or (not self.stream and self.segments[-1]):
                self.segments.append([])
            self.segments[-1].append(text)
            last = self.parts[-1] if self.parts else None
            if self.stream and last and isinstance(last.get("text"), str) and "image_index" not in last \
                    and not (signature and _signature(last)):
                last["text"] += text  # streamed pieces of one text part
                if signature:
                    last[signature] = part[signature]
            else:
                self.parts.append(dict(part))
        elif signature:  # signature-only part (empty or no text), often in a later stream chunk
            target = next((p for p in reversed(self.parts) if not _signature(p)), None) if self.stream else None
            if target is not None:
                target[signature] = part[signature]
            else:
                self.parts.append({"text": "", **part})
        elif set(part) - {"text"}:
            self.parts.append(dict(part))  # executableCode etc.: resent as received

    def result(self) -> ParsedAnswer:
        text = "\n".join(s for s in ("".join(seg).strip() for seg in self.segments) if s)
        self.sink.check()
        if self.sink.empty:
            said = self.finish_message or text
            if self.block and not self.candidates:
                raise RefusedError(reason=self.block[0], model_text=self.block[1])
            reason = (self.finish or "").upper()
            if reason in REFUSAL_REASONS:
                raise RefusedError(reason=self.finish, model_text=said)
            if self.block:
                raise RefusedError(reason=self.block[0], model_text=self.block[1] or said)
            if reason in NO_IMAGE_REASONS or (reason and reason not in _OK_REASONS):
                raise NoImageError(reason=self.finish, model_text=said)
        return ParsedAnswer(images=self.sink.images, image_urls=self.sink.urls, text=text,
                            usage=self.usage, finish_reason=self.finish, model=self.model,
                            provider_state={"gemini_parts": self.parts} if self.parts else None,
                            drafts=self.drafts)


def _signature(part: dict[str, Any]) -> bool:
    return any(part.get(k) for k in _SIGNATURE_KEYS)


@guarded
def parse_response(config: ProviderConfig, body: bytes) -> ParsedAnswer:
    reader = _Reader(stream=False)
    reader.chunk(load_json(body))
    return reader.result()


@guarded
def parse_stream(config: ProviderConfig, events: list[bytes]) -> ParsedAnswer:
    reader = _Reader(stream=True, drafts=False)  # the stream's drafts were reported as they came
    for event in events:
        if event and not event.isspace():
            reader.chunk(load_json(event))
    return reader.result()


@guarded
def stream_progress(config: ProviderConfig, event: bytes,
                    state: dict[str, Any]) -> tuple[list[Progress], dict[str, Any]]:
    """One streamed chunk's thought text, answer text and thought images (see providers.base)."""
    if not event or event.isspace():
        return [], state
    reader = _Reader(stream=True)
    reader.chunk(load_json(event))
    words = "".join(reader.thought_text)
    answer = "".join("".join(seg) for seg in reader.segments)
    pieces = [Progress(preview=img) for img in reader.drafts]
    if answer and state.get("thinking"):  # thoughts end: start the answer on its own line
        answer = "\n\n" + answer
    if words or answer:
        pieces.insert(0, Progress(text=words + answer))
    return pieces, {"thinking": bool(words) or (state.get("thinking", False) and not answer)}
