"""VectorMemory scoping: every read names a scope, and no scope leaks into another."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import chromadb
import pytest
from pydantic import JsonValue

from memweave.context import VectorMemory
from memweave.context.vector import RetrievalMode
from memweave.errors import InvalidArgument

MODES: tuple[RetrievalMode, ...] = ("dense", "lexical", "hybrid")

HOSTILE_IDS = [
    "alice",
    "alice ",
    "ALICE",
    "*",
    "%",
    "_",
    '{"$ne": ""}',
    "{'$ne': ''}",
    "$or",
    "session:bob",
    "user:bob",
    "'; DELETE FROM memories; --",
    '" OR 1=1 --',
    "NEAR(a b)",
    "ünïcødé 東京",
]


async def test_every_read_needs_a_scope(memory: VectorMemory) -> None:
    """search, count, delete and clear without user_id or session_id raise InvalidArgument."""
    await memory.add("something", user_id="ada")
    with pytest.raises(InvalidArgument, match="user_id or session_id"):
        await memory.search("something")
    with pytest.raises(InvalidArgument):
        await memory.count_memories()
    with pytest.raises(InvalidArgument):
        await memory.clear()
    with pytest.raises(InvalidArgument):
        await memory.delete("x")
    with pytest.raises(InvalidArgument):
        await memory.add("unscoped")
    assert await memory.count_memories(user_id="ada") == 1


@pytest.mark.parametrize("mode", MODES)
async def test_users_with_hostile_ids_see_only_their_own(
    memory: VectorMemory, mode: RetrievalMode
) -> None:
    """Users never see each other's memories, whatever characters their ids hold."""
    for number, user in enumerate(HOSTILE_IDS):
        await memory.add(f"secret number {number} of this user", user_id=user)
        await memory.add("a text every user stores", user_id=user)
    for number, user in enumerate(HOSTILE_IDS):
        hits = await memory.search(
            "secret number of this user text every user stores", user_id=user, k=50, mode=mode
        )
        assert sorted(hit.text for hit in hits) == sorted(
            [f"secret number {number} of this user", "a text every user stores"]
        )
        assert await memory.count_memories(user_id=user) == 2


async def test_filter_shaped_ids_are_only_data(memory: VectorMemory) -> None:
    """A user id shaped like a Chroma operator matches nothing and deletes nothing of others."""
    await memory.add("bob's memory", user_id="bob")
    shaped = '{"$ne": ""}'
    assert await memory.search("memory", user_id=shaped) == []
    assert await memory.search("memory", session_id=shaped) == []
    assert await memory.clear(user_id=shaped) == 0
    assert await memory.clear(user_id="bob", session_id=shaped) == 0
    assert await memory.count_memories(user_id="bob") == 1


async def test_session_scope_never_reads_user_memories(memory: VectorMemory) -> None:
    """Without user_id, a read sees only the memories written without a user in that session."""
    await memory.add("written by ada in s1", user_id="ada", session_id="s1")
    await memory.add("written anonymously in s1", session_id="s1")
    await memory.add("written anonymously in s2", session_id="s2")
    anonymous = await memory.search("written in s1", session_id="s1", k=10)
    assert [hit.text for hit in anonymous] == ["written anonymously in s1"]
    ada_s1 = await memory.search("written in s1", user_id="ada", session_id="s1", k=10)
    assert [hit.text for hit in ada_s1] == ["written by ada in s1"]
    assert await memory.count_memories(user_id="s1") == 0


async def test_user_scope_spans_the_users_sessions(memory: VectorMemory) -> None:
    """A user's scope holds the memories of all their sessions; session_id narrows it."""
    await memory.add("first session fact", user_id="ada", session_id="s1")
    await memory.add("second session fact", user_id="ada", session_id="s2")
    assert await memory.count_memories(user_id="ada") == 2
    assert await memory.count_memories(user_id="ada", session_id="s2") == 1
    hits = await memory.search("fact", user_id="ada", session_id="s2", k=10)
    assert [(hit.text, hit.session_id) for hit in hits] == [("second session fact", "s2")]


