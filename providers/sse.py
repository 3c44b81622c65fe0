"""An incremental Server-Sent Events reader that copes with multi-megabyte lines.

aiohttp's readline() stops at ~64 KiB and a whole 4K image arrives in one `data:` line, so this
reader takes raw chunks (resp.content.iter_any()), keeps them in one bytearray and only scans
bytes it has not scanned before: linear in the stream size however long a line grows.
"""
from __future__ import annotations

DONE = b"[DONE]"


class SSEReader:
    """Feed raw chunks, get complete event payloads (`data:` lines joined with \\n).

    Handles LF and CRLF framing, `:` comment keep-alives, multi-line `data:` events and `[DONE]`
    (not returned; see `done`). Other fields (event, id, retry) are ignored.

    It runs on the event loop, so a 20 MB line must cost as little as possible there: each chunk is
    copied once into the line's own bytearray (which grows in place), and a finished `data:` line
    is handed over as it is, its `data: ` prefix and CR cut off in place. Payloads are bytes, or
    for lines over BIG bytes that bytearray (bytes-like: json.loads and every parser take it).
    """

    BIG = 64 * 1024

    def __init__(self) -> None:
        self._line = bytearray()  # the line not yet ended by a newline
        self._data: list[bytes | bytearray] = []
        self.done = False  # saw `data: [DONE]`
        self.bytes_read = 0
        self.events = 0
        self.truncated = False  # set by close(): the stream stopped inside an event

    def feed(self, chunk: bytes) -> list[bytes | bytearray]:
        self.bytes_read += len(chunk)
        out: list[bytes | bytearray] = []
        view = memoryview(chunk)
        pos = 0
        while True:
            nl = chunk.find(b"\n", pos)
            if nl < 0:
                self._line += view[pos:]
                return out
            self._line += view[pos:nl]
            self._end_line(out)
            pos = nl + 1

    def close(self) -> list[bytes | bytearray]:
        """End of stream: flush a last line without newline and a last event without blank line."""
        out: list[bytes | bytearray] = []
        self.truncated = bool(self._line or self._data)
        if self._line:
            self._end_line(out)
        self._event(out)
        return out

    def _end_line(self, out: list[bytes | bytearray]) -> None:
        line, self._line = self._line, bytearray()
        if line[-1:] == b"\r":  # CRLF
            del line[-1:]
        if not line:
            self._event(out)
            return
        if line[:1] == b":":  # comment / keep-alive
            return
        colon = line.find(b":", 0, 64)
        field = bytes(line[:colon]) if colon >= 0 else bytes(line[:64])
        if field != b"data":
            return  # event, id, retry, unknown fields
        if colon < 0:  # "data" alone: an empty value
            self._data.append(b"")
            return
        del line[:colon + 2 if line[colon + 1:colon + 2] == b" " else colon + 1]  # O(1) at the front
        self._data.append(line if len(line) > self.BIG else bytes(line))

    def _event(self, out: list[bytes | bytearray]) -> None:
        if self._data:
            payload = self._data[0] if len(self._data) == 1 else b"\n".join(self._data)
            self._data = []
            if len(payload) < 64 and payload.strip() == DONE:
                self.done = True
            else:
                self.events += 1
                out.append(payload)
