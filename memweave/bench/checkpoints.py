"""LangGraph checkpointer benchmark: `MemweaveCheckpointSaver` beside LangGraph's own savers.

For each backend and each thread length N (10, 100 and 1,000 checkpoints by default), a thread
is filled with N checkpoints of a chat-like state (a list of five messages, a step counter and
a small dict), each the child of the previous one and carrying two pending writes, as a graph
run leaves them. Then we time, on that thread: `get_tuple` of the latest checkpoint, `list` of
the last 10, `put_writes` of a task's two writes, and `put` of a new checkpoint whose messages
and step changed (each timed put appends one more, so "N" is the length when timing starts).

In the same run, on the same servers, LangGraph's official savers do the same work:
langgraph-checkpoint-sqlite's `AsyncSqliteSaver` on a SQLite file of its own, and
langgraph-checkpoint-postgres's `AsyncPostgresSaver` in a schema created for the run and
dropped afterwards. `x official` is memweave's p50 over the official saver's p50 on the same
database (target: at most 1.2), and `x N=10` a saver's p50 at N over its p50 at the smallest N
(flat in the thread's length: about 1). The savers and sizes of one database are timed
interleaved, call by call, so a busy machine slows them alike. MariaDB and Redis have no
official saver; their rows are absolute. memweave's own tables and keys get a namespace of
their own and are deleted after.

Run: `python -m memweave.bench.checkpoints [--url URL ...] [--sizes 10 100 1000] [--quick] [--json]`
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
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from memweave._urls import mask_url
from memweave.bench._cli import positive_int
from memweave.bench._stats import percentile

__all__ = ["OPERATIONS", "Measurement", "main", "run"]

OPERATIONS = ("get_tuple", "list_10", "put_writes", "put")
PACKAGES = (
    "memweave",
    "langgraph",
    "langgraph-checkpoint",
    "langgraph-checkpoint-sqlite",
    "langgraph-checkpoint-postgres",
    "sqlalchemy",
    "aiosqlite",
    "asyncpg",
    "aiomysql",
    "redis",
    "psycopg",
)
MEMWEAVE = "memweave"
OFFICIAL = {"sqlite": "langgraph-checkpoint-sqlite", "postgres": "langgraph-checkpoint-postgres"}
DEFAULT_POSTGRES = "postgresql+asyncpg://root@127.0.0.1:5432/test"
DEFAULT_MARIADB = "mysql+aiomysql://root@127.0.0.1:3306/test"
DEFAULT_REDIS = "redis://127.0.0.1:6379/0"

Saver = Any  # a langgraph BaseCheckpointSaver; langgraph is imported only when running


@dataclass
class Measurement:
    """One saver's median and p95 latency, in milliseconds, of one operation at one N."""

    backend: str
    saver: str
    n: int
    operation: str
    p50_ms: float
    p95_ms: float
    samples: int
    x_official: float | None = None
    """memweave's p50 over the official saver's on the same database (memweave rows only)."""
    x_smallest_n: float | None = None
    """This p50 over the same saver's p50 at the smallest N (1: flat in thread length)."""


def backend_name(url: str) -> str:
    """`sqlite`, `postgres`, `mariadb` or `redis` for a URL."""
    scheme = url.split("://", 1)[0].lower()
    if scheme.startswith("sqlite"):
        return "sqlite"
    if scheme.startswith("postgres"):
        return "postgres"
    if scheme.startswith(("mysql", "mariadb")):
        return "mariadb"
    return "redis"


def _state(step: int) -> dict[str, Any]:
    messages = [
        {"role": "user" if i % 2 == 0 else "assistant", "content": f"message {step}.{i} " * 8}
        for i in range(5)
    ]
    return {"messages": messages, "step": step, "scratch": {"topic": "billing", "turn": step}}


class _Thread:
    """A thread being filled and timed through one saver: its latest config and versions."""

    def __init__(self, saver: Saver) -> None:
        self.saver = saver
        self.thread_id = f"bench-{uuid.uuid4().hex}"
        self.latest: dict[str, Any] = {
            "configurable": {"thread_id": self.thread_id, "checkpoint_ns": ""}
        }
        self.versions: dict[str, Any] = {}
        self.step = 0
        self.tasks = 0

    async def put(self) -> None:
        from langgraph.checkpoint.base import empty_checkpoint

        changed = ("messages", "step") if self.versions else ("messages", "step", "scratch")
        for channel in changed:
            self.versions[channel] = self.saver.get_next_version(self.versions.get(channel), None)
        checkpoint = empty_checkpoint()
        checkpoint["channel_values"] = _state(self.step)
        checkpoint["channel_versions"] = dict(self.versions)
        metadata = {"source": "loop", "step": self.step, "parents": {}, "run_id": "bench"}
        new_versions = {channel: self.versions[channel] for channel in changed}
        self.latest = await self.saver.aput(self.latest, checkpoint, metadata, new_versions)
        self.step += 1

    async def put_writes(self) -> None:
        self.tasks += 1
        writes = [("messages", {"role": "assistant", "content": "ok"}), ("step", self.step)]
        await self.saver.aput_writes(self.latest, writes, f"task-{self.tasks}", "~0")

    async def fill(self, n: int) -> None:
        for _ in range(n):
            await self.put()
            await self.put_writes()

    async def get_tuple(self) -> None:
        config = {"configurable": {"thread_id": self.thread_id, "checkpoint_ns": ""}}
        if await self.saver.aget_tuple(config) is None:
            raise RuntimeError("the thread's latest checkpoint is missing")

    async def list_10(self) -> None:
        config = {"configurable": {"thread_id": self.thread_id, "checkpoint_ns": ""}}
        found = [t async for t in self.saver.alist(config, limit=10)]
        if len(found) != min(10, self.step):
            raise RuntimeError(f"listed {len(found)} checkpoints, not 10")


