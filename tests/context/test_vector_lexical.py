"""VectorMemory's lexical index: dates are indexed, searches write nothing, old files upgrade."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from memweave.context import ChromaDefaultEmbeddings, VectorMemory
from memweave.context._lexical import LexicalStore, NewMemory, query_terms
from memweave.context.vector import RetrievalMode

MODES: tuple[RetrievalMode, ...] = ("dense", "lexical", "hybrid")

ADJECTIVES = ["red", "quiet", "new", "broken", "shared", "heavy", "strange"]
NOUNS = ["car", "dog", "boat", "invoice", "lamp", "ticket", "sofa", "printer", "kettle", "fence"]
ASKED = datetime(2023, 5, 8, 13, 56, tzinfo=UTC)  # a Monday


async def _add_daily(memory: VectorMemory) -> str:
    """One memory a day from 1 April to 29 June 2023; returns the id of the one of `ASKED`.

    BM25 needs a store of some size: with a handful of rows, every date word is in most of
    them and weighs nothing.
    """
    start = datetime(2023, 4, 1, 12, 0, tzinfo=UTC)
    for n in range(90):
        when = start + timedelta(days=n)
        adjective, noun = ADJECTIVES[n % len(ADJECTIVES)], NOUNS[n % len(NOUNS)]
        await memory.add(
            f"We talked about the {adjective} {noun}",
            user_id="ada",
            session_id=f"s{n}",
            id=f"day-{when:%m-%d}",
            created_at=when.replace(hour=ASKED.hour),
        )
    return f"day-{ASKED:%m-%d}"


@pytest.mark.parametrize(
    "query",
    [
        "What did we discuss on 8 May 2023?",
        "what did we talk about on May 8th, 2023",
        "anything from 2023-05-08?",
        "Monday 8 May",
    ],
)
async def test_memories_are_found_by_their_date(
    make_memory: Callable[..., VectorMemory], query: str
) -> None:
    """A query naming a day ranks that day's memory first, lexically and in hybrid mode."""
    memory = make_memory()
    asked = await _add_daily(memory)
    for mode in ("lexical", "hybrid"):
        hits = await memory.search(query, user_id="ada", mode=mode)
        assert hits[0].id == asked, (mode, [hit.id for hit in hits])


async def test_date_query_ranks_that_day_first_with_the_real_model(
    make_memory: Callable[..., VectorMemory], real_embedder: ChromaDefaultEmbeddings
) -> None:
    """With the real model, "what did we discuss on 8 May 2023?" finds the 8 May memory first."""
    memory = make_memory(embedder=real_embedder)
    asked = await _add_daily(memory)
    hits = await memory.search("What did we discuss on 8 May 2023?", user_id="ada")
    assert hits[0].id == asked


async def test_lexical_search_takes_no_write_lock(
    make_memory: Callable[..., VectorMemory],
) -> None:
    """Searching and counting work while another connection holds the catalogue's write lock."""
    memory = make_memory()
    await memory.add("the red kite nests in wales", user_id="ada", id="m1")
    assert await memory.count_memories(user_id="ada") == 1
    other = sqlite3.connect(memory.lexical_path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        for mode in MODES:
            hits = await asyncio.wait_for(
                memory.search("red kite", user_id="ada", mode=mode), timeout=5
            )
            assert [hit.id for hit in hits] == ["m1"]
        assert await asyncio.wait_for(memory.count_memories(user_id="ada"), timeout=5) == 1
    finally:
        other.execute("ROLLBACK")
        other.close()


def _store(path: Path) -> LexicalStore:
    return LexicalStore(str(path), context_window=2, context_weight=0.3, date_weight=0.5)


def _memory(n: int, text: str, session: str) -> NewMemory:
    return NewMemory(
        key=f"k{n}",
        id=f"m{n}",
        scope="user:ada",
        session_id=session,
        text=text,
        speaker=None,
        role=None,
        created_at=ASKED.timestamp() + n * 86_400,
        metadata={},
    )


TEXTS = [
    "running dogs run along the beach",
    "the dog runs; the dogs ran",
    "Ünïcode clarinet in May",
    "foo_bar and a band",
    "painting sunsets over the lake, lake, lake",
    "a quiet week",
]
QUERIES = [
    "running dogs",
    "run running runs",
    "foo_bar band",
    "Unicode clarinet may",
    "lake",
    "Monday 8 May 2023",
    "zebra",
]


def test_lexical_scale_is_the_score_of_the_query_stored(tmp_path: Path) -> None:
    """Each lexical score is BM25 divided by the BM25 the query would get as a stored row."""
    store = _store(tmp_path / "catalogue.db")
    items = [_memory(n, text, f"s{n % 2}") for n, text in enumerate(TEXTS * 5)]
    store.insert(items, [b"\0\0\0\0"] * len(items))
    probe = sqlite3.connect(tmp_path / "catalogue.db", isolation_level=None)
    try:
        for query in QUERIES:
            terms = query_terms(query)
            match = " OR ".join(f'"{term}"' for term in terms)
            raw = dict(
                probe.execute(
                    "SELECT rowid, -bm25(memories_fts, 1.0, 0.3, 0.5) FROM memories_fts "
                    "WHERE memories_fts MATCH ?",
                    (match,),
                ).fetchall()
            )
            # The reference the old code measured: store the query, score it, roll back.
            probe.execute("BEGIN")
            probe.execute(
                "INSERT INTO memories_fts (rowid, body, context, date) VALUES (-1, ?, '', '')",
                (" ".join(terms),),
            )
            [reference] = probe.execute(
                "SELECT -bm25(memories_fts, 1.0, 0.3, 0.5) FROM memories_fts "
                "WHERE memories_fts MATCH ? AND rowid = -1",
                (match,),
            ).fetchone()
            probe.execute("ROLLBACK")
            scores = store.search("user:ada", None, terms, 100)
            assert set(scores) == set(raw)
            for seq, score in scores.items():
                assert score == pytest.approx(min(1.0, raw[seq] / reference), rel=1e-9)
    finally:
        probe.close()
        store.close()


def test_version_1_catalogue_is_upgraded_and_dates_indexed(tmp_path: Path) -> None:
    """A catalogue of layout version 1 (no date column) is upgraded in place when opened."""
    path = tmp_path / "catalogue.db"
    store = _store(path)
    store.insert([_memory(0, "hello there", "s"), _memory(1, "the clarinet", "s")], [b""] * 2)
    store.close()
    old = sqlite3.connect(path, isolation_level=None)
    old.executescript(
        """
        DROP TABLE memories_fts;
        DROP TABLE memory_sessions;
        DROP TABLE aliases;
        CREATE VIRTUAL TABLE memories_fts USING fts5(
            body, context, tokenize = 'porter unicode61 remove_diacritics 2');
        INSERT INTO memories_fts (rowid, body, context) SELECT seq, text, '' FROM memories;
        UPDATE meta SET value = '1' WHERE key = 'schema';
        """
    )
    old.close()
    store = _store(path)
    try:
        assert store.get_meta("schema") == "2"
        found = store.search("user:ada", None, query_terms("8 May 2023"), 10)
        ids = {store.rows([seq])[seq].id: score for seq, score in found.items()}
        assert ids["m0"] > ids["m1"] > 0  # 8 May 2023, then 9 May 2023
        # Neighbours are indexed again too: "clarinet" finds the turn before it.
        assert len(store.search("user:ada", None, ["clarinet"], 10)) == 2
    finally:
        store.close()
