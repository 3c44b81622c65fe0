"""An incremental Server-Sent Events reader that copes with multi-megabyte lines.

aiohttp's readline() stops at ~64 KiB and a whole 4K image arrives in one `data:` line, so this
reader takes raw chunks (resp.content.iter_any()) and only scans bytes it has not scanned before:
linear in the stream size however long a line grows.
"""
from __future__ import annotations

from .payload import BIG, Chunks

DONE = b"[DONE]"


class SSEReader:
    """Feed raw chunks, get complete event payloads (`data:` lines joined with \\n).

    Handles LF and CRLF framing, `:` comment keep-alives, multi-line `data:` events and `[DONE]`
    (not returned; see `done`). Other fields (event, id, retry) are ignored.

    It runs on the event loop, so a 20 MB line must cost as little as possible there: a short line
    grows in a bytearray and its payload is bytes; once a line is over BIG bytes, the chunks that
    follow are kept as they came (no copy) and its payload is a `Chunks`, joined where it
    is parsed.
    """

    def __init__(self) -> None:
        self._line = bytearray()  # the line not yet ended by a newline, while short
        self._parts: list[bytes] = []  # ... or its pieces once long (the first holds its field name)
        self._data: list[bytes | Chunks] = []
        self.done = False  # saw `data: [DONE]`
        self.bytes_read = 0
        self.events = 0
        self.truncated = False  # set by close(): the stream stopped inside an event

    def feed(self, chunk: bytes) -> list[bytes | Chunks]:
        self.bytes_read += len(chunk)
        out: list[bytes | Chunks] = []
        pos = 0
        while True:
            nl = chunk.find(b"\n", pos)
            end = len(chunk) if nl < 0 else nl
            if end > pos:
                self._add(chunk if pos == 0 and end == len(chunk) else chunk[pos:end])
            if nl < 0:
                return out
            self._end_line(out)
            pos = nl + 1

    def _add(self, piece: bytes) -> None:
        if self._parts:
            self._parts.append(bytes(piece) if not isinstance(piece, bytes) else piece)
        elif len(self._line) + len(piece) > BIG:
            self._line += piece
            self._parts, self._line = [bytes(self._line)], bytearray()
        else:
            self._line += piece

    def close(self) -> list[bytes | Chunks]:
        """End of stream: flush a last line without newline and a last event without blank line."""
        out: list[bytes | Chunks] = []
        self.truncated = bool(self._line or self._parts or self._data)
        if self._line or self._parts:
            self._end_line(out)
        self._event(out)
        return out

    def _end_line(self, out: list[bytes | Chunks]) -> None:
        parts, self._parts = self._parts, []
        line, self._line = self._line, bytearray()
        head = parts[0] if parts else line  # the field name is in the first 64 bytes
        if not parts and line[-1:] == b"\r":  # CRLF
            del line[-1:]
        if not head:
            self._event(out)
            return
        if head[:1] == b":":  # comment / keep-alive
            return
        colon = head.find(b":", 0, 64)
        field = bytes(head[:colon]) if colon >= 0 else bytes(head[:64])
        if field != b"data":
            return  # event, id, retry, unknown fields
        if colon < 0:  # "data" alone: an empty value
            self._data.append(b"")
            return
        start = colon + 2 if head[colon + 1:colon + 2] == b" " else colon + 1
        if not parts:
            self._data.append(bytes(line[start:]))
            return
        parts[0] = parts[0][start:]  # at most BIG + one chunk
        if parts[-1][-1:] == b"\r":  # CRLF (the last piece is never empty)
            parts[-1] = parts[-1][:-1]
        self._data.append(Chunks(parts))

    def _event(self, out: list[bytes | Chunks]) -> None:
        data, self._data = self._data, []
        if not data:
            return
        if len(data) == 1:
            payload = data[0]
        elif any(isinstance(d, Chunks) for d in data):  # several data: lines, one of them long
            pieces: list[bytes] = []
            for i, d in enumerate(data):
                pieces += ([b"\n"] if i else []) + (d.pieces if isinstance(d, Chunks) else [d])
            payload = Chunks(pieces)
        else:
            payload = b"\n".join(data)
        if len(payload) < 64 and payload.strip() == DONE:
            self.done = True
        else:
            self.events += 1
            out.append(payload)
