"""VectorMemory sharing one Chroma: each catalogue catches up with what others wrote or deleted."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import chromadb
import pytest

import memweave.context._index
from memweave.context import VectorMemory
from memweave.context._records import memory_key
from memweave.context.vector import RetrievalMode
from memweave.errors import ConfigurationError
from tests.conformance._harness_chroma import chroma_server_url  # noqa: F401 - a fixture
from tests.context.conftest import HashEmbeddings

MODES: tuple[RetrievalMode, ...] = ("dense", "lexical", "hybrid")
ROOT = Path(__file__).resolve().parents[2]
TURNS = ["hello there", "which instrument do you play", "the clarinet"]

pytestmark = pytest.mark.usefixtures("dense_path")


@pytest.fixture
def client(tmp_path: Path) -> chromadb.ClientAPI:
    """One embedded Chroma client, shared by the memories of a test."""
    return chromadb.PersistentClient(str(tmp_path / "chroma"))


@pytest.fixture
def on_client(
    make_memory: Callable[..., VectorMemory], client: chromadb.ClientAPI, tmp_path: Path
) -> Callable[..., VectorMemory]:
    """Build memories on the shared client, each with its own catalogue file unless given."""
    made = 0

    def make(lexical_path: str | Path | None = None, **options: Any) -> VectorMemory:
        nonlocal made
        made += 1
        path = lexical_path if lexical_path is not None else tmp_path / f"catalogue-{made}.db"
        return make_memory(client=client, lexical_path=path, **options)

    return make


async def test_memories_written_through_another_catalogue_are_found(
    on_client: Callable[..., VectorMemory],
) -> None:
    """A memory written through one catalogue is counted and found, in every mode, through
    another opened before the write."""
    writer, reader = on_client(), on_client()
    assert await reader.count_memories(user_id="ada") == 0
    when = datetime(2023, 5, 8, 13, 56, tzinfo=UTC)
    await writer.add(
        "the red kite nests in wales",
        user_id="ada",
        session_id="s",
        id="m1",
        metadata={"turn": 1},
        speaker="Ada",
        role="user",
        created_at=when,
    )
    assert await reader.count_memories(user_id="ada") == 1
    assert await reader.count_memories(user_id="ada", session_id="s") == 1
    for mode in MODES:
        [hit] = await reader.search("red kite in wales", user_id="ada", mode=mode)
        assert (hit.id, hit.text, hit.metadata, hit.created_at) == (
            "m1",
            "the red kite nests in wales",
            {"turn": 1},
            when,
        )
        assert (hit.speaker, hit.role, hit.session_id) == ("Ada", "user", "s")


async def test_deletes_through_another_catalogue_are_seen(
    on_client: Callable[..., VectorMemory],
) -> None:
    """A memory deleted through one catalogue is no longer counted or found through another."""
    writer, reader = on_client(), on_client()
    await writer.add("buy oat milk", user_id="ada", id="m1")
    await writer.add("call mum", user_id="ada", id="m2")
    assert await reader.count_memories(user_id="ada") == 2
    assert await writer.delete("m1", user_id="ada")
    assert await reader.count_memories(user_id="ada") == 1
    for mode in MODES:
        hits = await reader.search("oat milk", user_id="ada", mode=mode, k=10)
        assert "m1" not in {hit.id for hit in hits}


@pytest.mark.usefixtures("chroma_path")
async def test_dense_hit_unknown_to_the_catalogue_is_caught_up(
    on_client: Callable[..., VectorMemory],
) -> None:
    """A dense hit of Chroma's index written elsewhere is returned even when record counts
    happen to match."""
    writer, reader = on_client(), on_client()
    await writer.add("an old note", user_id="ada", id="old")
    assert await reader.count_memories(user_id="ada") == 1
    # One delete and one add elsewhere: Chroma holds as many records as the reader knows.
    assert await writer.delete("old", user_id="ada")
    await writer.add("the red kite nests in wales", user_id="ada", id="new")
    hits = await reader.search("red kite nests in wales", user_id="ada", mode="dense")
    assert hits[0].id == "new"
    assert await reader.count_memories(user_id="ada") == 1


async def test_a_change_that_keeps_the_count_is_seen_once_the_count_moves(
    on_client: Callable[..., VectorMemory],
) -> None:
    """One delete and one add elsewhere leave Chroma's record count as it was; the next write
    anywhere in the collection moves it, and the scope is caught up in full: the deleted
    memory is gone and the added one found, in every mode."""
    writer, reader = on_client(), on_client()
    await writer.add("an old note", user_id="ada", id="old")
    assert await reader.count_memories(user_id="ada") == 1
    assert await writer.delete("old", user_id="ada")
    await writer.add("the red kite nests in wales", user_id="ada", id="new")
    await writer.add("an unrelated note", user_id="bob", id="b1")
    for mode in MODES:
        hits = await reader.search("red kite nests an old note", user_id="ada", mode=mode)
        assert [hit.id for hit in hits] == ["new"]
    assert await reader.count_memories(user_id="ada") == 1


def _catalogued_scopes(path: Path) -> dict[str, int]:
    """Memories per scope in a catalogue file, read straight from SQLite."""
    with sqlite3.connect(path) as db:
        rows = db.execute("SELECT scope, count(*) FROM memories GROUP BY scope").fetchall()
    return {str(scope): int(count) for scope, count in rows}


async def test_a_catalogue_reads_only_the_scopes_it_uses(
    on_client: Callable[..., VectorMemory], tmp_path: Path
) -> None:
    """Opening a catalogue beside a filled collection reads nothing of it; a use of one user
    catalogues that user's memories only, and later writes to other users are not read
    until those users are used."""
    writer = on_client()
    for user in ("ada", "bob", "cy"):
        for n in range(3):
            await writer.add(f"{user} note {n}", user_id=user, id=f"{user}{n}")
    path = tmp_path / "reader.db"
    reader = on_client(path)
    assert await reader.count_memories(user_id="ada") == 3
    assert _catalogued_scopes(path) == {"user:ada": 3}
    await writer.add("bob note 3", user_id="bob", id="bob3")
    [hit, *_] = await reader.search("ada note 1", user_id="ada", mode="lexical")
    assert hit.id == "ada1"
    assert _catalogued_scopes(path) == {"user:ada": 3}
    assert await reader.count_memories(user_id="bob") == 4
    assert _catalogued_scopes(path) == {"user:ada": 3, "user:bob": 4}


async def test_a_scope_not_used_lately_is_caught_up_in_full(
    on_client: Callable[..., VectorMemory], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Once more scopes were used than the index remembers, a scope is caught up again in
    full on its next use: a delete and an add elsewhere that leave the record count as it
    was are seen, by lexical search too (no dense hit to reveal them)."""
    monkeypatch.setattr(memweave.context._index, "_CAUGHT_UP_SCOPES", 1)
    writer, reader = on_client(), on_client()
    await writer.add("an old note", user_id="ada", id="old")
    await writer.add("bob's note", user_id="bob", id="b1")
    assert await reader.count_memories(user_id="ada") == 1
    assert await writer.delete("old", user_id="ada")
    await writer.add("the red kite nests in wales", user_id="ada", id="new")
    assert await reader.count_memories(user_id="bob") == 1  # ada is forgotten here
    hits = await reader.search("red kite nests", user_id="ada", mode="lexical")
    assert [hit.id for hit in hits] == ["new"]
    assert await reader.count_memories(user_id="ada") == 1


