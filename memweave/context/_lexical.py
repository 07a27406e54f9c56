"""The memory catalogue and its BM25 index: one SQLite file with an FTS5 table beside Chroma.

SQLite holds one row per memory (scope, session, text, speaker, time, user metadata, links to the
memories before and after it in the same session, and a copy of its vector, so scoring a memory
with its neighbours needs no round trip to Chroma). Chroma is the source of truth for what
exists; the catalogue is an index of it that `memweave.context._index` keeps caught up. Lexical
retrieval is SQLite FTS5's own `bm25()` over porter-stemmed tokens, in three columns: the
memory's text, the text of its neighbouring turns (weighted lower, since a turn often answers a
question asked in the turn before it), and the day it was said (so "what did we discuss on
8 May 2023?" finds that day's memories; see `memweave.context._fts.date_text`).

Besides its home session, a memory can be visible from further sessions of its scope
(`memory_sessions`): the same text said again in another session is stored once and shown in
both. A Chroma record that repeats the text of a catalogued memory (written through another
catalogue) is an alias of it (`aliases`).

This module holds the reads; the connection and the writes are in
`memweave.context._lexical_writes`, the rows and their keys in `memweave.context._lexical_records`,
and the query terms and BM25 scale in `memweave.context._fts`. Every method is blocking and is
called from one worker thread of the owning store.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from memweave.context._fts import STOP_WORDS, match_expression, query_terms
from memweave.context._lexical_records import (
    NewMemory,
    Row,
    chunks,
    exact_key,
    scope_filter,
    text_key,
)
from memweave.context._lexical_writes import CatalogueWriter
from memweave.context._schema import COLUMNS, SCHEMA_VERSION

Link = tuple[int | None, int | None, npt.NDArray[np.float32], str | None]
"""`(prev, next, vector, speaker)` of a memory: what scoring it with its neighbours reads."""

__all__ = [
    "SCHEMA_VERSION",
    "STOP_WORDS",
    "LexicalStore",
    "Link",
    "NewMemory",
    "Row",
    "exact_key",
    "query_terms",
    "text_key",
]


class LexicalStore(CatalogueWriter):
    """The SQLite catalogue of memories with its FTS5 index: the connection and the writes of
    `CatalogueWriter` (which takes the arguments), and the reads.

    What a search reads of each memory (`links`, `seqs_by_key`, the index's statistics, the
    count of `catalogued`) is kept while the catalogue is unchanged (`version`): a run of
    searches reads it once.
    """

    def __init__(
        self, path: str, *, context_window: int, context_weight: float, date_weight: float
    ) -> None:
        super().__init__(
            path,
            context_window=context_window,
            context_weight=context_weight,
            date_weight=date_weight,
        )
        self._seen: tuple[int, int] | None = None
        self._links: dict[int, Link] = {}
        self._seqs: dict[str, int | None] = {}
        self._catalogued: int | None = None

    def version(self) -> tuple[int, int]:
        """A value that changes whenever the catalogue does, through this connection or
        another one (another process sharing the file)."""
        (others,) = self._db.execute("PRAGMA data_version").fetchone()
        return int(others), self._db.total_changes - self._reference.own_changes

    def _cached(self) -> tuple[int, int]:
        """The catalogue's version, the read cache emptied if it is not the cached one's."""
        version = self.version()
        if version != self._seen:
            self._seen = version
            self._links.clear()
            self._seqs.clear()
            self._catalogued = None
        return version

    def count(self, scope: str, session_id: str | None) -> int:
        """Number of memories in the scope (or visible from one session of it)."""
        if session_id is None:
            sql, args = "SELECT count(*) FROM memories WHERE scope = ?", [scope]
        else:
            # A memory's further sessions never include its home one: the two counts add up.
            sql = (
                "SELECT (SELECT count(*) FROM memories WHERE scope = ? AND session_id = ?) + "
                "(SELECT count(*) FROM memory_sessions WHERE scope = ? AND session_id = ?)"
            )
            args = [scope, session_id, scope, session_id]
        return int(self._db.execute(sql, args).fetchone()[0])

    def catalogued(self) -> int:
        """How many Chroma records the catalogue accounts for (memories and aliases)."""
        self._cached()
        if self._catalogued is None:
            row = self._db.execute(
                "SELECT (SELECT count(*) FROM memories) + (SELECT count(*) FROM aliases)"
            ).fetchone()
            self._catalogued = int(row[0])
        return self._catalogued

    def scope_keys(self, scope: str) -> set[str]:
        """The Chroma keys of the scope's memories and of their aliases."""
        rows = self._db.execute(
            "SELECT key FROM memories WHERE scope = ? UNION ALL "
            "SELECT a.key FROM aliases a JOIN memories m ON m.seq = a.seq WHERE m.scope = ?",
            (scope, scope),
        )
        return {str(key) for (key,) in rows}

    def seqs_by_key(self, keys: Iterable[str]) -> tuple[dict[str, int], list[str]]:
        """The memory each Chroma key stands for, by key; and the keys the catalogue lacks."""
        self._cached()
        wanted = list(keys)
        found = {key: self._seqs[key] for key in wanted if key in self._seqs}
        unread = [key for key in wanted if key not in found]
        for chunk in chunks(unread):
            marks = ",".join("?" * len(chunk))
            for key, seq in self._db.execute(
                f"SELECT key, seq FROM memories WHERE key IN ({marks}) UNION ALL "  # noqa: S608
                f"SELECT key, seq FROM aliases WHERE key IN ({marks})",
                [*chunk, *chunk],
            ):
                found[str(key)] = None if seq is None else int(seq)
        _keep(self._seqs, {key: found[key] for key in unread if key in found})
        seqs = {key: seq for key, seq in found.items() if seq is not None}
        return seqs, [key for key in wanted if key not in found]

    def extra_ids(self, scope: str, session_id: str) -> list[str]:
        """Ids of the memories visible from the session without it being their home."""
        rows = self._db.execute(
            "SELECT m.id FROM memory_sessions s JOIN memories m ON m.seq = s.seq "
            "WHERE s.scope = ? AND s.session_id = ?",
            (scope, session_id),
        ).fetchall()
        return [str(memory_id) for (memory_id,) in rows]

    def search(
        self,
        scope: str,
        session_id: str | None,
        terms: Sequence[str],
        limit: int,
        *,
        weights: tuple[float, float, float] | None = None,
    ) -> dict[int, float]:
        """BM25 similarity in [0, 1] of the best `limit` memories matching any of `terms`.

        A memory's raw `bm25()` score is divided by the score the query itself would get if it
        were stored (`memweave.context._fts.QueryReference`, which writes nothing), and capped
        at 1: so 1 means "matches as well as the query's own text would". `weights` are the
        `bm25()` weights of the text, context and date columns, the store's own when None.
        """
        if not terms:
            return {}
        match = match_expression(terms)
        where, args = scope_filter(scope, session_id)
        sql = (
            "SELECT memories_fts.rowid, -bm25(memories_fts, ?, ?, ?) AS score "
            "FROM memories_fts JOIN memories m ON m.seq = memories_fts.rowid "
            "WHERE memories_fts MATCH ? AND " + where + " ORDER BY score DESC LIMIT ?"
        )
        column_weights = self.weights if weights is None else weights
        rows = self._db.execute(sql, [*column_weights, match, *args, limit]).fetchall()
        if not rows:
            return {}
        reference = self._reference.score(terms, self._cached())
        # A row matching only in columns weighted 0 scores 0: it is no lexical hit.
        return {int(seq): min(1.0, score / reference) for seq, score in rows if score > 0}

    def exact(self, scope: str, session_id: str | None, query: str) -> list[int]:
        """Seqs of the memories whose text equals `query`, ignoring case and whitespace."""
        where, args = scope_filter(scope, session_id)
        rows = self._db.execute(
            f"SELECT m.seq FROM memories m WHERE {where} AND m.exact_key = ? "  # noqa: S608
            "ORDER BY m.seq",
            [*args, exact_key(query)],
        ).fetchall()
        return [int(seq) for (seq,) in rows]

    def scope_seqs(self, scope: str, session_id: str | None) -> list[int]:
        """Seqs of every memory of the scope (or visible from one session of it), in order."""
        where, args = scope_filter(scope, session_id)
        rows = self._db.execute(
            f"SELECT m.seq FROM memories m WHERE {where} ORDER BY m.seq",  # noqa: S608
            args,
        ).fetchall()
        return [int(seq) for (seq,) in rows]

    def visible(self, scope: str, session_id: str | None, seqs: Iterable[int]) -> set[int]:
        """Those of `seqs` that are memories of the scope (or visible from one session of
        it)."""
        where, args = scope_filter(scope, session_id)
        out: set[int] = set()
        for chunk in chunks(list(seqs)):
            marks = ",".join("?" * len(chunk))
            out.update(
                seq
                for (seq,) in self._db.execute(
                    f"SELECT m.seq FROM memories m WHERE m.seq IN ({marks}) AND {where}",  # noqa: S608
                    [*chunk, *args],
                )
            )
        return out

    def links(self, seqs: Iterable[int]) -> dict[int, Link]:
        """`(prev, next, vector, speaker)` of each of these memories, by seq (missing ones left
        out)."""
        self._cached()
        out: dict[int, Link] = {}
        unread: list[int] = []
        for seq in seqs:
            link = self._links.get(seq)
            if link is None:
                unread.append(seq)
            else:
                out[seq] = link
        read: dict[int, Link] = {}
        for chunk in chunks(unread):
            marks = ",".join("?" * len(chunk))
            for seq, prev, nxt, vector, speaker in self._db.execute(
                "SELECT seq, prev, next, vector, speaker FROM memories "  # noqa: S608
                f"WHERE seq IN ({marks})",
                chunk,
            ):
                read[seq] = (prev, nxt, np.frombuffer(vector, dtype="<f4"), speaker)
        _keep(self._links, read)
        out.update(read)
        return out

    def rows(self, seqs: Iterable[int]) -> dict[int, Row]:
        """The memories with these seqs, by seq (missing ones left out)."""
        out: dict[int, Row] = {}
        for chunk in chunks(list(seqs)):
            marks = ",".join("?" * len(chunk))
            for record in self._db.execute(
                f"SELECT {COLUMNS} FROM memories WHERE seq IN ({marks})",  # noqa: S608
                chunk,
            ):
                row = Row(*record)
                out[row.seq] = row
        return out


_MAX_CACHED = 16_384
"""The most entries a read cache keeps (a memory's link holds its vector: 1.5 kB at 384
dimensions)."""


def _keep(cache: dict[Any, Any], entries: dict[Any, Any]) -> None:
    """Add `entries` to `cache`, emptied first when it would outgrow `_MAX_CACHED`."""
    if len(cache) + len(entries) > _MAX_CACHED:
        cache.clear()
    if len(entries) <= _MAX_CACHED:
        cache.update(entries)
