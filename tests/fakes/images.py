"""Small real images for tests, made with Pillow (PNG, JPEG, WebP, GIF)."""
from __future__ import annotations

import io

from PIL import Image


def make_image(fmt: str = "PNG", size: tuple[int, int] = (64, 48), color=(200, 30, 30)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, format=fmt)
    return buf.getvalue()


def png(size=(64, 48), color=(200, 30, 30)) -> bytes:
    return make_image("PNG", size, color)


def jpeg(size=(64, 48), color=(30, 200, 30)) -> bytes:
    return make_image("JPEG", size, color)


def webp(size=(64, 48), color=(30, 30, 200)) -> bytes:
    return make_image("WEBP", size, color)


def noisy_png(size=(1024, 1024), seed: int = 1) -> bytes:
    """A PNG that does not compress well (random pixels), for size-limit tests."""
    import random

    rnd = random.Random(seed)
    img = Image.frombytes("RGB", size, rnd.randbytes(size[0] * size[1] * 3))
    buf = io.BytesIO()
    img.save(buf, format="PNG", compress_level=1)
    return buf.getvalue()
