"""The memory catalogue and its BM25 index: one SQLite file with an FTS5 table beside Chroma.

SQLite holds one row per memory (scope, session, text, speaker, time, user metadata, links to the
memories before and after it in the same session, and a copy of its vector, so scoring a memory
with its neighbours needs no round trip to Chroma) and is the source of truth for what exists;
Chroma holds the vector index. Lexical retrieval is SQLite FTS5's own `bm25()` over porter-
stemmed tokens, in two columns: the memory's text, and the text of its neighbouring turns
(weighted lower), since a turn often answers a question asked in the turn before it.

Every method here is blocking and is called from one worker thread of the owning store.
"""

from __future__ import annotations

import hashlib
import json
import re
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from memweave.errors import ConfigurationError, SchemaMismatch

__all__ = [
    "SCHEMA_VERSION",
    "LexicalStore",
    "NewMemory",
    "Row",
    "exact_key",
    "query_terms",
    "text_key",
]

SCHEMA_VERSION = 1
"""Version of the SQLite layout written here."""

_TOKEN = re.compile(r"\w+")
_MAX_TERMS = 64

# A query is matched on its content words. The list is the usual English function words
# (articles, pronouns, auxiliaries, prepositions, question words); it is applied to queries
# only, so the index stays complete and exact phrases still match.
_STOP_WORDS = """a about above after again against all am an and any are as at be because been
    before being below between both but by can could did do does doing don down during each ever few
    for from further had has have having he her here hers herself him himself his how i if in
    into is it its itself just me more most my myself no nor not now of off on once only or
    other our ours ourselves out over own s same she should so some such t than that the their
    theirs them themselves then there these they this those through to too under until up very
    was we were what when where which while who whom why will with would you your yours
    yourself yourselves"""
