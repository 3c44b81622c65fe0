"""Pure image helpers shared by every parser (and the bot): sniffing, header sizes, tolerant base64.

Gateways lie about mime types, wrap base64 at 76 columns, drop padding, use the URL-safe alphabet
and hide images in Markdown, so nothing here trusts a declared type: the bytes decide.
Everything is linear in the input size; bodies of 20-30 MB are normal.
"""
from __future__ import annotations

import base64
import binascii
import re
import struct

from .models import ImageData

_WHITESPACE = b" \t\r\n\f\v"
_URLSAFE = bytes.maketrans(b"-_", b"+/")
# Markdown image whose target is a data URI (base64 may be line-wrapped: anything up to ')') or an
# http(s) URL with an optional "title". The alt text is bounded so a stray '!' cannot make it quadratic.
_MARKDOWN_IMAGE = re.compile(
    r'!\[[^\]\n]{0,200}\]\(\s*<?(data:[^)>]+|https?://[^)\s>]+)>?(?:\s+"[^"\n]{0,500}")?\s*\)'
)


def sniff_mime(data: bytes) -> str | None:
    """The image type from the magic bytes, or None when the bytes are no image we handle."""
    if data[:4] == b"\x89PNG":
        return "image/png"
    if data[:3] == b"\xff\xd8\xff":
        return "image/jpeg"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "image/gif"
    return None


