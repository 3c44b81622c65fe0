"""The secret scan: no API key and no Discord token appears in anything the suite left behind.

pytest runs this module last (files run in name order). Every secret the suite hands to code under
test is registered (`fakes.secret_registry.register_secret`; the fake Discord registers its own bot
token), and everything the code under test said or stored lands under pytest's basetemp:

    test-process.log                  this process's logging at DEBUG (tests/conftest.py)
    <test>/bot-N.log                  each bot process's stdout+stderr (Driver(log_dir=tmp_path))
    <test>/discord-messages.jsonl     every message version, thread name, modal the members saw
    <test>/data/bot.sqlite3*          the bots' stored rows (DATA_DIR under tmp_path)
    captured-output/*.log             CLI stdout/stderr (tests/test_cli.py)

Run alone (`pytest tests/test_zz_secret_scan.py`), it scans what exists: this run's basetemp and,
when another run left one, the newest earlier basetemp with its own registry (pytest keeps the last
three), so the artifacts of the last full run can be re-checked.
"""
from __future__ import annotations

import logging
import secrets
from pathlib import Path

import pytest

from fakes import secret_registry as registry
from fakes.driver import Driver



def runs_the_bot(module: str) -> bool:
    """Modules that run `python bot.py` against the fake Discord (and so leave logs, dumps, SQLite)."""
    return module.startswith("test_bot_") or module.endswith("_e2e.py")


def kinds(paths: list[Path]) -> dict[str, int]:
    """How many of the scanned files are of each kind the scan is meant to cover."""
    counts = {"test-process log": 0, "bot log": 0, "message dump": 0, "SQLite file": 0, "CLI output": 0}
    for path in paths:
        name = path.name
        if name == "test-process.log":
            counts["test-process log"] += 1
        elif name.startswith("bot-") and name.endswith(".log"):
            counts["bot log"] += 1
        elif name == "discord-messages.jsonl":
            counts["message dump"] += 1
        elif ".sqlite3" in name:
            counts["SQLite file"] += 1
        elif path.parent.name == "captured-output":
            counts["CLI output"] += 1
    return counts


def report(findings: list[registry.Finding], limit: int = 30) -> str:
    lines = [str(f) for f in findings[:limit]]
    if len(findings) > limit:
        lines.append(f"... and {len(findings) - limit} more")
    return "secrets leaked into the suite's output:\n" + "\n".join(lines)


async def test_the_scanner_finds_planted_secrets(tmp_path, secret_scan_artifacts):
    """The scan can fail: a secret planted in a log line, a SQLite-like binary file, a message the
    fake Discord stored, a URL (quoted) and this process's log is found, with its file and line."""
    planted = "sk-planted-" + secrets.token_hex(8)
    (tmp_path / "bot-1.log").write_text(f"starting\nINFO calling with key {planted} now\n")
    (tmp_path / "bot.sqlite3").write_bytes(b"SQLite format 3\x00" + bytes(100) + planted.encode() + bytes(10))
    async with Driver(log_dir=tmp_path / "discord") as d:
        await d.say("general", f"did you mean {planted}?", user="bob")
    findings, scanned = registry.scan(tmp_path, {planted: "the planted key"})
    where = sorted((f.path.relative_to(tmp_path).as_posix(), f.line) for f in findings)
    assert where == [("bot-1.log", 2), ("bot.sqlite3", 1), ("discord/discord-messages.jsonl", where[2][1])]
    assert all(planted not in str(f) and "<SECRET>" in f.excerpt for f in findings)
    assert "the planted key" in str(findings[0])
    # A key with characters a URL escapes is also found in its quoted form.
    slashed = "AIza/planted+" + secrets.token_hex(6)
    (tmp_path / "urls.txt").write_text("x\nhttp://h/?key=" + slashed.replace("/", "%2F").replace("+", "%2B") + "\n")
    findings, _ = registry.scan(tmp_path, {slashed: "a key with / and +"})
    assert [(f.path.name, f.line) for f in findings] == [("urls.txt", 2)]
    # This process's log (a DEBUG record, through the root logger) is under the scanned tree.
    logged = "sk-logged-" + secrets.token_hex(8)
    logging.getLogger("secret_scan.self_check").debug("a careless line with %s", logged)
    findings, _ = registry.scan(secret_scan_artifacts, {logged: "a logged key"})
    assert [f.path.name for f in findings] == ["test-process.log"]


SCAN_ONLY = "scan-only"  # marks a basetemp of a run of this module alone: nothing to re-check there


def previous_run(base: Path) -> Path | None:
    """The newest other basetemp (pytest-of-<user>/pytest-N) that holds a registry and was not a
    run of this module alone."""
    runs = [p for p in base.parent.iterdir() if p != base and p.is_dir() and not p.is_symlink()
            and (p / "secret-scan" / registry.REGISTRY_NAME).exists()
            and not (p / "secret-scan" / SCAN_ONLY).exists()]
    def order(path: Path) -> tuple[int, float]:  # pytest-N by N, anything else by age
        number = path.name.rpartition("-")[2]
        return (int(number) if number.isdigit() else -1, path.stat().st_mtime)
    return max(runs, key=order, default=None)


def test_no_registered_secret_appears_in_any_output(request, secret_scan_artifacts):
    base: Path = secret_scan_artifacts
    for handler in logging.getLogger().handlers:
        handler.flush()
    ran = {item.path.name for item in request.session.items}
    alone = ran <= {Path(__file__).name}
    targets = [(base, registry.secrets())]
    if alone:
        (base / "secret-scan" / SCAN_ONLY).touch()
        if (earlier := previous_run(base)) is not None:
            targets.append((earlier, registry.load_registry(earlier / "secret-scan")))
    findings, scanned = [], []
    for root, secrets_here in targets:
        assert secrets_here, f"no secrets registered for {root}"
        found, files = registry.scan(root, secrets_here)
        findings += found
        scanned += files
    assert not findings, report(findings)

    counts = kinds(scanned)
    expected = ["test-process log"]
    if any(runs_the_bot(module) for module in ran):
        expected += ["bot log", "message dump", "SQLite file"]
    if "test_cli.py" in ran:
        expected.append("CLI output")
    missing = [kind for kind in expected if not counts[kind]]
    assert not missing, f"the scan read no {missing} (scanned {counts}): is the suite still writing them?"
    if not alone:
        wanted = {"test_bot_e2e.py": "bot_helpers.API_KEY", "test_client.py": "test_client.KEY",
                  "test_cli.py": "test_cli.KEY", "test_presets.py": "test_presets.KEY",
                  "test_parsing.py": "test_parsing.KEY", "test_gemini_thread_e2e.py": "test_gemini_thread_e2e.KEY"}
        unregistered = [m for m, note in wanted.items() if m in ran and note not in registry.secrets().values()]
        assert not unregistered, f"modules that configure keys without registering them: {unregistered}"
