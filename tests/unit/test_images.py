"""providers.images: sniffing, header sizes, tolerant base64, image references, Markdown extraction."""
from __future__ import annotations

import base64
import io
import os
import time

import pytest
from PIL import Image

from fakes.images import jpeg, png, webp
from providers.images import (b64, data_uri, decode_base64, find_markdown_images, image_size,
                              looks_like_image_ref, parse_image_ref, sniff_mime, to_image)
from providers.models import ImageData


def _save(fmt: str, size=(300, 200), mode="RGB", color=(255, 0, 0, 128), **kw) -> bytes:
    buf = io.BytesIO()
    Image.new(mode, size, color[:len(mode)]).save(buf, format=fmt, **kw)
    return buf.getvalue()


# --- sniff_mime / image_size ------------------------------------------------------------------

@pytest.mark.parametrize("make, mime", [(png, "image/png"), (jpeg, "image/jpeg"), (webp, "image/webp")])
def test_sniff_and_size_of_each_format(make, mime):
    data = make((123, 45))
    assert sniff_mime(data) == mime
    assert image_size(data) == (123, 45)


@pytest.mark.parametrize("fmt, kw", [
    ("JPEG", {"progressive": True}),
    ("JPEG", {"exif": Image.Exif()}),
    ("JPEG", {"quality": 95, "subsampling": 0}),
    ("WEBP", {"lossless": True}),  # VP8L
    ("GIF", {}),
])
def test_size_variants(fmt, kw):
    data = _save(fmt, (301, 199), **kw)
    assert image_size(data) == (301, 199)


def test_webp_extended_header_with_alpha():
    data = _save("WEBP", (257, 129), mode="RGBA")
    assert data[12:16] == b"VP8X"
    assert (sniff_mime(data), image_size(data)) == ("image/webp", (257, 129))


def test_gif_sniffed():
    data = _save("GIF", (10, 20))
    assert sniff_mime(data) == "image/gif"


def test_jpeg_with_big_app_segment_and_fill_bytes():
    base = jpeg((77, 33))
    app = b"\xff\xe1" + (2 + 60000).to_bytes(2, "big") + b"\0" * 60000  # a large EXIF-like segment
    data = base[:2] + b"\xff\xff" + app + base[2:]  # fill byte before a marker is legal
    assert image_size(data) == (77, 33)


def test_declared_type_is_never_trusted():
    assert sniff_mime(jpeg()) == "image/jpeg"  # whatever a gateway claims
    assert sniff_mime(b"<html>nope</html>") is None
    assert sniff_mime(b"") is None
    assert image_size(b"GIF89a") is None  # truncated
    assert image_size(png()[:20]) is None
    assert image_size(b"\xff\xd8\xff\xe0\x00") is None
    assert image_size(b"not an image at all") is None


def test_image_size_is_header_only_on_large_images():
    data = png((2048, 2048)) + os.urandom(20_000_000)  # a 20 MB "image": only the header is read
    start = time.perf_counter()
    for _ in range(100):
        assert image_size(data) == (2048, 2048)
    assert time.perf_counter() - start < 0.5


# --- decode_base64 ----------------------------------------------------------------------------

def test_decode_plain_and_bytes():
    data = png()
    text = base64.b64encode(data).decode()
    assert decode_base64(text) == data
    assert decode_base64(text.encode()) == data


def test_decode_tolerates_wrapping_padding_urlsafe_and_data_uri():
    data = jpeg((200, 100))
    text = base64.b64encode(data).decode()
    wrapped = "\r\n".join(text[i:i + 76] for i in range(0, len(text), 76))
    assert decode_base64(wrapped) == data
    assert decode_base64(text.rstrip("=")) == data
    assert decode_base64(base64.urlsafe_b64encode(data).decode().rstrip("=")) == data
    assert decode_base64(f"data:image/png;base64,{text}") == data  # declared type ignored
    assert decode_base64(f"  DATA:image/jpeg;BASE64,{wrapped}\n") == data


