"""HybridIndex.search: Chroma searched beside the catalogue, sessions seen as they are."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import chromadb
import pytest

import memweave.context._index
from memweave.context import VectorMemory
from memweave.context.vector import RetrievalMode

MODES: tuple[RetrievalMode, ...] = ("dense", "lexical", "hybrid")
KITE = "the red kite nests in wales"

pytestmark = pytest.mark.usefixtures("dense_path")


@pytest.fixture
def on_client(
    make_memory: Callable[..., VectorMemory], tmp_path: Path
) -> Callable[..., VectorMemory]:
    """Memories on one embedded Chroma client, each with its own catalogue file."""
    client = chromadb.PersistentClient(str(tmp_path / "chroma"))
    made = 0

    def make(**options: Any) -> VectorMemory:
        nonlocal made
        made += 1
        return make_memory(client=client, lexical_path=tmp_path / f"c{made}.db", **options)

    return make


@pytest.mark.parametrize("mode", ["dense", "hybrid"])
async def test_search_from_a_session_finds_what_its_catch_up_made_visible_there(
    on_client: Callable[..., VectorMemory], mode: RetrievalMode
) -> None:
    """A memory another catalogue made visible from a session is found from that session by
    the search that catches it up, though Chroma was asked before the catch-up."""
    writer, reader = on_client(), on_client()
    assert await reader.count_memories(user_id="ada") == 0  # opened before the writes
    await writer.add(KITE, user_id="ada", session_id="s1", id="k")
    # What a catalogue's `attach` writes when the text is said again in session s2.
    collection = (await writer._open("test")).collection
    [key] = collection.get(include=[])["ids"]
    collection.update(ids=[key], metadatas=[{"memweave_sessions": json.dumps(["s2"])}])
    hits = await reader.search("red kite nests", user_id="ada", session_id="s2", mode=mode)
    assert [hit.id for hit in hits] == ["k"]


@pytest.mark.parametrize("mode", MODES)
async def test_session_search_leaves_out_neighbours_of_another_session(
    make_memory: Callable[..., VectorMemory], mode: RetrievalMode
) -> None:
    """A memory seen from a session it was repeated in lends its neighbouring turns (from its
    home session) to its score, never as hits of that session."""
    memory = make_memory(context_window=1)
    await memory.add("hello from zed about kites", user_id="ada", session_id="s1", id="z")
    await memory.add(KITE, user_id="ada", session_id="s1", id="k")
    await memory.add(KITE, user_id="ada", session_id="s2", id="k2")
    await memory.add("something else entirely", user_id="ada", session_id="s2", id="o")
    hits = await memory.search("red kite wales zed", user_id="ada", session_id="s2", mode=mode)
    assert "z" not in {hit.id for hit in hits}
    assert hits[0].id == "k"
    whole = await memory.search("red kite wales zed", user_id="ada", mode=mode, k=10)
    assert "z" in {hit.id for hit in whole}


@pytest.mark.usefixtures("chroma_path")
async def test_failed_chroma_search_fails_the_search_and_stops(
    make_memory: Callable[..., VectorMemory], monkeypatch: pytest.MonkeyPatch
) -> None:
    """An error of Chroma's search, run on its own thread, is raised by `search`; the
    memory keeps working once Chroma does."""
    memory = make_memory()
    await memory.add(KITE, user_id="ada", id="k")
    index = await memory._open("search")
    real = index.collection.query
    threads: list[str] = []

    def broken(*args: Any, **kwargs: Any) -> Any:
        threads.append(threading.current_thread().name)
        raise RuntimeError("chroma is down")

    monkeypatch.setattr(index.collection, "query", broken)
    with pytest.raises(RuntimeError, match="chroma is down"):
        await memory.search("red kite", user_id="ada", mode="hybrid")
    assert [name.split("_")[0] for name in threads] == ["memweave-chroma"]
    monkeypatch.setattr(index.collection, "query", real)
    hits = await memory.search("red kite", user_id="ada", mode="hybrid")
    assert [hit.id for hit in hits] == ["k"]


@pytest.mark.usefixtures("chroma_path")
async def test_close_stops_the_chroma_search_thread(
    make_memory: Callable[..., VectorMemory],
) -> None:
    """Closing the memory ends the thread its searches asked Chroma on."""
    memory = make_memory()
    await memory.add(KITE, user_id="ada", id="k")
    await memory.search("red kite", user_id="ada", mode="dense")
    assert any(t.name.startswith("memweave-chroma") for t in threading.enumerate())
    await memory.aclose()
    assert not any(t.name.startswith("memweave-chroma") for t in threading.enumerate())


async def test_small_views_are_searched_without_chroma(
    make_memory: Callable[..., VectorMemory], monkeypatch: pytest.MonkeyPatch, dense_path: str
) -> None:
    """A view of at most `EXACT_VIEW` memories takes its dense candidates from the
    catalogue's vectors: Chroma's query is never asked, in a scope or a session."""
    monkeypatch.setattr(memweave.context._index, "EXACT_VIEW", 2)
    memory = make_memory()
    await memory.add(KITE, user_id="ada", session_id="s1", id="k")
    await memory.add("buy oat milk", user_id="ada", session_id="s2", id="m")
    index = await memory._open("search")

    def refused(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("Chroma's query was asked")

    monkeypatch.setattr(index.collection, "query", refused)
    for mode in ("dense", "hybrid"):
        hits = await memory.search("red kite", user_id="ada", mode=mode, k=2, min_score=0.0)
        assert [hit.id for hit in hits] == ["k", "m"]
        hits = await memory.search(
            "red kite", user_id="ada", session_id="s2", mode=mode, min_score=0.0
        )
        assert [hit.id for hit in hits] == ["m"]
    # One memory more than `EXACT_VIEW`: Chroma is asked.
    await memory.add("the kite flew off", user_id="ada", session_id="s1", id="f")
    with pytest.raises(AssertionError, match="Chroma's query was asked"):
        await memory.search("red kite", user_id="ada", mode="dense")


async def test_catalogue_and_chroma_find_the_same_hits(
    make_memory: Callable[..., VectorMemory], monkeypatch: pytest.MonkeyPatch, dense_path: str
) -> None:
    """Exact search over the catalogue's vectors ranks as Chroma's index does on a view it
    searches exhaustively: the same hits, scores and order, in a scope and in a session."""
    memory = make_memory(context_window=1)
    topics = ["kites", "milk", "trains", "piano", "rain", "cats", "lyon", "tea"]
    for n in range(120):
        text = f"note {n} about {topics[n % 8]} and {topics[(n * 3) % 8]} on day {n % 7}"
        await memory.add(text, user_id="ada", session_id=f"s{n % 3}", id=f"n{n}")
    await memory.add("note 5 about kites", user_id="ada", session_id="s1", id="again")
    queries = ["kites and tea", "piano on day 3", "rain in lyon", "cats"]

    async def ranked(limit: int) -> list[list[tuple[str, float]]]:
        monkeypatch.setattr(memweave.context._index, "EXACT_VIEW", limit)
        out = []
        for query in queries:
            for session in (None, "s1"):
                for mode in ("dense", "hybrid"):
                    hits = await memory.search(
                        query, user_id="ada", session_id=session, mode=mode, k=10, min_score=0.0
                    )
                    out.append([(hit.id, round(hit.score, 5)) for hit in hits])
        return out

    assert await ranked(10_000) == await ranked(0)
