"""Concurrency: concurrent writers (tasks and processes) lose and duplicate nothing."""

from __future__ import annotations

import asyncio
import multiprocessing
import time
from collections import Counter

import pytest

from memweave import ChatMessage
from memweave.providers import ChatHistoryProvider
from tests.conformance import _workers
from tests.conformance._harness import BackendHarness


def _check_writers(texts: list[str], writers: int, per_writer: int) -> None:
    assert len(texts) == writers * per_writer, "messages lost or duplicated"
    assert not [t for t, n in Counter(texts).items() if n > 1], "duplicated messages"
    for worker in range(writers):
        own = [t for t in texts if t.startswith(f"w{worker}-")]
        assert own == [f"w{worker}-{i}" for i in range(per_writer)], f"writer {worker} reordered"


async def test_concurrent_tasks_lose_nothing(history: ChatHistoryProvider, session_id: str) -> None:
    """20 tasks x 50 messages into one session lose and duplicate nothing and keep each
    writer's order."""

    async def writer(worker: int) -> None:
        for i in range(50):
            await history.add_messages(
                session_id, [ChatMessage.user(f"w{worker}-{i}", id=f"w{worker}-{i}")]
            )

    await asyncio.gather(*(writer(w) for w in range(20)))
    _check_writers([m.text for m in await history.list_messages(session_id)], 20, 50)


async def test_concurrent_tasks_same_message_stored_once(
    history: ChatHistoryProvider, session_id: str
) -> None:
    """The same message added by 20 tasks at once is stored once."""
    messages = [ChatMessage.user(f"m{i}") for i in range(10)]
    await asyncio.gather(*(history.add_messages(session_id, messages) for _ in range(20)))
    assert [m.text for m in await history.list_messages(session_id)] == [m.text for m in messages]


def _run_processes(target: object, args_list: list[tuple[object, ...]]) -> None:
    context = multiprocessing.get_context("spawn")
    processes = [context.Process(target=target, args=args) for args in args_list]  # type: ignore[attr-defined]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=180)
    failed = [p.exitcode for p in processes if p.exitcode != 0]
    assert not failed, f"writer processes failed with exit codes {failed}"


@pytest.mark.rule("multi_process")
async def test_concurrent_processes_lose_nothing(
    harness: BackendHarness, history: ChatHistoryProvider, session_id: str
) -> None:
    """4 OS processes x 200 messages into one session lose and duplicate nothing and keep
    each writer's order."""
    assert harness.url is not None
    start_at = time.time() + 3.0
    await asyncio.to_thread(
        _run_processes,
        _workers.append_own,
        [(harness.url, session_id, worker, 200, start_at) for worker in range(4)],
    )
    _check_writers([m.text for m in await history.list_messages(session_id)], 4, 200)


@pytest.mark.rule("multi_process")
async def test_concurrent_processes_same_message_stored_once(
    harness: BackendHarness, history: ChatHistoryProvider, session_id: str
) -> None:
    """The same messages added by several processes at once are each stored once."""
    assert harness.url is not None
    start_at = time.time() + 3.0
    await asyncio.to_thread(
        _run_processes,
        _workers.append_shared,
        [(harness.url, session_id, 60, start_at) for _ in range(4)],
    )
    stored = [m.text for m in await history.list_messages(session_id)]
    assert sorted(stored) == sorted(f"same-{i}" for i in range(60))
