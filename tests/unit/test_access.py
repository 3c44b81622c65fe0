"""Access rules without Discord: the one guild the fake Discord has cannot show a foreign guild."""
from types import SimpleNamespace

import pytest

from cogs.access import denial, is_admin
from core.config import Config


def bot(**settings):
    return SimpleNamespace(config=Config(discord_token="t", providers=[], **settings))


def member(user_id=1, manage_guild=False, roles=()):
    return SimpleNamespace(id=user_id, guild_permissions=SimpleNamespace(manage_guild=manage_guild),
                           roles=[SimpleNamespace(id=r) for r in roles])


def channel(channel_id=10, guild_id=100, parent_id=None):
    guild = SimpleNamespace(id=guild_id) if guild_id else None
    return SimpleNamespace(id=channel_id, guild=guild, parent_id=parent_id)


@pytest.mark.parametrize("settings, who, where, expected", [
    (dict(allowed_guilds=frozenset({200})), member(), channel(), "not enabled in this server"),
    (dict(allowed_guilds=frozenset({100})), member(), channel(), None),
    (dict(allowed_channels=frozenset({11})), member(), channel(), "not enabled in this channel"),
    (dict(allowed_channels=frozenset({11})), member(), channel(12, parent_id=11), None),  # a thread under it
    (dict(allowed_roles=frozenset({5})), member(roles=[6]), channel(), "roles"),
    (dict(allowed_roles=frozenset({5})), member(roles=[5]), channel(), None),
    (dict(allow_dms=False), member(), channel(guild_id=None), "direct messages"),
    (dict(allowed_guilds=frozenset({200})), member(manage_guild=True), channel(), None),  # admins pass
    (dict(allowed_guilds=frozenset({200}), admin_user_ids=frozenset({7})), member(7), channel(), None),
])
def test_denial(settings, who, where, expected):
    reason = denial(bot(**settings), who, where)
    assert (reason is None) if expected is None else (expected in reason)


def test_admin_by_id_or_manage_server():
    b = bot(admin_user_ids=frozenset({7}))
    assert is_admin(b, member(7)) and is_admin(b, member(8, manage_guild=True)) and not is_admin(b, member(9))
