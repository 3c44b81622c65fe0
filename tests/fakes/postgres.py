"""A real PostgreSQL server for the tests: the one named by TEST_DATABASE_URL, or a throwaway
cluster this module starts from Debian's `postgresql` package.

The throwaway cluster lives in a temp dir owned by the `postgres` user (PostgreSQL refuses to run
as root, and CI runs as root), listens on a private port on 127.0.0.1 with its unix socket in that
dir, trusts local connections, and skips every fsync (its data is thrown away). It is stopped when
the test session ends; a watchdog stops it too if the test process is killed first.
TEST_DATABASE_URL names a server to use instead (its user must be allowed to create databases);
TEST_DATABASE_WAIT_S how long to wait for it to answer.

    server = PostgresServer.start()      # raises PostgresUnavailable with the reason
    url = server.url                     # postgresql://postgres@127.0.0.1:<port>/postgres
    db = create_database(url, "t1")      # a fresh database on the same server
    server.stop()
"""
from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

URL_ENV = "TEST_DATABASE_URL"
WAIT_ENV = "TEST_DATABASE_WAIT_S"  # how long a server given by URL may take to answer (60 s)
SERVER_USER = "postgres"
START_TIMEOUT_S = 60
# Throwaway data: durability off, so start-up and every commit are fast.
SERVER_SETTINGS = {
    "listen_addresses": "127.0.0.1",
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_connections": "300",
    "shared_buffers": "32MB",
    "max_wal_size": "256MB",
}


class PostgresUnavailable(RuntimeError):
    """No PostgreSQL server can be had here (package missing, start failed); the message says why."""


def running_under_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("true", "1", "yes")


def find_bin_dir() -> Path | None:
    """The newest installed PostgreSQL's bin directory (Debian: /usr/lib/postgresql/<ver>/bin)."""
    found = glob.glob("/usr/lib/postgresql/*/bin/initdb")
    if not found:
        return None
    return Path(max(found, key=lambda p: int(Path(p).parent.parent.name))).parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _as_server_user(argv: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return argv
    if not shutil.which("runuser"):
        return ["su", SERVER_USER, "-s", "/bin/sh", "-c", " ".join(_quote(a) for a in argv)]
    return ["runuser", "-u", SERVER_USER, "--", *argv]


def _quote(arg: str) -> str:
    return "'" + arg.replace("'", "'\\''") + "'"


def _run(argv: list[str], what: str) -> None:
    done = subprocess.run(_as_server_user(argv), capture_output=True, text=True,
                          timeout=START_TIMEOUT_S, stdin=subprocess.DEVNULL)
    if done.returncode != 0:
        raise PostgresUnavailable(f"{what} failed ({done.returncode}): "
                                  f"{(done.stderr or done.stdout).strip()[-2000:]}")


@dataclass
class PostgresServer:
    url: str
    bin_dir: Path | None = None
    root: Path | None = None  # None: a server given by TEST_DATABASE_URL, not ours to stop
    watchdog: subprocess.Popen | None = None

    @classmethod
    def from_env_or_start(cls) -> PostgresServer:
        url = os.environ.get(URL_ENV)
        if url:
            return cls(url=url)
        return cls.start()

    @classmethod
    def start(cls) -> PostgresServer:
        bin_dir = find_bin_dir()
        if bin_dir is None:
            raise PostgresUnavailable(
                "PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/initdb): "
                "apt-get install postgresql, or set TEST_DATABASE_URL")
        if os.geteuid() == 0:
            try:
                owner = pwd.getpwnam(SERVER_USER)
            except KeyError:
                raise PostgresUnavailable(f"running as root and there is no {SERVER_USER!r} user")
        root = Path(tempfile.mkdtemp(prefix="pg-test-"))
        try:
            if os.geteuid() == 0:
                os.chown(root, owner.pw_uid, owner.pw_gid)
            data = root / "data"
            _run([str(bin_dir / "initdb"), "-D", str(data), "-A", "trust", "-U", SERVER_USER,
                  "-E", "UTF8", "--locale=C", "--no-sync", "--no-instructions"], "initdb")
            port = cls._start_server(bin_dir, root)
        except BaseException:
            shutil.rmtree(root, ignore_errors=True)
            raise
        server = cls(url=f"postgresql://{SERVER_USER}@127.0.0.1:{port}/postgres",
                     bin_dir=bin_dir, root=root)
        server.watchdog = server._start_watchdog()
        return server

    @staticmethod
    def _start_server(bin_dir: Path, root: Path) -> int:
        last_error: PostgresUnavailable | None = None
        for _ in range(3):  # another process may take the free port before the server binds it
            port = _free_port()
            options = " ".join(f"-c {k}={v}" for k, v in SERVER_SETTINGS.items())
            options += f" -p {port} -k {root}"
            try:
                _run([str(bin_dir / "pg_ctl"), "-D", str(root / "data"), "-l", str(root / "server.log"),
                      "-o", options, "-w", "-t", str(START_TIMEOUT_S), "start"], "pg_ctl start")
                return port
            except PostgresUnavailable as e:
                last_error = e
        assert last_error is not None
        log = root / "server.log"
        tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
        raise PostgresUnavailable(f"{last_error}\n{tail}")

    def _start_watchdog(self) -> subprocess.Popen:
        """Stops the cluster if this process dies without calling stop() (SIGKILL, a crash)."""
        stop = " ".join(_quote(a) for a in _as_server_user(self._stop_argv()))
        script = (f"while kill -0 {os.getpid()} 2>/dev/null; do sleep 1; done; "
                  f"{stop} >/dev/null 2>&1; rm -rf {_quote(str(self.root))}")
        return subprocess.Popen(["sh", "-c", script], stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True)

    def _stop_argv(self) -> list[str]:
        assert self.bin_dir and self.root
        return [str(self.bin_dir / "pg_ctl"), "-D", str(self.root / "data"), "-m", "immediate",
                "-w", "stop"]

    def stop(self) -> None:
        if self.root is None:
            return
        try:
            _run(self._stop_argv(), "pg_ctl stop")
        finally:
            if self.watchdog is not None:
                self.watchdog.send_signal(signal.SIGTERM)
                self.watchdog.wait(timeout=10)
            shutil.rmtree(self.root, ignore_errors=True)
            self.root = None


def database_url(url: str, name: str) -> str:
    """The same server's URL with another database name."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + name))


def create_database(url: str, name: str) -> str:
    """Create database `name` (dropped first if it exists) on `url`'s server; returns its URL."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE template0')
    return database_url(url, name)


def drop_database(url: str, name: str) -> None:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def wait_until_accepting(url: str) -> None:
    """Block until `url` answers a query (a server given from outside may still be starting)."""
    import psycopg

    timeout = float(os.environ.get(WAIT_ENV, START_TIMEOUT_S))
    deadline = time.monotonic() + timeout
    while True:
        try:
            with psycopg.connect(url, connect_timeout=max(2, int(timeout))) as conn:
                conn.execute("SELECT 1")
            return
        except psycopg.OperationalError as e:
            if time.monotonic() > deadline:
                raise PostgresUnavailable(f"{URL_ENV} does not answer: {e}") from e
            time.sleep(0.2)
