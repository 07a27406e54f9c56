"""Diagnosing PostgreSQL and MariaDB/MySQL: durability settings, encodings, memweave's tables.

Everything is read through one connection of the engine memweave would use (or the caller's
engine), so settings a connection changes for itself (`synchronous_commit`, the character
set) are seen as memweave's own connections see them.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import bindparam, exc, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from memweave.errors import BackendUnavailable
from memweave.providers._diagnose import Diagnosis, Finding, make_diagnosis
from memweave.providers._limits import mysql_limit
from memweave.providers._sql_schema import ExactString, tables_for

__all__ = ["diagnose_engine", "diagnose_sql_url", "missing_tables"]

_PG_SETTINGS = text(
    "SELECT name, setting, source FROM pg_catalog.pg_settings WHERE name IN :names"
).bindparams(bindparam("names", expanding=True))
_PG_TABLES = text(
    "SELECT c.relname, CAST(c.relpersistence AS text) FROM pg_catalog.pg_class c "
    "WHERE c.relname IN :names AND c.relkind IN ('r', 'p') "
    "AND pg_catalog.pg_table_is_visible(c.oid)"
).bindparams(bindparam("names", expanding=True))
_MY_VARIABLES = text("SHOW VARIABLES WHERE Variable_name IN :names").bindparams(
    bindparam("names", expanding=True)
)
_MY_TABLES = text(
    "SELECT TABLE_NAME, ENGINE, TABLE_COLLATION FROM information_schema.TABLES "
    "WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME IN :names"
).bindparams(bindparam("names", expanding=True))
_MY_COLUMNS = text(
    "SELECT TABLE_NAME, COLUMN_NAME, CHARACTER_SET_NAME, COLLATION_NAME "
    "FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE() "
    "AND TABLE_NAME IN :names AND CHARACTER_SET_NAME IS NOT NULL "
    "ORDER BY TABLE_NAME, ORDINAL_POSITION"
).bindparams(bindparam("names", expanding=True))

_MY_NAMES = (
    "version",
    "character_set_client",
    "character_set_connection",
    "character_set_results",
    "character_set_server",
    "character_set_database",
    "max_allowed_packet",
    "innodb_flush_log_at_trx_commit",
    "log_bin",
    "sync_binlog",
)
_NO_PAD_BINARY = frozenset({"utf8mb4_nopad_bin", "utf8mb4_0900_bin"})


async def diagnose_sql_url(url: str, table_prefix: str) -> Diagnosis:
    """Diagnose the PostgreSQL or MariaDB/MySQL database `url` names, through an engine
    built with memweave's own connection settings."""
    from memweave.providers._sql_engine import resolve_engine

    tables_for(table_prefix)  # a bad prefix fails before anything connects
    engine, _ = resolve_engine(url, None)
    try:
        return await diagnose_engine(engine, table_prefix, url=url)
    finally:
        await engine.dispose()


async def diagnose_engine(
    engine: AsyncEngine, table_prefix: str, *, url: str | None = None
) -> Diagnosis:
    """Diagnose the database behind `engine` (left open) through one of its connections."""
    shown = url if url is not None else engine.url.render_as_string(hide_password=True)
    tables_for(table_prefix)
    name = engine.dialect.name
    if name == "sqlite":
        from memweave.providers._diagnose_sqlite import diagnose_sqlite_engine

        return await diagnose_sqlite_engine(engine, table_prefix, url=shown)
    with _unavailable(shown):
        async with engine.connect() as conn:
            if name == "postgresql":
                server, findings = await _postgresql(conn, table_prefix)
                return make_diagnosis(shown, "postgresql", findings, server=server)
            if name in ("mysql", "mariadb"):
                server, findings = await _mysql(conn, table_prefix)
                backend = "mariadb" if "mariadb" in server.lower() else "mysql"
                return make_diagnosis(shown, backend, findings, server=server)
    return make_diagnosis(
        shown,
        name,
        [
            Finding(
                severity="warning",
                concern="unchecked",
                setting="dialect",
                found=name,
                why="memweave has no checks for this database",
                fix="use PostgreSQL, MariaDB/MySQL or SQLite",
            )
        ],
    )


@contextmanager
def _unavailable(url: str) -> Iterator[None]:
    try:
        yield
    except (exc.DBAPIError, exc.TimeoutError, OSError) as error:
        reason = str(getattr(error, "orig", None) or error) or type(error).__name__
        raise BackendUnavailable(" ".join(reason.split()), url=url) from error


def missing_tables(table_prefix: str, found: set[str]) -> list[Finding]:
    """An info finding when none of memweave's tables under `table_prefix` exists."""
    names = _table_names(table_prefix)
    if found & set(names):
        return []
    return [
        Finding(
            severity="info",
            concern="unchecked",
            setting="tables",
            found=f"none named {table_prefix}*",
            why="memweave creates its tables on first use, with the settings it needs; "
            "only the server's settings were checked",
            fix="pass the namespace your provider uses (namespace=, or --namespace) if it "
            "is another one",
        )
    ]


