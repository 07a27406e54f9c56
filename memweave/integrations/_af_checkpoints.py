"""`MemweaveCheckpointStorage`: Agent Framework's `CheckpointStorage` on memweave's SQL and
Redis backends, so AF's own workflows (`HandoffBuilder`, `SequentialBuilder`, any
`WorkflowBuilder`) checkpoint to memweave and resume in another process."""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any, Self

from memweave._closing import AsyncCloseable
from memweave._deprecation import renamed_argument
from memweave.errors import (
    CorruptRecord,
    InvalidArgument,
    MemweaveError,
    MissingDependency,
    ProviderClosed,
)
from memweave.integrations._af_checkpoint_backends import (
    CheckpointBackend,
    StoredCheckpoint,
)
from memweave.integrations._af_checkpoint_codec import (
    CheckpointCodec,
    DecodeError,
    EncodeError,
)
from memweave.integrations._backends import required_backend
from memweave.providers._namespace import StoredNames

try:
    from agent_framework import WorkflowCheckpoint, WorkflowCheckpointException
except ModuleNotFoundError as exc:  # pragma: no cover - exercised in a subprocess test
    raise MissingDependency("agent_framework", "agent-framework") from exc

__all__ = [
    "CheckpointNotFound",
    "CorruptWorkflowCheckpoint",
    "MemweaveCheckpointStorage",
    "UnstorableCheckpoint",
]

FORMAT_VERSION = 1
"""Version of the stored document: `{"v", "checkpoint_id", "workflow_name", "checkpoint"}`."""


class CheckpointNotFound(MemweaveError, WorkflowCheckpointException):
    """No checkpoint has this id (also AF's `WorkflowCheckpointException`, as the protocol says).

    Attributes:
        checkpoint_id: The id asked for.
    """

    def __init__(self, checkpoint_id: str) -> None:
        self.checkpoint_id = checkpoint_id
        Exception.__init__(self, f"no checkpoint found with id {checkpoint_id!r}")


class UnstorableCheckpoint(InvalidArgument, WorkflowCheckpointException):
    """A checkpoint holds a value memweave cannot store as JSON or could not rebuild on load
    (not on the allowlist); nothing was saved.

    Attributes:
        path: Where in the checkpoint the value sits (`$.state._executor_state...`).
    """

    def __init__(self, checkpoint_id: str, path: str, reason: str) -> None:
        self.path = path
        super().__init__("checkpoint", checkpoint_id, f"the value at {path} {reason}")


class CorruptWorkflowCheckpoint(CorruptRecord, WorkflowCheckpointException):
    """A stored checkpoint cannot be decoded; the workflow's other checkpoints stay readable.

    `session_id` holds the workflow name and `message_id` the checkpoint id.
    """

    def __init__(self, workflow_name: str, checkpoint_id: str, reason: str) -> None:
        super().__init__(workflow_name, None, reason, message_id=checkpoint_id)
        self.args = (
            f"corrupt stored checkpoint {checkpoint_id!r} of workflow {workflow_name!r}: {reason}",
        )


def _timestamp(text: object) -> float:
    try:
        when = datetime.fromisoformat(str(text))
    except ValueError:
        return datetime.now(UTC).timestamp()
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.timestamp()


def _latest(checkpoints: list[WorkflowCheckpoint]) -> WorkflowCheckpoint:
    """Among checkpoints sharing the newest timestamp, the one no other names as its parent
    (ties: the greatest id), as Agent Framework's own storages choose."""
    parents = {cp.previous_checkpoint_id for cp in checkpoints}
    leaves = [cp for cp in checkpoints if cp.checkpoint_id not in parents]
    return max(leaves or checkpoints, key=lambda cp: cp.checkpoint_id)


