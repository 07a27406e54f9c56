"""The four measured parts of `memweave.bench.scale`: agent turns, session pages, streaming export,
and Redis Cluster spread. Each times memweave and its floor in the same loop (see that module's
docstring for what is measured and why)."""

from __future__ import annotations

import asyncio
import json
import os
import random
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from memweave._codec import encode
from memweave.bench._scale_backends import SESSION_TEMPLATE, Target, session_id
from memweave.bench._scale_export import export_rows
from memweave.bench._scale_redis import RedisProcesses, command_calls
from memweave.bench._stats import Timings
from memweave.bench._workload import make_conversation
from memweave.messages import ChatMessage
from memweave.orchestration import Agent
from memweave.providers import ChatHistoryProvider, from_url
from memweave.reducers import TokenBudgetReducer
from memweave.testing import ScriptedChatClient

if TYPE_CHECKING:
    from memweave.bench.scale import Options

__all__ = ["bench_cluster", "bench_export", "bench_sessions", "bench_turns"]

USER_TEXT = (
    "Thanks. Before Friday, can you check whether the database migration still depends on "
    "the old schema, and tell me what the rollback plan should cover if it fails halfway?"
)
REPLY_TEXT = (
    "The migration still reads two tables of the old schema, so it depends on it until the "
    "backfill finishes. The rollback plan should cover restoring those tables from the "
    "snapshot, pausing the writers, and re-running the backfill from its last checkpoint. "
    "I would also add a dry run on staging first."
)
_FILL_BATCH = 5_000

Mark = Callable[[str, str], Awaitable[None]]
"""Called with `"setup"` (seeding, clean-up) or `"measured"`, and the part, after each phase;
files the Redis SLOWLOG entries logged meanwhile under that phase and part."""
_ROOT = Path(__file__).resolve().parents[1]


async def _timed(action: Callable[[], Awaitable[object]]) -> float:
    started = time.perf_counter_ns()
    await action()
    return (time.perf_counter_ns() - started) / 1e6


async def _rounds(
    actions: dict[str, Callable[[], Awaitable[object]]], repeats: int, budget_s: float
) -> dict[str, Timings]:
    """Time every action once per round, `repeats` rounds, or fewer (at least 3) once
    `budget_s` seconds are spent; interleaving puts the load of a shared machine on all."""
    timings = {name: Timings() for name in actions}
    deadline = time.perf_counter() + budget_s
    for done in range(1, repeats + 1):
        for name, action in actions.items():
            timings[name].samples.append(await _timed(action))
        if done >= 3 and time.perf_counter() > deadline:
            break
    return timings


_conversations: dict[int, tuple[list[ChatMessage], list[bytes]]] = {}


def _conversation(n: int) -> tuple[list[ChatMessage], list[bytes]]:
    """The shared workload's `n` messages and their encodings, built once per run."""
    if n not in _conversations:
        messages = make_conversation(n, seed=n)
        _conversations[n] = (messages, [encode(m) for m in messages])
    return _conversations[n]


# -- agent turn ---------------------------------------------------------------------------------


async def bench_turns(target: Target, options: Options, mark: Mark) -> list[dict[str, Any]]:
    """Agent turns with `TokenBudgetReducer` on sessions of each size, beside the windowed
    read alone and the raw client's read of the window's rows."""
    rows = []
    history = target.provider()
    reducer = TokenBudgetReducer(options.max_tokens)
    client = ScriptedChatClient(lambda messages, tools, settings: REPLY_TEXT)
    agent = Agent("scale", client, history=history, reducer=reducer)
    try:
        for n in options.turn_sizes:
            session = f"t-{n}-{uuid.uuid4().hex[:8]}"
            messages, encoded = _conversation(n)
            started = time.perf_counter()
            for first in range(0, n, _FILL_BATCH):
                await history.add_messages(session, messages[first : first + _FILL_BATCH])
            await target.floor_store(session, encoded)
            seed_s = time.perf_counter() - started
            await mark("setup", "turn")
            try:
                window = await history.list_messages(session, reducer=reducer)
                await agent.run(USER_TEXT, session=session)
                sent = len(client.requests[-1].messages)
                width = len(window)
                timings = await _time_turns(
                    agent, history, reducer, target, session, width, options
                )
                client.requests.clear()
                await mark("measured", "turn")
            finally:
                await history.clear(session)
                await mark("setup", "turn")
            rows.append(
                {
                    "backend": target.name,
                    "n": n,
                    **{name: t.summary() for name, t in timings.items()},
                    "window_messages": width,
                    "sent_messages": sent,
                    "seed_s": round(seed_s, 2),
                }
            )
    finally:
        await history.aclose()
    return rows


