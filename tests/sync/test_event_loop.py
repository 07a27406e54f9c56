"""Inside a running event loop a blocking call refuses at once, naming what to await."""

from __future__ import annotations

import asyncio
import time
import warnings
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from memweave import ChatMessage, sync
from memweave._portal import portal
from memweave.errors import MemweaveError, SyncCallInEventLoop
from memweave.orchestration import Checkpoint
from memweave.session import Session
from memweave.testing import ScriptedChatClient
from tests.context.conftest import HashEmbeddings


class Objects:
    """One blocking object of each kind, built outside any event loop."""

    def __init__(self, folder: Path) -> None:
        self.history = sync.from_url("memory://")
        self.history.add_messages("s", [ChatMessage.user("hi")])
        self.reducer = sync.MessageCountReducer(5)
        self.store = sync.InMemoryCheckpointStore()
        self.memory = sync.VectorMemory(folder / "chroma", embedder=HashEmbeddings())
        self.agent = sync.Agent("helper", ScriptedChatClient(["hello"]), history=self.history)
        self.other = sync.Agent("other", ScriptedChatClient(["hi"]), history=self.history)
        self.workflow = sync.HandoffBuilder("w", [self.agent, self.other]).build()

    def close(self) -> None:
        self.history.close()
        self.store.close()
        self.memory.close()


@pytest.fixture(scope="module")
def objects(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Objects]:
    made = Objects(tmp_path_factory.mktemp("loop"))
    yield made
    made.close()


CHECKPOINT = Checkpoint(workflow="w", session_id="s", status="idle", current_agent="helper")

# blocking call -> the async method the error must name
CALLS: dict[str, tuple[Callable[[Objects], Any], str]] = {
    "add_messages": (lambda o: o.history.add_messages("s", []), "add_messages()"),
    "list_messages": (lambda o: o.history.list_messages("s", limit=2), "list_messages()"),
    "iter_messages": (lambda o: o.history.iter_messages("s"), "iter_messages()"),
    "count_messages": (lambda o: o.history.count_messages("s"), "count_messages()"),
    "delete_messages": (lambda o: o.history.delete_messages("s", ["x"]), "delete_messages()"),
    "truncate_after": (lambda o: o.history.truncate_after("s", "x"), "truncate_after()"),
    "clear": (lambda o: o.history.clear("nothing"), "clear()"),
    "list_sessions": (lambda o: o.history.list_sessions(limit=1), "list_sessions()"),
    "session_info": (lambda o: o.history.session_info("s"), "session_info()"),
    "prune": (lambda o: o.history.prune(timedelta(days=1), dry_run=True), "prune()"),
    "purge_expired": (lambda o: o.history.purge_expired(), "purge_expired()"),
    "close": (lambda o: o.history.close(), "aclose()"),
    "from_url": (lambda o: sync.from_url("memory://"), "memweave.providers.from_url"),
    "provider constructor": (
        lambda o: sync.InMemoryChatHistoryProvider(),
        "memweave.providers.memory.InMemoryChatHistoryProvider",
    ),
    "reduce": (lambda o: o.reducer.reduce([ChatMessage.user("x")]), "reduce()"),
    "save_checkpoint": (lambda o: o.store.save_checkpoint(CHECKPOINT), "save_checkpoint()"),
    "get_checkpoint": (lambda o: o.store.get_checkpoint("w", "s"), "get_checkpoint()"),
    "list_checkpoints": (lambda o: o.store.list_checkpoints("w", "s"), "list_checkpoints()"),
    "delete_checkpoints": (lambda o: o.store.delete_checkpoints("w", "s"), "delete_checkpoints()"),
    "checkpoint_store_from_url": (
        lambda o: sync.checkpoint_store_from_url("memory://"),
        "memweave.orchestration.checkpoint_store_from_url",
    ),
    "memory.add": (lambda o: o.memory.add("x", user_id="u"), "VectorMemory.add()"),
    "memory.search": (lambda o: o.memory.search("x", user_id="u"), "VectorMemory.search()"),
    "memory.invoking": (lambda o: o.memory.invoking(Session(), []), "invoking()"),
    "agent.run": (lambda o: o.agent.run("hi"), "memweave.orchestration.agent.Agent.run()"),
    "initiate_chats": (
        lambda o: sync.initiate_chats(o.agent, [sync.ChatSpec(o.other, "hi", max_turns=1)]),
        "memweave.orchestration.initiate_chats()",
    ),
    "workflow.run": (lambda o: o.workflow.run("hi"), "HandoffWorkflow.run()"),
    "workflow.pending_requests": (
        lambda o: o.workflow.pending_requests(),
        "HandoffWorkflow.pending_requests()",
    ),
}


@pytest.mark.parametrize("call", sorted(CALLS))
def test_blocking_call_inside_running_loop_raises_at_once(objects: Objects, call: str) -> None:
    """A blocking call inside a running event loop raises `SyncCallInEventLoop` (a
    `MemweaveError`) within 1 s, naming the async method to await, and starts nothing."""
    function, awaited = CALLS[call]

    async def inside_a_loop() -> tuple[BaseException, float]:
        started = time.monotonic()
        with pytest.raises(SyncCallInEventLoop) as raised:
            function(objects)
        return raised.value, time.monotonic() - started

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a coroutine made and never awaited would warn
        error, elapsed = asyncio.run(inside_a_loop())
    assert elapsed < 1
    assert isinstance(error, MemweaveError)
    assert isinstance(error, RuntimeError)
    assert awaited in str(error)
    assert "memweave.sync" in str(error)


def test_blocking_call_inside_running_loop_changes_nothing(objects: Objects) -> None:
    """A refused call stores nothing, and the object keeps working outside the loop."""
    before = objects.history.count_messages("s")

    async def inside_a_loop() -> None:
        with pytest.raises(SyncCallInEventLoop):
            objects.history.add_messages("s", [ChatMessage.user("refused")])

    asyncio.run(inside_a_loop())
    assert objects.history.count_messages("s") == before
    assert not objects.history.closed


def test_blocking_call_on_the_portal_loop_raises_instead_of_deadlocking(objects: Objects) -> None:
    """Async code running on the portal itself (a callback of an agent, say) that calls the
    blocking face gets `SyncCallInEventLoop`, not a wait on itself."""

    async def on_the_portal() -> int:
        return objects.history.count_messages("s")

    with pytest.raises(SyncCallInEventLoop):
        portal().run(on_the_portal)


def test_error_names_blocking_method_and_async_method(objects: Objects) -> None:
    """The error says which blocking method was called and which coroutine to await."""

    async def inside_a_loop() -> SyncCallInEventLoop:
        with pytest.raises(SyncCallInEventLoop) as raised:
            objects.history.count_messages("s")
        return raised.value

    error = asyncio.run(inside_a_loop())
    assert error.method == "memweave.sync.InMemoryChatHistoryProvider.count_messages()"
    assert error.instead == (
        "memweave.providers.memory.InMemoryChatHistoryProvider.count_messages()"
    )
