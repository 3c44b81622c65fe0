"""Result rendering (names, re-encoding, captions) and input validation, without Discord."""
import io

import pytest
from PIL import Image

from cogs import render
from cogs.inputs import InputError, decode_image
from providers.models import ImageData
from fakes.images import jpeg, noisy_png, png, webp


def test_files_are_named_by_prompt_and_sniffed_type():
    images = [ImageData(png(), "image/png"), ImageData(jpeg(), "image/jpeg")]
    files, notes = render.prepare_files(images, "A red apple!", limit=10 * 2**20)
    assert [f.filename for f in files] == ["a-red-apple-1.png", "a-red-apple-2.jpg"]
    assert files[0].data == images[0].data and notes == []


def test_oversized_image_is_reencoded_under_the_limit():
    big = noisy_png((800, 800))
    limit = len(big) // 3
    files, notes = render.prepare_files([ImageData(big, "image/png")], "noise", limit=limit)
    assert len(files[0].data) <= limit and files[0].filename.endswith(".jpg")
    assert Image.open(io.BytesIO(files[0].data)).size[0] > 0
    assert "re-encoded as JPG" in notes[0]


def test_caption_fits_discord_limit_and_keeps_metadata():
    image = ImageData(b"", "image/png", 2048, 2048)
    text = render.caption(prompt="p" * 3000, model="gemini-x", provider="mule", resolution="2K", seconds=3.2,
                          model_text="w " * 2000, notes=["note"], images=[image])
    assert len(text) <= 2000
    assert "-# 2048×2048 · 3.2 s · gemini-x via mule" in text and "note" in text
    quiet = render.caption(prompt="p", model="gemini-x", provider="mule", resolution="2K", seconds=3.2,
                           images=[image], details=False)
    assert quiet.endswith("-# 2048×2048 · 3.2 s") and "mule" not in quiet


def test_the_caption_says_the_delivered_size_and_when_it_falls_short():
    assert render.delivered_size([ImageData(png((96, 64)), "image/png")], None) == "96×64"  # read from the file
    assert render.delivered_size([ImageData(b"", "image/png", 1024, 768)], "1K") == "1024×768"
    assert render.delivered_size([ImageData(b"", "image/png", 1024, 1024)], "4K") == "1024×1024 (4K asked)"
    two = [ImageData(b"", "image/png", 896, 1152), ImageData(b"", "image/png", 1152, 896)]
    assert render.delivered_size(two, "1K") == "896×1152, 1152×896"


@pytest.mark.parametrize("data", [png(), jpeg(), webp()])
def test_real_images_pass(data):
    img = decode_image(data, "x", 10_000_000)
    assert img.width == 64 and img.height == 48


def test_text_pretending_to_be_png_is_rejected():
    with pytest.raises(InputError, match="not an image"):
        decode_image(b"hello, I am a text file", "fake.png", 10_000_000)


def test_truncated_image_is_rejected():
    data = noisy_png((200, 200))
    with pytest.raises(InputError, match="damaged or truncated"):
        decode_image(data[: len(data) // 2], "cut.png", 10_000_000)


def test_decompression_bomb_is_rejected_before_decoding():
    buf = io.BytesIO()
    Image.new("1", (20000, 20000)).save(buf, format="PNG")  # tiny file, 400 megapixels
    with pytest.raises(InputError, match="pixels"):
        decode_image(buf.getvalue(), "bomb.png", 50_000_000)
