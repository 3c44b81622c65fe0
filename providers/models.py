"""The provider-neutral language shared by the bot and every wire format.

Nothing here knows about HTTP or Discord: a request says what to draw, a result says what came back.
"""
from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal

ASPECT_RATIOS = ("1:1", "2:3", "3:2", "3:4", "4:3", "4:5", "5:4", "9:16", "16:9", "21:9")
RESOLUTIONS = ("1K", "2K", "4K")
MAX_COUNT = 4  # images one request may ask for (/imagine's count, the CLI's --count)

# The model families, by Google's names; the one table of what a gateway's model name stands for.
FLASH = "gemini-2.5-flash-image"  # Nano Banana
PRO = "gemini-3-pro-image-preview"  # Nano Banana Pro
FLASH_2 = "gemini-3.1-flash-image-preview"  # Nano Banana 2
FAMILIES = (FLASH, PRO, FLASH_2)
MODEL_ALIASES = {
    "gemini-2.5-flash-image-preview": FLASH, "nanobanana": FLASH,
    "gemini-3-pro-image": PRO, "nanobananapro": PRO,
    "gemini-3.1-flash-image": FLASH_2, "nanobanana2": FLASH_2,
}


def model_family(model: str) -> str:
    """`google/gemini-3-pro-image-preview`, `models/nano-banana_pro` -> `gemini-3-pro-image-preview`;
    a name it does not know comes back as it is (lower case, without its path)."""
    name = (model or "").strip().lower().rsplit("/", 1)[-1]
    if name in FAMILIES:
        return name
    squeezed = re.sub(r"[-_]", "", name)  # gateways spell nano-banana, nanobanana_pro, nano_banana_2
    alias = next((family for alias, family in MODEL_ALIASES.items() if re.sub(r"[-_]", "", alias) == squeezed), None)
    if alias:
        return alias
    known = sorted([*FAMILIES, *MODEL_ALIASES], key=len, reverse=True)
    prefix = next((k for k in known if name.startswith(k + "-")), None)  # dated or suffixed variants
    return name if prefix is None else MODEL_ALIASES.get(prefix, prefix)


def thinks(model: str) -> bool:
    """Whether `model` is a Gemini 3 image model (thinks, signs its turns, may send draft images)."""
    family = model_family(model)
    return family in (PRO, FLASH_2) or family.startswith("gemini-3")


@dataclass(frozen=True)
class ImageData:
    """One image: its bytes, the mime type sniffed from them, and its pixel size when known."""

    data: bytes
    mime_type: str
    width: int | None = None
    height: int | None = None

    @property
    def extension(self) -> str:
        return {"image/png": "png", "image/jpeg": "jpg", "image/webp": "webp", "image/gif": "gif"}.get(
            self.mime_type, "bin"
        )

    def __repr__(self) -> str:  # never dump megabytes into a log or a test failure
        return f"ImageData({self.mime_type}, {len(self.data)} bytes, {self.width}x{self.height})"


@dataclass(frozen=True)
class Turn:
    """One earlier turn of a conversation.

    `provider_state` is opaque, JSON-serialisable data a wire format asked to keep with a model turn
    (Gemini's thought signatures); it is handed back unchanged on the next request.
    """

    role: Literal["user", "model"]
    text: str = ""
    images: tuple[ImageData, ...] = ()
    provider_state: dict[str, Any] | None = None


@dataclass(frozen=True)
class GenerationRequest:
    prompt: str
    images: tuple[ImageData, ...] = ()
    history: tuple[Turn, ...] = ()
    aspect_ratio: str | None = None  # one of ASPECT_RATIOS, or None for the model's default ("auto")
    resolution: str | None = None  # one of RESOLUTIONS, or None for the model's default
    count: int = 1


@dataclass(frozen=True)
class Attempt:
    """A provider that failed before another one answered (failover)."""

    provider: str
    error: str  # one redacted line for whoever runs the bot: what went wrong, in the gateway's words too


@dataclass
class GenerationResult:
    images: list[ImageData]
    text: str = ""
    usage: dict[str, Any] = field(default_factory=dict)
    provider: str = ""
    model: str = ""
    seconds: float = 0.0
    # Opaque state to keep with this model turn (see Turn.provider_state).
    provider_state: dict[str, Any] | None = None
    # Providers tried before this one succeeded (failover), in order, for logs, notes and the CLI.
    attempts: list[Attempt] = field(default_factory=list)
    # Things the member should know although it worked, e.g. "asked for 2 images, got 1".
    warnings: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Progress:
    """What a streaming answer has shown so far, reported while it arrives (never a result).

    `text`: the model's words so far in this attempt (thoughts and answer), newest last.
    `preview`: an interim "thought" image; the final image is only in GenerationResult.images.
    """

    text: str | None = None
    preview: ImageData | None = None


# The caller's progress callback (plain or async). Keep it quick: the answer waits for it.
OnProgress = Callable[[Progress], "Awaitable[None] | None"]
