import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

import logging  # noqa: E402

import pytest  # noqa: E402

from fakes.secret_registry import configure, register_secret  # noqa: E402,F401  (register_secret: for modules)

TEST_PROCESS_LOG = "test-process.log"


@pytest.fixture(scope="session", autouse=True)
def secret_scan_artifacts(tmp_path_factory):
    """Everything the secret scan (tests/test_zz_secret_scan.py) reads lives under the basetemp:
    the registry of secrets, this process's log at DEBUG, and what tests put under tmp_path (bot
    logs, the fake Discord's message dumps, DATA_DIRs)."""
    base = tmp_path_factory.getbasetemp()
    configure(base / "secret-scan")
    handler = logging.FileHandler(base / TEST_PROCESS_LOG, encoding="utf-8")
    handler.setLevel(logging.DEBUG)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield base
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)
        handler.close()


@pytest.fixture
async def gw():
    """A fake provider gateway on 127.0.0.1 (tests/fakes/fake_gateway.py)."""
    from fakes.fake_gateway import FakeGateway

    async with FakeGateway() as gateway:
        yield gateway


@pytest.fixture
async def session():
    """The aiohttp session a provider client borrows, as the bot's would be."""
    import aiohttp

    async with aiohttp.ClientSession() as s:
        yield s


@pytest.fixture(scope="session")
def pg_url():
    """A real PostgreSQL server's URL for the session: TEST_DATABASE_URL, or a throwaway cluster
    started here and stopped at the end (tests/fakes/postgres.py). Without one, the tests that
    need it fail under CI (CI=true) and are skipped with the reason elsewhere."""
    from fakes.postgres import PostgresServer, PostgresUnavailable, running_under_ci, wait_until_accepting

    server = None
    try:
        server = PostgresServer.from_env_or_start()
        wait_until_accepting(server.url)
    except PostgresUnavailable as e:
        if server is not None:
            server.stop()
        if running_under_ci():
            pytest.fail(f"PostgreSQL is required under CI: {e}", pytrace=False)
        pytest.skip(f"no PostgreSQL server: {e}")
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture
def pg_database(pg_url, request):
    """The URL of a fresh, empty database on the session's PostgreSQL server, dropped afterwards."""
    import uuid

    from fakes.postgres import create_database, drop_database

    name = f"test_{uuid.uuid4().hex[:12]}"
    url = create_database(pg_url, name)
    try:
        yield url
    finally:
        drop_database(pg_url, name)


@pytest.fixture(params=["sqlite", "postgresql"])
def store_at(request, tmp_path):
    """Where a store test keeps its data, once per backend: the arguments of `store.open_store`,
    a SQLite file or a fresh database on the session's PostgreSQL server. Open it with
    `await open_store(*store_at)`, as often as the test needs (reopens see the same data)."""
    url = request.getfixturevalue("pg_database") if request.param == "postgresql" else None
    return tmp_path / "db.sqlite3", url
