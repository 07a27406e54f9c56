"""Blocking checkpoint stores, on every backend that has one."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from memweave import sync
from memweave.errors import InvalidArgument, ProviderClosed
from memweave.orchestration import Checkpoint
from tests.conformance._harness import BackendHarness


@pytest.fixture
def store(harness: BackendHarness) -> Iterator[sync.CheckpointStore]:
    """A blocking checkpoint store of the backend under test, from its URL."""
    assert harness.url is not None
    with sync.checkpoint_store_from_url(harness.url, max_checkpoints=3) as built:
        yield built


def _checkpoint(workflow: str, session_id: str, n: int) -> Checkpoint:
    return Checkpoint(
        workflow=workflow, session_id=session_id, status="idle", current_agent=f"agent{n}"
    )


def test_checkpoint_store_from_url_builds_the_backends_blocking_store(
    harness: BackendHarness, store: sync.CheckpointStore
) -> None:
    """`checkpoint_store_from_url` returns the backend's blocking class."""
    expected = {
        "memory": sync.InMemoryCheckpointStore,
        "sqlite": sync.SQLCheckpointStore,
        "postgres": sync.SQLCheckpointStore,
        "mysql": sync.SQLCheckpointStore,
        "redis": sync.RedisCheckpointStore,
    }[harness.name]
    assert type(store) is expected


def test_checkpoints_round_trip_newest_first_and_trimmed(
    store: sync.CheckpointStore, session_id: str
) -> None:
    """Saved checkpoints come back newest first, a saved id is not saved twice, only the
    newest `max_checkpoints` are kept, and delete empties the thread."""
    saved = [_checkpoint("wf", session_id, n) for n in range(5)]
    for checkpoint in saved:
        store.save_checkpoint(checkpoint)
    store.save_checkpoint(saved[-1])
    assert store.max_checkpoints == 3
    assert [c.id for c in store.list_checkpoints("wf", session_id)] == [
        c.id for c in reversed(saved[2:])
    ]
    assert store.get_checkpoint("wf", session_id) == saved[-1]
    assert store.get_checkpoint("wf", session_id, saved[3].id) == saved[3]
    assert store.list_checkpoints("wf", session_id, limit=1) == [saved[-1]]
    store.delete_checkpoints("wf", session_id)
    assert store.get_checkpoint("wf", session_id) is None


def test_checkpoint_store_raises_the_async_errors(store: sync.CheckpointStore) -> None:
    """Bad input raises the async store's typed error."""
    with pytest.raises(InvalidArgument):
        store.save_checkpoint("not a checkpoint")  # type: ignore[arg-type]


def test_checkpoint_store_after_close_raises_provider_closed(
    store: sync.CheckpointStore, session_id: str
) -> None:
    """Every method after `close()` raises `ProviderClosed`."""
    store.close()
    store.close()
    assert store.closed
    with pytest.raises(ProviderClosed, match="get_checkpoint"):
        store.get_checkpoint("wf", session_id)
    with pytest.raises(ProviderClosed, match="save_checkpoint"):
        store.save_checkpoint(_checkpoint("wf", session_id, 0))
