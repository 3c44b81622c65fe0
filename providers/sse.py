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
    """

    def __init__(self) -> None:
        self._buf = bytearray()
        self._scan = 0  # bytes of _buf already searched for a newline
        self._data: list[bytes] = []
        self.done = False  # saw `data: [DONE]`
        self.bytes_read = 0
        self.events = 0
        self.truncated = False  # set by close(): the stream stopped inside an event

    def feed(self, chunk: bytes) -> list[bytes]:
        self.bytes_read += len(chunk)
        buf = self._buf
        buf += chunk
        out: list[bytes] = []
        start = 0
        while True:
            nl = buf.find(b"\n", self._scan)
            if nl < 0:
                self._scan = len(buf)
                break
            end = nl - 1 if nl > start and buf[nl - 1] == 0x0D else nl  # CRLF
            self._line(bytes(buf[start:end]) if end > start else b"", out)
            start = self._scan = nl + 1
        if start:
            del buf[:start]
            self._scan -= start
        return out

    def close(self) -> list[bytes]:
        """End of stream: flush a last line without newline and a last event without blank line."""
        out: list[bytes] = []
        self.truncated = bool(self._buf or self._data)
        if self._buf:
            self._line(bytes(self._buf).rstrip(b"\r"), out)
            self._buf.clear()
            self._scan = 0
        self._line(b"", out)
        return out

    def _line(self, line: bytes, out: list[bytes]) -> None:
        if not line:
            if self._data:
                payload = self._data[0] if len(self._data) == 1 else b"\n".join(self._data)
                self._data = []
                if payload.strip() == DONE:
                    self.done = True
                else:
                    self.events += 1
                    out.append(payload)
            return
        if line[:1] == b":":  # comment / keep-alive
            return
        field, sep, value = line.partition(b":")
        if field == b"data":
            self._data.append(value[1:] if value[:1] == b" " else value)
