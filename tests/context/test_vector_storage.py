"""VectorMemory storage rules: idempotence, persistence, embedder records, scores, options."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import textwrap
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import chromadb
import pytest

from memweave.context import ChromaDefaultEmbeddings, VectorMemory
from memweave.context.vector import RetrievalMode
from memweave.errors import ConfigurationError, InvalidArgument, MissingDependency, ProviderClosed
from memweave.messages import ChatMessage
from memweave.session import Session
from tests.context.conftest import HashEmbeddings

MODES: tuple[RetrievalMode, ...] = ("dense", "lexical", "hybrid")
ROOT = Path(__file__).resolve().parents[2]


async def test_add_same_text_twice_stores_it_once(
    memory: VectorMemory, hash_embedder: HashEmbeddings
) -> None:
    """Adding a text its scope already holds stores no second memory (and embeds nothing): a
    generated id returns the stored id, a caller's id is kept as another name of it."""
    first = await memory.add("Ada prefers window seats.", user_id="ada")
    assert await memory.add("Ada prefers window seats.", user_id="ada") == first
    again = await memory.add("Ada prefers window seats.", user_id="ada", id="other-id")
    assert again == "other-id"
    assert await memory.count_memories(user_id="ada") == 1
    assert sum(len(call) for call in hash_embedder.calls) == 1
    assert await memory.add("Ada prefers window seats.", user_id="bob") != first


async def test_add_same_id_twice_stores_it_once(memory: VectorMemory) -> None:
    """Re-adding an id its scope holds stores nothing (safe retries); with another text it
    raises InvalidArgument and keeps the stored text."""
    assert await memory.add("first text", user_id="ada", id="m-1") == "m-1"
    assert await memory.add("first text", user_id="ada", id="m-1") == "m-1"
    with pytest.raises(InvalidArgument, match="another text"):
        await memory.add("changed text", user_id="ada", id="m-1")
    hits = await memory.search("text", user_id="ada", k=10, min_score=0.0)
    assert [(hit.id, hit.text) for hit in hits] == [("m-1", "first text")]


async def test_concurrent_adds_of_one_text_store_it_once(memory: VectorMemory) -> None:
    """Concurrent adds are written together, and a text repeated among them is stored once."""
    ids = await asyncio.gather(
        *(memory.add(text, user_id="ada") for text in ["same", "same", "other", "same"])
    )
    assert ids[0] == ids[1] == ids[3] != ids[2]
    assert await memory.count_memories(user_id="ada") == 2


_WRITER = """
import asyncio, sys
from memweave.context import VectorMemory
from tests.context.conftest import HashEmbeddings

async def main() -> None:
    async with VectorMemory(sys.argv[1], embedder=HashEmbeddings()) as memory:
        for n, text in enumerate(["the red kite nests in wales", "buy oat milk", "call mum"]):
            await memory.add(text, user_id="ada", session_id="s", id=f"m{n}")

asyncio.run(main())
"""


async def test_both_indexes_survive_a_process_restart(tmp_path: Path) -> None:
    """Memories written by one process are found, densely and lexically, by the next."""
    folder = tmp_path / "chroma"
    subprocess.run(  # noqa: ASYNC221 - the writer must be another OS process
        [sys.executable, "-c", textwrap.dedent(_WRITER), str(folder)],
        cwd=ROOT,
        check=True,
        timeout=120,
    )
    async with VectorMemory(folder, embedder=HashEmbeddings()) as memory:
        assert await memory.count_memories(user_id="ada") == 3
        for mode in MODES:
            [hit, *_] = await memory.search("red kite in wales", user_id="ada", mode=mode)
            assert hit.id == "m0"
        await memory.add("a fourth memory", user_id="ada", session_id="s")
        assert await memory.count_memories(user_id="ada", session_id="s") == 4


async def test_another_embedder_is_refused(make_memory: Callable[..., VectorMemory]) -> None:
    """Opening a collection with an embedder of another name or size raises ConfigurationError."""
    first = make_memory(embedder=HashEmbeddings(64))
    await first.add("kept", user_id="ada")
    await first.aclose()
    for other in (HashEmbeddings(32), HashEmbeddings(64, name="test/other")):
        memory = make_memory(embedder=other)
        with pytest.raises(ConfigurationError, match="test/hash-64"):
            await memory.add("dropped?", user_id="ada")
        with pytest.raises(ConfigurationError):
            await memory.search("kept", user_id="ada")
    again = make_memory(embedder=HashEmbeddings(64))
    assert [hit.text for hit in await again.search("kept", user_id="ada")] == ["kept"]


