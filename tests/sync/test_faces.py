"""The two faces match: every public async method has a blocking twin with the same
parameters, and every blocking class takes its async class's constructor arguments."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import pytest

from memweave import context, orchestration, providers, reducers, sync
from memweave.context.base import ContextProvider
from memweave.orchestration import sequential
from memweave.orchestration.checkpoints import CheckpointStore


def _lazy(module: Any, name: str) -> Callable[[], Any]:
    return lambda: getattr(module, name)


# (async class, blocking class); loaded lazily so a missing optional driver fails one case.
PAIRS: dict[str, tuple[Callable[[], type], Callable[[], type]]] = {
    "ChatHistoryProvider": (
        lambda: providers.ChatHistoryProvider,
        lambda: sync.ChatHistoryProvider,
    ),
    "ChromaChatHistoryProvider": (
        _lazy(providers, "ChromaChatHistoryProvider"),
        _lazy(sync, "ChromaChatHistoryProvider"),
    ),
    "ChatReducer": (lambda: reducers.ChatReducer, lambda: sync.ChatReducer),
    "ContextProvider": (lambda: ContextProvider, lambda: sync.ContextProvider),
    "VectorMemory": (lambda: context.VectorMemory, lambda: sync.VectorMemory),
    "CheckpointStore": (lambda: CheckpointStore, lambda: sync.CheckpointStore),
    "Agent": (lambda: orchestration.Agent, lambda: sync.Agent),
    "Sequential": (lambda: orchestration.Sequential, lambda: sync.Sequential),
    "HandoffBuilder": (lambda: orchestration.HandoffBuilder, lambda: sync.HandoffBuilder),
    "HandoffWorkflow": (lambda: orchestration.HandoffWorkflow, lambda: sync.HandoffWorkflow),
}

# The async name of a blocking method that is named differently.
RENAMED = {"aclose": "close"}

# The blocking classes whose constructor is the async one's (they build it on the portal).
MIRRORED: dict[str, tuple[Callable[[], type], Callable[[], type]]] = {
    "InMemoryChatHistoryProvider": (
        lambda: providers.InMemoryChatHistoryProvider,
        lambda: sync.InMemoryChatHistoryProvider,
    ),
    "SQLChatHistoryProvider": (
        _lazy(providers, "SQLChatHistoryProvider"),
        _lazy(sync, "SQLChatHistoryProvider"),
    ),
    "RedisChatHistoryProvider": (
        _lazy(providers, "RedisChatHistoryProvider"),
        _lazy(sync, "RedisChatHistoryProvider"),
    ),
    "ChromaChatHistoryProvider": PAIRS["ChromaChatHistoryProvider"],
    "MessageCountReducer": (lambda: reducers.MessageCountReducer, lambda: sync.MessageCountReducer),
    "TokenBudgetReducer": (lambda: reducers.TokenBudgetReducer, lambda: sync.TokenBudgetReducer),
    "SummarizingReducer": (lambda: reducers.SummarizingReducer, lambda: sync.SummarizingReducer),
    "VectorMemory": PAIRS["VectorMemory"],
    "InMemoryCheckpointStore": (
        lambda: orchestration.InMemoryCheckpointStore,
        lambda: sync.InMemoryCheckpointStore,
    ),
    "SQLCheckpointStore": (
        _lazy(orchestration, "SQLCheckpointStore"),
        _lazy(sync, "SQLCheckpointStore"),
    ),
    "RedisCheckpointStore": (
        _lazy(orchestration, "RedisCheckpointStore"),
        _lazy(sync, "RedisCheckpointStore"),
    ),
}

# Same parameters, with blocking objects allowed where async ones go.
SAME_PARAMETERS: dict[str, tuple[Callable[[], Callable[..., Any]], Callable[[], Any]]] = {
    "Agent": (lambda: orchestration.Agent, lambda: sync.Agent),
    "Sequential": (lambda: orchestration.Sequential, lambda: sync.Sequential),
    "HandoffBuilder": (lambda: orchestration.HandoffBuilder, lambda: sync.HandoffBuilder),
    "ChatSpec": (lambda: orchestration.ChatSpec.__init__, lambda: sync.ChatSpec.__init__),
    "initiate_chats": (lambda: orchestration.initiate_chats, lambda: sync.initiate_chats),
    "from_url": (lambda: providers.from_url, lambda: sync.from_url),
    "checkpoint_store_from_url": (
        lambda: orchestration.checkpoint_store_from_url,
        lambda: sync.checkpoint_store_from_url,
    ),
}


def _public_methods(cls: type) -> dict[str, Any]:
    return {
        name: member
        for name, member in inspect.getmembers(cls, inspect.isfunction)
        if not name.startswith("_")
    }


def _shape(function: Any) -> list[tuple[str, Any, Any]]:
    """Parameter names, kinds and defaults (annotations may differ between faces)."""
    return [
        (parameter.name, parameter.kind, parameter.default)
        for parameter in inspect.signature(function).parameters.values()
    ]


@pytest.mark.parametrize("pair", sorted(PAIRS))
def test_every_public_method_has_a_blocking_twin(pair: str) -> None:
    """Each public method of the async class exists on the blocking class with the same
    parameters (a new async method without its twin fails here)."""
    async_class, blocking_class = (load() for load in PAIRS[pair])
    blocking = _public_methods(blocking_class)
    for name, method in _public_methods(async_class).items():
        twin = RENAMED.get(name, name)
        assert twin in blocking, f"memweave.sync.{pair} lacks {twin}()"
        if name not in RENAMED:
            assert _shape(blocking[twin]) == _shape(method), f"{pair}.{name}"


@pytest.mark.parametrize("pair", sorted(PAIRS))
def test_every_public_property_has_a_blocking_twin(pair: str) -> None:
    """Each public property of the async class is readable on the blocking class."""
    async_class, blocking_class = (load() for load in PAIRS[pair])
    for name, _ in inspect.getmembers(async_class, lambda m: isinstance(m, property)):
        if not name.startswith("_"):
            assert isinstance(getattr(blocking_class, name, None), property), f"{pair}.{name}"


@pytest.mark.parametrize("pair", sorted(MIRRORED))
def test_blocking_class_takes_the_async_constructor_arguments(pair: str) -> None:
    """A blocking class is built with exactly the arguments of its async class."""
    async_class, blocking_class = (load() for load in MIRRORED[pair])
    assert inspect.signature(blocking_class) == inspect.signature(async_class)
    assert issubclass(blocking_class, sync.ChatHistoryProvider) == issubclass(
        async_class, providers.ChatHistoryProvider
    )


@pytest.mark.parametrize("pair", sorted(SAME_PARAMETERS))
def test_blocking_callable_takes_the_same_parameters(pair: str) -> None:
    """Functions and explicitly written constructors keep the async parameters."""
    async_callable, blocking_callable = (load() for load in SAME_PARAMETERS[pair])
    assert _shape(blocking_callable) == _shape(async_callable)


def test_everything_exported_resolves() -> None:
    """Every name in `memweave.sync.__all__` imports (the lazy backends included)."""
    for name in sync.__all__:
        assert getattr(sync, name) is not None


def test_chat_spec_is_the_async_spec() -> None:
    """A `sync.ChatSpec` is a `ChatSpec`, so the async `initiate_chats` takes it too."""
    assert issubclass(sync.ChatSpec, sequential.ChatSpec)
