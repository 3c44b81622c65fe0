"""Start-up failures an operator can fix end in one clear line and a non-zero exit, not a traceback."""
from __future__ import annotations

import sys

from fakes.discord_state import Settings as DiscordRules
from fakes.driver import Driver
from fakes.fake_gateway import FakeGateway
from fakes.bot_helpers import bot_env


async def run_until_exit(d: Driver, env: dict) -> tuple[int, str]:
    await d.start_bot([sys.executable, "bot.py"], env=env, wait=False)
    code = await d.bot._wait()
    return code, d.bot.output()


async def test_message_content_intent_not_enabled(tmp_path):
    async with FakeGateway() as gw, Driver(log_dir=tmp_path, settings=DiscordRules(privileged_intents=0)) as d:
        code, out = await run_until_exit(d, bot_env(d, gw, tmp_path / "data"))
    assert code == 2 and "enable it for this bot in the developer portal" in out
    assert "Traceback" not in out


async def test_rejected_token(tmp_path):
    async with FakeGateway() as gw, Driver(log_dir=tmp_path) as d:
        code, out = await run_until_exit(d, {**bot_env(d, gw, tmp_path / "data"), "DISCORD_TOKEN": "not-the-token"})
    assert code == 2 and "Discord rejected DISCORD_TOKEN" in out
    assert "Traceback" not in out and "not-the-token" not in out


async def test_missing_configuration_names_each_variable(tmp_path):
    async with Driver(log_dir=tmp_path) as d:
        code, out = await run_until_exit(d, {"DISCORD_TOKEN": "", "PROVIDERS": "mule", "PROVIDER_MULE_PRESET": "mulerun",
                                             "PROVIDER_MULE_API_KEY": "", "DATA_DIR": str(tmp_path / "data")})
    assert code == 2
    assert "DISCORD_TOKEN is not set" in out and "PROVIDER_MULE_API_KEY is not set" in out
