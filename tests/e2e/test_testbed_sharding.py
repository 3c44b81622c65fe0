"""The fake Discord shards like Discord: several guilds, IDENTIFY with `shard`, a guild's events only
on the shard `(guild_id >> 22) % shard_count`, DMs on shard 0, `GET /gateway/bot` with `shards` and
`max_concurrency`, and IDENTIFY spacing per bucket. Raw websocket clients check the protocol; two
discord.py AutoShardedBot processes (tests/fakes/sample_bot.py) check it end to end."""
from __future__ import annotations

import asyncio
import sys
from typing import Any

import aiohttp

from fakes.discord_server import FakeDiscord
from fakes.discord_state import Intents, Settings
from fakes.driver import Driver
from fakes.fixtures import SAMPLE_BOT

INTENTS = Intents.GUILDS | Intents.GUILD_MESSAGES | Intents.DIRECT_MESSAGES | Intents.MESSAGE_CONTENT
APPLICATION_COMMAND = 2


class RawShard:
    """A bare gateway client: IDENTIFYs with `shard` and records every frame it receives."""

    def __init__(self, fake: FakeDiscord, shard: list[int] | None) -> None:
        self.fake, self.shard = fake, shard
        self.frames: list[dict[str, Any]] = []
        self.close_code: int | None = None

    async def __aenter__(self) -> RawShard:
        self.session = aiohttp.ClientSession()
        self.ws = await self.session.ws_connect(self.fake.gateway.url + "?v=10&encoding=json")
        self.reader = asyncio.create_task(self._read())
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.ws.close()
        await self.reader
        await self.session.close()

    async def _read(self) -> None:
        async for msg in self.ws:
            if msg.type is aiohttp.WSMsgType.TEXT:
                self.frames.append(msg.json())
                self.fake.world.notify()
        self.close_code = self.ws.close_code
        self.fake.world.notify()

    async def identify(self) -> None:
        d: dict[str, Any] = {"token": self.fake.world.bot_token, "intents": INTENTS, "properties": {}}
        if self.shard is not None:
            d["shard"] = self.shard
        await self.ws.send_json({"op": 2, "d": d})

    def events(self, name: str | None = None) -> list[dict[str, Any]]:
        return [f["d"] for f in self.frames if f["op"] == 0 and (name is None or f["t"] == name)]

    async def wait(self, check, what: str) -> Any:
        return await self.fake.world.wait_for(check, 10, what)


async def test_gateway_bot_tells_the_shard_count_and_max_concurrency():
    async with FakeDiscord(settings=Settings(shard_count=3, max_concurrency=2)) as fake, \
            aiohttp.ClientSession() as http:
        async with http.get(fake.api_url + "/gateway/bot",
                            headers={"Authorization": f"Bot {fake.world.bot_token}"}) as resp:
            body = await resp.json()
    assert body["url"] == fake.gateway.url and body["shards"] == 3
    assert body["session_start_limit"]["max_concurrency"] == 2


async def test_each_shard_gets_only_its_guilds_events_and_dms_go_to_shard_zero():
    async with FakeDiscord(settings=Settings(shard_count=2)) as fake:
        world = fake.world
        north, south = world.add_guild("north", shard=(0, 2)), world.add_guild("south", shard=(1, 2))
        north_general, south_general = world.resolve("north/general"), world.resolve("south/general")
        async with RawShard(fake, [0, 2]) as zero, RawShard(fake, [1, 2]) as one:
            await zero.identify()
            await zero.wait(lambda: zero.events("READY"), "shard 0 READY")
            world.clock.advance(5)  # the next IDENTIFY of bucket 0 is allowed 5 s later
            await one.identify()
            await one.wait(lambda: one.events("READY"), "shard 1 READY")

            owned = {n: {str(g) for g in world.guilds if (g >> 22) % 2 == n} for n in (0, 1)}
            assert str(north) in owned[0] and str(south) in owned[1]
            for n, shard in ((0, zero), (1, one)):
                ready = shard.events("READY")[0]
                assert ready["shard"] == [n, 2]
                assert {g["id"] for g in ready["guilds"]} == owned[n]
                await shard.wait(lambda s=shard, n=n: len(s.events("GUILD_CREATE")) == len(owned[n]),
                                 f"shard {n}'s GUILD_CREATEs")
                assert {g["id"] for g in shard.events("GUILD_CREATE")} == owned[n]

            fake.user_message(south_general, world.alice, "to south")
            fake.user_message(north_general, world.alice, "to north")
            fake.user_message(int(world.dm_channel(world.bob)["id"]), world.bob, "a dm")
            fake.interactions.create(APPLICATION_COMMAND, {"id": "1", "name": "ping", "type": 1},
                                     user_id=world.alice, channel_id=south_general)
            fake.interactions.create(APPLICATION_COMMAND, {"id": "1", "name": "ping", "type": 1},
                                     user_id=world.alice, channel_id=north_general)
            # Markers last: frames of one connection arrive in order, so once each shard has its
            # marker, anything sent to the wrong shard would already be there.
            fake.user_message(north_general, world.bob, "marker")
            fake.user_message(south_general, world.bob, "marker")
            for shard in (zero, one):
                await shard.wait(lambda s=shard: any(m["content"] == "marker" for m in s.events("MESSAGE_CREATE")),
                                 "the marker")

    assert [(m["content"], m.get("guild_id")) for m in zero.events("MESSAGE_CREATE")] == [
        ("to north", str(north)), ("a dm", None), ("marker", str(north))]
    assert [(m["content"], m["guild_id"]) for m in one.events("MESSAGE_CREATE")] == [
        ("to south", str(south)), ("marker", str(south))]
    assert [i["guild_id"] for i in zero.events("INTERACTION_CREATE")] == [str(north)]
    assert [i["guild_id"] for i in one.events("INTERACTION_CREATE")] == [str(south)]


