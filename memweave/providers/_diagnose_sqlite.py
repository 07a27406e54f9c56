"""Diagnosing stores on local disk: a SQLite file, and the filesystem checks Chroma shares.

A SQLite file named by a URL is opened read-only with the standard `sqlite3` module, not
through memweave's engine, which would switch it to WAL on connect and so hide what the file
holds.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
from pathlib import Path
from urllib.parse import unquote

from sqlalchemy import exc, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from memweave.errors import BackendUnavailable, ConfigurationError
from memweave.providers._diagnose import Diagnosis, Finding, make_diagnosis
from memweave.providers._diagnose_sql import missing_tables
from memweave.providers._sql_schema import tables_for

__all__ = ["diagnose_sqlite_engine", "diagnose_sqlite_url", "folder_findings", "ram_filesystem"]

_RAM_FILESYSTEMS = frozenset({"tmpfs", "ramfs"})
_SYNCHRONOUS = {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}
_WAL_FIX = (
    "keep the file on a local disk and open it once with memweave (it switches the file to "
    "WAL), or run: sqlite3 {path} 'PRAGMA journal_mode=WAL'"
)


async def diagnose_sqlite_url(url: str, table_prefix: str) -> Diagnosis:
    """Diagnose the SQLite database `url` names, without creating or changing it."""
    tables_for(table_prefix)
    try:
        database = make_url(url).database
    except exc.ArgumentError:
        raise ConfigurationError(f"not a SQLite URL: {url!r}") from None
    if database in (None, "", ":memory:"):
        return make_diagnosis(url, "sqlite", [_in_memory()], server=_version())
    path = Path(unquote(database))
    findings = await asyncio.to_thread(_file_findings, path, table_prefix)
    # memweave's engine sets synchronous=NORMAL on every connection it opens.
    findings += _synchronous(1, "wal")
    return make_diagnosis(url, "sqlite", findings, server=_version())


async def diagnose_sqlite_engine(engine: AsyncEngine, table_prefix: str, *, url: str) -> Diagnosis:
    """Diagnose a SQLite database through a caller's engine: its connections' own settings
    (`synchronous`, the journal mode they set) are what is checked."""
    try:
        async with engine.connect() as conn:
            rows = (await conn.execute(text("PRAGMA database_list"))).all()
            journal = str((await conn.execute(text("PRAGMA journal_mode"))).scalar())
            synchronous = int((await conn.execute(text("PRAGMA synchronous"))).scalar() or 0)
    except (exc.DBAPIError, OSError) as error:
        reason = str(getattr(error, "orig", None) or error)
        raise BackendUnavailable(" ".join(reason.split()), url=url) from error
    main = next((str(row[2]) for row in rows if row[1] == "main"), "")
    if not main:
        return make_diagnosis(url, "sqlite", [_in_memory()], server=_version())
    path = Path(main)
    findings = await asyncio.to_thread(_file_findings, path, table_prefix, journal=journal)
    findings += _synchronous(synchronous, journal.lower())
    return make_diagnosis(url, "sqlite", findings, server=_version())


def _version() -> str:
    return f"SQLite {sqlite3.sqlite_version}"


def _in_memory() -> Finding:
    return Finding(
        severity="warning",
        concern="durability",
        setting="database",
        found=":memory:",
        why="an in-memory database ends with the process that holds it, and no other process "
        "sees it",
        fix="name a file: sqlite+aiosqlite:///path/to/chat.db",
    )


def _file_findings(path: Path, table_prefix: str, *, journal: str | None = None) -> list[Finding]:
    """Findings about the file and its folder; `journal` is read from the file when None."""
    findings = folder_findings(path.parent, "SQLite database", path, created=False)
    if not path.exists():
        if path.parent.is_dir():
            findings.append(
                Finding(
                    severity="info",
                    concern="unchecked",
                    setting="file",
                    found="missing",
                    where=str(path),
                    why="there is no database yet; memweave creates it (in WAL mode) on first use",
                    fix="nothing to do, unless you expected one here (check the path)",
                )
            )
        return findings
    if not os.access(path, os.W_OK):
        findings.append(_not_writable(str(path), "the database file"))
    try:
        stored_journal, tables = _read_file(path, table_prefix)
    except sqlite3.Error as error:
        findings.append(
            Finding(
                severity="error",
                concern="access",
                setting="file",
                found=f"unreadable ({error})",
                where=str(path),
                why="SQLite cannot open it as a database",
                fix="check that the URL names a SQLite database file and that it is not damaged "
                "(sqlite3 FILE 'PRAGMA integrity_check')",
            )
        )
        return findings
    journal = (journal or stored_journal).lower()
    if journal != "wal":
        findings.append(
            Finding(
                severity="warning",
                concern="durability",
                setting="journal_mode",
                found=journal,
                where=str(path),
                why="without WAL, memweave's synchronous=NORMAL can corrupt the database on a "
                "power loss, and every reader waits for the writer",
                fix=_WAL_FIX.format(path=path),
            )
        )
    return findings + missing_tables(table_prefix, tables)


def _read_file(path: Path, table_prefix: str) -> tuple[str, set[str]]:
    """The journal mode stored in the file and which of memweave's tables it has, read
    without writing (a read-only connection)."""
    names = tables_for(table_prefix)
    wanted = {names.messages.name, names.sessions.name, names.schema.name}
    connection = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=5)
    try:
        journal = str(connection.execute("PRAGMA journal_mode").fetchone()[0])
        rows = connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        tables = {str(row[0]) for row in rows} & wanted
    finally:
        connection.close()
    return journal, tables


def _synchronous(level: int, journal: str) -> list[Finding]:
    shown = _SYNCHRONOUS.get(level, str(level))
    if level == 0:
        return [
            Finding(
                severity="error",
                concern="durability",
                setting="synchronous",
                found=shown,
                why="SQLite does not wait for the disk: an OS crash or power loss can corrupt "
                "the database",
                fix="let memweave open the database (it sets synchronous=NORMAL with WAL), or "
                "run PRAGMA synchronous=NORMAL (FULL without WAL) on every connection",
            )
        ]
    if level == 1 and journal == "wal":
        return [
            Finding(
                severity="info",
                concern="durability",
                setting="synchronous",
                found=shown,
                why="with WAL, an OS crash or power loss can undo the last commits (never "
                "corrupts); a crash of the process alone loses nothing",
                fix="PRAGMA synchronous=FULL on every connection (through your own engine) "
                "if the last commits must survive a power loss; each commit then waits for "
                "the disk",
            )
        ]
    return []


def folder_findings(folder: Path, what: str, target: Path, *, created: bool) -> list[Finding]:
    """Findings about the folder a store lives in: missing, not writable, or in RAM.

    Args:
        folder: The folder (it may not exist yet).
        what: What lives there, for the messages (`"SQLite database"`).
        target: The file or folder of the store, for `where`.
        created: Whether memweave creates a missing `folder` itself.
    """
    findings: list[Finding] = []
    if not folder.exists() and not created:
        findings.append(
            Finding(
                severity="error",
                concern="access",
                setting="folder",
                found="missing",
                where=str(folder),
                why=f"the {what} cannot be created in a folder that does not exist",
                fix=f"create it: mkdir -p {folder}",
            )
        )
    # The folder, or the nearest existing one above it that memweave would create it in.
    existing = _existing_ancestor(folder)
    if (folder.exists() or created) and not os.access(existing, os.W_OK | os.X_OK):
        findings.append(_not_writable(str(existing), f"the folder of the {what}"))
    filesystem = ram_filesystem(existing)
    if filesystem is not None:
        findings.append(
            Finding(
                severity="error",
                concern="durability",
                setting="filesystem",
                found=filesystem,
                where=str(target),
                why=f"the {what} is kept in memory by the OS: it is gone after a reboot",
                fix="keep it on a disk-backed filesystem (not /dev/shm, and not /tmp where "
                "that is tmpfs)",
            )
        )
    return findings


def _not_writable(where: str, what: str) -> Finding:
    return Finding(
        severity="error",
        concern="access",
        setting="permissions",
        found="not writable",
        where=where,
        why=f"memweave cannot write {what} (SQLite also creates -wal and -shm files beside "
        "a database), so every write fails",
        fix=f"give the user running memweave write access to {where}",
    )


def _existing_ancestor(path: Path) -> Path:
    path = path.absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def ram_filesystem(path: Path) -> str | None:
    """`"tmpfs"` or `"ramfs"` when `path` lives on a RAM-backed filesystem, else None (also
    where the mount table cannot be read, as off Linux)."""
    try:
        mounts = Path("/proc/self/mounts").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    resolved = str(path.resolve())
    best, kind = "", ""
    for line in mounts.splitlines():
        fields = line.split()
        if len(fields) < 3:
            continue
        # The mount table writes a space in a mount point as \040.
        point = fields[1].replace("\\040", " ")
        inside = resolved == point or resolved.startswith(point.rstrip("/") + "/")
        if inside and len(point) >= len(best):
            best, kind = point, fields[2]
    return kind if kind in _RAM_FILESYSTEMS else None
