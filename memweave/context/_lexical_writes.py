"""The write side of the memory catalogue: the SQLite connection, its transactions, its `meta`
table, and every change to `memories` and its FTS5 index (see `memweave.context._lexical`).

Each memory is linked to the memories before and after it in its session (`prev`, `next`), and
indexed with the text of its neighbouring turns as context: so inserting or removing a memory
re-indexes the context of the memories around it.

Every method here is blocking and is called from one worker thread of the owning store.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
from collections.abc import Iterable, Iterator, Sequence

from memweave.context._fts import QueryReference, date_text
from memweave.context._lexical_records import NewMemory, chunks, exact_key, scope_filter
from memweave.context._schema import TABLES, is_current, upgrade
from memweave.errors import ConfigurationError

__all__ = ["CatalogueWriter"]


class CatalogueWriter:
    """The catalogue's connection and its writes; `LexicalStore` adds the reads.

    Args:
        path: The SQLite file, or `":memory:"`.
        context_window: How many turns on each side of a memory, in its session, are indexed
            with it as context (0 indexes the text alone).
        context_weight: Weight of the context column in `bm25()`, the text column being 1.
        date_weight: Weight of the date column in `bm25()`.
    """

    def __init__(
        self, path: str, *, context_window: int, context_weight: float, date_weight: float
    ) -> None:
        self.path = path
        self.context_window = context_window
        self.weights = (1.0, context_weight, date_weight)
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA busy_timeout = 10000")
        if path != ":memory:":
            self._db.execute("PRAGMA journal_mode = WAL")
            self._db.execute("PRAGMA synchronous = NORMAL")
        self._db.executescript(TABLES)
        if not is_current(self._db, path):
            with self.transaction():
                if upgrade(self._db):
                    self._reindex()
        self._reference = QueryReference(self._db)

    def _reindex(self) -> None:
        """Fill a new FTS index from `memories`."""
        rows = self._db.execute("SELECT seq, text, created_at FROM memories").fetchall()
        self._db.executemany(
            "INSERT INTO memories_fts (rowid, body, context, date) VALUES (?, ?, '', ?)",
            [(seq, text, date_text(created_at)) for seq, text, created_at in rows],
        )
        self._refresh_context(seq for seq, _, _ in rows)

    def close(self) -> None:
        """Close the connection."""
        self._db.close()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """`BEGIN IMMEDIATE` ... `COMMIT`, rolled back on error; nested uses join the outer one.

        The writer lock is taken up front, so a check made inside stays true until the commit.
        """
        if self._db.in_transaction:
            yield
            return
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    # -- meta ---------------------------------------------------------------------------------

    def get_meta(self, key: str) -> str | None:
        """Return a value of the `meta` table, or None."""
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def set_meta(self, values: dict[str, str]) -> None:
        """Insert or replace values of the `meta` table."""
        with self.transaction():
            self._db.executemany(
                "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", values.items()
            )

    def check_owner(self, collection: str, name: str, dimensions: int) -> None:
        """Record the collection and embedder on first use; raise `ConfigurationError` if this
        catalogue belongs to another collection or was written with another embedder."""
        wanted = {"collection": collection, "embedder": name, "dimensions": str(dimensions)}
        stored = {key: self.get_meta(key) for key in wanted}
        if stored["collection"] not in (None, collection):
            raise ConfigurationError(
                f"the memory catalogue {self.path!r} indexes the Chroma collection "
                f"{stored['collection']!r}, not {collection!r}; give each collection its own "
                "lexical_path"
            )
        embedder = (stored["embedder"], stored["dimensions"])
        if embedder not in ((None, None), (name, str(dimensions))):
            raise ConfigurationError(
                f"the memory catalogue {self.path!r} was written with embedder "
                f"{stored['embedder']!r} ({stored['dimensions']} dimensions), not {name!r} "
                f"({dimensions} dimensions); open it with that embedder, or use another collection"
            )
        if stored != wanted:
            self.set_meta(wanted)

    # -- writes -------------------------------------------------------------------------------

    def lookup(self, items: Sequence[NewMemory]) -> list[str | None]:
        """For each item, the id of the memory already storing it (same id or same text in its
        scope), or None."""
        out: list[str | None] = []
        for item in items:
            row = self._find(item)
            out.append(None if row is None else row[1])
        return out

    def _find(self, item: NewMemory) -> tuple[int, str, str, str] | None:
        """`(seq, id, key, session_id)` of the memory holding the item's id or text, or None."""
        row = self._db.execute(
            "SELECT seq, id, key, session_id FROM memories "
            "WHERE key = ? OR (scope = ? AND text_key = ?) LIMIT 1",
            (item.key, item.scope, item.text_key),
        ).fetchone()
        return None if row is None else (int(row[0]), str(row[1]), str(row[2]), str(row[3]))

    def insert(self, items: Sequence[NewMemory], vectors: Sequence[bytes]) -> list[str]:
        """Store the items (with their vectors) in one transaction, each after the newest
        memory of its session.

        An item whose id or text its scope already holds is skipped (another writer may have
        stored it since `lookup`). Returns, per item, the id of the memory holding it.
        """
        ids: list[str] = []
        touched: set[int] = set()
        fresh: dict[int, tuple[str, str]] = {}
        with self.transaction():
            for item, vector in zip(items, vectors, strict=True):
                found = self._find(item)
                if found is not None:
                    ids.append(found[1])
                    continue
                seq = self._insert_row(item, vector, refresh=False)
                fresh[seq] = (item.text, date_text(item.created_at))
                touched.update(self._around(seq))
                ids.append(item.id)
            # Each row is indexed once for the whole batch, with its final context, not again
            # for every neighbour inserted after it.
            self._db.executemany(
                "INSERT INTO memories_fts (rowid, body, context, date) VALUES (?, ?, ?, ?)",
                [(seq, text, self._context_of(seq), day) for seq, (text, day) in fresh.items()],
            )
            self._refresh_context(sorted(touched - set(fresh)))
        return ids

    def adopt(self, items: Sequence[NewMemory], vectors: Sequence[bytes]) -> None:
        """Catalogue records found in Chroma, in order: each is a new memory, or (when its
        scope already holds its text under another key) an alias of the memory holding it."""
        with self.transaction():
            for item, vector in zip(items, vectors, strict=True):
                known = self._db.execute(
                    "SELECT 1 FROM memories WHERE key = ? UNION ALL "
                    "SELECT 1 FROM aliases WHERE key = ?",
                    (item.key, item.key),
                ).fetchone()
                if known is not None:
                    continue
                found = self._find(item)
                if found is None:
                    seq = self._insert_row(item, vector)
                    home = item.session_id
                else:
                    seq, home = found[0], found[3]
                    self._db.execute(
                        "INSERT INTO aliases (key, seq) VALUES (?, ?)", (item.key, seq)
                    )
                sessions = {item.session_id, *item.sessions} - {home, ""}
                self._db.executemany(
                    "INSERT OR IGNORE INTO memory_sessions (scope, session_id, seq) "
                    "VALUES (?, ?, ?)",
                    [(item.scope, session, seq) for session in sorted(sessions)],
                )

    def ignore(self, keys: Iterable[str]) -> None:
        """Remember Chroma records that are no memory (so they count as catalogued)."""
        with self.transaction():
            self._db.executemany(
                "INSERT OR IGNORE INTO aliases (key, seq) VALUES (?, NULL)",
                [(key,) for key in keys],
            )

    def _insert_row(self, item: NewMemory, vector: bytes, *, refresh: bool = True) -> int:
        """Insert a row after the newest of its session, index it and re-index the context of
        the rows around it; with `refresh` False, neither (the caller indexes them later)."""
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
        if refresh:
            self._db.execute(
                "INSERT INTO memories_fts (rowid, body, context, date) VALUES (?, ?, '', ?)",
                (seq, item.text, date_text(item.created_at)),
            )
            self._refresh_context(self._around(seq))
        return seq

    def attach(self, items: Sequence[NewMemory]) -> dict[str, list[str]]:
        """Make the memory holding each item's id or text visible from the item's session too.

        Returns, by key of each memory that gained a session, all its further sessions.
        """
        changed: dict[str, int] = {}
        with self.transaction():
            for item in items:
                found = self._find(item)
                if found is None or not item.session_id or item.session_id == found[3]:
                    continue
                cursor = self._db.execute(
                    "INSERT OR IGNORE INTO memory_sessions (scope, session_id, seq) "
                    "VALUES (?, ?, ?)",
                    (item.scope, item.session_id, found[0]),
                )
                if cursor.rowcount:
                    changed[found[2]] = found[0]
        return {key: self.sessions_of(seq) for key, seq in changed.items()}

    def sessions_of(self, seq: int) -> list[str]:
        """The further sessions memory `seq` is visible from."""
        rows = self._db.execute(
            "SELECT session_id FROM memory_sessions WHERE seq = ? ORDER BY session_id", (seq,)
        ).fetchall()
        return [str(session) for (session,) in rows]

    def doomed(
        self, scope: str, session_id: str | None, memory: tuple[str, str] | None
    ) -> dict[int, list[str]]:
        """The memories `delete` would remove, by seq, with their Chroma keys (aliases too).

        `memory` is `(id, Chroma key)` of one memory, found by its id or by the key of an alias
        (the id another catalogue gave the same text); None means all. With a session, that is
        every memory visible from it, wherever its home session is.
        """
        where, args = scope_filter(scope, session_id)
        sql = f"SELECT m.seq, m.key FROM memories m WHERE {where}"  # noqa: S608 - fixed SQL
        if memory is not None:
            sql += " AND (m.id = ? OR m.seq IN (SELECT seq FROM aliases WHERE key = ?))"
            args.extend(memory)
        out = {int(seq): [str(key)] for seq, key in self._db.execute(sql, args).fetchall()}
        for chunk in chunks(list(out)):
            marks = ",".join("?" * len(chunk))
            for seq, key in self._db.execute(
                f"SELECT seq, key FROM aliases WHERE seq IN ({marks})",  # noqa: S608
                chunk,
            ):
                out[int(seq)].append(str(key))
        return out

    def remove(self, seqs: Iterable[int]) -> None:
        """Delete these memories with their aliases; their neighbours are linked to each other
        and re-indexed."""
        with self.transaction():
            touched: set[int] = set()
            gone: set[int] = set()
            for seq in seqs:
                row = self._db.execute(
                    "SELECT prev, next FROM memories WHERE seq = ?", (seq,)
                ).fetchone()
                if row is None:
                    continue
                prev, nxt = row
                if prev is not None:
                    self._db.execute("UPDATE memories SET next = ? WHERE seq = ?", (nxt, prev))
                if nxt is not None:
                    self._db.execute("UPDATE memories SET prev = ? WHERE seq = ?", (prev, nxt))
                for statement in (
                    "DELETE FROM memories WHERE seq = ?",
                    "DELETE FROM memories_fts WHERE rowid = ?",
                    "DELETE FROM memory_sessions WHERE seq = ?",
                    "DELETE FROM aliases WHERE seq = ?",
                ):
                    self._db.execute(statement, (seq,))
                gone.add(seq)
                for side in (prev, nxt):
                    if side is not None:
                        touched.update(self._around(side))
            self._refresh_context(sorted(touched - gone))

    def forget_keys(self, keys: Iterable[str]) -> None:
        """Drop what the catalogue holds under these Chroma keys (gone from Chroma)."""
        wanted = list(keys)
        with self.transaction():
            seqs: list[int] = []
            for chunk in chunks(wanted):
                marks = ",".join("?" * len(chunk))
                seqs.extend(
                    int(seq)
                    for (seq,) in self._db.execute(
                        f"SELECT seq FROM memories WHERE key IN ({marks})",  # noqa: S608
                        chunk,
                    )
                )
                self._db.execute(f"DELETE FROM aliases WHERE key IN ({marks})", chunk)  # noqa: S608
            self.remove(seqs)

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

    def _context_of(self, seq: int) -> str:
        """The text of the memories within `context_window` turns of `seq`, in order."""
        neighbours = self._around(seq)[1:] if self.context_window else []
        if not neighbours:
            return ""
        marks = ",".join("?" * len(neighbours))
        texts = self._db.execute(
            f"SELECT text FROM memories WHERE seq IN ({marks}) ORDER BY seq",  # noqa: S608
            neighbours,
        ).fetchall()
        return "\n".join(str(text) for (text,) in texts)

    def _refresh_context(self, seqs: Iterable[int]) -> None:
        if self.context_window == 0:
            return
        for seq in seqs:
            self._db.execute(
                "UPDATE memories_fts SET context = ? WHERE rowid = ?", (self._context_of(seq), seq)
            )
