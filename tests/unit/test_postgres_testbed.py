"""The PostgreSQL test bed (tests/fakes/postgres.py, the `pg_url` fixture): a real server,
private to the session, and never silently skipped under CI."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import psycopg

TESTS = Path(__file__).resolve().parents[1]
NEEDS_POSTGRES = "def test_needs_postgres(pg_url):\n    assert pg_url\n"


def test_the_throwaway_server_listens_on_loopback_only_and_skips_fsync(pg_url):
    if os.environ.get("TEST_DATABASE_URL"):
        return  # a server given from outside is configured by whoever runs it
    with psycopg.connect(pg_url) as conn:
        settings = dict(conn.execute(
            "SELECT name, setting FROM pg_settings WHERE name IN ('listen_addresses', 'fsync')"))
        role = conn.execute("SELECT current_user").fetchone()[0]
    assert settings == {"listen_addresses": "127.0.0.1", "fsync": "off"}
    assert role == "postgres" and pg_url.startswith("postgresql://postgres@127.0.0.1:")


def _run_pytest_needing_postgres(tmp_path: Path, ci: str) -> subprocess.CompletedProcess:
    """A pytest run whose only test needs `pg_url`, with a server that never answers."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    (tmp_path / "test_needs_postgres.py").write_text(NEEDS_POSTGRES)
    env = {**os.environ, "CI": ci, "TEST_DATABASE_URL": f"postgresql://nobody@127.0.0.1:{port}/x",
           "TEST_DATABASE_WAIT_S": "0.5", "PYTHONPATH": str(TESTS)}
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "conftest", "-p", "no:cacheprovider",
         "--rootdir", str(tmp_path), "--basetemp", str(tmp_path / "base"),
         str(tmp_path / "test_needs_postgres.py")],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)


def test_under_ci_a_missing_server_fails_the_run(tmp_path):
    done = _run_pytest_needing_postgres(tmp_path, ci="true")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "PostgreSQL is required under CI" in done.stdout and "1 error" in done.stdout


def test_outside_ci_a_missing_server_skips_with_the_reason(tmp_path):
    done = _run_pytest_needing_postgres(tmp_path, ci="")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 skipped" in done.stdout and "no PostgreSQL server" in done.stdout