async def test_foreign_collection_is_refused(
    make_memory: Callable[..., VectorMemory], tmp_path: Path
) -> None:
    """A Chroma collection not made by VectorMemory raises ConfigurationError."""
    client = chromadb.PersistentClient(str(tmp_path / "chroma"))
    client.create_collection("someone_elses_memory", embedding_function=None)
    memory = make_memory(namespace="someone_elses")
    with pytest.raises(ConfigurationError, match="not created by memweave"):
        await memory.count_memories(user_id="ada")


@pytest.mark.parametrize("mode", MODES)
async def test_scores_are_similarities_and_exact_match_ranks_first(
    make_memory: Callable[..., VectorMemory],
    real_embedder: ChromaDefaultEmbeddings,
    mode: RetrievalMode,
) -> None:
    """Scores lie in [0, 1], higher is better, and an exact-match query ranks first with 1."""
    memory = make_memory(embedder=real_embedder, mode=mode)
    texts = [
        "Melanie plays the clarinet in a community band",
        "Melanie plays the clarinet; the clarinet, the clarinet is what Melanie plays",
        "Melanie plays clarinet",
        "Caroline paints sunsets over the lake",
        "The weather was rainy all week",
    ]
    for n, text in enumerate(texts):
        await memory.add(text, user_id="ada", session_id="s", speaker=["Mel", "Caro"][n % 2])
    hits = await memory.search("  MELANIE plays   clarinet ", user_id="ada", k=10)
    assert hits[0].text == "Melanie plays clarinet"
    assert hits[0].score == 1.0
    scores = [hit.score for hit in hits]
    assert all(0.0 <= score <= 1.0 for score in scores)
    assert scores == sorted(scores, reverse=True)
    assert hits[-1].text in {
        "The weather was rainy all week",
        "Caroline paints sunsets over the lake",
    }


async def test_neighbouring_turns_are_indexed_together(
    make_memory: Callable[..., VectorMemory],
) -> None:
    """A turn is found by words of its neighbours; deleting a turn relinks the two around it."""
    memory = make_memory(context_window=1)
    for n, text in enumerate(["hello there", "which instrument do you play", "the clarinet"]):
        await memory.add(text, user_id="ada", session_id="s", id=f"t{n}")
    hits = await memory.search("instrument", user_id="ada", mode="lexical", k=10)
    assert {hit.id for hit in hits} == {"t0", "t1", "t2"}
    assert hits[0].id == "t1"
    assert await memory.delete("t1", user_id="ada")
    hits = await memory.search("clarinet", user_id="ada", mode="lexical", k=10)
    assert [hit.id for hit in hits] == ["t2", "t0"]


async def test_hits_carry_what_was_added(memory: VectorMemory) -> None:
    """A hit returns the id, text, time, speaker, role, session and metadata given to add."""
    when = datetime(2023, 5, 8, 13, 56, tzinfo=UTC)
    await memory.add(
        "I went to a support group",
        user_id="ada",
        session_id="s1",
        id="D1:3",
        metadata={"turn": 3},
        speaker="Caroline",
        role="user",
        created_at=when.replace(tzinfo=None),
    )
    [hit] = await memory.search("support group", user_id="ada")
    assert (hit.id, hit.text, hit.created_at, hit.metadata) == (
        "D1:3",
        "I went to a support group",
        when,
        {"turn": 3},
    )
    assert (hit.speaker, hit.role, hit.session_id) == ("Caroline", "user", "s1")


async def test_blank_query_finds_nothing(memory: VectorMemory) -> None:
    """A blank query returns no hits; a query of stop words only still matches them."""
    await memory.add("who are you", user_id="ada")
    assert await memory.search("   ", user_id="ada") == []
    hits = await memory.search("Who are you?", user_id="ada", mode="lexical")
    assert [hit.text for hit in hits] == ["who are you"]