@pytest.mark.parametrize("garbage", ["", "   ", "!!!not base64!!!", "abcde", "data:image/png,rawtext",
                                     "data:image/png;base64", "héllo"])
def test_decode_rejects_garbage(garbage):
    with pytest.raises(ValueError):
        decode_base64(garbage)


def test_decode_large_is_fast():
    data = png() + os.urandom(12_000_000)  # ~16 MB of base64
    text = base64.b64encode(data).decode()
    wrapped = "\n".join(text[i:i + 76] for i in range(0, len(text), 76))
    start = time.perf_counter()
    assert decode_base64(text) == data
    assert decode_base64("data:image/png;base64," + wrapped) == data
    assert time.perf_counter() - start < 3


# --- to_image / parse_image_ref / data_uri ----------------------------------------------------

def test_to_image():
    img = to_image(webp((40, 30)))
    assert (img.mime_type, img.width, img.height, img.extension) == ("image/webp", 40, 30, "webp")
    with pytest.raises(ValueError):
        to_image(b"hello")


def test_parse_image_ref_forms():
    data = png((12, 34))
    raw = base64.b64encode(data).decode()
    for ref in (raw, f"data:image/jpeg;base64,{raw}", f"  {raw}\n"):
        img = parse_image_ref(ref)
        assert isinstance(img, ImageData)
        assert (img.data, img.mime_type, img.width, img.height) == (data, "image/png", 12, 34)
    assert parse_image_ref(" https://cdn.example.com/a.png ") == "https://cdn.example.com/a.png"
    assert parse_image_ref("HTTP://x.test/b") == "HTTP://x.test/b"
    with pytest.raises(ValueError):
        parse_image_ref(base64.b64encode(b"just some text").decode())


def test_data_uri_and_b64_round_trip():
    img = to_image(jpeg())
    assert data_uri(img).startswith("data:image/jpeg;base64,/9j/")
    assert decode_base64(data_uri(img)) == img.data
    assert base64.b64decode(b64(img)) == img.data


# --- Markdown ---------------------------------------------------------------------------------

def test_markdown_images_with_text_around():
    a, b = png(), jpeg()
    text = (f"Here you go:\n\n![image](data:image/png;base64,{base64.b64encode(a).decode()})\n\n"
            f"and a second one ![x](data:image/jpeg;base64,{base64.b64encode(b).decode()}) "
            f"plus ![hosted](https://cdn.example.com/i.webp \"title\"). Enjoy!")
    refs, rest = find_markdown_images(text)
    assert len(refs) == 3
    assert decode_base64(refs[0]) == a and decode_base64(refs[1]) == b
    assert refs[2] == "https://cdn.example.com/i.webp"
    assert "base64" not in rest and rest.startswith("Here you go:") and rest.endswith("Enjoy!")


def test_markdown_with_wrapped_base64():
    data = png((50, 50))
    text = base64.encodebytes(data).decode()  # 76-column lines
    refs, rest = find_markdown_images(f"![image](data:image/png;base64,{text})")
    assert rest == "" and decode_base64(refs[0]) == data


def test_markdown_without_images_is_untouched():
    assert find_markdown_images("no images here") == ([], "no images here")
    assert find_markdown_images("![broken](ftp://x)") == ([], "![broken](ftp://x)")


def test_markdown_scan_is_linear_on_hostile_text():
    text = "![" * 200_000 + "x" * 1_000_000
    start = time.perf_counter()
    assert find_markdown_images(text)[0] == []
    assert time.perf_counter() - start < 2


def test_looks_like_image_ref():
    raw = base64.b64encode(png()).decode()
    assert looks_like_image_ref(raw)
    assert looks_like_image_ref("data:image/webp;base64,AAAA")
    assert not looks_like_image_ref("Sorry, I can't draw that.")