class MemweaveCheckpointStorage(AsyncCloseable):
    """Agent Framework's `CheckpointStorage` in SQLite, PostgreSQL, MariaDB/MySQL or Redis;
    process-safe.

    Checkpoints are stored as JSON only (`memweave.integrations._af_checkpoint_codec`):
    `WorkflowCheckpoint.to_dict()`, with each framework object through its own `to_dict()` /
    `from_dict()`, dataclass fields or pydantic dump, and rebuilt only from an allowlist of
    classes (Agent Framework's: its own and OpenAI's types, `register_checkpoint_type`, plus
    `allowed_checkpoint_types`). A checkpoint holding anything else is refused at `save`
    (`UnstorableCheckpoint`), not when a workflow resumes. Saving an id again replaces it.
    A workflow's checkpoints are listed in timestamp order; `get_latest` takes the newest
    timestamp and, among checkpoints sharing it, the one no other names as parent.

    SQL: one row per checkpoint in `<namespace>_af_checkpoints`, one transaction per call.
    Redis: one hash tag `{<namespace>:af}` holding the documents, each checkpoint's workflow,
    and a sorted set per workflow. Event loops: as the history providers (from a URL, any
    loop; with a `client` passed in, the loop that first used it).

    Args:
        url: `sqlite+aiosqlite:///chat.db`, `postgresql+asyncpg://...`, `mysql+aiomysql://...`,
            `redis://...` or `redis+cluster://...`.
        client: A SQLAlchemy `AsyncEngine`, or a `redis.asyncio.Redis` or `RedisCluster`, to
            use instead (left open).
        namespace: The storage's place on the server, keeping storages apart: SQL table
            `<namespace>_af_checkpoints`, Redis keys `{<namespace>:af}:...`; default
            `"memweave"`.
        allowed_checkpoint_types: Further classes a checkpoint may hold, as classes or
            `"module:qualname"` strings.
        engine: Deprecated name of `client` for a SQLAlchemy engine.
        table_prefix: Deprecated: the SQL table prefix as given (`namespace` N is `N_`).
        prefix: Deprecated: the Redis key prefix as given (`namespace` N is `N`).

    Raises:
        ConfigurationError: Not exactly one of `url` and `client`, a URL of another backend,
            a namespace the backend cannot use in its names, or a new option with its
            deprecated name.

    Example:
        ```python
        async with MemweaveCheckpointStorage.from_url("sqlite+aiosqlite:///chat.db") as storage:
            workflow = HandoffBuilder(participants=agents, checkpoint_storage=storage)...build()
        ```
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        client: Any = None,
        namespace: str | None = None,
        allowed_checkpoint_types: Iterable[str | type] = (),
        engine: Any = None,
        table_prefix: str | None = None,
        prefix: str | None = None,
    ) -> None:
        name = type(self).__name__
        client = renamed_argument(name, "engine", engine, "client", client)
        renamed_argument(name, "table_prefix", table_prefix, "namespace", namespace)
        renamed_argument(name, "prefix", prefix, "namespace", namespace)
        names = StoredNames(name, namespace, prefix=prefix, table_prefix=table_prefix)
        self._codec = CheckpointCodec(allowed_checkpoint_types)
        self._backend = self._build(url, client, names)
        self._closed = False

    @staticmethod
    def _build(url: str | None, client: Any, names: StoredNames) -> CheckpointBackend:
        from memweave.integrations._af_checkpoint_backends import (
            RedisCheckpointBackend,
            SQLCheckpointBackend,
        )

        if required_backend("MemweaveCheckpointStorage", url, client) == "sql":
            return SQLCheckpointBackend(url, engine=client, table_prefix=names.sql_prefix())
        return RedisCheckpointBackend(url, client=client, prefix=names.redis_prefix())

    @classmethod
    def from_url(cls, url: str, **options: Any) -> Self:
        """Build a storage from a URL; `async with` it to close what it opened."""
        return cls(url, **options)

    # -- the CheckpointStorage protocol ----------------------------------------------------------

    async def save(self, checkpoint: WorkflowCheckpoint) -> str:
        """Store a copy of `checkpoint` (replacing one with the same id); return its id.

        Raises:
            UnstorableCheckpoint: It holds a value that cannot be stored as JSON and rebuilt.
            BackendUnavailable: The backend failed.
            ProviderClosed: The storage was closed.
        """
        self._check_open("save")
        if not isinstance(checkpoint, WorkflowCheckpoint):
            raise InvalidArgument("checkpoint", checkpoint, "expected a WorkflowCheckpoint")
        checkpoint_id = str(checkpoint.checkpoint_id)
        try:
            encoded = self._codec.encode(checkpoint.to_dict())
        except EncodeError as exc:
            raise UnstorableCheckpoint(checkpoint_id, exc.path, exc.reason) from None
        document = {
            "v": FORMAT_VERSION,
            "checkpoint_id": checkpoint_id,
            "workflow_name": checkpoint.workflow_name,
            "checkpoint": encoded,
        }
        try:
            data = json.dumps(document, ensure_ascii=False, allow_nan=False).encode()
        except (TypeError, ValueError) as exc:
            raise UnstorableCheckpoint(checkpoint_id, "$", f"is not JSON: {exc}") from None
        await self._backend.save(
            StoredCheckpoint(
                checkpoint_id=checkpoint_id,
                workflow_name=checkpoint.workflow_name,
                timestamp=_timestamp(checkpoint.timestamp),
                data=data,
            )
        )
        return checkpoint_id

    async def load(self, checkpoint_id: str) -> WorkflowCheckpoint:
        """Return the checkpoint with this id.

        Raises:
            CheckpointNotFound: There is none (an AF `WorkflowCheckpointException`).
            CorruptWorkflowCheckpoint: It cannot be decoded.
        """
        self._check_open("load")
        data = await self._backend.load(self._check_id(checkpoint_id))
        if data is None:
            raise CheckpointNotFound(checkpoint_id)
        return self._decode(data)

    async def list_checkpoints(self, *, workflow_name: str) -> list[WorkflowCheckpoint]:
        """Return the workflow's checkpoints, oldest first (an unknown workflow has none).

        Raises:
            CorruptWorkflowCheckpoint: One cannot be decoded.
        """
        self._check_open("list_checkpoints")
        rows = await self._backend.workflow(self._check_name(workflow_name))
        return [self._decode(row) for row in rows]

    async def get_latest(self, *, workflow_name: str) -> WorkflowCheckpoint | None:
        """Return the workflow's newest checkpoint, or None."""
        self._check_open("get_latest")
        rows = await self._backend.workflow(self._check_name(workflow_name), latest=True)
        return _latest([self._decode(row) for row in rows]) if rows else None

    async def list_checkpoint_ids(self, *, workflow_name: str) -> list[str]:
        """Return the ids of the workflow's checkpoints, oldest first."""
        self._check_open("list_checkpoint_ids")
        return await self._backend.ids(self._check_name(workflow_name))

    async def delete(self, checkpoint_id: str) -> bool:
        """Delete a checkpoint; return whether it existed."""
        self._check_open("delete")
        return await self._backend.delete(self._check_id(checkpoint_id))

    # -- plumbing ----------------------------------------------------------------------------------

    def _decode(self, data: bytes) -> WorkflowCheckpoint:
        try:
            document = json.loads(data)
        except (ValueError, UnicodeDecodeError) as exc:
            raise CorruptWorkflowCheckpoint("?", "?", f"not JSON: {exc}") from None
        name = str(document.get("workflow_name", "?")) if isinstance(document, dict) else "?"
        ident = str(document.get("checkpoint_id", "?")) if isinstance(document, dict) else "?"
        if not isinstance(document, dict) or document.get("v") != FORMAT_VERSION:
            raise CorruptWorkflowCheckpoint(name, ident, "not a memweave checkpoint document")
        try:
            fields = self._codec.decode(document.get("checkpoint"))
            if not isinstance(fields, dict):
                raise DecodeError("$", "the checkpoint is not an object")
            return WorkflowCheckpoint.from_dict(fields)
        except DecodeError as exc:
            raise CorruptWorkflowCheckpoint(name, ident, str(exc)) from None
        except WorkflowCheckpointException as exc:
            raise CorruptWorkflowCheckpoint(name, ident, str(exc)) from None

    @staticmethod
    def _check_id(checkpoint_id: object) -> str:
        if not isinstance(checkpoint_id, str) or not checkpoint_id:
            raise InvalidArgument("checkpoint_id", checkpoint_id, "must be a non-empty str")
        return checkpoint_id

    @staticmethod
    def _check_name(workflow_name: object) -> str:
        if not isinstance(workflow_name, str):
            raise InvalidArgument("workflow_name", workflow_name, "must be a str")
        return workflow_name

    def _check_open(self, method: str) -> None:
        if self._closed:
            raise ProviderClosed(type(self).__name__, method)

    async def aclose(self) -> None:
        """Release what the storage opened (a client passed in is left open).
        Idempotent; any other method called afterwards raises `ProviderClosed`."""
        if self._closed:
            return
        self._closed = True
        await self._backend.aclose()

    @property
    def closed(self) -> bool:
        """Whether `aclose()` was called."""
        return self._closed

    def __repr__(self) -> str:
        return f"MemweaveCheckpointStorage(url={self._backend.url!r})"
