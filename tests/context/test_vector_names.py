"""One name per idea on `VectorMemory`: `search` takes the memory's `k` and `min_score` as it
takes its `mode`, `count_memories`, `namespace`, and `add` honouring the caller's id; the old
names as deprecated aliases that keep naming what they named."""

from __future__ import annotations

import asyncio
import logging
import warnings
from collections.abc import Callable
from pathlib import Path

import chromadb
import pytest

from memweave.context import VectorMemory
from memweave.errors import ConfigurationError, InvalidArgument
from memweave.messages import ChatMessage
from memweave.session import Session
from tests.context.conftest import HashEmbeddings

TEXTS = [f"garden note {n}: the roses need water" for n in range(6)]


async def _fill(memory: VectorMemory) -> None:
    await asyncio.gather(*(memory.add(text, user_id="ada") for text in TEXTS))


async def test_search_returns_the_memorys_k_by_default(
    make_memory: Callable[..., VectorMemory],
) -> None:
    """Without `k`, search returns at most the memory's `k`; a call's `k` overrides it."""
    memory = make_memory(k=2, min_score=0.0)
    await _fill(memory)
    assert len(await memory.search("roses", user_id="ada")) == 2
    assert len(await memory.search("roses", user_id="ada", k=5)) == 5


async def test_search_leaves_out_hits_under_the_memorys_min_score_by_default(
    make_memory: Callable[..., VectorMemory], tmp_path: Path
) -> None:
    """Without `min_score`, search drops hits under the memory's; a call's overrides it."""
    options = {"client": chromadb.PersistentClient(str(tmp_path / "c")), "lexical_path": ":memory:"}
    first = make_memory(**options)
    await _fill(first)
    await first.add("the roses need water", user_id="ada")  # an exact match scores 1
    every = await first.search("the roses need water", user_id="ada", k=10, min_score=0.0)
    assert every[0].score == 1.0 > every[-1].score
    await first.aclose()
    cut = (every[0].score + every[-1].score) / 2
    strict = make_memory(min_score=cut, **options)
    kept = await strict.search("the roses need water", user_id="ada", k=10)
    assert {hit.id for hit in kept} == {hit.id for hit in every if hit.score >= cut}
    assert len(kept) < len(every)
    overridden = await strict.search("the roses need water", user_id="ada", k=10, min_score=0.0)
    assert {hit.id for hit in overridden} == {hit.id for hit in every}


async def test_search_arguments_override_the_memorys(
    make_memory: Callable[..., VectorMemory],
) -> None:
    """A call's `k` and `min_score` win over the memory's, which stay as they were."""
    memory = make_memory(k=1, min_score=1.0)
    await _fill(memory)
    assert await memory.search("roses water", user_id="ada") == []
    assert len(await memory.search("roses water", user_id="ada", k=4, min_score=0.0)) == 4
    assert (memory.k, memory.min_score) == (1, 1.0)


async def test_search_rejects_a_bad_k(memory: VectorMemory) -> None:
    """A call's `k` outside 1-1000 raises InvalidArgument naming `k`."""
    with pytest.raises(InvalidArgument) as caught:
        await memory.search("roses", user_id="ada", k=0)
    assert caught.value.name == "k"


async def test_count_memories_counts_the_scope(memory: VectorMemory) -> None:
    """count_memories counts a scope's memories (of one kind, if given)."""
    await _fill(memory)
    await memory.add("bob's note", user_id="bob")
    assert await memory.count_memories(user_id="ada") == len(TEXTS)
    assert await memory.count_memories(user_id="ada", kind="turn") == len(TEXTS)
    assert await memory.count_memories(user_id="ada", kind="fact") == 0
    assert await memory.count_memories(user_id="bob") == 1


async def test_count_is_a_deprecated_count_memories(memory: VectorMemory) -> None:
    """count() warns at the caller's line and returns what count_memories returns."""
    await _fill(memory)
    with pytest.warns(DeprecationWarning, match=r"count_memories") as caught:
        assert await memory.count(user_id="ada") == len(TEXTS)
    assert caught[0].filename == __file__


# -- namespace ------------------------------------------------------------------------------------


def _collections(client: chromadb.ClientAPI) -> set[str]:
    return {collection.name for collection in client.list_collections()}