async def test_an_add_catches_its_scope_up_first(
    on_client: Callable[..., VectorMemory],
) -> None:
    """A text written through another catalogue since this one last read the scope is found
    by `add`: no second memory, the stored memory's id is returned."""
    writer, reader = on_client(), on_client()
    assert await reader.count_memories(user_id="ada") == 0
    await writer.add("Ada likes green tea", user_id="ada", id="t1")
    assert await reader.add("Ada likes green tea", user_id="ada") == "t1"
    assert await reader.count_memories(user_id="ada") == 1
    assert await writer.count_memories(user_id="ada") == 1


async def test_in_memory_catalogue_is_rebuilt_from_chroma(
    on_client: Callable[..., VectorMemory],
) -> None:
    """A `":memory:"` catalogue on a persistent client finds, after a restart, what was written
    before it, with the turns of a session linked in order."""
    first = on_client(":memory:", context_window=1)
    for n, text in enumerate(TURNS):
        await first.add(text, user_id="ada", session_id="s", id=f"t{n}", speaker="Ada")
    await first.aclose()
    again = on_client(":memory:", context_window=1)
    assert await again.count_memories(user_id="ada", session_id="s") == 3
    for mode in MODES:
        [hit, *_] = await again.search("the clarinet", user_id="ada", mode=mode)
        assert (hit.id, hit.speaker) == ("t2", "Ada")
    # Neighbouring turns are indexed together again: "instrument" finds all three.
    hits = await again.search("instrument", user_id="ada", mode="lexical", k=10)
    assert hits[0].id == "t1"
    assert {hit.id for hit in hits} == {"t0", "t1", "t2"}