async def _time(action: Callable[[], Awaitable[None]], repeat: int) -> list[float]:
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        await action()
        samples.append((time.perf_counter() - start) * 1000)
    return samples


# -- the savers ---------------------------------------------------------------------------------


@asynccontextmanager
async def _memweave(url: str) -> AsyncIterator[Saver]:
    from memweave.integrations.langgraph import MemweaveCheckpointSaver

    namespace = f"mwbench_{uuid.uuid4().hex[:8]}"
    saver = MemweaveCheckpointSaver.from_url(url, namespace=namespace)
    try:
        yield saver
    finally:
        await saver.aclose()
        await _drop_memweave(url, namespace)


async def _drop_memweave(url: str, namespace: str) -> None:
    """Delete the tables or keys of the run's namespace (nothing else)."""
    if backend_name(url) == "redis":
        from memweave.providers.redis import client_from_url

        client = client_from_url(url)
        try:
            async for key in client.scan_iter(match=f"{namespace}:*", count=1000):
                await client.delete(key)
        finally:
            await client.aclose()
        return
    if backend_name(url) == "sqlite":
        return  # the file lives in the run's temporary folder
    from sqlalchemy.ext.asyncio import create_async_engine

    from memweave.integrations.langgraph._saver_sql_schema import saver_tables

    engine = create_async_engine(url)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(saver_tables(f"{namespace}_").metadata.drop_all)
    finally:
        await engine.dispose()


@asynccontextmanager
async def _official_sqlite(folder: Path) -> AsyncIterator[Saver]:
    from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

    path = folder / f"official-{uuid.uuid4().hex[:8]}.db"
    async with AsyncSqliteSaver.from_conn_string(str(path)) as saver:
        await saver.setup()
        yield saver


@asynccontextmanager
async def _official_postgres(url: str) -> AsyncIterator[Saver]:
    """`AsyncPostgresSaver` in a schema of its own, dropped afterwards."""
    import psycopg
    from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
    from sqlalchemy.engine import make_url

    parsed = make_url(url).set(drivername="postgresql")
    conninfo = parsed.render_as_string(hide_password=False)
    schema = f"lgbench_{uuid.uuid4().hex[:8]}"
    async with await psycopg.AsyncConnection.connect(conninfo, autocommit=True) as admin:
        await admin.execute(f'CREATE SCHEMA "{schema}"')
        try:
            scoped = f"{conninfo}?options=-csearch_path%3D{schema}"
            async with AsyncPostgresSaver.from_conn_string(scoped) as saver:
                await saver.setup()
                yield saver
        finally:
            await admin.execute(f'DROP SCHEMA "{schema}" CASCADE')


def _subjects(
    url: str, folder: Path, peers: bool
) -> list[tuple[str, Callable[[], AbstractAsyncContextManager[Saver]]]]:
    found: list[tuple[str, Callable[[], AbstractAsyncContextManager[Saver]]]] = [
        (MEMWEAVE, lambda: _memweave(url))
    ]
    backend = backend_name(url)
    if peers and backend == "sqlite":
        found.append((OFFICIAL[backend], lambda: _official_sqlite(folder)))
    elif peers and backend == "postgres":
        found.append((OFFICIAL[backend], lambda: _official_postgres(url)))
    return found


# -- running ------------------------------------------------------------------------------------


async def _bench_backend(
    backend: str, savers: dict[str, Saver], sizes: Sequence[int], repeat: int
) -> list[Measurement]:
    """Time every saver of one backend at every N, interleaved call by call, so that a busy
    machine slows all of them alike (the ratios and the flatness are from the same moments)."""
    threads = {(name, n): _Thread(saver) for name, saver in savers.items() for n in sizes}
    for (_, n), thread in threads.items():
        await thread.fill(n)
    results = []
    for operation in OPERATIONS:
        samples: dict[tuple[str, int], list[float]] = {key: [] for key in threads}
        for thread in threads.values():
            await getattr(thread, operation)()  # warm: statements prepared
        for _ in range(repeat):
            for key, thread in threads.items():
                samples[key] += await _time(getattr(thread, operation), 1)
        for (name, n), found in samples.items():
            found.sort()
            results.append(
                Measurement(
                    backend,
                    name,
                    n,
                    operation,
                    round(statistics.median(found), 4),
                    round(percentile(found, 0.95), 4),
                    len(found),
                )
            )
    return results


