"""Storage: conversations, the turn tree, jobs, atomic writes and retention."""
import asyncio
import sqlite3

import psycopg
import pytest

from providers.models import ImageData
from store import JobRecord, UsageEntry, open_store
from fakes.images import jpeg, png


INTEGRITY_ERRORS = (sqlite3.IntegrityError, psycopg.IntegrityError)


@pytest.fixture
async def storage(store_at):
    store = await open_store(*store_at)
    yield store
    await store.close()


async def test_wal_mode_and_reopen_keeps_everything(store_at):
    path, url = store_at
    store = await open_store(path, url)
    conv = await store.create_conversation(owner_id=1, guild_id=2, channel_id=3)
    img = ImageData(png(), "image/png", 64, 48)
    turn = await store.add_turn(conversation_id=conv.id, parent_id=None, role="model", images=[img],
                                provider_state={"sig": "abc"}, make_head=True)
    await store.close()
    if url is None:
        assert sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    store = await open_store(path, url)
    again = await store.conversation_for_channel(3)
    assert again.head_turn_id == turn
    (stored,) = await store.history(turn, 10)
    assert stored.images[0].data == img.data and stored.provider_state == {"sig": "abc"}
    await store.close()


async def test_history_follows_parents_and_is_bounded(storage):
    conv = await storage.create_conversation(owner_id=1, guild_id=None)
    parent = None
    ids = []
    for n in range(6):
        parent = await storage.add_turn(conversation_id=conv.id, parent_id=parent,
                                        role="user" if n % 2 == 0 else "model", text=f"t{n}")
        ids.append(parent)
    history = await storage.history(ids[-1], 4)
    assert [t.text for t in history] == ["t2", "t3", "t4", "t5"]
    # a branch from t3 does not see t4/t5
    branch = await storage.add_turn(conversation_id=conv.id, parent_id=ids[3], role="user", text="b")
    assert [t.text for t in await storage.history(branch, 10)] == ["t0", "t1", "t2", "t3", "b"]
    assert await storage.history(None, 5) == []


async def test_finish_job_is_one_transaction(storage, monkeypatch):
    conv = await storage.create_conversation(owner_id=1, guild_id=None)
    user = await storage.add_turn(conversation_id=conv.id, parent_id=None, role="user", text="cat")
    await storage.create_job(JobRecord("ab12", "imagine", "running", 1, None, None, None, conv.id, user, None,
                                       {"prompt": "cat"}))
    bad = ImageData(png(), "image/png")
    # an image row that violates the schema (NULL data) makes the whole write roll back
    broken = ImageData(None, "image/png")  # type: ignore[arg-type]
    with pytest.raises(INTEGRITY_ERRORS):
        await storage.finish_job_with_turn("ab12", conversation_id=conv.id, parent_id=user, text="",
                                           images=[bad, broken], provider_state=None, provider="p", model="m",
                                           make_head=True)
    job = await storage.job("ab12")
    assert job.status == "running" and job.model_turn_id is None
    assert (await storage.conversation(conv.id)).head_turn_id is None
    turn = await storage.finish_job_with_turn("ab12", conversation_id=conv.id, parent_id=user, text="ok",
                                              images=[ImageData(jpeg(), "image/jpeg")], provider_state=None,
                                              provider="p", model="m", make_head=True)
    job = await storage.job("ab12")
    assert job.status == "done" and job.model_turn_id == turn
    assert (await storage.conversation(conv.id)).head_turn_id == turn


async def test_active_jobs_are_marked_interrupted(storage):
    for n, status in enumerate(["queued", "running", "done"]):
        await storage.create_job(JobRecord(f"j{n}", "imagine", status, 1, None, 5, None, None, None, None, {}))
    marked = await storage.mark_active_jobs("interrupted", "restart")
    assert sorted(j.id for j in marked) == ["j0", "j1"]
    assert [j.id for j in await storage.jobs_with_status("interrupted")] == ["j0", "j1"]


