"""Fixtures for the blocking face: the conformance suite's backends, driven through
`memweave.sync`.

`harness` runs over in-memory, SQLite, PostgreSQL, MariaDB and Redis (an unreachable server
skips, or fails under MEMWEAVE_REQUIRE_SERVICES=1). `make_sync_history` builds blocking
providers with `memweave.sync.from_url(harness.url, ...)`. `make_history` and `history` hand
the conformance clauses a `ThroughSync` view of one, so those clauses check the blocking face
(see `test_conformance.py`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest

from memweave import sync
from tests.conformance._harness import BackendHarness
from tests.conformance._harness_memory import memory_harness
from tests.conformance._harness_redis import redis_harness, redis_url
from tests.conformance._harness_sql import (
    mysql_harness,
    mysql_url,
    postgres_harness,
    postgres_url,
    sqlite_harness,
)
from tests.conformance.conftest import (
    HARNESSES,
    new_session_id,
    session_id,
    session_prefix,
)
from tests.sync._through import ThroughSync

__all__ = [
    "memory_harness",
    "mysql_harness",
    "mysql_url",
    "new_session_id",
    "postgres_harness",
    "postgres_url",
    "redis_harness",
    "redis_url",
    "session_id",
    "session_prefix",
    "sqlite_harness",
]

BACKENDS = [
    "memory_harness",
    "sqlite_harness",
    "postgres_harness",
    "mysql_harness",
    "redis_harness",
]
"""The backends the blocking face is checked on."""


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # The conformance suite's opt-outs (a rule a backend cannot keep) hold here too.
    opt_outs = dict(HARNESSES)
    for item in items:
        callspec = getattr(item, "callspec", None)
        if "tests/sync/" not in item.nodeid or callspec is None:
            continue
        backend = callspec.params.get("harness")
        for mark in item.iter_markers("rule"):
            reason = opt_outs.get(backend, {}).get(mark.args[0])
            if reason is not None and item.get_closest_marker("xfail") is None:
                item.add_marker(pytest.mark.xfail(reason=reason, strict=True))


@pytest.fixture(
    params=[pytest.param(name, marks=pytest.mark.xdist_group(name)) for name in BACKENDS]
)
def harness(request: pytest.FixtureRequest) -> BackendHarness:
    """The backend under test."""
    value: BackendHarness = request.getfixturevalue(request.param)
    return value


@pytest.fixture
def make_sync_history(
    harness: BackendHarness, session_prefix: str
) -> Iterator[Callable[..., sync.ChatHistoryProvider]]:
    """Factory building blocking providers of the backend under test; after the test it
    clears the sessions under `session_prefix` and closes them."""
    made: list[sync.ChatHistoryProvider] = []

    def make(**options: Any) -> sync.ChatHistoryProvider:
        assert harness.url is not None
        history = sync.from_url(harness.url, **options)
        made.append(history)
        return history

    yield make
    if made:
        with sync.from_url(harness.url or "") as cleaner:
            for session in cleaner.list_sessions(prefix=session_prefix):
                cleaner.clear(session)
    for history in made:
        history.close()


@pytest.fixture
def sync_history(
    make_sync_history: Callable[..., sync.ChatHistoryProvider],
) -> sync.ChatHistoryProvider:
    """A blocking provider of the backend under test with default options."""
    return make_sync_history()


@pytest.fixture
def make_history(
    make_sync_history: Callable[..., sync.ChatHistoryProvider],
) -> Callable[..., ThroughSync]:
    """The conformance suite's `make_history`, building blocking providers seen through
    `ThroughSync`."""
    # Clauses call the factory inside their event loop, where the blocking face refuses to
    # run; build in a thread of its own, as a WSGI worker would.
    return lambda **options: ThroughSync.build(lambda: make_sync_history(**options))


@pytest.fixture
def history(make_history: Callable[..., ThroughSync]) -> ThroughSync:
    """A blocking provider of the backend under test, seen through `ThroughSync`."""
    return make_history()


@pytest.fixture
async def make_isolated_history(
    harness: BackendHarness,
) -> AsyncIterator[Callable[..., ThroughSync]]:
    """The conformance suite's `make_isolated_history` (providers in a namespace of their
    own, dropped after the test), through the blocking face."""
    namespace = harness.isolated_options()
    made: list[sync.ChatHistoryProvider] = []

    def make(**options: Any) -> ThroughSync:
        assert harness.url is not None
        url = harness.url
        through = ThroughSync.build(lambda: sync.from_url(url, **namespace, **options))
        made.append(through.blocking)
        return through

    yield make
    for history in made:
        await ThroughSync(history).aclose()
    if made:
        cleaner = harness.make(**namespace)
        try:
            await harness.drop_isolated(cleaner)
        finally:
            await cleaner.aclose()
