"""Turn a generation result into what Discord accepts: files within the upload limit, short captions.

Re-encoding a 4K PNG can take a second of CPU, which must never stall the event loop: `prepare`
runs `prepare_files` (blocking) in a worker process when an image needs it, and inline otherwise
(naming files costs nothing, and shipping a 1.5 MB image to a process and back costs a few ms).
"""
from __future__ import annotations

import io
import re
from dataclasses import dataclass

from PIL import Image

from providers.base import CpuRunner
from providers.models import ImageData

CONTENT_LIMIT = 2000
FILES_PER_MESSAGE = 10
DEFAULT_UPLOAD_LIMIT = 10 * 1024 * 1024
_SLUG = re.compile(r"[^a-z0-9]+")


@dataclass(frozen=True)
class OutFile:
    filename: str
    data: bytes


def slug(text: str, limit: int = 40) -> str:
    return _SLUG.sub("-", text.lower()).strip("-")[:limit].strip("-") or "image"


async def prepare(cpu: CpuRunner, images: list[ImageData], prompt: str, limit: int) -> tuple[list[OutFile], list[str]]:
    """prepare_files without blocking the event loop."""
    if any(len(img.data) > limit for img in images):
        return await cpu.run_process(prepare_files, images, prompt, limit)
    return prepare_files(images, prompt, limit)


def prepare_files(images: list[ImageData], prompt: str, limit: int) -> tuple[list[OutFile], list[str]]:
    """Name each image by prompt and sniffed type, re-encoding any that exceed `limit` bytes.

    Returns the files and the notes to show the user (what was re-encoded and why).
    """
    base = slug(prompt)
    files, notes = [], []
    for n, img in enumerate(images, start=1):
        data, ext = img.data, img.extension
        if len(data) > limit:
            data, ext = _shrink(img, limit)
            notes.append(f"Image {n} was {len(img.data) / 2**20:.1f} MiB, re-encoded as {ext.upper()} "
                         f"({len(data) / 2**20:.1f} MiB) to fit Discord's {limit / 2**20:.0f} MiB upload limit.")
        suffix = f"-{n}" if len(images) > 1 else ""
        files.append(OutFile(f"{base}{suffix}.{ext}", data))
    return files, notes


def _shrink(img: ImageData, limit: int) -> tuple[bytes, str]:
    """High-quality JPEG first (most 4K images fit at q92); then lower quality, then fewer pixels.

    Memory matters with several 4K images in flight: the decoded picture is used as it is when it
    already has the right mode (no second 25 MB copy), and JPEG is written without `optimize`,
    which buffers every DCT coefficient of the image (another ~25 MB) to save ~7% of the bytes.
    """
    with Image.open(io.BytesIO(img.data)) as src:
        has_alpha = src.mode in ("RGBA", "LA") or (src.mode == "P" and "transparency" in src.info)
        mode = "RGBA" if has_alpha else "RGB"
        src.load()
        picture = src if src.mode == mode else src.convert(mode)
        fmt, ext = ("WEBP", "webp") if has_alpha else ("JPEG", "jpg")
        scale = 1.0
        while True:
            frame = picture if scale == 1.0 else picture.resize(
                (max(1, int(picture.width * scale)), max(1, int(picture.height * scale))), Image.LANCZOS)
            for quality in (92, 85, 75):
                buf = io.BytesIO()
                frame.save(buf, format=fmt, quality=quality)
                if buf.tell() <= limit:
                    return buf.getvalue(), ext
            scale *= 0.75


PREVIEW_SIDE = 384  # pixels: a draft is shown small, a few tens of KB


def preview_jpeg(img: ImageData) -> bytes:
    """A draft image as a small JPEG for the status message (blocking: run it off the loop)."""
    with Image.open(io.BytesIO(img.data)) as picture:
        picture.thumbnail((PREVIEW_SIDE, PREVIEW_SIDE))
        buf = io.BytesIO()
        picture.convert("RGB").save(buf, format="JPEG", quality=75)
    return buf.getvalue()


def caption(*, prompt: str, model: str, provider: str, resolution: str | None, seconds: float,
            model_text: str = "", notes: list[str] | None = None, author_mention: str = "",
            images: list[ImageData] = (), details: bool = True) -> str:
    """The result message: who asked, the prompt, what was delivered (real pixel size) and how long it
    took, the model's words, within 2000 chars. Model and provider names only with `details`."""
    meta = " · ".join(p for p in (delivered_size(images, resolution), f"{seconds:.1f} s",
                                  f"{model} via {provider}" if details else "") if p)
    tail = "\n".join(f"-# {note}" for note in notes or [])
    head = f"{author_mention} " if author_mention else ""
    parts = [f"{head}**{trim(_one_line(prompt), 600)}**", f"-# {meta}"]
    if tail:
        parts.append(tail)
    fixed = len("\n".join(parts)) + 2
    text = model_text.strip()
    if text:
        parts.insert(1, trim(text, max(0, CONTENT_LIMIT - fixed - 2)))
    return trim("\n".join(p for p in parts if p), CONTENT_LIMIT)


def description(text: str, mention: str, result, details: bool, seconds: float) -> str:
    """A /describe answer: the prompt the model wrote, ready to copy, within 2000 chars."""
    meta = f"-# {seconds:.1f} s" + (f" · {result.model} via {result.provider}" if details else "")
    head = f"{mention} Here is a prompt for your image; press **Imagine this** to draw it:\n```\n"
    tail = f"\n```\n{meta}"
    body = trim(text.replace("```", "ˋˋˋ"), CONTENT_LIMIT - len(head) - len(tail))
    return head + body + tail


_NOMINAL = {"1K": 1024, "2K": 2048, "4K": 4096}  # the long side of each size tier, in pixels


def delivered_size(images: list[ImageData], asked: str | None) -> str:
    """`2048×2048` as delivered (`96×64 (2K asked)` when it falls short of the size asked for)."""
    sizes = list(dict.fromkeys(pixels(img) for img in images))
    known = [s for s in sizes if s]
    if not known:
        return ""
    text = ", ".join(f"{w}×{h}" for w, h in known)
    longest = max(max(s) for s in known)
    if asked in _NOMINAL and longest < 0.75 * _NOMINAL[asked]:
        text += f" ({asked} asked)"
    return text


def pixels(img: ImageData) -> tuple[int, int] | None:
    if img.width and img.height:
        return img.width, img.height
    try:
        with Image.open(io.BytesIO(img.data)) as probe:  # reads the header only
            return probe.size
    except Exception:
        return None


def _one_line(text: str) -> str:
    return " ".join(text.split())


def trim(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: max(0, limit - 1)].rstrip() + "…"


def chunks(files: list, size: int = FILES_PER_MESSAGE) -> list[list]:
    return [files[i:i + size] for i in range(0, len(files), size)] or [[]]
