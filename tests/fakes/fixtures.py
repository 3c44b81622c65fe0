"""pytest fixtures for end-to-end tests; import the ones you use into your test module.

`sample_bot` is module-scoped: the module must run its tests in the module's event loop, e.g.
`pytestmark = pytest.mark.asyncio(loop_scope="module")`.
"""
from __future__ import annotations

import sys
from pathlib import Path

import pytest_asyncio

from .driver import Driver

SAMPLE_BOT = Path(__file__).resolve().parent / "sample_bot.py"


@pytest_asyncio.fixture
async def discord_driver(tmp_path):
    """A fake Discord with no bot started; call `await discord_driver.start_bot(...)` yourself."""
    async with Driver(log_dir=tmp_path) as driver:
        yield driver


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def sample_bot(tmp_path_factory):
    """The fake Discord with tests/fakes/sample_bot.py running and ready, shared by a module."""
    async with Driver(log_dir=tmp_path_factory.mktemp("sample-bot")) as driver:
        await driver.start_bot([sys.executable, str(SAMPLE_BOT)])
        yield driver
