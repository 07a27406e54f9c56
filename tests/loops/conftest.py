"""Fixtures for the any-loop tests: every backend of the conformance suite, used from many
event loops (consecutive `asyncio.run` calls, threads running loops of their own).

The tests are plain functions, not coroutines: each starts the event loops it needs itself.
"""

from __future__ import annotations

import asyncio
import gc
import threading
import warnings
from collections.abc import Callable, Coroutine, Iterator
from typing import Any, TypeVar

import pytest

from tests._redis_cluster import redis_cluster_url
from tests.conformance._harness import BackendHarness
from tests.conformance._harness_chroma import (
    chroma_harness,
    chroma_server_harness,
    chroma_server_url,
)
from tests.conformance._harness_memory import memory_harness
from tests.conformance._harness_redis import redis_cluster_harness, redis_harness, redis_url
from tests.conformance._harness_sql import (
    mysql_harness,
    mysql_url,
    postgres_harness,
    postgres_url,
    sqlite_harness,
)
from tests.conformance.conftest import new_session_id, session_id, session_prefix

__all__ = [
    "chroma_harness",
    "chroma_server_harness",
    "chroma_server_url",
    "memory_harness",
    "mysql_harness",
    "mysql_url",
    "new_session_id",
    "postgres_harness",
    "postgres_url",
    "redis_cluster_harness",
    "redis_cluster_url",
    "redis_harness",
    "redis_url",
    "session_id",
    "session_prefix",
    "sqlite_harness",
]

T = TypeVar("T")

HISTORY_BACKENDS = [
    "memory_harness",
    "sqlite_harness",
    "postgres_harness",
    "mysql_harness",
    "redis_harness",
    "redis_cluster_harness",
    "chroma_harness",
    "chroma_server_harness",
]
"""Every history backend, as in the conformance suite."""

CHECKPOINT_BACKENDS = HISTORY_BACKENDS[:6]
"""The backends with a checkpoint store (Chroma has none)."""

RUNS = 50
"""Consecutive `asyncio.run` calls sharing one object."""

THREAD_TIMEOUT = 120.0


@pytest.fixture(
    params=[pytest.param(name, marks=pytest.mark.xdist_group(name)) for name in HISTORY_BACKENDS]
)
def harness(request: pytest.FixtureRequest) -> BackendHarness:
    """The history backend under test."""
    value: BackendHarness = request.getfixturevalue(request.param)
    return value


@pytest.fixture(
    params=[pytest.param(name, marks=pytest.mark.xdist_group(name)) for name in CHECKPOINT_BACKENDS]
)
def store_url(request: pytest.FixtureRequest) -> str:
    """The URL of a backend with a checkpoint store."""
    harness: BackendHarness = request.getfixturevalue(request.param)
    assert harness.url is not None
    return harness.url


@pytest.fixture
def no_unclosed_connections() -> Iterator[None]:
    """Fail when the test left an event loop's connection to the garbage collector (asyncio's
    "unclosed transport", or a driver's "unclosed connection" `ResourceWarning`): each loop's
    connections must be closed on that loop. (Chroma's blocking HTTP client leaves a plain
    socket of its own, bound to no loop; that one is not counted.)"""
    gc.collect()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        yield
        gc.collect()
    unclosed = [
        str(w.message)
        for w in caught
        if issubclass(w.category, ResourceWarning)
        and any(word in str(w.message).lower() for word in ("transport", "connection"))
    ]
    assert unclosed == []


def in_thread_loop(
    work: Callable[[], Coroutine[Any, Any, T]],
) -> Callable[[], Coroutine[Any, Any, T]]:
    """Wrap `work` so that awaiting the result runs it in a new thread, under an event loop
    of that thread (`asyncio.run`), while the awaiting loop goes on."""

    async def run() -> T:
        outcome: list[T] = []
        failure: list[BaseException] = []

        def target() -> None:
            try:
                outcome.append(asyncio.run(work()))
            except BaseException as exc:  # handed to the awaiting loop
                failure.append(exc)

        thread = threading.Thread(target=target, name="other-loop")
        thread.start()
        await asyncio.to_thread(thread.join, THREAD_TIMEOUT)
        assert not thread.is_alive(), "the other thread's loop hung"
        if failure:
            raise failure[0]
        return outcome[0]

    return run
