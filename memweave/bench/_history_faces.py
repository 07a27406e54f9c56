"""The blocking face beside the async API, for the history benchmark.

`add_messages` of one message and a windowed read (`list_messages(reducer=
TokenBudgetReducer(8000))`) are timed through the async provider and through the blocking face
(`memweave.sync`, whose calls run on its portal loop), on two sessions holding the same N
messages, in alternating blocks of calls so that load on a shared machine hits both alike.
Issue 12's target: the blocking call's p50 is at most 1.3 times the async call's p50 plus 50
microseconds.
"""

from __future__ import annotations

import asyncio
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from memweave import ChatMessage, sync
from memweave.bench._stats import percentile
from memweave.bench._workload import make_conversation
from memweave.providers import ChatHistoryProvider
from memweave.reducers import TokenBudgetReducer

__all__ = [
    "FACE_OPERATIONS",
    "TARGET_OVERHEAD_MS",
    "TARGET_RATIO",
    "WINDOW_TOKENS",
    "FaceMeasurement",
    "bench_faces",
    "print_faces",
]

FACE_OPERATIONS = ("add_messages", "read_window")
WINDOW_TOKENS = 8000
"""The token budget of the windowed read."""
TARGET_RATIO = 1.3
TARGET_OVERHEAD_MS = 0.05
_BLOCK = 10
"""Calls per face before switching to the other."""


@dataclass
class FaceMeasurement:
    """One call timed through the async API and the blocking face, in ms, in the same run."""

    backend: str
    n: int
    operation: str
    """`add_messages` (one message) or `read_window` (`TokenBudgetReducer(8000)`'s window)."""
    async_p50_ms: float
    async_p95_ms: float
    sync_p50_ms: float
    sync_p95_ms: float
    samples: int
    """Calls timed per face."""
    sync_overhead_us: float
    """Blocking p50 minus async p50, in microseconds."""
    within_target: bool
    """Whether blocking p50 <= 1.3 x async p50 + 50 microseconds."""


async def _timed(action: Callable[[], Awaitable[object]], repeat: int) -> list[float]:
    samples: list[float] = []
    for _ in range(repeat):
        start = time.perf_counter()
        await action()
        samples.append((time.perf_counter() - start) * 1000)
    return samples


def _timed_blocking(action: Callable[[], object], repeat: int) -> list[float]:
    samples: list[float] = []
    for _ in range(repeat):
        start = time.perf_counter()
        action()
        samples.append((time.perf_counter() - start) * 1000)
    return samples


async def _paired(
    on_loop: Callable[[], Awaitable[object]], blocking: Callable[[], object], repeat: int
) -> tuple[list[float], list[float]]:
    """Time both faces `repeat` times each, alternating blocks of calls. The blocking calls
    run in a worker thread (a thread without an event loop, as in a WSGI server)."""
    ours: list[float] = []
    theirs: list[float] = []
    while len(ours) < repeat:
        size = min(_BLOCK, repeat - len(ours))
        ours += await _timed(on_loop, size)
        theirs += await asyncio.to_thread(_timed_blocking, blocking, size)
    return ours, theirs


def _fresh(n: int, seed: int) -> list[ChatMessage]:
    return [m.model_copy(update={"id": uuid.uuid4().hex}) for m in make_conversation(n, seed=seed)]


def _fill_blocking(
    history: sync.ChatHistoryProvider, session: str, messages: Sequence[ChatMessage]
) -> None:
    for start in range(0, len(messages), 500):
        history.add_messages(session, messages[start : start + 500])


def _close_blocking(history: sync.ChatHistoryProvider, session: str) -> None:
    try:
        history.clear(session)
    finally:
        history.close()