async def _time_turns(
    agent: Agent,
    history: ChatHistoryProvider,
    reducer: TokenBudgetReducer,
    target: Target,
    session: str,
    width: int,
    options: Options,
) -> dict[str, Timings]:
    return await _rounds(
        {
            "turn": lambda: agent.run(USER_TEXT, session=session),
            "windowed_read": lambda: history.list_messages(session, reducer=reducer),
            "floor": lambda: target.floor_tail(session, width),
        },
        options.turns,
        options.budget_s,
    )


# -- sessions -----------------------------------------------------------------------------------


async def bench_sessions(target: Target, options: Options, mark: Mark) -> list[dict[str, Any]]:
    """`list_sessions(limit, after)` and `session_info` as the store grows to each size."""
    rows = []
    history = target.provider()
    seeded = 0
    try:
        for n in options.session_sizes:
            started = time.perf_counter()
            await target.seed_sessions(history, seeded, n)
            await target.floor_sessions(seeded, n)
            seed_s = time.perf_counter() - started
            seeded = n
            await mark("setup", "sessions")
            rng = random.Random(n)
            picks = [session_id(rng.randrange(n)) for _ in range(options.lookups)]
            await _check_sessions(target, history, picks[0], n, options.page_size)
            timings = await _time_sessions(target, history, picks, options)
            await mark("measured", "sessions")
            rows.append(
                {
                    "backend": target.name,
                    "n": n,
                    "page_size": options.page_size,
                    **{name: t.summary() for name, t in timings.items()},
                    "seed_s": round(seed_s, 2),
                }
            )
    finally:
        await history.aclose()
    return rows


async def _time_sessions(
    target: Target, history: ChatHistoryProvider, picks: Sequence[str], options: Options
) -> dict[str, Timings]:
    """Time pages after the picked ids and lookups of them; memweave and its floor share
    each round's ids."""
    cursors = iter(list(picks) * 4)
    lookups = iter(list(picks[::-1]) * 4)
    current: dict[str, str] = {}

    def page() -> Awaitable[list[str]]:
        current["after"], current["info"] = next(cursors), next(lookups)
        return history.list_sessions(limit=options.page_size, after=current["after"])

    return await _rounds(
        {
            "list_page": page,
            "list_floor": lambda: target.floor_list(current["after"], options.page_size),
            "info": lambda: history.session_info(current["info"]),
            "info_floor": lambda: target.floor_info(current["info"]),
        },
        options.lookups,
        options.budget_s,
    )


async def _check_sessions(target: Target, history: Any, after: str, n: int, page_size: int) -> None:
    """Seeding stored what it should: a page equals the floor's, a session holds its messages."""
    ours = await history.list_sessions(limit=page_size, after=after)
    floor = await target.floor_list(after, page_size)
    if len(floor) == page_size and ours != floor:
        raise RuntimeError(f"{target.name}: list_sessions after {after!r} differs from the floor")
    info = await history.session_info(session_id(n - 1))
    if info is None or info.message_count != len(SESSION_TEMPLATE):
        raise RuntimeError(f"{target.name}: seeded session {session_id(n - 1)} reads {info!r}")


# -- streaming export ---------------------------------------------------------------------------


