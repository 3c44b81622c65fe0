"""Validation of what members send: prompts and image attachments.

Everything here raises InputError with a sentence meant for the member; nothing invalid reaches a
provider. Attachment bytes are read only from Discord's own hosts, size-checked before download,
and decoded with Pillow in a worker thread with a pixel cap against decompression bombs.
"""
from __future__ import annotations

import io
import warnings
from collections.abc import Sequence
from urllib.parse import urlsplit

import discord
from PIL import Image

from core.config import Config
from core.errors import InputError
from providers.base import CpuRunner
from providers.images import image_size, sniff_mime
from providers.models import ImageData

ACCEPTED = ("image/png", "image/jpeg", "image/webp", "image/gif")


def check_prompt(prompt: str | None, config: Config, *, required: bool = True) -> str:
    prompt = (prompt or "").strip()
    if required and not prompt:
        raise InputError("Please describe what you want: the prompt is empty.")
    if len(prompt) > config.max_prompt_chars:
        raise InputError(f"The prompt is {len(prompt)} characters long; the limit is "
                         f"{config.max_prompt_chars}.")
    return prompt


def check_attachments_cheaply(attachments: Sequence[discord.Attachment], config: Config) -> None:
    """What can be checked without downloading anything, before the interaction is acknowledged."""
    if len(attachments) > config.max_input_images:
        raise InputError(f"You attached {len(attachments)} images; at most {config.max_input_images} "
                         "can be used at once.")
    for att in attachments:
        if att.size > config.max_image_bytes:
            raise InputError(f"`{att.filename}` is {att.size / 2**20:.1f} MiB; images may be at most "
                             f"{config.max_image_bytes / 2**20:.0f} MiB.")
        if not _is_discord_url(att.url, config):
            raise InputError(f"`{att.filename}` is not hosted by Discord, so the bot will not fetch it.")


async def read_images(cpu: CpuRunner, attachments: Sequence[discord.Attachment], config: Config) -> list[ImageData]:
    check_attachments_cheaply(attachments, config)
    images = []
    for att in attachments:
        try:
            data = await att.read()
        except discord.HTTPException as exc:
            raise InputError(f"Could not download `{att.filename}` from Discord ({exc.status}).") from None
        if len(data) > config.max_image_bytes:
            raise InputError(f"`{att.filename}` is larger than {config.max_image_bytes / 2**20:.0f} MiB.")
        images.append(await cpu.run(decode_image, data, att.filename, config.max_image_pixels))
    return images


def decode_image(data: bytes, filename: str, max_pixels: int) -> ImageData:
    """Check that the bytes are a whole PNG, JPEG, WebP or GIF of sane size (blocking: run in a thread)."""
    mime = sniff_mime(data)
    if mime not in ACCEPTED:
        raise InputError(f"`{filename}` is not an image the model can read (PNG, JPEG, WebP or GIF).")
    size = image_size(data)  # from the header, before Pillow allocates anything
    if size and size[0] * size[1] > max_pixels:
        raise InputError(f"`{filename}` is {size[0]}×{size[1]} pixels; the limit is {max_pixels / 1e6:.0f} megapixels.")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as img:
                width, height = img.size
                if width * height > max_pixels:
                    raise InputError(f"`{filename}` is {width}×{height} pixels; the limit is "
                                     f"{max_pixels / 1e6:.0f} megapixels.")
                img.load()  # decodes every byte: truncated or corrupt files fail here
    except InputError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise InputError(f"`{filename}` decodes to too many pixels to be processed safely.") from None
    except Exception:
        raise InputError(f"`{filename}` is damaged or truncated and cannot be read as an image.") from None
    return ImageData(data, mime, width, height)


def image_attachments(message: discord.Message) -> list[discord.Attachment]:
    """A message's attachments that claim to be images (the bytes are checked later)."""
    return [a for a in message.attachments
            if (a.content_type or "").startswith("image/") or a.filename.lower().endswith(
                (".png", ".jpg", ".jpeg", ".webp", ".gif"))]


def _is_discord_url(url: str, config: Config) -> bool:
    """Only Discord's own attachment hosts (DISCORD_ATTACHMENT_HOSTS), over https; plain http is
    accepted for a loopback test double only."""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    if host not in config.attachment_hosts:
        return False
    return parts.scheme == "https" or (parts.scheme == "http" and host in ("localhost", "127.0.0.1"))