async def test_namespace_names_the_collection(
    make_memory: Callable[..., VectorMemory], tmp_path: Path
) -> None:
    """`namespace="app"` keeps memories in `app_memory`, apart from another namespace's."""
    client = chromadb.PersistentClient(str(tmp_path / "c"))
    app = make_memory(client=client, lexical_path=tmp_path / "app.db", namespace="app")
    other = make_memory(client=client, lexical_path=tmp_path / "other.db", namespace="other")
    await app.add("kept in app", user_id="ada")
    assert (app.namespace, app.collection_name) == ("app", "app_memory")
    assert await other.count_memories(user_id="ada") == 0
    assert {"app_memory", "other_memory"} <= _collections(client)


async def test_default_namespace_keeps_todays_collection(
    make_memory: Callable[..., VectorMemory], tmp_path: Path
) -> None:
    """With no namespace the collection is `memweave_memory` and the catalogue file
    `memweave-memweave_memory.sqlite3`, as before, without any warning."""
    client = chromadb.PersistentClient(str(tmp_path / "c"))
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        memory = make_memory(client=client, lexical_path=":memory:")
        await memory.add("kept", user_id="ada")
    assert (memory.namespace, memory.collection_name) == ("memweave", "memweave_memory")
    assert "memweave_memory" in _collections(client)
    embedded = make_memory(path=tmp_path / "embedded")
    assert Path(embedded.lexical_path).name == "memweave-memweave_memory.sqlite3"


async def test_collection_is_a_deprecated_exact_collection_name(
    make_memory: Callable[..., VectorMemory], tmp_path: Path
) -> None:
    """`collection=` warns at the caller's line and names the same collection as before, so
    data written under it is read through the matching namespace."""
    client = chromadb.PersistentClient(str(tmp_path / "c"))
    with pytest.warns(DeprecationWarning, match=r"collection=") as caught:
        old = VectorMemory(
            client=client,
            embedder=HashEmbeddings(),
            lexical_path=tmp_path / "old.db",
            collection="notes_memory",
        )
    assert caught[0].filename == __file__
    async with old:
        await old.add("written the old way", user_id="ada")
        assert (old.namespace, old.collection_name) == ("notes", "notes_memory")
    new = make_memory(client=client, lexical_path=tmp_path / "new.db", namespace="notes")
    [hit] = await new.search("written the old way", user_id="ada")
    assert hit.text == "written the old way"
    with pytest.warns(DeprecationWarning, match=r"collection="):
        exact = make_memory(client=client, lexical_path=":memory:", collection="chats")
    assert (exact.namespace, exact.collection_name) == ("chats", "chats")


def test_namespace_and_collection_together_are_refused(tmp_path: Path) -> None:
    """Passing both the new and the old name raises ConfigurationError."""
    with pytest.raises(ConfigurationError, match="namespace"):
        VectorMemory(tmp_path, namespace="a", collection="b_memory")


# -- add honours id= ------------------------------------------------------------------------------


async def test_add_returns_the_callers_id(memory: VectorMemory) -> None:
    """add(id=...) returns that id, and a search finds the memory under it."""
    assert await memory.add("Ada prefers window seats.", user_id="ada", id="seat") == "seat"
    [hit] = await memory.search("window seats", user_id="ada")
    assert hit.id == "seat"


async def test_add_of_an_id_again_with_its_text_is_a_safe_retry(
    memory: VectorMemory, hash_embedder: HashEmbeddings
) -> None:
    """Re-adding an id with the text it holds stores and embeds nothing and returns the id."""
    await memory.add("Ada prefers window seats.", user_id="ada", id="seat")
    assert await memory.add("Ada prefers window seats.", user_id="ada", id="seat") == "seat"
    assert await memory.count_memories(user_id="ada") == 1
    assert sum(len(call) for call in hash_embedder.calls) == 1


