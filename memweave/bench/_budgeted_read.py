"""The budgeted-read workload of `memweave.bench.reducers`: one long session read through a
history backend with `TokenBudgetReducer` and `reduce_on="read"`, next to a full read plus
reduce of the same session (see that module's docstring)."""

from __future__ import annotations

import gc
import sqlite3
import tempfile
import time
import uuid
from typing import TYPE_CHECKING, Any

from memweave._urls import mask_url
from memweave.bench._stats import Timings
from memweave.bench._workload import make_conversation
from memweave.errors import BackendUnavailable, ConfigurationError
from memweave.messages import ChatMessage
from memweave.providers import ChatHistoryProvider, from_url
from memweave.reducers import TokenBudgetReducer, TokenCounter

if TYPE_CHECKING:
    from memweave.bench.reducers import Options

__all__ = ["TARGET_BUDGETED_READ_MS", "run_budgeted_reads"]

TARGET_BUDGETED_READ_MS = 20.0
_FILL_BATCH = 5_000  # messages per add_messages while filling the read session


async def run_budgeted_reads(options: Options, counter: TokenCounter) -> dict[str, Any]:
    """Time budgeted reads of one long session on SQLite and Redis, beside full reads."""
    size = options.read_session_messages
    section: dict[str, Any] = {
        "messages": size,
        "max_tokens": options.max_tokens,
        "target_p50_ms_below": TARGET_BUDGETED_READ_MS,
        "backends": {},
    }
    backends: dict[str, Any] = section["backends"]
    if size == 0:
        backends["sqlite"] = backends["redis"] = {
            "status": "skipped",
            "reason": "--read-messages 0",
        }
        return section
    session = make_conversation(size, seed=options.seed)
    with tempfile.TemporaryDirectory(prefix="memweave-bench-") as folder:
        url = f"sqlite+aiosqlite:///{folder}/reads.db"
        backends["sqlite"] = await _bench_budgeted_read(options, counter, session, url, {})
    if options.redis_url is None:
        backends["redis"] = {"status": "skipped", "reason": "--no-redis"}
    else:
        namespace = f"memweave-bench-{uuid.uuid4().hex}"
        backends["redis"] = await _bench_budgeted_read(
            options, counter, session, options.redis_url, {"namespace": namespace}
        )
    return section


async def _bench_budgeted_read(
    options: Options,
    counter: TokenCounter,
    session: list[ChatMessage],
    url: str,
    provider_options: dict[str, Any],
) -> dict[str, Any]:
    """Fill one session at `url`, then time budgeted reads of it and full reads plus reduce."""
    session_id = f"memweave-bench-{uuid.uuid4().hex}"
    reducer = TokenBudgetReducer(options.max_tokens, counter=counter)
    entry: dict[str, Any] = {"url": mask_url(url), **provider_options}
    try:
        plain = from_url(url, **provider_options)
    except ConfigurationError as exc:  # also MissingDependency: the driver is not installed
        return {"status": "skipped", "reason": f"{type(exc).__name__}: {exc}", **entry}
    try:
        await plain.count_messages(session_id)
    except BackendUnavailable as exc:
        await plain.aclose()
        return {"status": "skipped", "reason": f"{type(exc).__name__}: {exc}", **entry}
    entry["server"] = await _server_version(url)
    budgeted = from_url(url, reducer=reducer, reduce_on="read", **provider_options)
    try:
        started = time.perf_counter()
        for first in range(0, len(session), _FILL_BATCH):
            await plain.add_messages(session_id, session[first : first + _FILL_BATCH])
        entry["fill_s"] = time.perf_counter() - started
        gc.collect()
        first_ms, window = await _timed_read(budgeted, session_id)
        reads = Timings()
        for _ in range(options.read_repeats):
            elapsed, again = await _timed_read(budgeted, session_id)
            reads.samples.append(elapsed)
            if again != window:
                raise RuntimeError(f"budgeted reads of {entry['url']} returned different windows")
        full = Timings()
        for _ in range(options.full_reads):
            elapsed, expected = await _timed_read(plain, session_id, reducer)
            full.samples.append(elapsed)
            if expected != window:
                raise RuntimeError(
                    f"the budgeted read of {entry['url']} kept another window than a full read"
                )
    finally:
        try:
            await plain.clear(session_id)
        finally:
            await plain.aclose()
            await budgeted.aclose()
    summary = reads.summary()
    baseline = full.summary() if full.samples else None
    return {
        "status": "measured",
        **entry,
        "first_read_ms": first_ms,
        "read": summary,
        "full_read_reduce": baseline,
        "speedup_vs_full_read": baseline["p50_ms"] / summary["p50_ms"] if baseline else None,
        "window_messages": len(window),
        "window_tokens": counter.count(window),
        "target_met": summary["p50_ms"] < TARGET_BUDGETED_READ_MS,
    }


async def _server_version(url: str) -> str | None:
    """`SQLite 3.45.1` or `Redis 7.0.15` for the report, best effort (None when unreadable)."""
    if url.startswith("sqlite"):
        return f"SQLite {sqlite3.sqlite_version}"
    from redis.asyncio import Redis
    from redis.exceptions import RedisError

    client = Redis.from_url(url, socket_timeout=5)
    try:
        info = await client.info("server")
    except (RedisError, OSError):
        return None
    finally:
        await client.aclose()
    return f"Redis {info.get('redis_version')}"


async def _timed_read(
    history: ChatHistoryProvider, session_id: str, reducer: TokenBudgetReducer | None = None
) -> tuple[float, list[ChatMessage]]:
    """Read the session through `history`, then reduce it with `reducer` when given."""
    started = time.perf_counter_ns()
    messages = await history.list_messages(session_id)
    if reducer is not None:
        messages = await reducer.reduce(messages)
    return (time.perf_counter_ns() - started) / 1e6, messages