def _table_names(table_prefix: str) -> list[str]:
    tables = tables_for(table_prefix)
    return [tables.messages.name, tables.sessions.name, tables.schema.name]


# -- PostgreSQL ---------------------------------------------------------------------------------


async def _postgresql(conn: AsyncConnection, table_prefix: str) -> tuple[str, list[Finding]]:
    names = ["server_version", "server_encoding", "fsync", "full_page_writes", "synchronous_commit"]
    rows = (await conn.execute(_PG_SETTINGS, {"names": names})).all()
    settings = {row[0]: (str(row[1]), str(row[2])) for row in rows}
    findings: list[Finding] = []
    conf = "in postgresql.conf (or ALTER SYSTEM SET {name} = on), then SELECT pg_reload_conf()"
    for name, why in (
        (
            "fsync",
            "an OS crash or power loss can corrupt the whole database, not only lose the last "
            "writes",
        ),
        (
            "full_page_writes",
            "a power loss in the middle of a page write can leave pages that crash recovery "
            "cannot repair (corruption)",
        ),
    ):
        value, source = settings.get(name, ("on", ""))
        if value == "off":
            findings.append(
                Finding(
                    severity="error",
                    concern="durability",
                    setting=name,
                    found=f"off (from {source})",
                    why=why,
                    fix=f"{name} = on " + conf.format(name=name),
                )
            )
    value, source = settings.get("synchronous_commit", ("on", ""))
    if value == "off":
        findings.append(
            Finding(
                severity="warning",
                concern="durability",
                setting="synchronous_commit",
                found=f"off (from {source})",
                why="a crash of the server loses the last commits (up to 3 x wal_writer_delay, "
                "about 0.6 s) although add_messages reported them stored; nothing is corrupted",
                fix="synchronous_commit = on "
                + conf.format(name="synchronous_commit")
                + "; also look for it set on the role or database (ALTER ROLE/DATABASE ... "
                "RESET synchronous_commit) or by the application's connection settings",
            )
        )
    encoding, _ = settings.get("server_encoding", ("UTF8", ""))
    if encoding.upper() != "UTF8":
        findings.append(
            Finding(
                severity="warning",
                concern="encoding",
                setting="server_encoding",
                found=encoding,
                why="session and message ids with characters outside this encoding are "
                "refused by the database",
                fix="store the history in a database created with ENCODING 'UTF8' "
                "(CREATE DATABASE ... ENCODING 'UTF8' TEMPLATE template0)",
            )
        )
    names = _table_names(table_prefix)
    tables = {str(row[0]): str(row[1]) for row in await conn.execute(_PG_TABLES, {"names": names})}
    findings += [
        Finding(
            severity="error",
            concern="durability",
            setting="relpersistence",
            found="unlogged",
            where=table,
            why="an UNLOGGED table is emptied after a crash of the server and is not replicated",
            fix=f"ALTER TABLE {table} SET LOGGED",
        )
        for table, persistence in tables.items()
        if persistence == "u"
    ]
    findings += missing_tables(table_prefix, set(tables))
    version = settings.get("server_version", ("?", ""))[0]
    return f"PostgreSQL {version}", findings


# -- MariaDB / MySQL ----------------------------------------------------------------------------


async def _mysql(conn: AsyncConnection, table_prefix: str) -> tuple[str, list[Finding]]:
    rows = (await conn.execute(_MY_VARIABLES, {"names": list(_MY_NAMES)})).all()
    variables = {str(row[0]).lower(): str(row[1]) for row in rows}
    findings = _my_charsets(variables)
    findings += _my_durability(variables)
    packet = int(variables.get("max_allowed_packet", "0") or 0)
    if packet:
        largest = mysql_limit(packet)
        findings.append(
            Finding(
                severity="info",
                concern="size",
                setting="max_allowed_packet",
                found=str(packet),
                why=f"the largest message that fits is {largest:,} bytes of stored JSON (it "
                "travels hex-encoded, twice its size, in one packet); add_messages refuses a "
                "larger one with MessageTooLarge",
                fix="raise max_allowed_packet (SET GLOBAL max_allowed_packet = 268435456 and "
                "in the server's config) if messages can be larger",
            )
        )
    findings += await _my_tables(conn, table_prefix)
    return variables.get("version", "?"), findings


def _my_charsets(variables: dict[str, str]) -> list[Finding]:
    findings: list[Finding] = []
    for name in ("character_set_client", "character_set_connection", "character_set_results"):
        value = variables.get(name, "utf8mb4")
        if value != "utf8mb4":
            findings.append(
                Finding(
                    severity="error",
                    concern="encoding",
                    setting=name,
                    found=value,
                    why="this connection cannot carry every character (emoji would become "
                    "'?', so ids like 'id-😀' and 'id-😁' would merge), so memweave refuses "
                    "to store through it (ConfigurationError)",
                    fix="remove charset= from the URL (memweave uses utf8mb4) or set "
                    "charset=utf8mb4",
                )
            )
    for name in ("character_set_server", "character_set_database"):
        value = variables.get(name, "utf8mb4")
        if value != "utf8mb4":
            findings.append(
                Finding(
                    severity="info",
                    concern="encoding",
                    setting=name,
                    found=value,
                    why="memweave's tables set utf8mb4 themselves, but tables created without "
                    "a character set (by hand, or by a restore) get this one",
                    fix=f"{name.replace('character_set', 'character-set')} = utf8mb4 in the "
                    "server's config, or ALTER DATABASE ... CHARACTER SET utf8mb4",
                )
            )
    return findings


