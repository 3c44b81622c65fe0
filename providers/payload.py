"""A large answer (a plain body, or one SSE payload) as the pieces it arrived in.

A 4K image's answer is 17-23 MB and reaches the event loop in aiohttp's chunks of up to 256 KB.
Joining them is a copy into fresh memory that took 15-70 ms of the loop in the benchmark (py-spy
--native, `python -m bench`), and growing one bytearray instead moved it on most reallocations.
So the loop keeps the pieces in a `Chunks`, and the join happens where the answer is parsed: a
worker process, which core.cpu hands a Chunks to through a file, so it arrives joined.
"""
from __future__ import annotations

BIG = 64 * 1024  # bytes: shorter payloads are joined right away (a copy of microseconds)


class Chunks:
    """Pieces of bytes, in order. len() is the total size; picklable; `joined()` makes it bytes."""

    __slots__ = ("pieces", "nbytes")

    def __init__(self, pieces: list[bytes]) -> None:
        self.pieces = pieces
        self.nbytes = sum(map(len, pieces))

    def __len__(self) -> int:
        return self.nbytes

    def head(self, n: int) -> bytes:
        """The first `n` bytes (for sniffing and error excerpts), joining only the pieces needed."""
        out, size = [], 0
        for piece in self.pieces:
            if size >= n:
                break
            out.append(piece[:n - size])
            size += len(out[-1])
        return b"".join(out)

    def __repr__(self) -> str:
        return f"Chunks({len(self.pieces)} pieces, {self.nbytes} bytes)"


def joined(payload: bytes | Chunks) -> bytes:
    """The payload as bytes (for a long one, a copy of everything: blocking, keep it off the loop)."""
    return b"".join(payload.pieces) if isinstance(payload, Chunks) else payload
