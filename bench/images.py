"""Honest test images, made once and cached: a smooth picture with sensor-like noise.

A padded PNG (the test bed's `make_png(target_bytes=...)`) is large on the wire but decodes in no
time; a real 4K result costs real CPU to decode and re-encode. These images do: a gradient with
Gaussian noise, so the PNG does not compress away and JPEG re-encoding sees real detail.
"""
from __future__ import annotations

import io
import os
import tempfile
from pathlib import Path

from PIL import Image, ImageChops

CACHE = Path(os.environ.get("BENCH_CACHE_DIR") or Path(tempfile.gettempdir()) / "nano-banana-bench")
VERSION = 1  # bump when the recipe changes

# name: (size, noise sigma). 1K: ~1.55 MB PNG; 4K: ~17 MB PNG (24.9 MB of pixels).
RECIPES = {
    "1k": ((1024, 1024), 2.5),
    "4k": ((3840, 2160), 8.0),
    "smoke-4k": ((1920, 1080), 8.0),  # --smoke: a ~4 MB PNG re-encoded under a 1 MiB limit
}


def noisy_png(size: tuple[int, int], sigma: float) -> bytes:
    red = Image.linear_gradient("L").resize(size)
    green = Image.radial_gradient("L").resize(size)
    blue = red.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    base = Image.merge("RGB", (red, green, blue))
    noise = Image.merge("RGB", [Image.effect_noise(size, sigma) for _ in range(3)])
    picture = ImageChops.add(base, noise, scale=1.0, offset=-128)
    buf = io.BytesIO()
    picture.save(buf, format="PNG", compress_level=6)
    return buf.getvalue()


def image_path(name: str) -> Path:
    """The cached PNG for a recipe, made on first use (a few seconds for 4K)."""
    size, sigma = RECIPES[name]
    path = CACHE / f"{name}-{size[0]}x{size[1]}-s{sigma:g}-v{VERSION}.png"
    if not path.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_bytes(noisy_png(size, sigma))
        tmp.replace(path)
    return path