async def test_an_identify_within_five_seconds_in_the_same_bucket_is_refused_with_op_9():
    async with FakeDiscord(settings=Settings(shard_count=2, max_concurrency=1)) as fake:
        async with RawShard(fake, [0, 2]) as zero, RawShard(fake, [1, 2]) as early:
            await zero.identify()
            await zero.wait(lambda: zero.events("READY"), "shard 0 READY")
            await early.identify()
            await early.wait(lambda: any(f["op"] == 9 for f in early.frames), "op 9")
            assert next(f for f in early.frames if f["op"] == 9)["d"] is False and not early.events("READY")
            fake.world.clock.advance(5)
            async with RawShard(fake, [1, 2]) as later:
                await later.identify()
                await later.wait(lambda: later.events("READY"), "shard 1 READY after 5 s")
    log = fake.gateway.identify_log
    assert [(r.shard, r.bucket, r.accepted) for r in log] == [((0, 2), 0, True), ((1, 2), 0, False),
                                                              ((1, 2), 0, True)]
    assert log[2].at - log[0].at >= 5


async def test_shards_in_different_buckets_may_identify_at_once():
    async with FakeDiscord(settings=Settings(shard_count=2, max_concurrency=2)) as fake:
        async with RawShard(fake, [0, 2]) as zero, RawShard(fake, [1, 2]) as one:
            await zero.identify()
            await one.identify()
            for shard in (zero, one):
                await shard.wait(lambda s=shard: s.events("READY"), "READY")
    assert [(r.bucket, r.accepted) for r in fake.gateway.identify_log] == [(0, True), (1, True)]


async def test_a_shard_id_outside_the_count_is_closed_with_4010():
    async with FakeDiscord() as fake:
        async with RawShard(fake, [2, 2]) as bad:
            await bad.identify()
            await bad.wait(lambda: bad.close_code is not None, "the close")
    assert bad.close_code == 4010


async def test_a_guild_added_while_connected_is_created_on_its_shard_only(tmp_path):
    async with Driver(settings=Settings(shard_count=2, max_concurrency=2), log_dir=tmp_path) as d:
        async with RawShard(d.fake, [0, 2]) as zero, RawShard(d.fake, [1, 2]) as one:
            for shard in (zero, one):
                await shard.identify()
                await shard.wait(lambda s=shard: s.events("READY"), "READY")
            before = {n: len(s.events("GUILD_CREATE")) for n, s in ((0, zero), (1, one))}
            east = d.add_guild("east", shard=(1, 2))
            await one.wait(lambda: len(one.events("GUILD_CREATE")) > before[1], "east's GUILD_CREATE")
            d.fake.user_message(d.dm("bob"), d.bob, "marker")  # a DM: shard 0, after any misrouted event
            await zero.wait(lambda: zero.events("MESSAGE_CREATE"), "the DM marker")
    assert one.events("GUILD_CREATE")[-1]["id"] == str(east)
    assert [g["name"] for g in one.events("GUILD_CREATE")[before[1]:]] == ["east"]
    assert len(zero.events("GUILD_CREATE")) == before[0]


async def test_two_processes_each_serve_the_guilds_of_their_shard(tmp_path):
    """Two discord.py AutoShardedBot processes, shard 0 and shard 1 of 2: each answers in the guilds
    of its own shard only, DMs reach shard 0, and the second IDENTIFY waited for its turn."""
    async with Driver(settings=Settings(shard_count=2), log_dir=tmp_path) as d:
        north, south = d.add_guild("north", shard=(0, 2)), d.add_guild("south", shard=(1, 2))
        first = await d.start_bot([sys.executable, str(SAMPLE_BOT)],
                                  env={"SAMPLE_SHARD_COUNT": "2", "SAMPLE_SHARD_IDS": "0"})
        second = await d.start_another_bot([sys.executable, str(SAMPLE_BOT)],
                                           env={"SAMPLE_SHARD_COUNT": "2", "SAMPLE_SHARD_IDS": "1"}, timeout=60)
        for channel, shard, pid in (("north/general", 0, first.pid), ("south/general", 1, second.pid),
                                    ("dm:alice", 0, first.pid)):
            asked = await d.say(channel, "whoami")
            answer = await d.wait_for_message(channel, after=asked)
            assert answer.content == f"shard {shard} pid {pid}", channel
        # What each process's session was sent: the "whoami"s of its own shard only.
        sent = {s.shard: [(p["d"].get("guild_id"), p["d"]["content"]) for p, _ in s.buffer
                          if p["t"] == "MESSAGE_CREATE" and p["d"]["content"] == "whoami"]
                for s in d.fake.gateway.sessions.values() if not s.invalid}
        assert sent == {(0, 2): [(str(north), "whoami"), (None, "whoami")], (1, 2): [(str(south), "whoami")]}
        accepted = [r for r in d.fake.gateway.identify_log if r.accepted]
        assert [r.shard for r in accepted] == [(0, 2), (1, 2)]
        assert accepted[1].at - accepted[0].at >= 5
        d.assert_clean()