async def bench_export(target: Target, options: Options, mark: Mark) -> dict[str, Any]:
    """Stream one long session out in a subprocess per reader; report peak memory growth."""
    total = options.export_messages
    session = f"x-export-{uuid.uuid4().hex[:8]}"
    job: dict[str, Any] = {"target": target.spec(), "session": session, "page_size": 500}
    seed_s = None
    history = target.provider()
    try:
        if target.name == "memory":
            job["seed_messages"] = total  # the in-process store is filled in the subprocess
        else:
            started = time.perf_counter()
            await target.seed_long_session(history, session, export_rows(total, _FILL_BATCH))
            if await history.count_messages(session) != total:
                raise RuntimeError(f"{target.name}: the export session was not fully stored")
            seed_s = round(time.perf_counter() - started, 2)
        await mark("setup", "export")
        ours = await _probe({**job, "mode": "memweave"})
        await mark("measured", "export")
        floor = await _probe({**job, "mode": "floor"})
    finally:
        try:
            await history.clear(session)
            await mark("setup", "export")
        finally:
            await history.aclose()
    for name, result in (("memweave", ours), ("floor", floor)):
        if result["messages"] != total:
            raise RuntimeError(f"{target.name}: {name} export read {result['messages']} of {total}")
    return {
        "backend": target.name,
        "messages": total,
        "page_size": job["page_size"],
        "memweave": ours,
        "floor": floor,
        "seed_s": seed_s,
    }


async def _probe(job: dict[str, Any]) -> dict[str, Any]:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(_ROOT), os.environ.get("PYTHONPATH")])),
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "memweave.bench._scale_export",
        json.dumps(job),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=_ROOT,
        env=env,
    )
    out, err = await process.communicate()
    if process.returncode != 0:
        raise RuntimeError(
            f"the export probe failed ({process.returncode}): {err.decode()[-2000:]}"
        )
    result: dict[str, Any] = json.loads(out.decode().strip().splitlines()[-1])
    return result


# -- Redis Cluster ------------------------------------------------------------------------------


async def bench_cluster(options: Options) -> dict[str, Any]:
    """Appends to many sessions on a 3-master Cluster the benchmark starts: each master's share
    of the commands (`INFO commandstats`), memweave beside raw RPUSHes of the same rows."""
    from redis.asyncio import Redis, RedisCluster

    from memweave.bench._scale_redis import RAW_CLIENT_NAME

    nodes = RedisProcesses(3, cluster=True).start()
    masters = [Redis(host="127.0.0.1", port=port) for port in nodes.ports]
    sessions = [f"c-{i:05d}" for i in range(options.cluster_sessions)]
    messages, encoded = _conversation(options.cluster_appends * 2)
    prefix = f"memweave-bench-{uuid.uuid4().hex[:10]}"
    history = from_url(nodes.url, namespace=prefix)
    raw = RedisCluster(host="127.0.0.1", port=nodes.ports[0], client_name=RAW_CLIENT_NAME)
    try:
        await history.count_messages(sessions[0])  # connect and load scripts first
        await raw.initialize()

        async def ours(session: str, step: int) -> None:
            await history.add_messages(
                session, [messages[step].model_copy(update={"id": f"{session}-{step}"})]
            )

        async def floor(session: str, step: int) -> None:
            await raw.rpush(f"{prefix}-raw:{{{session}}}:msgs", encoded[step])

        spread = {}
        for name, append in (("memweave", ours), ("floor", floor)):
            spread[name] = await _spread(masters, sessions, options.cluster_appends, append)
    finally:
        try:
            await history.aclose()
            await raw.aclose()
            for master in masters:
                await master.aclose()
        finally:
            nodes.stop()
    return {
        "masters": len(nodes.ports),
        "sessions": len(sessions),
        "appends_per_session": options.cluster_appends,
        **spread,
    }


async def _spread(
    masters: Sequence[Any],
    sessions: Sequence[str],
    steps: int,
    append: Callable[[str, int], Awaitable[None]],
) -> dict[str, Any]:
    before = [command_calls(await m.info("commandstats")) for m in masters]
    timings = Timings()
    pending = iter([(session, step) for step in range(steps) for session in sessions])

    async def worker() -> None:
        for session, step in pending:
            timings.samples.append(await _timed(lambda: append(session, step)))  # noqa: B023

    await asyncio.gather(*(worker() for _ in range(16)))
    after = [command_calls(await m.info("commandstats")) for m in masters]
    served = []
    for old, new in zip(before, after, strict=True):
        delta = {name: calls - old.get(name, 0) for name, calls in new.items()}
        served.append({name: calls for name, calls in sorted(delta.items()) if calls})
    totals = [sum(commands.values()) for commands in served]
    everything = sum(totals) or 1
    return {
        "append": timings.summary(),
        "commands": totals,
        "shares": [round(total / everything, 4) for total in totals],
        "max_share": round(max(totals) / everything, 4),
        "by_command": served,
    }
