"""Limits, spend and settings end to end: `python bot.py` against the fake Discord and a fake gateway.

One bot process serves the module (each test uses its own members, so quotas do not mix); the last
test restarts it to show that usage, defaults and thread cards survive.
"""
from __future__ import annotations

import sys

import pytest
import pytest_asyncio

from fakes.bot_helpers import ephemeral_answer
from fakes.driver import Driver
from fakes.fake_gateway import FakeGateway, Reply

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def world(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("limits-e2e")
    async with FakeGateway(image_size=(48, 32)) as gw, Driver(log_dir=tmp) as d:
        patron = d.add_role("Patron")
        await d.start_bot([sys.executable, "bot.py"], env={
            "DATA_DIR": str(tmp / "data"), "DISCORD_ATTACHMENT_HOSTS": d.cdn_host, "STATUS_INTERVAL_SECONDS": "0.3",
            **gw.provider_env("mule", "mulerun", "sk-limits-SECRET-1234"), "PROVIDERS": "mule",
            "USER_DAILY_IMAGES": "2", f"ROLE_{patron}_DAILY_IMAGES": "5", "PRICE_MULE_2K": "0.10",
            "PROVIDER_MULE_RESOLUTIONS": "1K,2K,4K"})  # the operator says this gateway renders every size
        yield d, gw


def result_of(msg) -> bool:
    return bool(msg.attachments)


async def made(h):
    assert await h.ack() == 5, h
    return await h.response(where=result_of, timeout=15)


async def refused(h) -> str:
    return (await ephemeral_answer(h)).content


def field(msg, name: str, embed: int = 0) -> str:
    return next(f["value"] for f in msg.embeds[embed]["fields"] if f["name"] == name)


def select_id(msg, suffix: str) -> str:
    from fakes.discord_views import walk_components

    return next(c["custom_id"] for c in walk_components(msg.components)
                if c.get("type") == 3 and c["custom_id"].endswith(suffix))


def prompt_sent(request) -> str:
    content = request.json["messages"][-1]["content"]
    return content if isinstance(content, str) else " ".join(p["text"] for p in content if p.get("type") == "text")


async def test_over_the_daily_limit_the_member_is_told_when_it_resets(world):
    d, gw = world
    d.add_user("dana")
    for n in range(2):
        await made(await d.slash("imagine", {"prompt": f"pear {n}"}, user="dana"))
    before = len(gw.requests)
    text = await refused(await d.slash("imagine", {"prompt": "pear 3"}, user="dana"))
    assert "used all 2 of your images for today" in text and "resets <t:" in text
    assert len(gw.requests) == before
    d.assert_clean()



async def test_buttons_over_the_daily_limit_are_refused_privately(world):
    d, gw = world
    d.add_user("lou")
    first = await made(await d.slash("imagine", {"prompt": "plum"}, user="lou"))
    thread = await d.wait_for_thread(lambda t: int(t["id"]) == first.id)
    mark = d.mark()
    await d.say(thread, "make it two plums", user="lou")
    second = await d.wait_for_message(thread, result_of, after=mark, timeout=15)
    before = len(gw.requests)
    in_thread = await d.click(second, label="Reroll", user="lou")  # answered in place: public "thinking…"
    on_starter = await d.click(first, label="Reroll", user="lou")  # answered in the thread: private pointer
    for click in (in_thread, on_starter):
        assert "used all 2 of your images for today" in (await ephemeral_answer(click)).content
    assert len(gw.requests) == before
    d.assert_clean()

async def test_two_requests_at_once_for_the_last_image_only_one_passes(world):
    d, _ = world
    d.add_user("ivy")
    await made(await d.slash("imagine", {"prompt": "first"}, user="ivy"))
    first = await d.slash("imagine", {"prompt": "race a"}, user="ivy")
    second = await d.slash("imagine", {"prompt": "race b"}, user="ivy")
    assert [await first.ack(), await second.ack()] == [5, 5]  # both acknowledged before the reservation
    await d.wait(lambda: first.followups or second.followups, 15, "the refusal of one of them")
    loser, winner = (first, second) if first.followups else (second, first)
    assert "used all 2" in (await ephemeral_answer(loser)).content
    await made(winner)


async def test_an_admin_resets_a_members_quota(world):
    d, _ = world
    assert "Only admins" in await refused(await d.slash("limits reset", {"member": "dana"}, user="bob"))
    text = await refused(await d.slash("limits reset", {"member": "dana"}, user="alice"))
    assert text.startswith(f"Reset <@{d.world.resolve('dana', 'user')}>'s quota")
    await made(await d.slash("imagine", {"prompt": "pear after reset"}, user="dana"))


async def test_usage_shows_images_spend_and_what_is_left(world):
    d, _ = world
    dana = d.world.resolve("dana", "user")
    h = await d.slash("usage", user="dana")
    assert await h.ack() == 4
    msg = await h.response()
    assert msg.ephemeral and msg.embeds[0]["title"] == "📊 Usage of Dana"
    assert field(msg, "Today") == "**3** images · $0.117"  # 3 × Nano Banana at 1K
    assert field(msg, "Daily images").startswith("**1** of 2 images left\nresets <t:")
    assert field(msg, "Monthly budget") == "no limit"
    assert "Only admins" in await refused(await d.slash("usage", {"scope": "server"}, user="bob"))
    h = await d.slash("usage", {"scope": "server", "period": "day"}, user="alice")
    assert await h.ack() == 4
    report = await h.response()
    assert report.embeds[0]["title"].endswith("· today")
    assert f"<@{dana}> — 3 images · $0.117" in field(report, "Top members")
    assert "`gemini-2.5-flash-image-preview`" in field(report, "By model")


async def test_member_defaults_apply_to_the_next_command(world):
    d, gw = world
    erin = d.add_user("erin", roles=["Patron"])  # 5 images a day
    h = await d.slash("settings", {"aspect_ratio": "16:9", "resolution": "2K"}, user="erin")
    assert await h.ack() == 4
    panel = await h.response()
    assert panel.content.startswith("Saved.") and panel.ephemeral
    assert (field(panel, "Shape"), field(panel, "Resolution"), field(panel, "Price")) == ("16:9", "2K",
                                                                                         "≈ $0.10 per image")
    result = await made(await d.slash("imagine", {"prompt": "a kite"}, user="erin"))
    assert "48×32 (2K asked)" in result.content
    assert prompt_sent(gw.requests[-1]).endswith("Aspect ratio 16:9, 2K resolution.")
    # The panel's menus change the defaults too.
    changed = await d.select(panel, f"nb:set:me:{erin}:res", ["1K"], user="erin")
    assert await changed.ack() == 7
    await d.wait(lambda: field(panel, "Resolution") == "1K", what="the panel to show 1K")
    await made(await d.slash("imagine", {"prompt": "a kite again"}, user="erin"))
    assert prompt_sent(gw.requests[-1]).endswith("Aspect ratio 16:9, 1K resolution.")
    # What a command says beats the defaults; "auto" means no shape at all.
    await made(await d.slash("imagine", {"prompt": "a wide kite", "aspect_ratio": "auto", "resolution": "4K"},
                             user="erin"))
    assert prompt_sent(gw.requests[-1]).endswith("a wide kite\n\n4K resolution.")


async def test_the_thread_card_changes_the_settings_of_later_turns(world):
    d, gw = world
    d.add_user("fay", roles=["Patron"])  # 5 images a day
    first = await made(await d.slash("imagine", {"prompt": "a boat"}, user="fay"))
    thread = await d.wait_for_thread(lambda t: int(t["id"]) == first.id)
    card = await d.wait_for_message(thread, lambda m: m.embeds and m.embeds[0]["title"] == "🧵 Thread settings")
    assert field(card, "Shape") == "auto" and field(card, "Resolution").startswith("model default")
    stranger = await d.select(card, select_id(card, ":res"), ["4K"], user="bob")
    assert "Only <@" in await refused(stranger)
    for suffix, value in ((":res", "4K"), (":ratio", "9:16")):
        changed = await d.select(card, select_id(card, suffix), [value], user="fay")
        assert await changed.ack() == 7
    await d.wait(lambda: field(card, "Shape") == "9:16" and field(card, "Resolution") == "4K", what="card update")
    assert field(card, "Price") == "≈ $0.039 per image"  # Nano Banana costs the same at every size
    mark = d.mark()
    await d.say(thread, "make it night", user="fay")
    answer = await d.wait_for_message(thread, result_of, after=mark, timeout=15)
    assert "48×32 (4K asked)" in answer.content
    assert prompt_sent(gw.requests[-1]).endswith("make it night\n\nAspect ratio 9:16, 4K resolution.")


async def test_in_a_dm_settings_are_the_conversations_own(world):
    d, gw = world
    d.add_user("kim", roles=["Patron"])
    dm = d.dm("kim")
    h = await d.slash("settings", {"resolution": "2K"}, user="kim", channel=dm)
    assert await h.ack() == 4 and (await h.response()).embeds[0]["title"] == "⚙️ Your defaults"
    await made(await d.slash("imagine", {"prompt": "a dm moon"}, user="kim", channel=dm))
    assert prompt_sent(gw.requests[-1]).endswith("2K resolution.")
    h = await d.slash("settings", user="kim", channel=dm)
    assert await h.ack() == 4
    panel = await h.response()
    assert panel.embeds[0]["title"] == "💬 Conversation settings" and field(panel, "Resolution") == "2K"
    assert await (await d.select(panel, select_id(panel, ":res"), ["4K"], user="kim")).ack() == 7
    mark = d.mark()
    await d.say(dm, "now in colour", user="kim")
    await d.wait_for_message(dm, result_of, after=mark, timeout=15)
    assert prompt_sent(gw.requests[-1]).endswith("now in colour\n\n4K resolution.")


async def test_a_role_with_a_higher_limit(world):
    d, _ = world
    d.add_user("gus", roles=["Patron"])
    for n in range(3):  # more than the default 2 a day
        await made(await d.slash("imagine", {"prompt": f"gus {n}"}, user="gus"))
    h = await d.slash("help", user="gus")
    assert await h.ack() == 4
    page = await h.response()
    limits = field(page, "Your limits")
    assert "Images today: **2** of 5 images left · resets <t:" in limits
    assert "/imagine" in field(page, "Commands") and "/limits" not in field(page, "Commands")
    assert "card at the top of the thread" in field(page, "Threads")


async def test_admins_change_the_servers_limits_and_put_them_back(world):
    d, _ = world
    d.add_user("hal")
    assert "Only admins" in await refused(await d.slash("limits show", user="bob"))
    h = await d.slash("limits set", {"setting": "user_monthly_budget", "value": "0.05"}, user="alice")
    assert await h.ack() == 4
    answer = await h.response()
    assert answer.content == "**Member budget per month** is now $0.05."
    assert "**Member budget per month**: $0.05 *(server)*" in field(answer, "Server and members")
    assert "`mule` (gemini-2.5-flash-image-preview): 1K $0.039 · 2K $0.10 · 4K $0.039" in \
        field(answer, "Prices per image")
    await made(await d.slash("imagine", {"prompt": "hal 1"}, user="hal"))
    text = await refused(await d.slash("imagine", {"prompt": "hal 2"}, user="hal"))
    assert text.startswith("This costs about $0.039 and $0.011 of your $0.05 monthly budget is left.")
    bad = await refused(await d.slash("limits set", {"setting": "user_daily_images", "value": "lots"},
                                      user="alice"))
    assert "is not a number" in bad
    back = await refused(await d.slash("limits set", {"setting": "user_monthly_budget", "value": "default"},
                                       user="alice"))
    assert back.startswith("**Member budget per month** is back to its default.")
    await made(await d.slash("imagine", {"prompt": "hal 2 again"}, user="hal"))


async def test_limit_words_mean_one_thing(world):
    d, _ = world
    d.add_user("lea")
    ambiguous = await refused(await d.slash("limits set", {"setting": "guild_daily_images", "value": "none"},
                                            user="alice"))
    assert "'none' is ambiguous: write 'unlimited' for no limit, or 0 for none allowed" in ambiguous
    h = await d.slash("limits set", {"setting": "guild_daily_images", "value": "0"}, user="alice")
    assert await h.ack() == 4
    assert (await h.response()).content == "**Server images per day** is now 0 (none allowed)."
    try:
        assert "switched off" in await refused(await d.slash("imagine", {"prompt": "lea 1"}, user="lea"))
    finally:
        back = await refused(await d.slash("limits set", {"setting": "guild_daily_images", "value": "default"},
                                           user="alice"))
        assert back.startswith("**Server images per day** is back to its default.")
    h = await d.slash("limits set", {"setting": "user_cooldown_seconds", "value": "unlimited"}, user="alice")
    assert await h.ack() == 4
    assert "**Member cooldown**: unlimited *(server)*" in field(await h.response(), "Server and members")
    await refused(await d.slash("limits set", {"setting": "user_cooldown_seconds", "value": "default"}, user="alice"))
    await made(await d.slash("imagine", {"prompt": "lea 2"}, user="lea"))


async def test_failed_generations_are_recorded_but_not_charged(world):
    d, gw = world
    d.add_user("jay")
    gw.enqueue(Reply(status=400, body={"error": {"message": "invalid request", "type": "invalid_request_error"}}))
    h = await d.slash("imagine", {"prompt": "jay fails"}, user="jay")
    assert await h.ack() == 5
    await h.response(where=lambda m: not m.attachments and any(b["label"] == "Reroll" for b in m.buttons()))
    for n in range(2):  # the failure took nothing from the 2 a day
        await made(await d.slash("imagine", {"prompt": f"jay {n}"}, user="jay"))
    h = await d.slash("usage", user="jay")
    assert await h.ack() == 4
    msg = await h.response()
    assert field(msg, "Today") == "**2** images · $0.078"
    assert "(1 this month)" in msg.embeds[0]["footer"]["text"]


async def test_usage_defaults_and_thread_cards_survive_a_restart(world):
    d, gw = world
    fay_thread = next(t for t in d.threads() if t["name"] == "a boat")
    card = await d.wait_for_message(fay_thread, lambda m: m.embeds and m.embeds[0]["title"] == "🧵 Thread settings")
    await d.restart_bot()
    h = await d.slash("usage", user="dana")
    assert await h.ack() == 4
    assert field(await h.response(), "Today") == "**3** images · $0.117"
    h = await d.slash("settings", user="erin")
    assert await h.ack() == 4
    assert field(await h.response(), "Resolution") == "1K"
    changed = await d.select(card, select_id(card, ":res"), ["2K"], user="fay")
    assert await changed.ack() == 7
    mark = d.mark()
    await d.say(fay_thread, "add a lighthouse", user="fay")
    answer = await d.wait_for_message(fay_thread, result_of, after=mark, timeout=15)
    assert "48×32 (2K asked)" in answer.content
    assert prompt_sent(gw.requests[-1]).endswith("Aspect ratio 9:16, 2K resolution.")
    await made(await d.slash("imagine", {"prompt": "pear again"}, user="dana"))  # the quota reset held too
    assert "used all 2" in await refused(await d.slash("imagine", {"prompt": "one more"}, user="dana"))
    d.assert_clean()
