"""Access control end to end: allowed guilds, channels and roles, DMs off, admins by id or Manage Server.

One bot serves the module with ALLOWED_GUILDS=<the guild>, ALLOWED_CHANNELS=general (threads under
it count), ALLOWED_ROLES=Member, ALLOW_DMS=false and ADMIN_USER_IDS=frank. The seeded world gives
alice Moderator (Manage Server) and Member, bob Member, carol owns the guild (so Discord gives her
every permission); the module adds dave (no role), erin (Member) and frank (no role, admin by id).
"""
from __future__ import annotations

import sys

import pytest
import pytest_asyncio

from fakes.driver import Driver, Message
from fakes.fake_gateway import FakeGateway
from fakes.secret_registry import register_secret
from fakes.bot_helpers import answer_with, ephemeral_answer, result_of

pytestmark = pytest.mark.asyncio(loop_scope="module")

API_KEY = register_secret("sk-access-Distinctive-Key-8124", "test_access_e2e.API_KEY")
NO_ROLE = "You need one of the roles this server allows to use the bot."
NO_CHANNEL = "The bot is not enabled in this channel."
NO_DMS = "The bot does not work in direct messages; use it in a server."


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def world(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("access")
    async with FakeGateway(image_size=(24, 24)) as gw, Driver(log_dir=tmp) as d:
        d.add_user("dave")
        d.add_user("erin", roles=["Member"])
        frank = d.add_user("frank")
        env = {"DATA_DIR": str(tmp / "data"), "DISCORD_ATTACHMENT_HOSTS": d.cdn_host,
               "STATUS_INTERVAL_SECONDS": "0.5", "PROVIDERS": "main",
               **gw.provider_env("main", "mulerun", API_KEY, MAX_RETRIES=0),
               "ALLOWED_GUILDS": str(d.guild_id), "ALLOWED_CHANNELS": str(d.general),
               "ALLOWED_ROLES": str(d.world.resolve("Member", "role")), "ALLOW_DMS": "false",
               "ADMIN_USER_IDS": str(frank)}
        await d.start_bot([sys.executable, "bot.py"], env=env)
        yield d, gw


def channel_of(d: Driver, where: str):
    return d.dm(where[3:]) if where.startswith("dm:") else where


@pytest.mark.parametrize("user, where, expected", [
    ("dave", "general", NO_ROLE),        # allowed channel, no allowed role
    ("bob", "art", NO_CHANNEL),          # allowed role, other channel
    ("erin", "art", NO_CHANNEL),
    ("bob", "dm:bob", NO_DMS),
    ("alice", "dm:alice", NO_DMS),       # Manage Server means nothing outside the server
])
async def test_denied_members_get_a_clear_private_answer_and_no_provider_call(world, user, where, expected):
    d, gw = world
    before = len(gw.requests)
    h = await d.slash("imagine", {"prompt": "let me in"}, user=user, channel=channel_of(d, where))
    answer = await ephemeral_answer(h)
    assert answer.ephemeral and answer.content == expected
    assert len(gw.requests) == before


@pytest.mark.parametrize("user, where", [
    ("bob", "general"),        # allowed role in the allowed channel
    ("erin", "general"),
    ("alice", "art"),          # Manage Server: an admin anywhere in the server
    ("carol", "art"),          # the owner has every permission
    ("frank", "art"),          # ADMIN_USER_IDS, without any role
    ("frank", "dm:frank"),     # ... even in DMs, which are off for everyone else
])
async def test_allowed_members_and_admins_get_their_image(world, user, where):
    d, gw = world
    before = len(gw.requests)
    h = await d.slash("imagine", {"prompt": f"{user} in {where}"}, user=user, channel=channel_of(d, where))
    assert await h.ack() == 5
    msg = await h.response(where=result_of, timeout=20)
    assert msg.attachments[0].data == gw.image and len(gw.requests) == before + 1


async def test_denied_member_in_a_thread_and_on_a_button_is_told_and_costs_nothing(world):
    d, gw = world
    h = await d.slash("imagine", {"prompt": "bob's picture"}, user="bob")
    result = await h.response(where=result_of, timeout=20)
    thread = await d.wait_for_thread(lambda t: int(t["id"]) == result.id)
    before, mark = len(gw.requests), d.mark()
    await d.say(thread, "make it mine", user="dave")
    await d.wait_for_message(thread, lambda m: m.content == NO_ROLE, after=mark)
    click = await d.click(result, label="Reroll", user="dave")
    assert await click.ack() == 4
    answer = await click.response()
    assert answer.ephemeral and answer.content == NO_ROLE
    assert len(gw.requests) == before


def cancel_button(msg: Message) -> bool:
    return any(b["label"] == "Cancel" for b in msg.buttons())


@pytest.mark.parametrize("admin", ["frank", "alice"])
async def test_only_the_owner_or_an_admin_can_cancel_a_job(world, admin):
    d, gw = world
    answer_with(gw, (9, 9, 9), delay=30)
    h = await d.slash("imagine", {"prompt": f"bob's slow picture ({admin})"}, user="bob")
    status = await h.response(where=lambda m: "Generating" in m.content and cancel_button(m), timeout=20)
    # erin may use the bot, but it is not her job: she is told, the job goes on.
    refused = await d.click(status, label="Cancel", user="erin")
    assert await refused.ack() == 4
    answer = await refused.response()
    assert answer.ephemeral and answer.content == f"Only <@{d.bob}> can cancel this job."
    assert "Generating" in status.content and cancel_button(status)
    # An admin may cancel anybody's job.
    click = await d.click(status, label="Cancel", user=admin)
    assert await click.ack() == 6
    final = await h.response(where=lambda m: "Cancelled" in m.content, timeout=15)
    assert not final.attachments and not final.buttons()


async def test_only_admins_reset_a_members_quota(world):
    d, _ = world
    refused = await d.slash("limits reset", {"member": "erin"}, user="bob")
    answer = await ephemeral_answer(refused)
    assert answer.ephemeral and answer.content.startswith("Only admins")
    done = await d.slash("limits reset", {"member": "erin"}, user="frank")  # admin by id, no Manage Server
    answer = await ephemeral_answer(done)
    assert answer.ephemeral and answer.content.startswith(f"Reset <@{d.world.resolve('erin', 'user')}>'s quota")