def _my_durability(variables: dict[str, str]) -> list[Finding]:
    findings: list[Finding] = []
    flush = variables.get("innodb_flush_log_at_trx_commit", "1")
    if flush not in ("1", "3"):
        lost = "a crash of the server" if flush == "0" else "a power loss or OS crash"
        findings.append(
            Finding(
                severity="warning",
                concern="durability",
                setting="innodb_flush_log_at_trx_commit",
                found=flush,
                why=f"{lost} loses about the last second of commits that add_messages "
                "reported stored",
                fix="SET GLOBAL innodb_flush_log_at_trx_commit = 1, and the same in the "
                "server's config",
            )
        )
    binlog = variables.get("log_bin", "OFF").upper() in ("ON", "1")
    sync = variables.get("sync_binlog", "1")
    if binlog and sync != "1":
        findings.append(
            Finding(
                severity="warning",
                concern="durability",
                setting="sync_binlog",
                found=sync,
                why="after an OS crash the binary log can lack commits the tables kept (or "
                "the reverse), so replicas and point-in-time restores lose or diverge",
                fix="SET GLOBAL sync_binlog = 1, and the same in the server's config",
            )
        )
    return findings


async def _my_tables(conn: AsyncConnection, table_prefix: str) -> list[Finding]:
    names = _table_names(table_prefix)
    tables = (await conn.execute(_MY_TABLES, {"names": names})).all()
    findings: list[Finding] = []
    for table, engine, collation in tables:
        findings += _my_table(str(table), str(engine or ""), str(collation or ""))
    columns = (await conn.execute(_MY_COLUMNS, {"names": names})).all()
    ids = _id_columns(table_prefix)
    for table, column, charset, collation in columns:
        findings += _my_column(str(table), str(column), str(charset), str(collation), ids)
    findings += missing_tables(table_prefix, {str(row[0]) for row in tables})
    return findings


def _my_table(table: str, engine: str, collation: str) -> list[Finding]:
    findings: list[Finding] = []
    if engine.upper() != "INNODB":
        memory = engine.upper() in ("MEMORY", "HEAP")
        findings.append(
            Finding(
                severity="error",
                concern="durability",
                setting="ENGINE",
                found=engine,
                where=table,
                why="a MEMORY table is emptied when the server restarts"
                if memory
                else "this engine has no transactions: a failed batch can be left half "
                "stored, and a crash can damage the table",
                fix=f"ALTER TABLE {table} ENGINE=InnoDB",
            )
        )
    if not collation.startswith("utf8mb4"):
        findings.append(
            Finding(
                severity="warning",
                concern="encoding",
                setting="TABLE_COLLATION",
                found=collation,
                where=table,
                why="columns added to this table later (by a schema upgrade) get a character "
                "set that cannot hold every character",
                fix=f"ALTER TABLE {table} CONVERT TO CHARACTER SET utf8mb4 (then make the id "
                "columns utf8mb4_nopad_bin again), or recreate it with memweave",
            )
        )
    return findings


def _id_columns(table_prefix: str) -> set[tuple[str, str]]:
    tables = tables_for(table_prefix)
    return {
        (table.name, column.name)
        for table in (tables.messages, tables.sessions)
        for column in table.columns
        if isinstance(column.type, ExactString)
    }


def _my_column(
    table: str, column: str, charset: str, collation: str, ids: set[tuple[str, str]]
) -> list[Finding]:
    where = f"{table}.{column}"
    if charset != "utf8mb4":
        return [
            Finding(
                severity="error",
                concern="encoding",
                setting="CHARACTER_SET_NAME",
                found=charset,
                where=where,
                why="characters this set lacks become '?' or are refused: ids that differ "
                "only in them become one id, and a message is silently dropped",
                fix=f"ALTER TABLE {table} MODIFY {column} VARCHAR(256) CHARACTER SET utf8mb4 "
                "COLLATE utf8mb4_nopad_bin NOT NULL (MySQL: utf8mb4_0900_bin)",
            )
        ]
    if (table, column) not in ids or collation in _NO_PAD_BINARY:
        return []
    binary = collation.endswith("_bin")
    return [
        Finding(
            severity="warning" if binary else "error",
            concern="encoding",
            setting="COLLATION_NAME",
            found=collation,
            where=where,
            why="trailing spaces are ignored: ids 'a' and 'a ' name one record"
            if binary
            else "ids are compared ignoring case or accents: 'Ab' and 'ab' name one record, "
            "so one session's messages land in another",
            fix=f"ALTER TABLE {table} MODIFY {column} VARCHAR(256) CHARACTER SET utf8mb4 "
            "COLLATE utf8mb4_nopad_bin NOT NULL (MySQL: utf8mb4_0900_bin)",
        )
    ]
