"""History backend benchmark: append and read latency against the raw client floor.

For each backend URL and each history length N, a session is filled with N messages of the
shared workload, then we time: appending one message, appending a batch of 10, reading the
last 20, and reading all. In the same run we time the floors: raw redis-py (RPUSH of the same
JSON, LRANGE) for Redis URLs and raw SQLAlchemy Core (one INSERT, an indexed
`SELECT ... LIMIT 20`) for SQL URLs; "read all" floors include `json.loads` of every row.

Run: `python -m benchmarks.history [--url URL ...] [--sizes 100 1000 10000] [--json]`
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from benchmarks._workload import make_conversation
from memweave import ChatMessage
from memweave._codec import encode
from memweave._urls import mask_url
from memweave.providers import ChatHistoryProvider, from_url

__all__ = ["Measurement", "main", "run"]

OPERATIONS = ("append_1", "append_10", "read_last_20", "read_all")


@dataclass
class Measurement:
    """Median and p95 latency, in milliseconds, of one operation at one history length."""

    backend: str
    n: int
    operation: str
    p50_ms: float
    p95_ms: float
    floor_p50_ms: float | None = None
    samples: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


async def _time(action: Callable[[], Awaitable[object]], repeat: int) -> tuple[float, float]:
    samples: list[float] = []
    for _ in range(repeat):
        start = time.perf_counter()
        await action()
        samples.append((time.perf_counter() - start) * 1000)
    samples.sort()
    return statistics.median(samples), samples[min(len(samples) - 1, int(len(samples) * 0.95))]


def _repeats(operation: str, n: int, quick: bool) -> int:
    if operation == "read_all":
        return 3 if quick else max(5, min(50, 200_000 // max(n, 1)))
    if operation == "append_10":
        return 10 if quick else 60
    return 20 if quick else 200


class _Floor:
    """The raw client doing the same storage work with no memweave in between."""

    async def setup(self, rows: Sequence[bytes]) -> None:
        raise NotImplementedError

    async def append(self, row: bytes) -> None:
        raise NotImplementedError

    async def append_batch(self, rows: Sequence[bytes]) -> None:
        raise NotImplementedError

    async def read_last(self, n: int) -> list[bytes]:
        raise NotImplementedError

    async def read_all_decoded(self) -> list[Any]:
        raise NotImplementedError

    async def teardown(self) -> None:
        raise NotImplementedError


class _RedisFloor(_Floor):
    def __init__(self, url: str) -> None:
        import redis.asyncio as redis

        self.client = redis.Redis.from_url(url)
        self.key = f"memweave-bench-raw:{uuid.uuid4().hex}"

    async def setup(self, rows: Sequence[bytes]) -> None:
        await self.client.delete(self.key)
        for start in range(0, len(rows), 1000):
            await self.client.rpush(self.key, *rows[start : start + 1000])

    async def append(self, row: bytes) -> None:
        await self.client.rpush(self.key, row)

    async def append_batch(self, rows: Sequence[bytes]) -> None:
        await self.client.rpush(self.key, *rows)

    async def read_last(self, n: int) -> list[bytes]:
        result: list[bytes] = await self.client.lrange(self.key, -n, -1)
        return result

    async def read_all_decoded(self) -> list[Any]:
        return [json.loads(row) for row in await self.client.lrange(self.key, 0, -1)]

    async def teardown(self) -> None:
        await self.client.delete(self.key)
        await self.client.aclose()


class _SQLFloor(_Floor):
    def __init__(self, url: str) -> None:
        from sqlalchemy import (
            BigInteger,
            Column,
            Index,
            Integer,
            LargeBinary,
            MetaData,
            String,
            Table,
        )
        from sqlalchemy.dialects import mysql
        from sqlalchemy.ext.asyncio import create_async_engine

        self.engine = create_async_engine(url)
        self.metadata = MetaData()
        key_type = BigInteger().with_variant(Integer(), "sqlite")
        self.table = Table(
            f"memweave_bench_raw_{uuid.uuid4().hex[:8]}",
            self.metadata,
            Column("id", key_type, primary_key=True, autoincrement=True),
            Column("session_id", String(255), nullable=False),
            # aiomysql cannot bind bytes with the installed PyMySQL, so MariaDB's floor
            # stores the same JSON as text.
            Column("data", LargeBinary().with_variant(mysql.LONGTEXT(), "mysql", "mariadb")),
        )
        self.as_text = self.engine.dialect.name in ("mysql", "mariadb")
        Index(None, self.table.c.session_id, self.table.c.id)
        self.session = "raw"

    def _row(self, data: bytes) -> dict[str, Any]:
        return {"session_id": self.session, "data": data.decode() if self.as_text else data}

    async def setup(self, rows: Sequence[bytes]) -> None:
        async with self.engine.begin() as conn:
            await conn.run_sync(self.metadata.create_all)
            for start in range(0, len(rows), 1000):
                await conn.execute(
                    self.table.insert(), [self._row(r) for r in rows[start : start + 1000]]
                )

    async def append(self, row: bytes) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(self.table.insert(), self._row(row))

    async def append_batch(self, rows: Sequence[bytes]) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(self.table.insert(), [self._row(r) for r in rows])

    async def read_last(self, n: int) -> list[bytes]:
        query = (
            self.table.select()
            .with_only_columns(self.table.c.data)
            .where(self.table.c.session_id == self.session)
            .order_by(self.table.c.id.desc())
            .limit(n)
        )
        async with self.engine.connect() as conn:
            rows = (await conn.execute(query)).scalars().all()
        return list(reversed(rows))

    async def read_all_decoded(self) -> list[Any]:
        query = (
            self.table.select()
            .with_only_columns(self.table.c.data)
            .where(self.table.c.session_id == self.session)
            .order_by(self.table.c.id)
        )
        async with self.engine.connect() as conn:
            rows = (await conn.execute(query)).scalars().all()
        return [json.loads(row) for row in rows]

    async def teardown(self) -> None:
        async with self.engine.begin() as conn:
            await conn.run_sync(self.metadata.drop_all)
        await self.engine.dispose()


def _floor_for(url: str) -> _Floor | None:
    scheme = url.split("://", 1)[0]
    if scheme in ("redis", "rediss"):
        return _RedisFloor(url)
    if scheme.startswith(("sqlite", "postgresql", "mysql", "mariadb")):
        return _SQLFloor(url)
    return None


def _backend_name(url: str) -> str:
    scheme = url.split("://", 1)[0]
    return {
        "memory": "memory",
        "sqlite+aiosqlite": "sqlite",
        "postgresql+asyncpg": "postgresql",
        "mysql+aiomysql": "mariadb",
        "redis": "redis",
        "redis+cluster": "redis-cluster",
    }.get(scheme, scheme)


async def _bench_size(
    name: str, url: str, history: ChatHistoryProvider, n: int, quick: bool
) -> list[Measurement]:
    session = f"memweave-bench-{uuid.uuid4().hex}"
    base = make_conversation(n, seed=n)
    fresh = iter(_fresh(make_conversation(2000, seed=n + 1)))
    for start in range(0, n, 500):
        await history.add_messages(session, base[start : start + 500])
    floor = _floor_for(url)
    raw_fresh = iter([encode(m) for m in _fresh(make_conversation(2000, seed=n + 2))])
    if floor is not None:
        await floor.setup([encode(m) for m in base])
    ours: dict[str, Callable[[], Awaitable[object]]] = {
        "append_1": lambda: history.add_messages(session, [next(fresh)]),
        "append_10": lambda: history.add_messages(session, [next(fresh) for _ in range(10)]),
        "read_last_20": lambda: history.list_messages(session, limit=20),
        "read_all": lambda: history.list_messages(session),
    }
    raw: dict[str, Callable[[], Awaitable[object]]] = {}
    if floor is not None:
        raw = {
            "append_1": lambda: floor.append(next(raw_fresh)),
            "append_10": lambda: floor.append_batch([next(raw_fresh) for _ in range(10)]),
            "read_last_20": lambda: floor.read_last(20),
            "read_all": floor.read_all_decoded,
        }
    results: list[Measurement] = []
    try:
        # Reads first, so they read exactly N messages; the timed appends then grow it.
        for operation in sorted(OPERATIONS, key=lambda op: not op.startswith("read")):
            repeat = _repeats(operation, n, quick)
            # Each operation is timed right next to its floor, so load on a shared machine
            # hits both alike.
            p50, p95 = await _time(ours[operation], repeat)
            floor_p50 = (await _time(raw[operation], repeat))[0] if operation in raw else None
            results.append(
                Measurement(
                    backend=name,
                    n=n,
                    operation=operation,
                    p50_ms=round(p50, 4),
                    p95_ms=round(p95, 4),
                    floor_p50_ms=None if floor_p50 is None else round(floor_p50, 4),
                    samples=repeat,
                )
            )
    finally:
        await history.clear(session)
        if floor is not None:
            await floor.teardown()
    return sorted(results, key=lambda m: OPERATIONS.index(m.operation))


async def _bench_backend(url: str, sizes: Sequence[int], quick: bool) -> list[Measurement]:
    name = _backend_name(url)
    results: list[Measurement] = []
    history: ChatHistoryProvider = from_url(url)
    try:
        for n in sizes:
            results.extend(await _bench_size(name, url, history, n, quick))
    finally:
        await history.aclose()
    return results


def _fresh(messages: Sequence[ChatMessage]) -> list[ChatMessage]:
    """Copies of `messages` with new ids, so every timed append stores something."""
    return [m.model_copy(update={"id": uuid.uuid4().hex}) for m in messages] * 3


def environment() -> dict[str, Any]:
    """Versions and machine facts recorded with every result."""
    packages = {}
    for package in ("memweave", "sqlalchemy", "redis", "asyncpg", "aiomysql", "aiosqlite"):
        try:
            packages[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            packages[package] = None
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "packages": packages,
    }


async def run(urls: Sequence[str], sizes: Sequence[int], *, quick: bool = False) -> dict[str, Any]:
    """Run the benchmark on every URL and return results plus the environment."""
    results: list[Measurement] = []
    for url in urls:
        results.extend(await _bench_backend(url, sizes, quick))
    return {
        "suite": "history",
        "urls": [mask_url(url) for url in urls],
        "sizes": list(sizes),
        "environment": environment(),
        "results": [asdict(r) for r in results],
    }


def _print_table(report: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="memweave history benchmark (p50 ms; floor = raw client, same run)")
    for column in ("backend", "N", "operation", "memweave p50", "p95", "floor p50", "x floor"):
        left = column in ("backend", "operation")
        table.add_column(column, justify="left" if left else "right")
    for row in report["results"]:
        floor = row["floor_p50_ms"]
        ratio = f"{row['p50_ms'] / floor:.2f}" if floor else "-"
        table.add_row(
            row["backend"],
            str(row["n"]),
            row["operation"],
            f"{row['p50_ms']:.3f}",
            f"{row['p95_ms']:.3f}",
            f"{floor:.3f}" if floor else "-",
            ratio,
        )
    Console().print(table)


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.history", description=__doc__)
    parser.add_argument("--url", action="append", help="backend URL (repeatable)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 1000, 10000])
    parser.add_argument("--quick", action="store_true", help="few repetitions (smoke runs)")
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        urls = args.url or ["memory://", f"sqlite+aiosqlite:///{Path(tmp) / 'bench.db'}"]
        report = asyncio.run(run(urls, args.sizes, quick=args.quick))
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        _print_table(report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
