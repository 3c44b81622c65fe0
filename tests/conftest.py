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