def image_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) read from the header only; None when unknown or truncated."""
    try:
        mime = sniff_mime(data)
        if mime == "image/png":
            if data[12:16] == b"IHDR":
                return struct.unpack(">II", data[16:24])
        elif mime == "image/gif":
            return struct.unpack("<HH", data[6:10])
        elif mime == "image/webp":
            return _webp_size(data)
        elif mime == "image/jpeg":
            return _jpeg_size(data)
    except struct.error:  # truncated header
        pass
    return None


def _webp_size(data: bytes) -> tuple[int, int] | None:
    chunk = data[12:16]
    if chunk == b"VP8 " and data[23:26] == b"\x9d\x01\x2a":  # lossy: frame tag, start code, 14-bit sizes
        w, h = struct.unpack("<HH", data[26:30])
        return w & 0x3FFF, h & 0x3FFF
    if chunk == b"VP8L" and data[20:21] == b"\x2f":  # lossless: 14-bit width-1, height-1
        bits = int.from_bytes(data[21:25], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8X":  # extended: 24-bit canvas width-1, height-1
        return int.from_bytes(data[24:27], "little") + 1, int.from_bytes(data[27:30], "little") + 1
    return None


# SOF0-SOF15 carry the frame size; C4 (DHT), C8 (JPG) and CC (DAC) share the range but do not.
_JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
_JPEG_NO_LENGTH = frozenset(range(0xD0, 0xD8)) | {0x01, 0xD8}


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    # Walk the marker segments (a few dozen at most) until the first SOF; never scan the entropy data.
    i, n = 2, len(data)
    while i + 4 <= n:
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in _JPEG_NO_LENGTH:
            i += 2
            continue
        if marker in (0xD9, 0xDA):  # end of image / start of scan before any frame header
            return None
        length = (data[i + 2] << 8) | data[i + 3]
        if marker in _JPEG_SOF:
            height, width = struct.unpack(">HH", data[i + 5:i + 9])
            return (width, height) if width and height else None
        i += 2 + length
    return None


def decode_base64(text: str | bytes) -> bytes:
    """Decode base64 liberally: data: prefix, whitespace, missing padding, URL-safe alphabet.

    Raises ValueError on anything that is not base64. Clean input takes strict C-level passes over
    slices of _CHUNK characters, straight from the str (no ASCII copy of a 20 MB string first), so
    a worker thread decoding a 4K image gives the GIL back to the event loop between slices; the
    cleanup copies happen only when that fails.
    """
    if isinstance(text, str):
        if not text.isascii():  # O(1) for str
            raise ValueError("base64 text contains non-ASCII characters")
        head = text[:300].encode("ascii")
    else:
        text = bytes(text) if not isinstance(text, (bytes, bytearray)) else text
        head = bytes(text[:300])
    start = 0
    stripped = head.lstrip()
    if stripped[:5].lower() == b"data:":
        comma = stripped.find(b",")
        if comma < 0 or b";base64" not in stripped[:comma].lower():
            raise ValueError("data URI is not base64-encoded")
        start = len(head) - len(stripped) + comma + 1
    try:
        out = _decode_clean(text, start)
    except binascii.Error:
        rest = text[start:]
        out = _decode_slow(rest.encode("ascii") if isinstance(rest, str) else bytes(rest))
    if not out:
        raise ValueError("empty base64 data")
    return out


_CHUNK = 1 << 20  # characters per strict pass: a few ms each


def _decode_clean(text: str | bytes | bytearray, start: int) -> bytes:
    end = len(text)
    # Padding may only end the data: a slice boundary must not make an inner "=" look valid.
    if text.find("=" if isinstance(text, str) else b"=", start, max(start, end - 2)) >= 0:
        raise binascii.Error("padding inside the data")
    view = text if isinstance(text, str) else memoryview(text)
    if end - start <= _CHUNK:
        return binascii.a2b_base64(view[start:end], strict_mode=True)
    return b"".join(binascii.a2b_base64(view[i:min(i + _CHUNK, end)], strict_mode=True)
                    for i in range(start, end, _CHUNK))


def _decode_slow(raw: bytes) -> bytes:
    raw = raw.translate(None, _WHITESPACE).translate(_URLSAFE).rstrip(b"=")
    if len(raw) % 4 == 1:
        raise ValueError("base64 data has an impossible length")
    raw += b"=" * (-len(raw) % 4)
    try:
        return binascii.a2b_base64(raw, strict_mode=True)
    except binascii.Error as exc:
        raise ValueError(f"invalid base64 data: {exc}") from None


def to_image(data: bytes) -> ImageData:
    """Wrap bytes as ImageData with the sniffed type and header size; ValueError if not an image."""
    mime = sniff_mime(data)
    if mime is None:
        raise ValueError("data is not a PNG, JPEG, WebP or GIF image")
    size = image_size(data) or (None, None)
    return ImageData(data=data, mime_type=mime, width=size[0], height=size[1])


def parse_image_ref(ref: str) -> ImageData | str:
    """An image reference as found in answers: raw base64 or data URI -> ImageData, http(s) -> the URL.

    Raises ValueError when the reference is neither a URL nor base64 of a known image type.
    """
    ref = ref.strip()
    if ref[:8].lower().startswith(("http://", "https://")):
        return ref
    return to_image(decode_base64(ref))


def find_markdown_images(text: str) -> tuple[list[str], str]:
    """Pull `![alt](data:...)` and `![alt](https://...)` out of text: (refs in order, remaining text)."""
    if "![" not in text:
        return [], text
    refs: list[str] = []

    def take(match: re.Match[str]) -> str:
        refs.append(match.group(1))
        return ""

    rest = _MARKDOWN_IMAGE.sub(take, text)
    return refs, (re.sub(r"\n{3,}", "\n\n", rest).strip() if refs else text)


# base64 of each magic number: lets a parser spot a bare base64 image in a text field cheaply.
_B64_MAGIC = ("iVBORw0KGgo", "/9j/", "UklGR", "R0lGOD")


def looks_like_image_ref(text: str) -> bool:
    """True for a bare data URI or bare base64 image (no Markdown) sent as plain text."""
    head = text[:64].lstrip()
    return head[:11].lower() == "data:image/" or (head.startswith(_B64_MAGIC) and " " not in text[:2000])


def b64(img: ImageData) -> str:
    return base64.b64encode(img.data).decode("ascii")


def data_uri(img: ImageData) -> str:
    return f"data:{img.mime_type};base64,{b64(img)}"
