"""The SQL targets of `memweave.bench.scale`: memweave's tables in a fresh namespace, bulk seeding
with the rows memweave writes, and the raw SQLAlchemy Core floors (see `_scale_backends`)."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from memweave.bench._scale_backends import ID_WIDTH, SESSION_TEMPLATE, Target, session_id
from memweave.providers import ChatHistoryProvider

if TYPE_CHECKING:
    from memweave.bench._scale_export import Row

__all__ = ["SQLTarget"]

_SQL_COPY_CHUNK = 100_000  # sessions copied per INSERT ... SELECT


@dataclass
class SQLTarget(Target):
    """SQLite, PostgreSQL or MariaDB through SQLAlchemy, tables in a fresh namespace."""

    floor_needs_rows: ClassVar[bool] = False

    raw_table: str = ""
    _engine: Any = None
    _raw: Any = None

    def __post_init__(self) -> None:
        from sqlalchemy import Column, Integer, MetaData, String, Table

        if not self.raw_table:
            self.raw_table = f"mwb_raw_{uuid.uuid4().hex[:10]}_sessions"
        self._raw_metadata = MetaData()
        self._raw = Table(
            self.raw_table,
            self._raw_metadata,
            # Binary collation on every database: code-point order, as memweave's ids.
            Column(
                "session_id", String(64, collation=_binary_collation(self.name)), primary_key=True
            ),
            Column("message_count", Integer(), nullable=False),
        )

    def _extra_spec(self) -> dict[str, Any]:
        return {"raw_table": self.raw_table}

    @property
    def engine(self) -> Any:
        """The raw client: an `AsyncEngine` of its own on the same database."""
        if self._engine is None:
            from sqlalchemy.ext.asyncio import create_async_engine

            self._engine = create_async_engine(self.url)
        return self._engine

    @property
    def tables(self) -> Any:
        """memweave's tables in this target's namespace."""
        from memweave.providers._sql_schema import tables_for

        return tables_for(f"{self.options['namespace']}_")

    async def seed_sessions(self, history: ChatHistoryProvider, start: int, stop: int) -> None:
        if start == 0:
            await history.add_messages(session_id(0), SESSION_TEMPLATE)
            start = 1
        for first in range(start, stop, _SQL_COPY_CHUNK):
            last = min(stop, first + _SQL_COPY_CHUNK)
            async with self.engine.begin() as conn:
                for table in self.tables.metadata.sorted_tables:
                    if "session_id" in table.c:
                        await conn.execute(self._copy(table, conn.dialect.name, first, last))

    async def seed_long_session(
        self, history: ChatHistoryProvider, session: str, batches: Iterable[list[Row]]
    ) -> None:
        """The first batch through memweave (it makes the session's row), the others as
        multi-row `INSERT`s of the same columns memweave writes, then the row's count.

        Falls back to `add_messages` when memweave's messages table holds other columns."""
        from sqlalchemy import func, insert, select, update

        from memweave.bench._scale_export import as_messages

        m, sessions = self.tables.messages, self.tables.sessions
        known = {"session_id", "message_id", "role", "data"}
        if {c.name for c in m.c if c is not m.autoincrement_column} != known:
            await super().seed_long_session(history, session, batches)
            return
        pending = iter(batches)
        await history.add_messages(session, as_messages(next(pending, [])))
        for batch in pending:
            rows = [(session, *row) for row in batch]
            async with self.engine.begin() as conn:
                if conn.dialect.name in ("mysql", "mariadb"):
                    await _insert_mysql(conn, m, rows)
                else:
                    columns = ("session_id", "message_id", "role", "data")
                    await conn.execute(
                        insert(m), [dict(zip(columns, r, strict=True)) for r in rows]
                    )
        async with self.engine.begin() as conn:
            count = select(func.count()).where(m.c.session_id == session).scalar_subquery()
            await conn.execute(
                update(sessions).where(sessions.c.session_id == session).values(message_count=count)
            )

    def _copy(self, table: Any, dialect: str, start: int, stop: int) -> Any:
        """`INSERT ... SELECT` of session 0's rows of `table` under ids `start` to `stop - 1`."""
        from sqlalchemy import insert, select, true

        series, number = _series(dialect, start, stop)
        new_id = _numbered_id(dialect, number)
        auto = table.autoincrement_column
        columns = [column for column in table.c if column is not auto]
        values = [new_id if c.name == "session_id" else c for c in columns]
        query = (
            select(*values)
            .select_from(table.join(series, true()))
            .where(table.c.session_id == session_id(0))
        )
        return insert(table).from_select([c.name for c in columns], query)

    async def floor_sessions(self, start: int, stop: int) -> None:
        from sqlalchemy import insert, literal, select

        async with self.engine.begin() as conn:
            if start == 0:
                await conn.run_sync(self._raw_metadata.create_all)
            for first in range(start, stop, _SQL_COPY_CHUNK):
                last = min(stop, first + _SQL_COPY_CHUNK)
                series, number = _series(conn.dialect.name, first, last)
                query = select(
                    _numbered_id(conn.dialect.name, number), literal(len(SESSION_TEMPLATE))
                ).select_from(series)
                await conn.execute(
                    insert(self._raw).from_select(["session_id", "message_count"], query)
                )

    async def floor_list(self, after: str, limit: int) -> list[str]:
        from sqlalchemy import select

        raw = self._raw
        query = (
            select(raw.c.session_id)
            .where(raw.c.session_id > after)
            .order_by(raw.c.session_id)
            .limit(limit)
        )
        async with self.engine.connect() as conn:
            return list((await conn.execute(query)).scalars())

    async def floor_info(self, session: str) -> object:
        from sqlalchemy import select

        async with self.engine.connect() as conn:
            query = select(self._raw).where(self._raw.c.session_id == session)
            return (await conn.execute(query)).first()

    async def floor_store(self, session: str, rows: Sequence[bytes]) -> None:
        """Nothing to do: the floors read memweave's own rows with the raw client."""

    async def floor_tail(self, session: str, count: int) -> list[Any]:
        from sqlalchemy import select

        m = self.tables.messages
        query = (
            select(m.c.data).where(m.c.session_id == session).order_by(m.c.id.desc()).limit(count)
        )
        async with self.engine.connect() as conn:
            rows = list((await conn.execute(query)).scalars())
        return [json.loads(row) for row in reversed(rows)]

    async def floor_pages(self, session: str, page_size: int) -> AsyncIterator[list[bytes]]:
        from sqlalchemy import select

        m = self.tables.messages
        last = -1
        while True:
            query = (
                select(m.c.id, m.c.data)
                .where(m.c.session_id == session, m.c.id > last)
                .order_by(m.c.id)
                .limit(page_size)
            )
            async with self.engine.connect() as conn:
                rows = (await conn.execute(query)).all()
            if not rows:
                return
            yield [row[1] for row in rows]
            last = rows[-1][0]

    async def cleanup(self) -> None:
        try:
            async with self.engine.begin() as conn:
                await conn.run_sync(self.tables.metadata.drop_all)
                await conn.run_sync(self._raw_metadata.drop_all)
        finally:
            await self.engine.dispose()
            self._engine = None


async def _insert_mysql(conn: Any, table: Any, rows: Sequence[tuple[str, str, str, bytes]]) -> None:
    """Multi-row `INSERT`s of (session_id, message_id, role, data) rows, data sent in hex as
    memweave sends it (the driver would send a batch with `UNHEX(%s)` one row at a time)."""
    name = conn.dialect.identifier_preparer.format_table(table)
    for first in range(0, len(rows), 500):
        chunk = rows[first : first + 500]
        values = ", ".join(["(%s, %s, %s, UNHEX(%s))"] * len(chunk))
        params = tuple(v for sid, mid, role, data in chunk for v in (sid, mid, role, data.hex()))
        await conn.exec_driver_sql(
            f"INSERT INTO {name} (session_id, message_id, role, data) VALUES {values}", params
        )


def _binary_collation(name: str) -> str | None:
    return {"postgresql": "C", "mariadb": "utf8mb4_bin"}.get(name)


def _series(dialect: str, start: int, stop: int) -> tuple[Any, Any]:
    """A FROM clause of the integers `start` to `stop - 1`, and its column."""
    from sqlalchemy import column, func, literal, select, table

    if dialect == "postgresql":
        numbers = func.generate_series(start, stop - 1).table_valued("n").render_derived(name="seq")
        return numbers, numbers.c.n
    if dialect in ("mysql", "mariadb"):
        # MariaDB's Sequence engine: a virtual table of the integers in its name.
        sequence = table(f"seq_{start}_to_{stop - 1}", column("seq")).alias("seq")
        return sequence, sequence.c.seq
    seq = select(literal(start).label("n")).cte("seq", recursive=True)
    seq = seq.union_all(select(seq.c.n + 1).where(seq.c.n < stop - 1))
    return seq, seq.c.n


def _numbered_id(dialect: str, number: Any) -> Any:
    """The SQL expression of `session_id(number)`."""
    from sqlalchemy import String, Text, cast, func, literal

    if dialect == "sqlite":
        digits = func.printf(f"%0{ID_WIDTH}d", number)
    elif dialect == "postgresql":
        digits = func.lpad(cast(number, Text), ID_WIDTH, "0")
    else:
        digits = func.lpad(number, ID_WIDTH, "0")
    return literal("s", String()).concat(digits)