STOP_WORDS = frozenset(_STOP_WORDS.split())

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS memories (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    key TEXT NOT NULL UNIQUE,
    id TEXT NOT NULL,
    scope TEXT NOT NULL,
    session_id TEXT NOT NULL,
    text TEXT NOT NULL,
    text_key TEXT NOT NULL,
    exact_key TEXT NOT NULL,
    speaker TEXT,
    role TEXT,
    created_at REAL NOT NULL,
    metadata TEXT NOT NULL,
    prev INTEGER,
    next INTEGER,
    vector BLOB NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS memories_scope_text ON memories (scope, text_key);
CREATE INDEX IF NOT EXISTS memories_scope_session ON memories (scope, session_id, seq);
CREATE INDEX IF NOT EXISTS memories_scope_exact ON memories (scope, exact_key);
CREATE VIRTUAL TABLE IF NOT EXISTS memories_fts USING fts5(
    body, context, tokenize = 'porter unicode61 remove_diacritics 2'
);
"""

_COLUMNS = (
    "seq, key, id, scope, session_id, text, speaker, role, created_at, metadata, prev, next, vector"
)


def text_key(text: str) -> str:
    """Hash of the exact text: a scope stores one memory per text."""
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()


def exact_key(text: str) -> str:
    """Hash of the text with case and whitespace runs ignored: what an exact-match query equals."""
    folded = " ".join(text.casefold().split())
    return hashlib.blake2b(folded.encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()


def query_terms(query: str) -> list[str]:
    """The words of `query` to match: lower-cased, de-duplicated, stop words dropped.

    When every word is a stop word, they are all kept, so "who are you" still matches.
    """
    words = list(dict.fromkeys(word.lower() for word in _TOKEN.findall(query)))
    content = [word for word in words if word not in STOP_WORDS]
    return (content or words)[:_MAX_TERMS]


def _match_expression(terms: Sequence[str]) -> str:
    # Each term is a quoted FTS5 string (word characters only, so no quote to escape): user
    # text never reaches FTS5's query syntax as operators or column filters.
    return " OR ".join(f'"{term}"' for term in terms)


@dataclass(frozen=True, slots=True)
class NewMemory:
    """A memory to store, with its keys computed."""

    key: str
    id: str
    scope: str
    session_id: str
    text: str
    speaker: str | None
    role: str | None
    created_at: float
    metadata: dict[str, Any]

    @property
    def text_key(self) -> str:
        """See `text_key()`."""
        return text_key(self.text)


@dataclass(frozen=True, slots=True)
class Row:
    """One stored memory."""

    seq: int
    key: str
    id: str
    scope: str
    session_id: str
    text: str
    speaker: str | None
    role: str | None
    created_at: float
    metadata: str
    prev: int | None
    next: int | None
    vector: bytes
    """The memory's unit vector as little-endian float32, a copy of Chroma's."""


class LexicalStore:
    """The SQLite catalogue of memories with its FTS5 index.

    Args:
        path: The SQLite file, or `":memory:"`.
        context_window: How many turns on each side of a memory, in its session, are indexed
            with it as context (0 indexes the text alone).
        context_weight: Weight of the context column in `bm25()`, the text column being 1.
    """

    def __init__(self, path: str, *, context_window: int, context_weight: float) -> None:
        self.path = path
        self.context_window = context_window
        self.context_weight = context_weight
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA busy_timeout = 10000")
        if path != ":memory:":
            self._db.execute("PRAGMA journal_mode = WAL")
            self._db.execute("PRAGMA synchronous = NORMAL")
        self._db.executescript(_SCHEMA)
        self._check_schema()

    def _check_schema(self) -> None:
        found = self.get_meta("schema")
        if found is None:
            self.set_meta({"schema": str(SCHEMA_VERSION)})
        elif found != str(SCHEMA_VERSION):
            raise SchemaMismatch(found, SCHEMA_VERSION, f"the memory catalogue {self.path!r}")

    def close(self) -> None:
        """Close the connection."""
        self._db.close()

    # -- meta ---------------------------------------------------------------------------------

    def get_meta(self, key: str) -> str | None:
        """Return a value of the `meta` table, or None."""
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def set_meta(self, values: dict[str, str]) -> None:
        """Insert or replace values of the `meta` table."""
        with self._transaction():
            self._db.executemany(
                "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", values.items()
            )

    def check_embedder(self, name: str, dimensions: int) -> None:
        """Record the embedder on first use; raise `ConfigurationError` if another was recorded."""
        stored = self.get_meta("embedder"), self.get_meta("dimensions")
        if stored == (None, None):
            self.set_meta({"embedder": name, "dimensions": str(dimensions)})
        elif stored != (name, str(dimensions)):
            raise ConfigurationError(
                f"the memory catalogue {self.path!r} was written with embedder {stored[0]!r} "
                f"({stored[1]} dimensions), not {name!r} ({dimensions} dimensions); "
                "open it with that embedder, or use another collection"
            )

    # -- writes -------------------------------------------------------------------------------

    def _transaction(self) -> _Transaction:
        return _Transaction(self._db)

    def lookup(self, items: Sequence[NewMemory]) -> list[str | None]:
        """For each item, the id of the memory already storing it (same id or same text in its
        scope), or None."""
        out: list[str | None] = []
        for item in items:
            row = self._db.execute(
                "SELECT id FROM memories WHERE key = ? OR (scope = ? AND text_key = ?) LIMIT 1",
                (item.key, item.scope, item.text_key),
            ).fetchone()
            out.append(None if row is None else str(row[0]))
        return out

    def insert(self, items: Sequence[NewMemory], vectors: Sequence[bytes]) -> list[str]:
        """Store the items (with their vectors) in one transaction, each after the newest
        memory of its session.

        An item whose id or text its scope already holds is skipped (another writer may have
        stored it since `lookup`). Returns, per item, the id of the memory holding it.
        """
        ids: list[str] = []
        with self._transaction():
            for item, vector in zip(items, vectors, strict=True):
                row = self._db.execute(
                    "SELECT id FROM memories WHERE key = ? OR (scope = ? AND text_key = ?)",
                    (item.key, item.scope, item.text_key),
                ).fetchone()
                if row is not None:
                    ids.append(str(row[0]))
                    continue
                prev = None
                if item.session_id:
                    tail = self._db.execute(
                        "SELECT seq FROM memories WHERE scope = ? AND session_id = ? "
                        "ORDER BY seq DESC LIMIT 1",
                        (item.scope, item.session_id),
                    ).fetchone()
                    prev = None if tail is None else int(tail[0])
                cursor = self._db.execute(
                    "INSERT INTO memories (key, id, scope, session_id, text, text_key, exact_key,"
                    " speaker, role, created_at, metadata, prev, vector) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        item.key,
                        item.id,
                        item.scope,
                        item.session_id,
                        item.text,
                        item.text_key,
                        exact_key(item.text),
                        item.speaker,
                        item.role,
                        item.created_at,
                        json.dumps(item.metadata, ensure_ascii=False, separators=(",", ":")),
                        prev,
                        vector,
                    ),
                )
                seq = int(cursor.lastrowid or 0)
                if prev is not None:
                    self._db.execute("UPDATE memories SET next = ? WHERE seq = ?", (seq, prev))
                self._db.execute(
                    "INSERT INTO memories_fts (rowid, body, context) VALUES (?, ?, '')",
                    (seq, item.text),
                )
                self._refresh_context(self._around(seq))
                ids.append(item.id)
        return ids

    def delete(self, scope: str, session_id: str | None, memory_id: str | None) -> list[str]:
        """Delete one memory (by id) or every memory of a scope (or of one session in it).

        The neighbours of each deleted memory are linked to each other and re-indexed.
        Returns the keys of the deleted memories, for the vector store.
        """
        sql = "SELECT seq, key FROM memories WHERE scope = ?"
        args: list[Any] = [scope]
        if session_id is not None:
            sql += " AND session_id = ?"
            args.append(session_id)
        if memory_id is not None:
            sql += " AND id = ?"
            args.append(memory_id)
        with self._transaction():
            doomed = self._db.execute(sql, args).fetchall()
            touched: set[int] = set()
            for seq, _ in doomed:
                prev, nxt = self._db.execute(
                    "SELECT prev, next FROM memories WHERE seq = ?", (seq,)
                ).fetchone()
                if prev is not None:
                    self._db.execute("UPDATE memories SET next = ? WHERE seq = ?", (nxt, prev))
                if nxt is not None:
                    self._db.execute("UPDATE memories SET prev = ? WHERE seq = ?", (prev, nxt))
                self._db.execute("DELETE FROM memories WHERE seq = ?", (seq,))
                self._db.execute("DELETE FROM memories_fts WHERE rowid = ?", (seq,))
                touched.discard(seq)
                for side in (prev, nxt):
                    if side is not None:
                        touched.update(self._around(side))
            gone = {int(seq) for seq, _ in doomed}
            self._refresh_context(sorted(touched - gone))
        return [str(key) for _, key in doomed]

    def _around(self, seq: int) -> list[int]:
        """`seq` and the memories within `context_window` turns of it."""
        out = [seq]
        for column in ("prev", "next"):
            cursor: int | None = seq
            for _ in range(self.context_window):
                row = self._db.execute(
                    f"SELECT {column} FROM memories WHERE seq = ?",  # noqa: S608 - fixed names
                    (cursor,),
                ).fetchone()
                if row is None or row[0] is None:
                    break
                cursor = int(row[0])
                out.append(cursor)
        return out

    def _refresh_context(self, seqs: Iterable[int]) -> None:
        for seq in seqs:
            if self.context_window == 0:
                continue
            neighbours = self._around(seq)[1:]
            if not neighbours:
                context = ""
            else:
                marks = ",".join("?" * len(neighbours))
                texts = self._db.execute(
                    f"SELECT text FROM memories WHERE seq IN ({marks}) ORDER BY seq",  # noqa: S608
                    neighbours,
                ).fetchall()
                context = "\n".join(str(text) for (text,) in texts)
            self._db.execute("UPDATE memories_fts SET context = ? WHERE rowid = ?", (context, seq))

    # -- reads --------------------------------------------------------------------------------

    def _scope_filter(self, scope: str, session_id: str | None) -> tuple[str, list[Any]]:
        if session_id is None:
            return "m.scope = ?", [scope]
        return "m.scope = ? AND m.session_id = ?", [scope, session_id]

    def count(self, scope: str, session_id: str | None) -> int:
        """Number of memories in the scope (or in one session of it)."""
        where, args = self._scope_filter(scope, session_id)
        row = self._db.execute(
            f"SELECT count(*) FROM memories m WHERE {where}",  # noqa: S608 - fixed SQL
            args,
        ).fetchone()
        return int(row[0])

    def search(
        self, scope: str, session_id: str | None, terms: Sequence[str], limit: int
    ) -> dict[int, float]:
        """BM25 similarity in [0, 1] of the best `limit` memories matching any of `terms`.

        A memory's raw `bm25()` score is divided by the score the query itself would get if it
        were stored (found by indexing it inside a savepoint that is rolled back), and capped
        at 1: so 1 means "matches as well as the query's own text would".
        """
        if not terms:
            return {}
        match = _match_expression(terms)
        where, args = self._scope_filter(scope, session_id)
        weight = self.context_weight
        sql = (
            "SELECT memories_fts.rowid, -bm25(memories_fts, 1.0, ?) AS score FROM memories_fts "  # noqa: S608 - `where` is fixed SQL
            "JOIN memories m ON m.seq = memories_fts.rowid WHERE memories_fts MATCH ? AND "
            + where
            + " ORDER BY score DESC LIMIT ?"
        )
        rows = self._db.execute(sql, [weight, match, *args, limit]).fetchall()
        if not rows:
            return {}
        reference = self._self_score(" ".join(terms), match)
        return {int(seq): min(1.0, max(0.0, score / reference)) for seq, score in rows}

    def _self_score(self, text: str, match: str) -> float:
        self._db.execute("SAVEPOINT probe")
        try:
            self._db.execute(
                "INSERT INTO memories_fts (rowid, body, context) VALUES (-1, ?, '')", (text,)
            )
            row = self._db.execute(
                "SELECT -bm25(memories_fts, 1.0, ?) FROM memories_fts "
                "WHERE memories_fts MATCH ? AND rowid = -1",
                (self.context_weight, match),
            ).fetchone()
        finally:
            self._db.execute("ROLLBACK TO probe")
            self._db.execute("RELEASE probe")
        score = float(row[0]) if row is not None else 0.0
        return score if score > 0 else 1e-9

    def exact(self, scope: str, session_id: str | None, query: str) -> list[int]:
        """Seqs of the memories whose text equals `query`, ignoring case and whitespace."""
        where, args = self._scope_filter(scope, session_id)
        rows = self._db.execute(
            f"SELECT m.seq FROM memories m WHERE {where} AND m.exact_key = ? "  # noqa: S608
            "ORDER BY m.seq",
            [*args, exact_key(query)],
        ).fetchall()
        return [int(seq) for (seq,) in rows]

    def speakers(self, scope: str, session_id: str | None) -> list[str]:
        """The distinct speakers of the scope's memories."""
        where, args = self._scope_filter(scope, session_id)
        rows = self._db.execute(
            f"SELECT DISTINCT m.speaker FROM memories m "  # noqa: S608 - fixed SQL
            f"WHERE {where} AND m.speaker IS NOT NULL",
            args,
        ).fetchall()
        return [str(name) for (name,) in rows]

    def rows(self, seqs: Iterable[int]) -> dict[int, Row]:
        """The memories with these seqs, by seq (missing ones left out)."""
        return self._rows_where("seq", list(seqs), lambda row: row.seq)

    def rows_by_key(self, keys: Iterable[str]) -> dict[str, Row]:
        """The memories with these keys, by key (missing ones left out)."""
        return self._rows_where("key", list(keys), lambda row: row.key)

    def _rows_where(self, column: str, values: list[Any], index: Any) -> dict[Any, Row]:
        out: dict[Any, Row] = {}
        for start in range(0, len(values), 500):
            chunk = values[start : start + 500]
            marks = ",".join("?" * len(chunk))
            for record in self._db.execute(
                f"SELECT {_COLUMNS} FROM memories WHERE {column} IN ({marks})",  # noqa: S608
                chunk,
            ):
                row = Row(*record)
                out[index(row)] = row
        return out


class _Transaction:
    """`BEGIN IMMEDIATE` ... `COMMIT`, rolled back on error (the writer lock is taken up front,
    so a check made inside stays true until the commit)."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __enter__(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is None:
            self._db.execute("COMMIT")
        else:
            self._db.execute("ROLLBACK")
