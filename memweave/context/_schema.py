"""The SQLite layout of the memory catalogue, its version, and the upgrade from older layouts."""

from __future__ import annotations

import sqlite3

from memweave.errors import SchemaMismatch

__all__ = [
    "COLUMNS",
    "FTS_COLUMNS",
    "SCHEMA_VERSION",
    "TABLES",
    "TOKENIZE",
    "create_fts",
    "is_current",
    "upgrade",
]

SCHEMA_VERSION = 2
"""Version of the layout written here. Version 1 had no date column in the FTS index, no
further sessions and no aliases; it is upgraded in place when opened."""

TABLES = """
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
CREATE TABLE IF NOT EXISTS memory_sessions (
    scope TEXT NOT NULL,
    session_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    PRIMARY KEY (scope, session_id, seq)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS memory_sessions_seq ON memory_sessions (seq);
CREATE TABLE IF NOT EXISTS aliases (key TEXT PRIMARY KEY, seq INTEGER) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS aliases_seq ON aliases (seq);
"""
"""The tables besides the FTS index: `memories` (one row per memory), `memory_sessions` (the
further sessions a memory is visible from), `aliases` (Chroma records standing for a memory
stored under another key; a NULL `seq` marks a record that is no memory), and `meta`."""

COLUMNS = (
    "seq, key, id, scope, session_id, text, speaker, role, created_at, metadata, prev, next, vector"
)
"""The columns of `memories`, in the order of `memweave.context._lexical.Row`."""

FTS_COLUMNS = ("body", "context", "date")
"""The indexed columns: the memory's text, its neighbouring turns, and the day it was said."""

TOKENIZE = "porter unicode61 remove_diacritics 2"
"""FTS5's tokenizer: Unicode words, diacritics folded, Porter-stemmed."""


def _version(db: sqlite3.Connection) -> str | None:
    row = db.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
    return None if row is None else str(row[0])


def is_current(db: sqlite3.Connection, path: str) -> bool:
    """Whether the catalogue has this version's layout (False: new, or version 1).

    Raises:
        SchemaMismatch: It was written by another, unknown version.
    """
    found = _version(db)
    if found not in (None, "1", str(SCHEMA_VERSION)):
        raise SchemaMismatch(found, SCHEMA_VERSION, f"the memory catalogue {path!r}")
    return found == str(SCHEMA_VERSION)


def upgrade(db: sqlite3.Connection) -> bool:
    """Inside a write transaction, give a new or version-1 catalogue this version's layout.

    Returns whether the FTS index was created empty, to be filled from `memories` by the caller
    in the same transaction (False: another process upgraded it first).
    """
    found = _version(db)
    if found == str(SCHEMA_VERSION):
        return False
    if found == "1":
        # FTS5 cannot add a column in place.
        db.execute("DROP TABLE memories_fts")
    create_fts(db)
    db.execute(
        "INSERT OR REPLACE INTO meta (key, value) VALUES ('schema', ?)", (str(SCHEMA_VERSION),)
    )
    return True


def create_fts(db: sqlite3.Connection) -> None:
    """Create the FTS5 table `memories_fts` if it is missing."""
    db.execute(
        "CREATE VIRTUAL TABLE IF NOT EXISTS memories_fts USING fts5("
        f"{', '.join(FTS_COLUMNS)}, tokenize = '{TOKENIZE}')"
    )
