"""The conformance suite's fixtures: one `harness` parametrized over every backend.

Each `_harness_<backend>.py` module in this folder defines session-scoped fixtures yielding a
`BackendHarness`, exports them (and any fixtures they need) in `__all__`, and lists them in
`HARNESSES` as `(fixture_name, opt_outs)`, where `opt_outs`
maps a rule (see `@pytest.mark.rule`) to the documented reason the backend cannot keep it;
such tests run as strict xfails, so an opt-out that starts passing fails loudly.
"""

from __future__ import annotations

import importlib
import os
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from memweave.providers import ChatHistoryProvider
from tests.conformance._harness import BackendHarness

_HARNESS_ORDER = ["memory", "sql", "redis", "chroma"]
_modules = sorted(
    (path.stem for path in Path(__file__).parent.glob("_harness_*.py")),
    key=lambda stem: (
        _HARNESS_ORDER.index(name)
        if (name := stem.removeprefix("_harness_")) in _HARNESS_ORDER
        else len(_HARNESS_ORDER)
    ),
)

HARNESSES: list[tuple[str, dict[str, str]]] = []
for _stem in _modules:
    _module = importlib.import_module(f"tests.conformance.{_stem}")
    for _name in _module.__all__:
        globals()[_name] = getattr(_module, _name)
    HARNESSES.extend(getattr(_module, "HARNESSES", []))

RUN_ID = uuid.uuid4().hex[:8]
WORKER = os.environ.get("PYTEST_XDIST_WORKER", "gw")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    opt_outs = dict(HARNESSES)
    for item in items:
        callspec = getattr(item, "callspec", None)
        if callspec is None or "harness" not in callspec.params:
            continue
        backend = callspec.params["harness"]
        for mark in item.iter_markers("rule"):
            reason = opt_outs.get(backend, {}).get(mark.args[0])
            if reason is not None:
                item.add_marker(pytest.mark.xfail(reason=reason, strict=True))


@pytest.fixture(
    params=[pytest.param(name, marks=pytest.mark.xdist_group(name)) for name, _ in HARNESSES]
)
def harness(request: pytest.FixtureRequest) -> BackendHarness:
    """The backend under test."""
    value: BackendHarness = request.getfixturevalue(request.param)
    return value


@pytest.fixture
def session_prefix() -> str:
    """A prefix no other test (or run, or worker) uses; every session id a test makes starts
    with it, so the test deletes exactly what it created."""
    return f"mwt-{RUN_ID}-{WORKER}-{uuid.uuid4().hex[:10]}-"


@pytest.fixture
def new_session_id(session_prefix: str) -> Callable[[str], str]:
    """Return a fresh session id, optionally ending with the given text."""
    counter = iter(range(1_000_000))

    def make(suffix: str = "") -> str:
        return f"{session_prefix}{next(counter)}{suffix}"

    return make


@pytest.fixture
def session_id(new_session_id: Callable[[str], str]) -> str:
    """A fresh session id."""
    return new_session_id("")


@pytest.fixture
async def make_history(
    harness: BackendHarness, session_prefix: str
) -> AsyncIterator[Callable[..., ChatHistoryProvider]]:
    """Factory building providers of the backend under test; cleans up after the test."""
    made: list[ChatHistoryProvider] = []

    def make(**options: Any) -> ChatHistoryProvider:
        history = harness.make(**options)
        made.append(history)
        return history

    yield make
    if made:
        cleaner = harness.make()
        try:
            for session in await cleaner.list_sessions(prefix=session_prefix):
                await cleaner.clear(session)
        finally:
            await cleaner.aclose()
    for history in made:
        await history.aclose()


@pytest.fixture
def history(make_history: Callable[..., ChatHistoryProvider]) -> ChatHistoryProvider:
    """A provider of the backend under test with default options."""
    return make_history()


@pytest.fixture
async def make_isolated_history(
    harness: BackendHarness,
) -> AsyncIterator[Callable[..., ChatHistoryProvider]]:
    """Factory building providers that share one namespace no other test uses, for rules
    about every session of a store (`prune`, listing all sessions); dropped after the test."""
    namespace = harness.isolated_options()
    made: list[ChatHistoryProvider] = []

    def make(**options: Any) -> ChatHistoryProvider:
        history = harness.make(**namespace, **options)
        made.append(history)
        return history

    yield make
    if made:
        cleaner = harness.make(**namespace)
        try:
            await harness.drop_isolated(cleaner)
        finally:
            await cleaner.aclose()
    for history in made:
        await history.aclose()
