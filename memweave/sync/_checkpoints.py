"""Blocking checkpoint stores: `CheckpointStore`, `InMemoryCheckpointStore`, and
`checkpoint_store_from_url`."""

from __future__ import annotations

import importlib
from typing import Any, ClassVar

from memweave.errors import InvalidArgument
from memweave.orchestration import checkpoints as _checkpoints
from memweave.orchestration.checkpoints import Checkpoint
from memweave.sync._wrap import BlockingCloseable, mirrors, run

__all__ = ["CheckpointStore", "InMemoryCheckpointStore", "checkpoint_store_from_url"]


class CheckpointStore(BlockingCloseable[_checkpoints.CheckpointStore]):
    """Blocking face of a `memweave.orchestration.CheckpointStore`: the same methods, arguments,
    results and errors, as plain calls, safe to share between threads.

    Args:
        store: An async store to drive that no event loop has used yet; from now on use it
            only through this object, which closes it.

    Raises:
        InvalidArgument: `store` is not a `memweave.orchestration.CheckpointStore`.
    """

    _wraps: ClassVar[type[object]] = _checkpoints.CheckpointStore

    def __init__(self, store: _checkpoints.CheckpointStore) -> None:
        if not isinstance(store, _checkpoints.CheckpointStore):
            raise InvalidArgument("store", store, "expected a memweave CheckpointStore")
        super().__init__(store)

    @property
    def max_checkpoints(self) -> int | None:
        """At most this many checkpoints are kept per thread (None: no limit)."""
        return self._async.max_checkpoints

    def save_checkpoint(self, checkpoint: Checkpoint) -> None:
        """Store `checkpoint` as its thread's newest. Saving a stored id again is a no-op."""
        self._call(self._async.save_checkpoint, checkpoint)

    def get_checkpoint(
        self, workflow: str, session_id: str, checkpoint_id: str | None = None
    ) -> Checkpoint | None:
        """Return `checkpoint_id` of the thread, or its newest when None; None if missing."""
        return self._call(self._async.get_checkpoint, workflow, session_id, checkpoint_id)

    def list_checkpoints(
        self, workflow: str, session_id: str, *, limit: int | None = None
    ) -> list[Checkpoint]:
        """Return the thread's checkpoints, newest first; with `limit=N`, the newest N."""
        return self._call(self._async.list_checkpoints, workflow, session_id, limit=limit)

    def delete_checkpoints(self, workflow: str, session_id: str) -> None:
        """Delete every checkpoint of the thread. Deleting an unknown thread is a no-op."""
        self._call(self._async.delete_checkpoints, workflow, session_id)


class InMemoryCheckpointStore(CheckpointStore):
    """Blocking face of `memweave.orchestration.InMemoryCheckpointStore`. Takes the same
    arguments."""

    _wraps = _checkpoints.InMemoryCheckpointStore
    _async: _checkpoints.InMemoryCheckpointStore

    @mirrors(_checkpoints.InMemoryCheckpointStore)
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._build(_checkpoints.InMemoryCheckpointStore, args, kwargs)

    @property
    def namespace(self) -> str:
        """The namespace given (default `memweave`); it stores nothing apart here."""
        return self._async.namespace


_FACES = {
    "InMemoryCheckpointStore": "memweave.sync._checkpoints",
    "SQLCheckpointStore": "memweave.sync._sql",
    "RedisCheckpointStore": "memweave.sync._redis",
}


def checkpoint_store_from_url(url: str, **options: Any) -> CheckpointStore:
    """Build the blocking checkpoint store that `url` names; `options` go to its constructor.

    Takes the URLs of `memweave.orchestration.checkpoint_store_from_url`.

    Raises:
        ConfigurationError: The scheme has no checkpoint store.
        MissingDependency: The backend's driver is not installed.
        SyncCallInEventLoop: Called inside a running event loop.
    """
    store = run(
        "memweave.sync.checkpoint_store_from_url()",
        "the methods of memweave.orchestration.checkpoint_store_from_url(...)",
        _from_url,
        url,
        options,
    )
    return adopt_store(store)


async def _from_url(url: str, options: dict[str, Any]) -> _checkpoints.CheckpointStore:
    return _checkpoints.checkpoint_store_from_url(url, **options)


def adopt_store(store: _checkpoints.CheckpointStore) -> CheckpointStore:
    """The blocking face of an async store already on the portal loop."""
    module = _FACES.get(type(store).__name__)
    face: type[CheckpointStore] = CheckpointStore
    if module is not None:
        candidate: type[CheckpointStore] = getattr(
            importlib.import_module(module), type(store).__name__
        )
        if isinstance(store, candidate._wraps):
            face = candidate
    return face._adopt(store)