async def test_channel_conversation_is_unique(storage):
    first = await storage.create_conversation(owner_id=1, guild_id=None, channel_id=42)
    second = await storage.create_conversation(owner_id=2, guild_id=None, channel_id=42)
    assert first.id == second.id


async def test_prune_deletes_old_conversations_with_their_turns(storage):
    conv = await storage.create_conversation(owner_id=1, guild_id=None, channel_id=7)
    turn = await storage.add_turn(conversation_id=conv.id, parent_id=None, role="user", text="x",
                                  images=[ImageData(png(), "image/png")])
    assert await storage.prune(older_than_days=-1) == 1
    assert await storage.conversation_for_channel(7) is None
    assert await storage.turn(turn) is None


async def test_processes_starting_at_once_migrate_the_schema_once(store_at):
    from store import schema

    stores = await asyncio.gather(*(open_store(*store_at) for _ in range(4)))
    try:
        rows = await stores[0].driver.fetch_all("SELECT version FROM schema_migrations ORDER BY version")
        assert [r["version"] for r in rows] == sorted(schema.MIGRATIONS)
        conv = await stores[1].create_conversation(owner_id=1, guild_id=2, channel_id=3)
        assert (await stores[3].conversation_for_channel(3)).id == conv.id
    finally:
        for store in stores:
            await store.close()


async def test_deleting_a_turn_moves_its_children_and_the_head_to_its_parent(storage):
    conv = await storage.create_conversation(owner_id=1, guild_id=None)
    first_prompt = await storage.add_turn(conversation_id=conv.id, parent_id=None, role="user", text="p1")
    first = await storage.add_turn(conversation_id=conv.id, parent_id=first_prompt, role="model", text="m1")
    prompt = await storage.add_turn(conversation_id=conv.id, parent_id=first, role="user", text="p2")
    answer = await storage.add_turn(conversation_id=conv.id, parent_id=prompt, role="model", text="m2",
                                    make_head=True)
    later = await storage.add_turn(conversation_id=conv.id, parent_id=answer, role="user", text="p3")
    await storage.delete_turns(conv.id, [answer, prompt])
    assert (await storage.conversation(conv.id)).head_turn_id == first  # the head was the deleted answer
    assert await storage.turn(answer) is None and await storage.turn(prompt) is None
    assert [t.text for t in await storage.history(later, 10)] == ["p1", "m1", "p3"]  # the chain holds
    other = await storage.create_conversation(owner_id=1, guild_id=None)
    await storage.delete_turns(other.id, [first])  # another conversation's turn is left alone
    assert await storage.turn(first) is not None


async def test_a_job_its_reservation_and_its_queue_entry_commit_together(storage):
    """`create_job(..., enqueue=...)`: the job row, the reservation becoming the job's, and the queue
    entry (its id stored on the job) land in one transaction; an enqueue that fails leaves none."""
    conv = await storage.create_conversation(owner_id=1, guild_id=None)
    usage_id = await storage.reserve_usage(UsageEntry(0, 1, "imagine", "mule", "m", None, 1, 0.04))
    record = JobRecord("q1", "imagine", "queued", 1, None, 5, None, conv.id, None, None, {"prompt": "cat"},
                       delivery={"channel": {"id": 5}})

    async def refused(tx):
        raise RuntimeError("the queue refused it")
    with pytest.raises(RuntimeError):
        await storage.create_job(record, usage_id=usage_id, enqueue=refused)
    assert await storage.job("q1") is None and await storage.job_usage("q1") is None

    async def queued(tx):
        await tx.execute("UPDATE usage SET kind = kind WHERE id = ?", (usage_id,))  # runs inside the transaction
        return 77
    await storage.create_job(record, usage_id=usage_id, enqueue=queued)
    job = await storage.job("q1")
    assert (job.queue_id, job.delivery, await storage.job_usage("q1")) == (77, {"channel": {"id": 5}}, usage_id)
    # A gone process's reservation is not released while its job still waits in the queue.
    await storage.release_stale_reservations()
    assert (await storage.quota_use(0, 1, 0)).images == 1
