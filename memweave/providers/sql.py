"""`SQLChatHistoryProvider`: histories in SQLite, PostgreSQL or MariaDB/MySQL via SQLAlchemy."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Sequence
from datetime import timedelta
from typing import Any, Literal

from sqlalchemy.ext.asyncio import AsyncEngine

from memweave._codec import OnCorrupt
from memweave._deprecation import renamed_argument, warn_renamed
from memweave.errors import InvalidSessionId
from memweave.providers._home import default_url
from memweave.providers._namespace import sql_names
from memweave.providers._resilience import DEFAULT_RETRIES, DEFAULT_TIMEOUT, resolve_options
from memweave.providers._sql_database import SQLDatabase
from memweave.providers._sql_engine import Engines, statement_limit
from memweave.providers._sql_errors import map_sql_errors
from memweave.providers._sql_schema import SCHEMA_VERSION, Statements, build_metadata, tables_for
from memweave.providers._sql_steps import (
    NothingStored,
    above,
    pruning,
    stamp,
    storable,
    successor,
    utc,
)
from memweave.providers._sql_writes import (
    appending,
    clearing,
    deleting,
    purging_expired,
    removing,
    replacing,
    truncating,
)
from memweave.providers.base import (
    BATCH_SIZE,
    ChatHistoryProvider,
    DeleteOutcome,
    PageRow,
    ReduceOn,
    SessionInfo,
    StoredRecord,
)
from memweave.reducers.base import ChatReducer
from memweave.session import validate_session_id

__all__ = ["SQLChatHistoryProvider", "build_metadata", "default_url", "metadata"]


metadata = build_metadata()
"""The tables of the default namespace (`memweave_messages`, ...), for your own Alembic
migrations; use `build_metadata(namespace=...)` for another namespace."""


def __getattr__(name: str) -> Any:
    if name == "DEFAULT_URL":
        warn_renamed("memweave.providers.sql.DEFAULT_URL", "default_url()")
        return default_url()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class SQLChatHistoryProvider(ChatHistoryProvider):
    """SQL based, process-safe history store: every call is one transaction.

    Messages live in `<namespace>_messages`, one row each, ordered by a database-generated key,
    with a unique `(session_id, message_id)` that the dialect's insert-or-ignore (`ON CONFLICT
    DO NOTHING`, MySQL's `INSERT IGNORE`) turns into idempotent appends. `<namespace>_sessions`
    keeps each session's message count, expiry and times, so `count_messages`,
    `session_info` and `list_sessions` never scan messages; a `list_sessions` page is one
    range of its primary key. An append upserts the session row (which also serialises
    writers of one session and sets its times), then inserts the batch; with `max_messages`
    it trims the oldest rows (and tool results left at the head) in the same transaction.
    `limit=N` is one indexed `ORDER BY key DESC LIMIT N`, and a page after or before a
    message finds it by the unique index, then reads a range of keys; so neither appends,
    recent reads nor pages grow with the history. `delete_messages` and `truncate_after` lock
    the session row and delete key ranges in one transaction; `prune` walks the
    `updated_at` index a batch at a time.

    Ttl expiry uses the database's clock, as do the session times. An expired session reads
    as empty at once; its rows are deleted when it is written to again, or by
    `purge_expired()`. Reads never write, so a role with SELECT only can list, read and page
    once the tables are at the current schema version.

    An engine built from a URL gets SQLite's WAL journal, `synchronous=NORMAL` and a busy
    timeout of `timeout` (so several processes can share one file; 30 s with no limit), and
    READ COMMITTED on MariaDB/MySQL. Its drivers' own limits follow `timeout` too: asyncpg's
    connect and command timeouts (a `command_timeout` in the URL wins), aiomysql's connect
    timeout and the pool's wait for a connection. An engine you pass in is used as it is and
    never closed here; `timeout` and `retries` still apply to the calls.

    With neither `url` nor `client`, the histories go to the SQLite file `memweave.db` in
    memweave's per-user data directory: `$MEMWEAVE_HOME` when set, else
    `platformdirs.user_data_path("memweave")` (`~/.local/share/memweave` on Linux). The
    directory is created (mode 0o700) if missing, and the file's path logged at INFO; nothing
    is ever written to the working directory without a path from you. `SQLCheckpointStore`
    shares that file.

    Timeouts and retries (see `ChatHistoryProvider`): a call cut off by `timeout` is
    cancelled in the driver, whose connection is then discarded, never returned to the pool
    mid-statement. A transaction the database certainly did not apply is run again whatever
    the call: one aborted to break a deadlock or serialization conflict (up to 5 tries), and
    one whose connection turned out dead before the commit was sent, typically a pooled
    connection the server closed while idle (once, on a new connection; not with
    `retries=0`). So the first call after the server dropped idle connections succeeds,
    without the round trip a ping before every call (`pool_pre_ping`) would cost.

    Event loops: built from a URL, the provider works in any event loop (consecutive
    `asyncio.run` calls, a test framework's loop per test, threads each running a loop): each
    loop gets an engine and pool of its own, disposed of on that loop when it shuts down, and
    `aclose()` disposes of those of loops still running. A `client` you pass in, and an
    in-memory SQLite database (one connection), serve the loop that first used the provider;
    a call from another loop raises `EventLoopMismatch`. Change the tables only
    through a provider, since each write keeps the session's count in step with its rows.
    Ids compare exactly on every database (see `ExactString`), which needs MariaDB 10.2+ or
    MySQL 8.0.17+. Tables of schema version 1 (before session times) are upgraded in place
    by the first provider that opens them with `create_tables=True`.

    MariaDB/MySQL always talks utf8mb4 (a URL asking for another `charset` raises
    `ConfigurationError`, since `utf8` or `latin1` would turn `😀` into `?`). One message's
    stored JSON may take up to the connection's `SQLITE_LIMIT_LENGTH` less 8 KiB on SQLite
    (999,991,808 bytes by default), 1 GiB less 8 KiB on PostgreSQL, and on MariaDB/MySQL
    half of the server's `max_allowed_packet` less 8 KiB (8,384,512 bytes at the default 16
    MiB), because aiomysql sends binary data as hex inside the statement; a bigger message
    raises `MessageTooLarge` before anything is sent.

    Args:
        url: A SQLAlchemy URL: `sqlite+aiosqlite:///chat.db`, `postgresql+asyncpg://...`,
            `mysql+aiomysql://...` (the driver may be left out). Without it (and without a
            `client`), `memweave.db` in memweave's data directory (see above).
        client: An `AsyncEngine` to use instead of a URL; the caller keeps ownership.
        namespace: The name this provider's data lives under, so several applications
            share one database: the tables are `<namespace>_messages`, `<namespace>_sessions`
            and `<namespace>_schema` (default `memweave`). 1-31 ASCII letters, digits or
            underscores, not starting with a digit.
        create_tables: Create missing tables (and upgrade older ones) on first use. With
            False they must exist already, e.g. from your Alembic migration of
            `build_metadata(namespace=...)`; nothing is then ever written on setup.
        max_messages: Keep at most this many messages per session (newest kept).
        ttl: Forget a session this long after its last `add_messages` (sliding).
        on_corrupt: `"raise"` or `"skip"` a stored entry that cannot be decoded.
        reducer: Optional reducer applied on read or write (see `reduce_on`).
        reduce_on: `"read"` for a reduced view, `"write"` to store the reduced history.
        timeout: Seconds each round of storage work may take, retries included (default 10;
            None: no limit); also `?timeout=` in the URL.
        retries: Retries of a transiently failed idempotent call (default 3; 0: none); also
            `?retries=` in the URL.
        engine: Deprecated name of `client`; goes in 0.3.
        table_prefix: Deprecated: the exact start of every table name (`app_` names
            `app_messages`, as before); use `namespace` (`namespace="app"` names the same
            tables). Goes in 0.3.

    Raises:
        ConfigurationError: A bad URL, option or combination of options (such as a name
            and its deprecated name both).
        MissingDependency: The URL's driver (asyncpg, aiomysql) is not installed.

    Example:
        ```python
        async with SQLChatHistoryProvider("sqlite+aiosqlite:///chat.db") as history:
            await history.add_messages("s1", [ChatMessage.user("hi")])
        ```
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        client: AsyncEngine | None = None,
        namespace: str | None = None,
        create_tables: bool = True,
        max_messages: int | None = None,
        ttl: timedelta | None = None,
        on_corrupt: OnCorrupt = "raise",
        reducer: ChatReducer | None = None,
        reduce_on: ReduceOn = "read",
        timeout: float | None = DEFAULT_TIMEOUT,
        retries: int = DEFAULT_RETRIES,
        engine: AsyncEngine | None = None,
        table_prefix: str | None = None,
    ) -> None:
        owner = type(self).__name__
        client = renamed_argument(owner, "engine", engine, "client", client)
        renamed_argument(owner, "table_prefix", table_prefix, "namespace", namespace)
        url, timeout, retries = resolve_options(url, timeout, retries)
        super().__init__(
            max_messages=max_messages,
            ttl=ttl,
            on_corrupt=on_corrupt,
            reducer=reducer,
            reduce_on=reduce_on,
            timeout=timeout,
            retries=retries,
        )
        names = sql_names(namespace, table_prefix, owner=owner)
        self.namespace = names[0]
        """The name this provider's data lives under."""
        self.table_prefix = names[1]
        """The start of its table names: `<namespace>_` (a deprecated `table_prefix` as given)."""
        self._tables = tables_for(self.table_prefix)
        self.metadata = self._tables.metadata
        """The `MetaData` of this provider's tables (see `build_metadata`)."""
        # Per event loop: the engine and the locks queueing SQLite's writers.
        self._engines = Engines(url, client, owner=owner, timeout=self.timeout)
        self._url = self._engines.url
        self._statement_limit = statement_limit(url if client is None else None, self.timeout)
        self._db = SQLDatabase(
            self._engines,
            self._tables,
            table_prefix=self.table_prefix,
            create=bool(create_tables),
            retries=self.retries,
        )

    @property
    def engine(self) -> AsyncEngine:
        """The SQLAlchemy engine this provider runs on in the running event loop (outside
        any loop, the one it was built with)."""
        return self._engines.current()

    # -- primitives ---------------------------------------------------------------------------

    async def _append(
        self,
        session_id: str,
        records: Sequence[StoredRecord],
        *,
        max_messages: int | None,
        ttl: timedelta | None,
    ) -> None:
        seconds = ttl.total_seconds() if ttl is not None else None
        params = {"sid": session_id, "n": len(records), "ttl": seconds}
        if records:
            try:
                await self._db.write(appending(records, params, max_messages, self._db))
                return
            except NothingStored:
                pass  # rolled back; a batch of stored ids only renews the ttl
        if seconds is not None:
            await self._db.write(lambda conn, st: conn.execute(st.renew, params))

    async def _read(self, session_id: str, limit: int | None) -> list[bytes]:
        st = await self._ready()
        if limit is None:
            return await self._db.scalars(st.read_all, {"sid": session_id})
        newest = await self._db.scalars(st.read_last, {"sid": session_id, "limit": limit})
        newest.reverse()
        return newest

    async def _read_system(self, session_id: str) -> list[bytes]:
        st = await self._ready()
        return await self._db.scalars(st.read_system, {"sid": session_id})

    async def _count(self, session_id: str) -> int:
        st = await self._ready()
        counts: list[int] = await self._db.scalars(st.count, {"sid": session_id})
        return int(counts[0]) if counts else 0

    async def _clear(self, session_id: str) -> None:
        await self._db.write(clearing(session_id))

    async def _list_sessions(
        self, prefix: str | None, *, after: str | None, limit: int | None
    ) -> list[str]:
        st = await self._ready()
        lower: tuple[str, int] | None = None  # (bound, 1 for > and 0 for >=)
        upper: str | None = None
        if prefix is not None:
            try:
                validate_session_id(prefix)
            except InvalidSessionId:
                return []  # no stored id can start with it
            lower, upper = (prefix, 0), successor(prefix)
        if after is not None:
            bound = above(after)
            lower = bound if lower is None else max(lower, bound)
        if lower is not None and upper is not None and lower[0] >= upper:
            return []
        kind: Literal["gt", "ge"] | None = None
        if lower is not None:
            kind = "gt" if lower[1] else "ge"
        statement = st.list_page(kind, upper is not None, limit is not None)
        params = {"lo": lower[0] if lower else None, "hi": upper, "limit": limit}
        return await self._db.scalars(statement, params)

    async def _session_info(self, session_id: str) -> SessionInfo | None:
        st = await self._ready()
        rows = await self._db.rows(st.info, {"sid": session_id})
        if not rows:
            return None
        count, created, updated = rows[0]
        return SessionInfo(
            id=session_id,
            message_count=int(count),
            created_at=utc(created),
            updated_at=utc(updated),
        )

    async def _read_page(
        self, session_id: str, *, after: str | None, before: str | None, limit: int
    ) -> list[PageRow] | None:
        st = await self._ready()
        cursor = after if after is not None else before
        if cursor is None:
            rows = await self._db.rows(st.page_first, {"sid": session_id, "limit": limit})
            return [(message_id, data) for message_id, data in rows]
        if not storable(cursor):
            return None
        # The cursor's own row comes first (one more than asked), telling "the cursor is
        # not stored" (no rows) from "nothing past it" (only that row) in one round trip.
        statement = st.page_after if after is not None else st.page_before
        rows = await self._db.rows(
            statement, {"sid": session_id, "cursor": cursor, "limit": limit + 1}
        )
        if not rows:
            return None
        page = [(message_id, data) for message_id, data in rows[1:]]
        if before is not None:
            page.reverse()
        return page

    async def _remove(self, session_id: str, message_ids: Sequence[str]) -> None:
        await self._db.write(removing(session_id, message_ids))

    async def _delete(self, session_id: str, message_ids: Sequence[str]) -> DeleteOutcome:
        wanted = [message_id for message_id in message_ids if storable(message_id)]
        if not wanted:
            return DeleteOutcome(0)
        return await self._db.write(deleting(session_id, wanted), reads_first=True)

    async def _truncate_after(self, session_id: str, message_id: str) -> int | None:
        if not storable(message_id):
            return None
        return await self._db.write(truncating(session_id, message_id), reads_first=True)

    async def _prune(self, older_than: timedelta, *, dry_run: bool) -> int:
        st = await self._ready()
        [now] = await self._db.scalars(st.clock, {})
        cutoff = float(now) - older_than.total_seconds()
        if not dry_run:
            # Stamped after the cutoff was read, so they are not pruned this time.
            await self._stamp_unrecorded(st)
        total = 0
        last: Any = None
        while True:
            if dry_run and last is not None:
                params = {"cutoff": cutoff, "after_t": last[1], "after_id": last[0]}
                rows = await self._db.rows(st.stale_after, params)
            else:
                rows = await self._db.rows(st.stale, {"cutoff": cutoff})
            if dry_run:
                total += len(rows)
            elif rows:
                total += await self._db.write(
                    pruning([row[0] for row in rows], cutoff), reads_first=True
                )
            if len(rows) < BATCH_SIZE:
                return total
            last = rows[-1]

    async def _stamp_unrecorded(self, st: Statements) -> None:
        """Give sessions stored by schema version 1 an `updated_at` of now, a batch at a time."""
        while True:
            ids = await self._db.scalars(st.unrecorded, {})
            if ids:
                await self._db.write(functools.partial(stamp, ids))
            if len(ids) < BATCH_SIZE:
                return

    async def _purge_expired(self) -> int:
        total = 0
        while True:
            purged = await self._db.write(purging_expired, reads_first=True)
            total += purged
            if purged < BATCH_SIZE:
                return total

    async def _replace(
        self,
        session_id: str,
        records: Sequence[StoredRecord],
        *,
        expected_last_id: str | None,
    ) -> bool:
        return await self._db.write(replacing(session_id, records, expected_last_id, self._db))

    async def _aclose(self) -> None:
        await self._engines.aclose()

    async def _max_record_bytes(self) -> int:
        await self._ready()
        return self._db.record_limit

    # -- plumbing -----------------------------------------------------------------------------

    async def _ready(self) -> Statements:
        """The statements of this provider's tables, set up on first use."""
        return await self._db.ready()

    def _map_errors(self) -> contextlib.AbstractContextManager[None]:
        """Translate SQLAlchemy and driver errors, marking those a retry may cure."""
        return map_sql_errors(
            self._url,
            statement_limit=self._statement_limit,
            bound_to=self._engines.bound_to,
            owner=type(self).__name__,
            schema_hint=(
                f"the tables of namespace {self.namespace!r} are missing or differ from "
                f"schema version {SCHEMA_VERSION}"
            ),
        )
