"""core.config.Config.from_env: one line per problem, limit words with one meaning each."""
from __future__ import annotations

import pytest

from core.config import Config
from core.limits import FIELDS
from providers.errors import ConfigError


def settings(tmp_path, **env: str) -> Config:
    base = {"DISCORD_TOKEN": "t", "PROVIDERS": "google", "PROVIDER_GOOGLE_API_KEY": "k",
            "DATA_DIR": str(tmp_path / "data")}
    return Config.from_env({**base, **env})


def problems(tmp_path, **env: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        settings(tmp_path, **env)
    return str(info.value).splitlines()


def test_data_dir_is_created_when_missing(tmp_path):
    s = settings(tmp_path, DATA_DIR=str(tmp_path / "a" / "b"))
    assert s.data_dir == tmp_path / "a" / "b" and s.data_dir.is_dir()


def test_a_data_dir_that_is_a_file_is_one_line(tmp_path):
    a_file = tmp_path / "bot.sqlite3"
    a_file.write_text("")
    assert problems(tmp_path, DATA_DIR=str(a_file)) == [
        f"DATA_DIR: {str(a_file)!r} cannot hold the bot's data: it is a file, not a directory"]


def test_a_data_dir_that_cannot_be_created_is_one_line(tmp_path):
    a_file = tmp_path / "file"
    a_file.write_text("")
    (line,) = problems(tmp_path, DATA_DIR=str(a_file / "data"))
    assert line.startswith(f"DATA_DIR: {str(a_file / 'data')!r} cannot hold the bot's data: it cannot be created")


@pytest.mark.parametrize("name", ["USER_DAILY_IMAGES", "USER_MONTHLY_BUDGET", "GUILD_DAILY_IMAGES",
                                  "GUILD_MONTHLY_BUDGET", "USER_MAX_JOBS", "USER_COOLDOWN_SECONDS"])
def test_unlimited_means_no_limit_for_every_limit(tmp_path, name):
    field = next(f for f in FIELDS.values() if f.env == name)
    assert getattr(settings(tmp_path, **{name: "unlimited"}), field.name) is None


def test_empty_is_no_limit_and_zero_is_none_allowed(tmp_path):
    s = settings(tmp_path, USER_DAILY_IMAGES="", GUILD_MONTHLY_BUDGET="", USER_MAX_JOBS="",
                 USER_MONTHLY_BUDGET="0", GUILD_DAILY_IMAGES="0", USER_COOLDOWN_SECONDS="0")
    assert s.user_daily_images is None and s.guild_monthly_budget is None and s.user_max_jobs is None
    assert s.user_monthly_budget == 0 and s.guild_daily_images == 0 and s.user_cooldown_seconds == 0


def test_limits_left_out_have_their_defaults(tmp_path):
    s = settings(tmp_path)
    assert (s.user_daily_images, s.guild_monthly_budget, s.user_max_jobs, s.user_cooldown_seconds) == (None, None, 3, 0)


@pytest.mark.parametrize("word", ["none", "off", "No"])
def test_words_that_could_mean_either_are_refused(tmp_path, word):
    assert problems(tmp_path, USER_DAILY_IMAGES=word) == [
        f"USER_DAILY_IMAGES: {word!r} is ambiguous: write 'unlimited' for no limit, or 0 for none allowed"]


def test_limits_show_zero_as_none_allowed():
    assert FIELDS["user_daily_images"].show(0) == "0 (none allowed)"
    assert FIELDS["guild_monthly_budget"].show(0) == "$0.00 (none allowed)"
    assert FIELDS["user_cooldown_seconds"].show(0) == "0 s (no wait)"
    assert FIELDS["user_daily_images"].show(None) == "unlimited"


def test_shards_unset_mean_one_unsharded_connection(tmp_path):
    s = settings(tmp_path)
    assert s.shard_count is None and s.shard_ids is None


def test_shard_count_and_this_processes_shard_ids(tmp_path):
    s = settings(tmp_path, SHARD_COUNT="4", SHARD_IDS="3, 1", DATABASE_URL="postgresql://bot@db/bot")
    assert s.shard_count == 4 and s.shard_ids == (1, 3)
    assert settings(tmp_path, SHARD_COUNT="2").shard_ids is None  # one process, every shard


def test_shard_ids_must_fit_the_count_and_need_a_shared_database(tmp_path):
    url = "postgresql://bot@db/bot"
    assert problems(tmp_path, SHARD_COUNT="2", SHARD_IDS="0,2", DATABASE_URL=url) == [
        "SHARD_IDS must be below SHARD_COUNT=2 (shards are numbered from 0), got 0,2"]
    assert problems(tmp_path, SHARD_IDS="0", DATABASE_URL=url) == [
        "SHARD_IDS needs SHARD_COUNT (the total number of shards of the bot)"]
    assert problems(tmp_path, SHARD_COUNT="2", SHARD_IDS="1") == [
        "SHARD_IDS needs DATABASE_URL=postgresql://... (the processes holding the other shards share it); "
        "with SQLite one process connects every shard: leave SHARD_IDS unset"]
    assert problems(tmp_path, SHARD_COUNT="0")[0].startswith("SHARD_COUNT")


def test_gateway_and_worker_roles_run_on_postgresql_and_a_gateway_needs_no_provider_key(tmp_path):
    from bot import check_role

    config = settings(tmp_path, DATABASE_URL="postgresql://bot@db/bot")
    for role in ("all", "gateway", "worker"):
        check_role(role, config)
    env = {"DISCORD_TOKEN": "t", "PROVIDERS": "mule", "PROVIDER_MULE_PRESET": "mulerun",
           "DATA_DIR": str(tmp_path), "DATABASE_URL": "postgresql://bot@db/bot"}
    with pytest.raises(ConfigError, match="PROVIDER_MULE_API_KEY is not set"):
        Config.from_env(env)
    assert Config.from_env(env, require_provider_keys=False).providers[0].api_key == ""