async def test_same_text_through_two_catalogues_is_one_memory_in_both_sessions(
    on_client: Callable[..., VectorMemory],
) -> None:
    """The same text added through two catalogues in two sessions reads as one memory, visible
    from both sessions, through either catalogue; deleting it by either id removes it."""
    one, two = on_client(), on_client()
    assert await one.count_memories(user_id="ada") == await two.count_memories(user_id="ada") == 0
    await one.add("Ada prefers window seats", user_id="ada", session_id="s1", id="a")
    await two.add("Ada prefers window seats", user_id="ada", session_id="s2", id="b")
    for memory in (one, two):
        assert await memory.count_memories(user_id="ada") == 1
        for session in ("s1", "s2"):
            assert await memory.count_memories(user_id="ada", session_id=session) == 1
            hits = await memory.search("window seats", user_id="ada", session_id=session)
            assert [hit.text for hit in hits] == ["Ada prefers window seats"]
    assert await one.delete("b", user_id="ada")
    for memory in (one, two):
        assert await memory.count_memories(user_id="ada") == 0


async def test_catalogue_of_another_collection_is_refused(
    on_client: Callable[..., VectorMemory], tmp_path: Path
) -> None:
    """A catalogue file indexing another collection raises ConfigurationError."""
    shared = tmp_path / "shared.db"
    await on_client(shared, namespace="first_collection").add("kept", user_id="ada")
    other = on_client(shared, namespace="second_collection")
    with pytest.raises(ConfigurationError, match="first_collection"):
        await other.count_memories(user_id="ada")


_SERVER_WRITER = """
import asyncio, sys
import chromadb
import memweave.context._index
from memweave.context import VectorMemory
from tests.context.conftest import HashEmbeddings

async def main() -> None:
    host, port = sys.argv[1].rsplit(":", 1)
    client = chromadb.HttpClient(host=host, port=int(port))
    async with VectorMemory(
        client=client, embedder=HashEmbeddings(), lexical_path=sys.argv[2], namespace=sys.argv[3]
    ) as memory:
        await memory.add("the red kite nests in wales", user_id="ada", session_id="s", id="m0")

asyncio.run(main())
"""