def _ratios(results: list[Measurement]) -> None:
    """Fill in `x_official` and `x_smallest_n`."""
    by_key = {(m.backend, m.saver, m.n, m.operation): m for m in results}
    smallest: dict[tuple[str, str, str], Measurement] = {}
    for m in sorted(results, key=lambda m: m.n):
        smallest.setdefault((m.backend, m.saver, m.operation), m)
    for m in results:
        base = smallest[(m.backend, m.saver, m.operation)]
        if base.p50_ms > 0:
            m.x_smallest_n = round(m.p50_ms / base.p50_ms, 2)
        official = OFFICIAL.get(m.backend)
        peer = by_key.get((m.backend, official or "", m.n, m.operation))
        if m.saver == MEMWEAVE and peer is not None and peer.p50_ms > 0:
            m.x_official = round(m.p50_ms / peer.p50_ms, 2)


def environment() -> dict[str, Any]:
    """Versions and machine facts recorded with every result."""

    def version(package: str) -> str | None:
        try:
            return metadata.version(package)
        except metadata.PackageNotFoundError:
            return None

    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "packages": {package: version(package) for package in PACKAGES},
    }


async def run(
    urls: Sequence[str],
    sizes: Sequence[int],
    *,
    quick: bool = False,
    peers: bool = True,
    folder: Path | None = None,
) -> dict[str, Any]:
    """Run the benchmark on every URL (with the official savers on SQLite and PostgreSQL
    unless `peers` is false) and return the results with the environment."""
    repeat = 10 if quick else 200
    results: list[Measurement] = []
    with tempfile.TemporaryDirectory() as tmp:
        where = folder or Path(tmp)
        for url in urls:
            async with AsyncExitStack() as stack:
                savers = {
                    name: await stack.enter_async_context(open_saver())
                    for name, open_saver in _subjects(url, where, peers)
                }
                results += await _bench_backend(backend_name(url), savers, sizes, repeat)
    _ratios(results)
    return {
        "suite": "checkpoints",
        "urls": [mask_url(url) for url in urls],
        "sizes": list(sizes),
        "repeat": repeat,
        "environment": environment(),
        "results": [asdict(m) for m in results],
    }


def default_urls(folder: Path) -> list[str]:
    """A SQLite file in `folder`, and the servers `MEMWEAVE_BENCH_*_URL` name (by default the
    local PostgreSQL, MariaDB and Redis); `none` leaves one out."""
    urls = [f"sqlite+aiosqlite:///{folder / 'memweave-lg.db'}"]
    for variable, default in (
        ("MEMWEAVE_BENCH_POSTGRES_URL", DEFAULT_POSTGRES),
        ("MEMWEAVE_BENCH_MYSQL_URL", DEFAULT_MARIADB),
        ("MEMWEAVE_BENCH_REDIS_URL", DEFAULT_REDIS),
    ):
        url = os.environ.get(variable, default)
        if url != "none":
            urls.append(url)
    return urls


def print_table(report: dict[str, Any]) -> None:
    """Print the results as a table."""
    from rich.console import Console
    from rich.table import Table

    console = Console(width=None if sys.stdout.isatty() else 120)
    table = Table(
        title="LangGraph checkpointers (p50 ms, same run; x official = memweave / official)"
    )
    for column in ("backend", "saver", "N", "operation", "p50", "p95", "x official", "x N=min"):
        left = column in ("backend", "saver", "operation")
        table.add_column(column, justify="left" if left else "right")
    for row in report["results"]:
        table.add_row(
            row["backend"],
            row["saver"],
            str(row["n"]),
            row["operation"],
            f"{row['p50_ms']:.3f}",
            f"{row['p95_ms']:.3f}",
            "-" if row["x_official"] is None else f"{row['x_official']:.2f}",
            "-" if row["x_smallest_n"] is None else f"{row['x_smallest_n']:.2f}",
        )
    console.print(table)


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(
        prog="python -m memweave.bench.checkpoints", description=__doc__
    )
    parser.add_argument("--url", action="append", help="memweave backend URL (repeatable)")
    parser.add_argument("--sizes", type=positive_int, nargs="+", default=[10, 100, 1000])
    parser.add_argument("--quick", action="store_true", help="few repetitions (smoke runs)")
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    parser.add_argument("--no-peers", action="store_true", help="skip LangGraph's own savers")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        urls = args.url or default_urls(Path(tmp))
        report = asyncio.run(
            run(urls, args.sizes, quick=args.quick, peers=not args.no_peers, folder=Path(tmp))
        )
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print_table(report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
