"""The happy-path cost of timeouts and retries, for the history benchmark (issue 13's target:
at most 3% on append_1, measured in the same run).

For each backend, two providers on the same store: one with the defaults (`timeout=10`,
`retries=3`: each round of storage work under `asyncio.timeout`, the retry policy armed) and
one with `timeout=None, retries=0`, which runs no wrapper at all. Their `add_messages` of one
message (append_1) are timed in pairs, one call each, alternating which goes first, so load
on a shared machine hits both alike; `overhead_pct` is the median of the paired differences
over the bare p50.

On PostgreSQL and MariaDB, the other way to survive connections the server killed while idle
is timed too: `pool_pre_ping`, which pings each connection as it leaves the pool. It is timed
on raw SQLAlchemy inserts (with and without it, paired the same way) and shown as a share of
memweave's append_1; memweave instead reruns a transaction whose connection turned out dead
before the commit, which costs nothing when no connection died.
"""

from __future__ import annotations

import statistics
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from memweave import ChatMessage
from memweave.providers import from_url

__all__ = ["TARGET_PCT", "OverheadMeasurement", "bench_overhead", "print_overhead"]

TARGET_PCT = 3.0
"""Issue 13's bound on the wrapper's cost on append_1, in percent."""
_WARMUP = 10


@dataclass
class OverheadMeasurement:
    """append_1 with a safety feature on and off, in the same run, in ms."""

    backend: str
    variant: str
    """`timeout+retries` (memweave's defaults vs `timeout=None, retries=0`) or
    `pool_pre_ping` (raw SQLAlchemy inserts with and without it)."""
    p50_ms: float
    """p50 with the feature on."""
    bare_p50_ms: float
    """p50 with it off."""
    overhead_us: float
    """Median of the paired differences (on minus off), in microseconds."""
    overhead_pct: float
    """`overhead_us` as a share of memweave's append_1 p50 without the wrapper."""
    samples: int
    """Pairs timed."""
    within_target: bool
    """Whether `overhead_pct` <= 3 (only `timeout+retries` has that target)."""


async def _paired(
    on: Callable[[], Awaitable[object]], off: Callable[[], Awaitable[object]], repeat: int
) -> tuple[list[float], list[float]]:
    for _ in range(_WARMUP):
        await on()
        await off()
    ons: list[float] = []
    offs: list[float] = []
    for i in range(repeat):
        order = ((on, ons), (off, offs)) if i % 2 == 0 else ((off, offs), (on, ons))
        for action, samples in order:
            start = time.perf_counter()
            await action()
            samples.append((time.perf_counter() - start) * 1000)
    return ons, offs


def _row(
    backend: str, variant: str, ons: list[float], offs: list[float], base_ms: float
) -> OverheadMeasurement:
    diff_us = statistics.median(a - b for a, b in zip(ons, offs, strict=True)) * 1000
    pct = diff_us / (base_ms * 1000) * 100 if base_ms > 0 else 0.0
    return OverheadMeasurement(
        backend=backend,
        variant=variant,
        p50_ms=round(statistics.median(ons), 4),
        bare_p50_ms=round(statistics.median(offs), 4),
        overhead_us=round(diff_us, 2),
        overhead_pct=round(pct, 2),
        samples=len(ons),
        within_target=variant != "timeout+retries" or pct <= TARGET_PCT,
    )


async def bench_overhead(backend: str, url: str, repeat: int) -> list[OverheadMeasurement]:
    """Time append_1 with memweave's timeout and retry wrapper on and off (and, on SQL
    servers, `pool_pre_ping` on raw inserts) in the same run."""
    wrapped = from_url(url)
    bare = from_url(url, timeout=None, retries=0)
    sessions = (f"memweave-bench-oh-{uuid.uuid4().hex}", f"memweave-bench-oh-{uuid.uuid4().hex}")
    try:
        ons, offs = await _paired(
            lambda: wrapped.add_messages(sessions[0], [ChatMessage.user("overhead")]),
            lambda: bare.add_messages(sessions[1], [ChatMessage.user("overhead")]),
            repeat,
        )
        rows = [_row(backend, "timeout+retries", ons, offs, statistics.median(offs))]
        if url.split("://", 1)[0].split("+")[0] in ("postgresql", "mysql", "mariadb"):
            ping_on, ping_off = await _pre_ping(url, repeat)
            rows.append(_row(backend, "pool_pre_ping", ping_on, ping_off, statistics.median(offs)))
        return rows
    finally:
        for history, session in zip((wrapped, bare), sessions, strict=True):
            await history.clear(session)
            await history.aclose()


async def _pre_ping(url: str, repeat: int) -> tuple[list[float], list[float]]:
    """One-row inserts through two raw engines, one with `pool_pre_ping`; paired timings."""
    from sqlalchemy import BigInteger, Column, MetaData, Table, Text
    from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

    from memweave.providers._resilience import DEFAULT_RETRIES, DEFAULT_TIMEOUT, resolve_options

    url, _, _ = resolve_options(url, DEFAULT_TIMEOUT, DEFAULT_RETRIES)
    metadata = MetaData()
    table = Table(
        f"memweave_bench_ping_{uuid.uuid4().hex[:8]}",
        metadata,
        Column("id", BigInteger(), primary_key=True, autoincrement=True),
        # Text, as the history floor's: aiomysql cannot bind bytes with the installed PyMySQL.
        Column("data", Text()),
    )
    pinged = create_async_engine(url, pool_pre_ping=True)
    plain = create_async_engine(url)

    def insert(engine: AsyncEngine) -> Callable[[], Awaitable[Any]]:
        async def run() -> None:
            async with engine.begin() as conn:
                await conn.execute(table.insert(), {"data": '{"role": "user"}'})

        return run

    try:
        async with plain.begin() as conn:
            await conn.run_sync(metadata.create_all)
        return await _paired(insert(pinged), insert(plain), repeat)
    finally:
        async with plain.begin() as conn:
            await conn.run_sync(metadata.drop_all)
        await pinged.dispose()
        await plain.dispose()


def print_overhead(console: Any, rows: list[dict[str, Any]]) -> None:
    """Print the rows as a table on a `rich` console."""
    from rich.table import Table

    if not rows:
        return
    table = Table(
        title="append_1 with timeout+retries (defaults) vs without, and pool_pre_ping, same "
        f"run (target: timeout+retries <= {TARGET_PCT:g}%)"
    )
    for column in ("backend", "variant", "on p50", "off p50", "+us", "+%", "pairs", "target"):
        table.add_column(column, justify="left" if column in ("backend", "variant") else "right")
    for row in rows:
        target = "met" if row["within_target"] else "MISSED"
        table.add_row(
            row["backend"],
            row["variant"],
            f"{row['p50_ms']:.3f}",
            f"{row['bare_p50_ms']:.3f}",
            f"{row['overhead_us']:.1f}",
            f"{row['overhead_pct']:.2f}",
            str(row["samples"]),
            target if row["variant"] == "timeout+retries" else "-",
        )
    console.print(table)