async def test_processes_share_memories_through_a_chroma_server(
    chroma_server_url: str,  # noqa: F811 - the fixture imported above
    tmp_path: Path,
    hash_embedder: HashEmbeddings,
) -> None:
    """A memory written by another process through a Chroma server, with its own catalogue,
    is found by this process in every mode."""
    address = chroma_server_url.removeprefix("chroma+http://")
    host, port = address.rsplit(":", 1)
    collection = f"sharing-{tmp_path.name}"[-60:].strip("-_.") or "sharing"
    client = chromadb.HttpClient(host=host, port=int(port))
    async with VectorMemory(
        client=client,
        embedder=hash_embedder,
        lexical_path=tmp_path / "here.db",
        namespace=collection,
    ) as memory:
        assert await memory.count_memories(user_id="ada") == 0
        subprocess.run(  # noqa: ASYNC221 - the writer must be another OS process
            [
                sys.executable,
                "-c",
                textwrap.dedent(_SERVER_WRITER),
                address,
                str(tmp_path / "there.db"),
                collection,
            ],
            cwd=ROOT,
            check=True,
            timeout=120,
        )
        assert await memory.count_memories(user_id="ada", session_id="s") == 1
        for mode in MODES:
            [hit] = await memory.search("red kite", user_id="ada", mode=mode)
            assert hit.id == "m0"
        await memory.clear(user_id="ada")


async def test_records_of_the_earlier_layout_are_read(
    on_client: Callable[..., VectorMemory],
    client: chromadb.ClientAPI,
    hash_embedder: HashEmbeddings,
) -> None:
    """Records written before the fields moved into one JSON value (the text as the Chroma
    document, each field a metadata key) are catalogued with every field, in write order,
    beside records of the current layout."""
    first = on_client(":memory:")
    await first.add("the clarinet is mine", user_id="ada", session_id="s", id="new")
    await first.aclose()
    collection = client.get_collection("memweave_memory")
    when = datetime(2023, 5, 8, 13, 56, tzinfo=UTC)
    texts = ["which instrument do you play", "I play the oboe"]
    collection.upsert(
        ids=[memory_key("user:ada", f"old{n}") for n in range(2)],
        embeddings=[hash_embedder.vector(text) for text in texts],
        documents=texts,
        metadatas=[
            {
                "memweave_id": f"old{n}",
                "scope": "user:ada",
                "session_id": "s",
                "created_at": when.timestamp(),
                "memweave_order": n,
                "speaker": "Ada",
                "role": "user",
                "memweave_metadata": json.dumps({"turn": n}),
            }
            for n in range(2)
        ],
    )
    again = on_client(":memory:", context_window=1)
    assert await again.count_memories(user_id="ada", session_id="s") == 3
    for mode in MODES:
        [hit, *_] = await again.search("the oboe", user_id="ada", mode=mode)
        assert hit.id == "old1"
        assert (hit.text, hit.speaker, hit.role) == ("I play the oboe", "Ada", "user")
        assert (hit.metadata, hit.created_at, hit.session_id) == ({"turn": 1}, when, "s")
    # The two old turns were written in that order, so they are neighbours again.
    hits = await again.search("instrument", user_id="ada", mode="lexical", k=10)
    assert [hit.id for hit in hits[:2]] == ["old0", "old1"]
    [new, *_] = await again.search("clarinet", user_id="ada", mode="lexical")
    assert (new.id, new.text) == ("new", "the clarinet is mine")


def test_records_keep_the_text_out_of_chroma_documents(
    on_client: Callable[..., VectorMemory], client: chromadb.ClientAPI
) -> None:
    """A record holds its text and fields in one JSON metadata value, not as a Chroma document
    (whose full-text index would only slow every insert)."""
    import asyncio

    memory = on_client()
    asyncio.run(memory.add("a kite", user_id="ada", speaker="Ada", metadata={"a": 1}))
    got = client.get_collection("memweave_memory").get(include=["documents", "metadatas"])
    [document], [metadata] = got["documents"], got["metadatas"]
    assert document is None
    assert set(metadata) == {"memweave_id", "scope", "session_id", "memweave"}
    fields = json.loads(str(metadata["memweave"]))
    assert (fields["text"], fields["speaker"], fields["metadata"]) == ("a kite", "Ada", {"a": 1})