async def test_bad_arguments_are_named(memory: VectorMemory) -> None:
    """Bad arguments raise InvalidArgument naming the parameter."""
    cases = [
        memory.add("", user_id="ada"),
        memory.add("x", user_id=""),
        memory.add("x", user_id="a\x00b"),
        memory.add("x", user_id="ada", metadata={"bad": object()}),  # type: ignore[dict-item]
        memory.add("x", user_id="ada", created_at="yesterday"),  # type: ignore[arg-type]
        memory.search("x", user_id="ada", k=0),
        memory.search("x", user_id="ada", mode="fuzzy"),  # type: ignore[arg-type]
    ]
    names = []
    for case in cases:
        with pytest.raises(InvalidArgument) as caught:
            await case
        names.append(caught.value.name)
    assert names == ["text", "user_id", "user_id", "metadata", "created_at", "k", "mode"]


@pytest.mark.parametrize(
    "options",
    [
        {"namespace": ""},
        {"namespace": "bad name!"},
        {"namespace": "x" * 505},
        {"mode": "fuzzy"},
        {"k": 0},
        {"min_score": 2},
        {"max_memory_tokens": 0},
        {"context_window": -1},
        {"embedder": object()},
    ],
)
def test_bad_options_raise_configuration_error(tmp_path: Path, options: dict[str, object]) -> None:
    """Bad constructor options raise ConfigurationError."""
    with pytest.raises(ConfigurationError):
        VectorMemory(tmp_path, **options)  # type: ignore[arg-type]


def test_client_needs_a_lexical_path(hash_embedder: HashEmbeddings) -> None:
    """With client=, the catalogue's place must be given: ConfigurationError otherwise."""
    with pytest.raises(ConfigurationError, match="lexical_path"):
        VectorMemory(client=chromadb.EphemeralClient(), embedder=hash_embedder)


async def test_memory_on_a_client_works(hash_embedder: HashEmbeddings, tmp_path: Path) -> None:
    """A memory on a client passed in stores and finds memories."""
    client = chromadb.PersistentClient(str(tmp_path / "elsewhere"))
    async with VectorMemory(
        client=client, embedder=hash_embedder, lexical_path=tmp_path / "catalogue.sqlite3"
    ) as memory:
        await memory.add("on a client", user_id="ada")
        assert [hit.text for hit in await memory.search("client", user_id="ada")] == ["on a client"]


async def test_ephemeral_memory_is_deleted_on_close(hash_embedder: HashEmbeddings) -> None:
    """Without path or client, the memory lives in a temporary folder removed by aclose."""
    memory = VectorMemory(embedder=hash_embedder)
    await memory.add("fleeting", user_id="ada")
    assert await memory.count_memories(user_id="ada") == 1
    folder = Path(memory.lexical_path).parent
    await memory.aclose()
    await memory.aclose()
    assert not folder.exists()
    with pytest.raises(ProviderClosed):
        await memory.add("late", user_id="ada")


async def test_every_method_raises_provider_closed_after_aclose(memory: VectorMemory) -> None:
    """After `aclose()` (which may be called again), every method raises `ProviderClosed`
    naming the memory and the method, also where it would return early (a blank query)."""
    await memory.add("kept", user_id="ada")
    await memory.aclose()
    await memory.aclose()
    assert memory.closed
    session = Session(id="s1", user_id="ada")
    turn = [ChatMessage.user("what is kept?")]
    calls: dict[str, Callable[[], Any]] = {
        "add": lambda: memory.add("late", user_id="ada"),
        "search": lambda: memory.search(" ", user_id="ada"),
        "delete": lambda: memory.delete("x", user_id="ada"),
        "clear": lambda: memory.clear(user_id="ada"),
        "count_memories": lambda: memory.count_memories(user_id="ada"),
        "invoking": lambda: memory.invoking(session, turn),
        "invoked": lambda: memory.invoked(session, turn, [], RuntimeError("failed call")),
    }
    for method, make_call in calls.items():
        with pytest.raises(ProviderClosed) as caught:
            await make_call()
        assert (caught.value.owner, caught.value.method) == ("VectorMemory", method)


def test_missing_chromadb_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without chromadb, VectorMemory raises MissingDependency naming the `chroma` extra."""
    monkeypatch.setitem(sys.modules, "chromadb", None)
    with pytest.raises(MissingDependency) as caught:
        VectorMemory()
    assert (caught.value.package, caught.value.extra) == ("chromadb", "chroma")


def test_repr_names_collection_and_embedder(hash_embedder: HashEmbeddings, tmp_path: Path) -> None:
    """repr shows the collection, the embedder and the mode."""
    text = repr(VectorMemory(tmp_path, embedder=hash_embedder))
    assert json.dumps("memweave_memory") in text.replace("'", '"')
    assert "test/hash-64" in text