@pytest.mark.parametrize("mode", MODES)
async def test_text_repeated_in_another_session_is_visible_from_it(
    memory: VectorMemory, mode: RetrievalMode
) -> None:
    """A text a user repeats in a new session is stored once and found from both sessions;
    the repeat's own id names it too."""
    first = await memory.add("Ada prefers window seats", user_id="ada", session_id="s1", id="a")
    again = await memory.add("Ada prefers window seats", user_id="ada", session_id="s2", id="b")
    assert (first, again) == ("a", "b")
    await memory.add("an unrelated s2 fact", user_id="ada", session_id="s2")
    assert await memory.count_memories(user_id="ada") == 2
    assert await memory.count_memories(user_id="ada", session_id="s1") == 1
    assert await memory.count_memories(user_id="ada", session_id="s2") == 2
    for session in ("s1", "s2"):
        hits = await memory.search("window seats", user_id="ada", session_id=session, mode=mode)
        assert (hits[0].id, hits[0].session_id) == ("a", "s1")
    assert await memory.search("window seats", user_id="ada", session_id="s3", mode=mode) == []


async def test_repeated_text_is_visible_from_its_sessions_after_a_restart(
    make_memory: Callable[..., VectorMemory], tmp_path: Path
) -> None:
    """The further sessions of a memory are kept in Chroma: a rebuilt catalogue has them."""
    options = {"client": chromadb.PersistentClient(str(tmp_path / "c")), "lexical_path": ":memory:"}
    memory = make_memory(**options)
    await asyncio.gather(
        memory.add("same words", user_id="ada", session_id="s1"),
        memory.add("same words", user_id="ada", session_id="s2"),
    )
    await memory.add("same words", user_id="ada", session_id="s3")
    await memory.aclose()
    again = make_memory(**options)
    for session in ("s1", "s2", "s3"):
        assert await again.count_memories(user_id="ada", session_id=session) == 1
    assert await again.count_memories(user_id="ada") == 1


async def test_clearing_a_session_deletes_what_is_visible_from_it(memory: VectorMemory) -> None:
    """clear(user_id, session_id) deletes every memory visible from the session, including one
    first said in another session."""
    await memory.add("said twice", user_id="ada", session_id="s1")
    await memory.add("said once", user_id="ada", session_id="s1")
    await memory.add("said twice", user_id="ada", session_id="s2")
    assert await memory.clear(user_id="ada", session_id="s2") == 1
    assert [hit.text for hit in await memory.search("said", user_id="ada", k=10)] == ["said once"]


async def test_ids_are_per_scope(memory: VectorMemory) -> None:
    """The same memory id in two scopes names two memories; deleting one keeps the other."""
    await memory.add("alice's note", user_id="alice", id="m1")
    await memory.add("bob's note", user_id="bob", id="m1")
    assert await memory.delete("m1", user_id="alice") is True
    assert await memory.delete("m1", user_id="alice") is False
    assert [hit.text for hit in await memory.search("note", user_id="bob")] == ["bob's note"]
    assert await memory.count_memories(user_id="alice") == 0


async def test_metadata_is_returned_and_never_filters(memory: VectorMemory) -> None:
    """Metadata, even with operator-shaped keys, round-trips as data and changes no scope."""
    metadata: dict[str, JsonValue] = {"$ne": 1, "scope": "user:mallory", "nested": {"$or": [1, 2]}}
    await memory.add("tagged memory", user_id="ada", metadata=metadata)
    [hit] = await memory.search("tagged memory", user_id="ada")
    assert hit.metadata == metadata
    assert await memory.search("tagged memory", user_id="mallory") == []


async def test_clear_deletes_only_its_scope(make_memory: Callable[..., VectorMemory]) -> None:
    """clear(user_id=...) removes that user's memories and nobody else's."""
    memory = make_memory()
    for user in ("ada", "ada2", "bob"):
        await memory.add(f"{user} likes tea", user_id=user)
        await memory.add(f"{user} likes chess", user_id=user, session_id="s")
    assert await memory.clear(user_id="ada", session_id="s") == 1
    assert await memory.clear(user_id="ada") == 1
    assert await memory.count_memories(user_id="ada") == 0
    assert await memory.count_memories(user_id="ada2") == 2
    assert await memory.count_memories(user_id="bob") == 2