async def bench_faces(
    name: str, url: str, history: ChatHistoryProvider, n: int, repeat: int
) -> list[FaceMeasurement]:
    """Time the two calls through `history` and through a blocking provider of `url`, each on
    a fresh session of the same `n` messages (deleted afterwards)."""
    base = make_conversation(n, seed=n)
    session, blocking_session = (f"memweave-bench-{uuid.uuid4().hex}" for _ in range(2))
    blocking = await asyncio.to_thread(sync.from_url, url)
    try:
        for start in range(0, n, 500):
            await history.add_messages(session, base[start : start + 500])
        await asyncio.to_thread(_fill_blocking, blocking, blocking_session, base)
        fresh = iter(_fresh(repeat + 1, seed=n + 3))
        fresh_blocking = iter(_fresh(repeat + 1, seed=n + 3))
        window = TokenBudgetReducer(WINDOW_TOKENS)
        blocking_window = TokenBudgetReducer(WINDOW_TOKENS)
        calls: dict[str, tuple[Callable[[], Awaitable[object]], Callable[[], object]]] = {
            "read_window": (
                lambda: history.list_messages(session, reducer=window),
                lambda: blocking.list_messages(blocking_session, reducer=blocking_window),
            ),
            "add_messages": (
                lambda: history.add_messages(session, [next(fresh)]),
                lambda: blocking.add_messages(blocking_session, [next(fresh_blocking)]),
            ),
        }
        results: list[FaceMeasurement] = []
        # The read first, so it reads N messages; one untimed call each warms the reducers'
        # token counts and the portal.
        for operation in ("read_window", "add_messages"):
            on_loop, blocked = calls[operation]
            await on_loop()
            await asyncio.to_thread(blocked)
            ours, theirs = await _paired(on_loop, blocked, repeat)
            results.append(_measurement(name, n, operation, ours, theirs))
    finally:
        try:
            await history.clear(session)
        finally:
            await asyncio.to_thread(_close_blocking, blocking, blocking_session)
    return sorted(results, key=lambda m: FACE_OPERATIONS.index(m.operation))


def _measurement(
    name: str, n: int, operation: str, ours: list[float], theirs: list[float]
) -> FaceMeasurement:
    async_p50, sync_p50 = statistics.median(ours), statistics.median(theirs)
    return FaceMeasurement(
        backend=name,
        n=n,
        operation=operation,
        async_p50_ms=round(async_p50, 4),
        async_p95_ms=round(percentile(ours, 0.95), 4),
        sync_p50_ms=round(sync_p50, 4),
        sync_p95_ms=round(percentile(theirs, 0.95), 4),
        samples=len(ours),
        sync_overhead_us=round((sync_p50 - async_p50) * 1000, 1),
        within_target=sync_p50 <= TARGET_RATIO * async_p50 + TARGET_OVERHEAD_MS,
    )


def print_faces(console: Any, rows: Sequence[dict[str, Any]]) -> None:
    """Print the rows (`FaceMeasurement`s as dicts) as a table on a rich `console`."""
    from rich.table import Table

    if not rows:
        return
    table = Table(
        title=(
            "blocking face (memweave.sync) vs async, p50 ms, same run; "
            f"target: sync <= {TARGET_RATIO}x async + {TARGET_OVERHEAD_MS * 1000:.0f} us"
        )
    )
    columns = ("backend", "N", "call", "async p50", "sync p50", "sync p95", "+us", "x", "target")
    for column in columns:
        table.add_column(column, justify="left" if column in ("backend", "call") else "right")
    for row in rows:
        ratio = row["sync_p50_ms"] / row["async_p50_ms"] if row["async_p50_ms"] else 0.0
        table.add_row(
            row["backend"],
            str(row["n"]),
            row["operation"],
            f"{row['async_p50_ms']:.3f}",
            f"{row['sync_p50_ms']:.3f}",
            f"{row['sync_p95_ms']:.3f}",
            f"{row['sync_overhead_us']:.0f}",
            f"{ratio:.2f}",
            "met" if row["within_target"] else "MISSED",
        )
    console.print(table)
