"""History backend benchmark: append and read latency against the raw client floor and peers.

For each backend URL and each history length N, a session is filled with N messages of the
shared workload, then we time: appending one message, appending a batch of 10, reading the
last 20, and reading all. In the same run we time the floors: raw redis-py (RPUSH of the same
JSON, LRANGE) for Redis URLs and raw SQLAlchemy Core (one INSERT, an indexed
`SELECT ... LIMIT 20`) for SQL URLs; "read all" floors include `json.loads` of every row.

Beside them, when the `peers` extra is installed, we time the stores users compare memweave
with (`memweave.bench._history_peers`): Agent Framework's `RedisHistoryProvider` and LangChain's
`RedisChatMessageHistory` on Redis URLs, LangChain's `SQLChatMessageHistory` on SQL URLs. Each
runs on the same server through its own public async API, on a fresh session of the same
messages (converted before timing) that it deletes afterwards. None of them can read only the
last messages, so their "read last 20" reads the whole session and keeps the last 20, as each
row's `note` says. A slow peer stops after a few seconds per operation (at least 3 calls), and
`samples` says how many calls it made. A peer that is not installed is skipped, and the output
says so in one line.

Beside the async calls, the blocking face (`memweave.sync`) is timed on `add_messages` and a
windowed read (`list_messages(reducer=TokenBudgetReducer(8000))`), in the same run, against
issue 12's target: blocking p50 <= 1.3 x async p50 + 50 microseconds (`sync_face` in the JSON;
see `memweave.bench._history_faces`).

The default timeout and retry wrapper is timed on append_1 against the same provider built with
`timeout=None, retries=0` (no wrapper), in pairs in the same run, against issue 13's target of
at most 3% (`retry_overhead` in the JSON); on PostgreSQL and MariaDB, `pool_pre_ping` is timed
beside it (see `memweave.bench._history_overhead`).

Run: `python -m memweave.bench.history [--url URL ...] [--sizes 100 1000 10000] [--json]
[--no-peers]`
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
from pathlib import Path
from typing import Any, cast

from memweave import ChatMessage
from memweave._codec import encode
from memweave._urls import mask_url
from memweave.bench._env import package_version
from memweave.bench._history_faces import FaceMeasurement, bench_faces, print_faces
from memweave.bench._history_overhead import OverheadMeasurement, bench_overhead, print_overhead
from memweave.bench._history_peers import PEERS, Peer, load_peers, storage_kind
from memweave.bench._stats import percentile
from memweave.bench._workload import make_conversation
from memweave.providers import ChatHistoryProvider, from_url

__all__ = ["Measurement", "PeerMeasurement", "main", "run"]

OPERATIONS = ("append_1", "append_10", "read_last_20", "read_all")
PEER_PACKAGES = (
    "langchain-core",
    "langchain-community",
    "agent-framework-core",
    "agent-framework-redis",
)


@dataclass
class PeerMeasurement:
    """One peer's median and p95 latency, in milliseconds, beside memweave's in the same row."""

    peer: str
    p50_ms: float
    p95_ms: float
    samples: int
    ratio_to_memweave: float | None
    """The peer's p50 divided by memweave's p50: above 1, the peer is slower."""
    ratio_to_memweave_p95: float | None
    """The same for p95."""
    note: str | None = None
    """How the peer's call differs from memweave's, such as reading everything to get 20."""


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
    peers: list[PeerMeasurement] = field(default_factory=list)
    """The peers timed beside memweave on this operation at this N; empty without them."""


async def _samples(
    action: Callable[[], Awaitable[object]], repeat: int, budget_s: float | None = None
) -> list[float]:
    """Time `action` `repeat` times, or fewer (at least 3) once `budget_s` seconds are spent."""
    samples: list[float] = []
    deadline = None if budget_s is None else time.perf_counter() + budget_s
    for _ in range(repeat):
        start = time.perf_counter()
        await action()
        samples.append((time.perf_counter() - start) * 1000)
        if deadline is not None and len(samples) >= 3 and time.perf_counter() > deadline:
            break
    return sorted(samples)


def _p50_p95(samples: list[float]) -> tuple[float, float]:
    return statistics.median(samples), percentile(samples, 0.95)


async def _time(action: Callable[[], Awaitable[object]], repeat: int) -> tuple[float, float]:
    return _p50_p95(await _samples(action, repeat))


# Pairs of append_1 calls timed for the wrapper's overhead (keyed by `quick`).
_OVERHEAD_PAIRS = {False: 1000, True: 30}
# Seconds a peer may spend on one operation at one N (keyed by `quick`) before it stops early.
_PEER_BUDGET_S = {False: 5.0, True: 0.5}


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
        # The client is built without decode_responses, so rows are bytes.
        return cast("list[bytes]", await self.client.lrange(self.key, -n, -1))

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
    kind = storage_kind(url)
    if kind == "redis":
        return _RedisFloor(url)
    if kind == "sql":
        return _SQLFloor(url)
    return None


def _peers_for(url: str) -> tuple[list[Peer], list[dict[str, Any]]]:
    """Fresh peers for `url`, and one status entry for each peer its kind of storage has."""
    peers, skipped = load_peers(url)
    statuses = [_peer_status(url, type(peer), "measured", None, list(peer.notes)) for peer in peers]
    statuses += [_peer_status(url, cls, "skipped", why, []) for cls, why in skipped.items()]
    order = [cls.name for cls in PEERS.get(storage_kind(url) or "", ())]
    return peers, sorted(statuses, key=lambda status: order.index(status["peer"]))


def _peer_status(
    url: str, cls: type[Peer], status: str, reason: str | None, notes: list[str]
) -> dict[str, Any]:
    return {
        "backend": _backend_name(url),
        "url": mask_url(url),
        "peer": cls.name,
        "package": cls.package,
        "version": package_version(cls.package),
        "status": status,
        "reason": reason,
        "notes": notes,
    }


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
    name: str,
    url: str,
    history: ChatHistoryProvider,
    n: int,
    quick: bool,
    peers: Sequence[Peer] = (),
) -> list[Measurement]:
    session = f"memweave-bench-{uuid.uuid4().hex}"
    base = make_conversation(n, seed=n)
    fresh_messages = _fresh(make_conversation(2000, seed=n + 1))
    fresh = iter(fresh_messages)
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
        actions = {}
        for peer in peers:
            actions[peer] = await _peer_actions(peer, base, fresh_messages, n, quick)
        # Reads first, so they read exactly N messages; the timed appends then grow it.
        for operation in sorted(OPERATIONS, key=lambda op: not op.startswith("read")):
            repeat = _repeats(operation, n, quick)
            # Each operation is timed right next to its floor and peers, so load on a shared
            # machine hits them alike.
            p50, p95 = await _time(ours[operation], repeat)
            floor_p50 = (await _time(raw[operation], repeat))[0] if operation in raw else None
            measured = []
            for peer in peers:
                # A peer may be far slower (an append that reads the whole session), so it
                # stops early once its time budget is spent; `samples` says how many it took.
                samples = await _samples(actions[peer][operation], repeat, _PEER_BUDGET_S[quick])
                measured.append(_peer_measurement(peer, operation, samples, p50, p95))
            results.append(
                Measurement(
                    backend=name,
                    n=n,
                    operation=operation,
                    p50_ms=round(p50, 4),
                    p95_ms=round(p95, 4),
                    floor_p50_ms=None if floor_p50 is None else round(floor_p50, 4),
                    samples=repeat,
                    peers=measured,
                )
            )
    finally:
        await history.clear(session)
        if floor is not None:
            await floor.teardown()
        for peer in peers:
            await peer.teardown()
    return sorted(results, key=lambda m: OPERATIONS.index(m.operation))


async def _peer_actions(
    peer: Peer, base: Sequence[ChatMessage], fresh: Sequence[ChatMessage], n: int, quick: bool
) -> dict[str, Callable[[], Awaitable[object]]]:
    """Fill the peer's session with `base`; its timed calls, on messages converted beforehand.

    The appends take the same fresh messages, in the same order, as memweave's appends.
    """
    for start in range(0, n, 1000):
        await peer.append(peer.convert(base[start : start + 1000]))
    stored = len(await peer.read_all())
    if stored != n:
        raise RuntimeError(f"{peer.name} holds {stored} messages after storing {n}")
    ones = _repeats("append_1", n, quick)
    tens = _repeats("append_10", n, quick)
    singles = iter([peer.convert([m]) for m in fresh[:ones]])
    batches = iter([peer.convert(fresh[at : at + 10]) for at in range(ones, ones + 10 * tens, 10)])
    return {
        "append_1": lambda: peer.append(next(singles)),
        "append_10": lambda: peer.append(next(batches)),
        "read_last_20": lambda: peer.read_last(20),
        "read_all": peer.read_all,
    }


def _peer_measurement(
    peer: Peer, operation: str, samples: list[float], p50: float, p95: float
) -> PeerMeasurement:
    peer_p50, peer_p95 = _p50_p95(samples)
    return PeerMeasurement(
        peer=peer.name,
        p50_ms=round(peer_p50, 4),
        p95_ms=round(peer_p95, 4),
        samples=len(samples),
        ratio_to_memweave=round(peer_p50 / p50, 2) if p50 > 0 else None,
        ratio_to_memweave_p95=round(peer_p95 / p95, 2) if p95 > 0 else None,
        note=peer.operation_notes.get(operation),
    )


async def _bench_backend(
    url: str, sizes: Sequence[int], quick: bool, peers: bool = True
) -> tuple[
    list[Measurement], list[dict[str, Any]], list[FaceMeasurement], list[OverheadMeasurement]
]:
    name = _backend_name(url)
    results: list[Measurement] = []
    faces: list[FaceMeasurement] = []
    statuses: list[dict[str, Any]] = []
    if not peers:
        statuses = [
            _peer_status(url, cls, "skipped", "--no-peers", [])
            for cls in PEERS.get(storage_kind(url) or "", ())
        ]
    history: ChatHistoryProvider = from_url(url)
    try:
        for n in sizes:
            chosen: list[Peer] = []
            if peers:
                chosen, statuses = _peers_for(url)
            results.extend(await _bench_size(name, url, history, n, quick, chosen))
            repeat = _repeats("append_1", n, quick)
            faces.extend(await bench_faces(name, url, history, n, repeat))
    finally:
        await history.aclose()
    overhead = await bench_overhead(name, url, _OVERHEAD_PAIRS[quick])
    return results, statuses, faces, overhead


def _fresh(messages: Sequence[ChatMessage]) -> list[ChatMessage]:
    """Copies of `messages` with new ids, so every timed append stores something."""
    return [m.model_copy(update={"id": uuid.uuid4().hex}) for m in messages] * 3


def environment() -> dict[str, Any]:
    """Versions and machine facts recorded with every result."""
    names = ("memweave", "sqlalchemy", "redis", "asyncpg", "aiomysql", "aiosqlite", *PEER_PACKAGES)
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "packages": {package: package_version(package) for package in names},
    }


async def run(
    urls: Sequence[str], sizes: Sequence[int], *, quick: bool = False, peers: bool = True
) -> dict[str, Any]:
    """Run the benchmark on every URL and return results plus the environment.

    Each result row's `peers` holds the peers measured beside memweave in that row; the
    top-level `peers` lists, per backend, every peer it has and whether it was measured or
    skipped (and why). `sync_face` holds the blocking face's calls beside the async ones;
    `retry_overhead` the cost of the timeout and retry wrapper on append_1.
    """
    results: list[Measurement] = []
    statuses: list[dict[str, Any]] = []
    faces: list[FaceMeasurement] = []
    overhead: list[OverheadMeasurement] = []
    for url in urls:
        measured, status, face, costs = await _bench_backend(url, sizes, quick, peers)
        results.extend(measured)
        statuses.extend(status)
        faces.extend(face)
        overhead.extend(costs)
    return {
        "suite": "history",
        "urls": [mask_url(url) for url in urls],
        "sizes": list(sizes),
        "environment": environment(),
        "results": [asdict(r) for r in results],
        "peers": statuses,
        "sync_face": [asdict(f) for f in faces],
        "retry_overhead": [asdict(o) for o in overhead],
    }


def _print_table(report: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    # Piped output (a file, a CI log) gets room for the peer table's columns.
    console = Console(width=None if sys.stdout.isatty() else 120)
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
    console.print(table)
    rows = [(row, peer) for row in report["results"] for peer in row.get("peers", [])]
    labels = {cls.name: cls.short for classes in PEERS.values() for cls in classes}
    if rows:
        peers = Table(title="peers, same run and workload (x memweave = peer p50 / memweave p50)")
        for column in ("backend", "N", "operation", "peer", "p50", "p95", "runs", "x memweave"):
            left = column in ("backend", "operation", "peer")
            peers.add_column(column, justify="left" if left else "right")
        peers.add_column("note")
        for row, peer in rows:
            ratio = peer["ratio_to_memweave"]
            peers.add_row(
                row["backend"],
                str(row["n"]),
                row["operation"],
                labels.get(peer["peer"], peer["peer"]),
                f"{peer['p50_ms']:.3f}",
                f"{peer['p95_ms']:.3f}",
                str(peer["samples"]),
                "-" if ratio is None else f"{ratio:.2f}",
                peer["note"] or "",
            )
        console.print(peers)
    print_faces(console, report.get("sync_face", []))
    print_overhead(console, report.get("retry_overhead", []))
    for status in report.get("peers", []):
        if status["status"] == "measured":
            notes = "; ".join(status["notes"])
            console.print(f"peer {status['peer']} on {status['backend']}: {notes}", soft_wrap=True)
        else:
            console.print(
                f"peer skipped: {status['peer']} on {status['backend']}: {status['reason']}",
                soft_wrap=True,
            )


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(prog="python -m memweave.bench.history", description=__doc__)
    parser.add_argument("--url", action="append", help="backend URL (repeatable)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 1000, 10000])
    parser.add_argument("--quick", action="store_true", help="few repetitions (smoke runs)")
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    parser.add_argument(
        "--no-peers", action="store_true", help="skip the peers even when they are installed"
    )
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        urls = args.url or ["memory://", f"sqlite+aiosqlite:///{Path(tmp) / 'bench.db'}"]
        report = asyncio.run(run(urls, args.sizes, quick=args.quick, peers=not args.no_peers))
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        _print_table(report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
