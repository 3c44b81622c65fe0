"""Start-up failures an operator can fix end in one clear line and a non-zero exit, not a traceback."""
from __future__ import annotations

import sys

from fakes.discord_state import Settings as DiscordRules
from fakes.driver import Driver
from fakes.fake_gateway import FakeGateway
from fakes.bot_helpers import bot_env
from fakes.secret_registry import register_secret

CONFIG_KEY = register_secret("k-startup-Config-Key-5517", "test_bot_startup.CONFIG_KEY")


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


async def test_configuration_mistakes_are_one_line_each(tmp_path):
    a_file = tmp_path / "data"
    a_file.write_text("not a directory")
    async with Driver(log_dir=tmp_path) as d:
        code, out = await run_until_exit(d, {
            "DATA_DIR": str(a_file), "PROVIDERS": "google,yes,proxy", "PROVIDER_GOOGLE_API_KEY": CONFIG_KEY,
            "PROVIDER_YES_PRESET": "yescal", "PROVIDER_YES_API_KEY": CONFIG_KEY,
            "PROVIDER_PROXY_FORMAT": "openai_chat", "PROVIDER_PROXY_MODEL": "m", "PROVIDER_PROXY_API_KEY": CONFIG_KEY,
            "PROVIDER_PROXY_BASE_URL": "https://YOUR-PROXY-HOST/v1", "USER_DAILY_IMAGES": "none"})
    assert code == 2 and "Traceback" not in out and CONFIG_KEY not in out
    errors = [line for line in out.splitlines() if line.startswith("configuration error: ")]
    assert len(errors) == 4, out  # the google provider needs nothing but its key
    assert any("DATA_DIR" in line and "it is a file, not a directory" in line for line in errors)
    assert any("PROVIDER_YES_PRESET: unknown preset 'yescal' (did you mean 'yescale'?)" in line for line in errors)
    assert any("PROVIDER_PROXY_BASE_URL" in line and "placeholder" in line for line in errors)
    assert any("USER_DAILY_IMAGES" in line and "'unlimited' for no limit, or 0 for none allowed" in line
               for line in errors)


async def test_roles_other_than_all_need_postgresql(tmp_path):
    async with FakeGateway() as gw, Driver(log_dir=tmp_path) as d:
        await d.start_bot([sys.executable, "bot.py", "--role", "worker"], env=bot_env(d, gw, tmp_path / "data"),
                          wait=False)
        code, out = await d.bot._wait(), d.bot.output()
    errors = [line for line in out.splitlines() if line.startswith("configuration error: ")]
    assert code == 2 and "Traceback" not in out
    assert errors == ["configuration error: --role worker needs DATABASE_URL=postgresql://... (the processes "
                      "share one database); with SQLite everything runs in one process: --role all"]
