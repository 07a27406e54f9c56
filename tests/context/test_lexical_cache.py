"""The catalogue's read cache: what a search reads is reused only while nothing changed."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from memweave.context._lexical import LexicalStore, NewMemory, query_terms

TEXTS = ["the red kite nests in wales", "a kite festival in may", "call mum about the kite"]


def _store(path: Path) -> LexicalStore:
    return LexicalStore(str(path), context_window=1, context_weight=0.5, date_weight=2.0)


def _memory(n: int, text: str, session: str = "s", speaker: str | None = None) -> NewMemory:
    return NewMemory(
        key=f"k{n}",
        id=f"m{n}",
        scope="user:ada",
        session_id=session,
        text=text,
        speaker=speaker,
        role=None,
        created_at=1_683_554_160.0 + n,
        metadata={},
    )


def _vector(n: int) -> bytes:
    return np.full(4, n, dtype="<f4").tobytes()


@pytest.fixture
def stores(tmp_path: Path) -> Iterator[tuple[LexicalStore, LexicalStore]]:
    """Two connections to one catalogue file: a reader and a writer."""
    reader, writer = _store(tmp_path / "c.db"), _store(tmp_path / "c.db")
    yield reader, writer
    reader.close()
    writer.close()


def _search(store: LexicalStore, query: str) -> dict[int, float]:
    return store.search("user:ada", None, query_terms(query), 10)


def test_links_follow_writes_of_the_same_connection(tmp_path: Path) -> None:
    """A memory's links read before a turn is added after it show that turn afterwards."""
    store = _store(tmp_path / "c.db")
    try:
        store.insert([_memory(0, TEXTS[0])], [_vector(0)])
        [first] = store.seqs_by_key(["k0"])[0].values()
        assert store.links([first])[first][1] is None
        store.insert([_memory(1, TEXTS[1], speaker="Ada")], [_vector(1)])
        [second] = store.seqs_by_key(["k1"])[0].values()
        assert store.links([first])[first][1] == second
        assert store.links([second])[second][3] == "Ada"
        assert store.links([second])[second][2].tolist() == [1.0] * 4
    finally:
        store.close()


def test_reads_follow_writes_of_another_connection(
    stores: tuple[LexicalStore, LexicalStore],
) -> None:
    """Keys, links, lexical scores and the count read through one connection change when
    another connection (another process) writes or deletes."""
    reader, writer = stores
    writer.insert([_memory(0, TEXTS[0])], [_vector(0)])
    assert reader.catalogued() == 1
    seqs, missing = reader.seqs_by_key(["k0", "k1"])
    assert (list(seqs), missing) == (["k0"], ["k1"])
    [first] = seqs.values()
    assert reader.links([first])[first][1] is None
    before = _search(reader, "kite")

    writer.insert([_memory(1, TEXTS[1]), _memory(2, TEXTS[2])], [_vector(1), _vector(2)])
    assert reader.catalogued() == 3
    seqs, missing = reader.seqs_by_key(["k0", "k1", "k2"])
    assert (sorted(seqs), missing) == (["k0", "k1", "k2"], [])
    assert reader.links([first])[first][1] == seqs["k1"]
    after = _search(reader, "kite")
    assert len(after) == 3
    assert after[first] != before[first]  # more rows hold "kite": it weighs less

    writer.forget_keys(["k1"])
    assert reader.catalogued() == 2
    assert reader.seqs_by_key(["k1"]) == ({}, ["k1"])
    assert reader.links([seqs["k1"]]) == {}
    assert reader.links([first])[first][1] == seqs["k2"]


def test_lexical_scores_equal_a_fresh_connection_after_writes(tmp_path: Path) -> None:
    """After writes through the searching connection, its lexical scores are those a newly
    opened connection computes (no statistics of the index are kept from before)."""
    store = _store(tmp_path / "c.db")
    try:
        for n, text in enumerate(TEXTS):
            _search(store, "red kite in wales")
            store.insert([_memory(n, text)], [_vector(n)])
            fresh = _store(tmp_path / "c.db")
            try:
                assert _search(store, "red kite in wales") == _search(fresh, "red kite in wales")
            finally:
                fresh.close()
    finally:
        store.close()


def test_version_ignores_searches_and_moves_with_writes(
    stores: tuple[LexicalStore, LexicalStore],
) -> None:
    """Searching (which tokenizes queries in a temporary table) leaves the catalogue's
    version as it is; a write through either connection changes it."""
    reader, writer = stores
    writer.insert([_memory(0, TEXTS[0])], [_vector(0)])
    version = reader.version()
    _search(reader, "an entirely new query about wales")
    assert reader.version() == version
    writer.insert([_memory(1, TEXTS[1])], [_vector(1)])
    assert reader.version() != version
    version = reader.version()
    reader.insert([_memory(2, TEXTS[2])], [_vector(2)])
    assert reader.version() != version
