"""Secrets the test suite configures, where the suite's artifacts go, and a scanner for leaks.

Every test module or fixture that hands the bot (or the CLI, or the provider layer) a secret
registers it: `register_secret(API_KEY, "bot_helpers.API_KEY")`. The fake Discord registers its bot
token itself. tests/conftest.py points `configure()` at a directory under pytest's basetemp, so the
registry is also written to disk (for a later run of the scan module alone), and installs a DEBUG
handler that logs the test process to a file there. tests/unit/test_zz_secret_scan.py, which pytest runs
last, scans every file under the basetemp for every registered secret: the test process's log, the
bot processes' logs, the fake Discord's messages (the Driver dumps them on close), SQLite files in
the bots' DATA_DIRs, CLI outputs (`record_output`).

Outside pytest (the benchmark) nothing is written: registering is a no-op besides memory.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

MIN_LENGTH = 8  # shorter values would match by accident
REGISTRY_NAME = "registry.jsonl"
# Inputs that hold secrets on purpose (configuration a test writes for the code under test).
INPUT_NAMES = (REGISTRY_NAME, ".env")

_secrets: dict[str, str] = {}  # value -> where it was configured
_dir: Path | None = None


def register_secret(value: str, where: str) -> str:
    """Remember a secret the suite hands to code under test; returns the value (for inline use)."""
    if not isinstance(value, str) or len(value) < MIN_LENGTH:
        raise ValueError(f"a secret to scan for needs at least {MIN_LENGTH} characters: {where}")
    if value not in _secrets:
        _secrets[value] = where
        _write_registry_line(value, where)
    return value


def secrets() -> dict[str, str]:
    return dict(_secrets)


def configure(directory: Path) -> None:
    """Write the registry (now and from now on) under `directory` (conftest: <basetemp>/secret-scan)."""
    global _dir
    directory.mkdir(parents=True, exist_ok=True)
    _dir = directory
    with open(directory / REGISTRY_NAME, "w") as out:
        for value, where in _secrets.items():
            out.write(json.dumps({"secret": value, "where": where}) + "\n")


def artifact_dir() -> Path | None:
    """Where the suite keeps what the scan reads (None outside pytest)."""
    return _dir.parent if _dir is not None else None


def record_output(label: str, *texts: str) -> None:
    """Keep text the suite captured in memory (CLI stdout/stderr) where the scan will read it."""
    if _dir is None:
        return
    path = _dir.parent / "captured-output" / f"{os.getpid()}.log"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as out:
        out.write(f"===== {label}\n")
        for text in texts:
            out.write(text if text.endswith("\n") or not text else text + "\n")


def _write_registry_line(value: str, where: str) -> None:
    if _dir is not None:
        with open(_dir / REGISTRY_NAME, "a") as out:
            out.write(json.dumps({"secret": value, "where": where}) + "\n")


def load_registry(directory: Path) -> dict[str, str]:
    path = directory / REGISTRY_NAME
    if not path.exists():
        return {}
    found = {}
    for line in path.read_text().splitlines():
        if line.strip():
            item = json.loads(line)
            found[item["secret"]] = item["where"]
    return found


@dataclass(frozen=True)
class Finding:
    path: Path
    line: int  # 1-based; for binary files (SQLite) the count of newlines before the hit, plus one
    where: str  # the registry's note on which secret this is
    excerpt: str  # the line around the hit, with the secret masked

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: the secret from {self.where} appears here: {self.excerpt}"


def forms(secret: str) -> list[bytes]:
    """The byte strings a secret may be written as: raw (UTF-8) and URL-quoted."""
    out = [secret.encode()]
    quoted = quote(secret, safe="").encode()
    if quoted not in out:
        out.append(quoted)
    return out


def scan(root: Path, registry: dict[str, str], *, exclude: tuple[Path, ...] = ()) -> tuple[list[Finding], list[Path]]:
    """Every place under `root` where a registered secret appears, and the files that were read."""
    excluded = {p.resolve() for p in exclude}
    needles = [(needle, secret, where) for secret, where in registry.items() for needle in forms(secret)]
    findings: list[Finding] = []
    scanned: list[Path] = []
    for dirpath, _dirs, files in os.walk(root):
        for name in sorted(files):
            path = Path(dirpath) / name
            if path.resolve() in excluded or name in INPUT_NAMES or path.is_symlink():
                continue
            try:
                data = path.read_bytes()
            except OSError:
                continue
            scanned.append(path)
            for needle, secret, where in needles:
                start = data.find(needle)
                while start >= 0:
                    findings.append(_finding(path, data, start, needle, where))
                    start = data.find(needle, start + len(needle))
    return findings, scanned


def _finding(path: Path, data: bytes, offset: int, needle: bytes, where: str) -> Finding:
    line_start = data.rfind(b"\n", 0, offset) + 1
    line_end = data.find(b"\n", offset)
    line = data[max(line_start, offset - 120): line_end if 0 <= line_end < offset + 120 else offset + 120]
    text = line.replace(needle, b"<SECRET>").decode("utf-8", "replace")
    text = "".join(c if c.isprintable() else "?" for c in text)
    return Finding(path, data.count(b"\n", 0, offset) + 1, where, text)