async def test_add_of_an_id_with_another_text_raises_and_keeps_the_stored_one(
    memory: VectorMemory,
) -> None:
    """An id its scope holds with another text raises InvalidArgument naming `id`, nothing is
    stored, and deleting the id first lets the new text be stored under it."""
    await memory.add("Ada prefers window seats.", user_id="ada", id="seat")
    with pytest.raises(InvalidArgument) as caught:
        await memory.add("Ada prefers aisle seats.", user_id="ada", id="seat")
    assert (caught.value.name, caught.value.value) == ("id", "seat")
    assert "window seats" in str(caught.value)
    hits = await memory.search("seats", user_id="ada", k=10, min_score=0.0)
    assert [(hit.id, hit.text) for hit in hits] == [("seat", "Ada prefers window seats.")]
    assert await memory.add("Ada prefers aisle seats.", user_id="bob", id="seat") == "seat"
    assert await memory.delete("seat", user_id="ada")
    assert await memory.add("Ada prefers aisle seats.", user_id="ada", id="seat") == "seat"


async def test_add_of_a_stored_text_under_a_new_id_names_the_memory(
    memory: VectorMemory, hash_embedder: HashEmbeddings
) -> None:
    """A stored text added under a new id keeps one memory (embedded once), returns the new
    id, which then retries safely, refuses another text, and deletes the memory."""
    assert await memory.add("Ada prefers window seats.", user_id="ada", id="a") == "a"
    assert await memory.add("Ada prefers window seats.", user_id="ada", id="b") == "b"
    assert await memory.add("Ada prefers window seats.", user_id="ada", id="b") == "b"
    assert await memory.count_memories(user_id="ada") == 1
    assert sum(len(call) for call in hash_embedder.calls) == 1
    [hit] = await memory.search("window seats", user_id="ada", k=10, min_score=0.0)
    assert hit.id == "a"
    with pytest.raises(InvalidArgument):
        await memory.add("another text", user_id="ada", id="b")
    assert await memory.delete("b", user_id="ada")
    assert await memory.count_memories(user_id="ada") == 0


async def test_add_in_one_batch_honours_every_id(memory: VectorMemory) -> None:
    """Concurrent adds, written in one batch, return their own ids; a second text under an
    id of the batch raises, and the first one is kept."""
    results = await asyncio.gather(
        memory.add("same words", user_id="ada", id="x"),
        memory.add("same words", user_id="ada", id="y"),
        memory.add("same words", user_id="ada"),
        memory.add("first text", user_id="ada", id="z"),
        memory.add("second text", user_id="ada", id="z"),
        return_exceptions=True,
    )
    assert results[:4] == ["x", "y", "x", "z"]
    assert isinstance(results[4], InvalidArgument)
    assert await memory.count_memories(user_id="ada") == 2
    hits = await memory.search("text", user_id="ada", k=10, min_score=0.0)
    assert sorted(hit.text for hit in hits) == ["first text", "same words"]


async def test_names_of_a_memory_survive_a_rebuilt_catalogue(
    make_memory: Callable[..., VectorMemory], tmp_path: Path
) -> None:
    """A memory's further names are Chroma records: a catalogue rebuilt from Chroma keeps
    them (one memory, visible from each name's session, deleted by any name)."""
    options = {"client": chromadb.PersistentClient(str(tmp_path / "c")), "lexical_path": ":memory:"}
    memory = make_memory(**options)
    await memory.add("same words", user_id="ada", session_id="s1", id="a")
    await memory.add("same words", user_id="ada", session_id="s2", id="b")
    await memory.aclose()
    again = make_memory(**options)
    assert await again.count_memories(user_id="ada") == 1
    assert await again.count_memories(user_id="ada", session_id="s2") == 1
    assert await again.add("same words", user_id="ada", id="b") == "b"
    assert await again.delete("b", user_id="ada")
    assert await again.count_memories(user_id="ada") == 0


async def test_invoked_keeps_the_remembered_text_of_an_edited_message(
    memory: VectorMemory, caplog: pytest.LogCaptureFixture
) -> None:
    """A message id remembered with another text keeps that text, with a warning, and the
    turn does not fail."""
    session = Session(id="s", user_id="ada")
    said = ChatMessage.user("I live in Paris.")
    await memory.invoked(session, [said], [])
    edited = said.model_copy(update={"content": "I live in Lyon."})
    with caplog.at_level(logging.WARNING, logger="memweave.context.vector"):
        await memory.invoked(session, [edited], [])
    assert said.id in caplog.text
    hits = await memory.search("live", user_id="ada", k=10, min_score=0.0)
    assert [(hit.id, hit.text) for hit in hits] == [(said.id, "I live in Paris.")]
