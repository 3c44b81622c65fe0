"""Where images and data are written: a directory checked before anything is paid for or started,
and file names that never replace an earlier file."""
from __future__ import annotations

import tempfile
from pathlib import Path
from typing import BinaryIO


def directory_problem(path: Path) -> str | None:
    """Why `path` cannot take files (None when it can); creates it, with its parents, if missing."""
    if path.exists() and not path.is_dir():
        return "it is a file, not a directory"
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".write-check-"):
            pass
    except OSError as exc:
        return f"it cannot be created or written to ({exc.strerror or type(exc).__name__})"
    return None


def new_file(directory: Path, stem: str, extension: str) -> BinaryIO:
    """A file opened for writing that did not exist before (stem.ext, else stem-2.ext, ...): another
    run into the same directory, at the same second, never overwrites it."""
    path, n = directory / f"{stem}.{extension}", 1
    while True:
        try:
            return path.open("xb")
        except FileExistsError:
            n += 1
            path = directory / f"{stem}-{n}.{extension}"
