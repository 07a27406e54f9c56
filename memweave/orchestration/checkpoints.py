"""Workflow checkpoints: the `Checkpoint` document, the `CheckpointStore` contract, and backends.

A checkpoint is a small versioned JSON document (never pickle) that says where a handoff
workflow stands: the agent in control, pending requests, counters, the history session the
conversation is stored under (and the id of its newest message then), and its parent
checkpoint. The conversation itself lives in the
`ChatHistoryProvider`; a checkpoint only points at it. Stores keep the checkpoints of each
`(workflow, session)` thread in the order they were saved.

Backends: `InMemoryCheckpointStore` (here), `SQLCheckpointStore` and `RedisCheckpointStore`
(imported on first use, so their drivers are needed only when used), and
`checkpoint_store_from_url` for the same URLs as the history providers.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import json
import re
import threading
import uuid
from abc import ABC, abstractmethod
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, JsonValue, ValidationError

from memweave._closing import AsyncCloseable
from memweave._urls import mask_url
from memweave.errors import (
    ConfigurationError,
    CorruptRecord,
    InvalidArgument,
    ProviderClosed,
    SchemaMismatch,
)
from memweave.messages import ToolCall
from memweave.providers._namespace import ANY, check_namespace

if TYPE_CHECKING:
    from memweave.orchestration._checkpoints_redis import RedisCheckpointStore
    from memweave.orchestration._checkpoints_sql import SQLCheckpointStore

__all__ = [
    "CHECKPOINT_FORMAT_VERSION",
    "ApprovalDecision",
    "Checkpoint",
    "CheckpointStore",
    "InMemoryCheckpointStore",
    "PendingHandoff",
    "PendingRequest",
    "RedisCheckpointStore",
    "SQLCheckpointStore",
    "checkpoint_store_from_url",
    "thread_key",
]

CHECKPOINT_FORMAT_VERSION = 1
"""Version of the checkpoint JSON layout written by this memweave."""

_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def thread_key(workflow: str, session_id: str) -> str:
    """The storage key of a `(workflow, session)` thread: a digest, the same on every backend.

    A digest rather than the names themselves, so no character of a workflow name or session
    id can change a key, a hash tag or a pattern, and every database compares it exactly.
    """
    raw = json.dumps([workflow, session_id], ensure_ascii=False).encode()
    return hashlib.blake2b(raw, digest_size=16).hexdigest()


class ApprovalDecision(BaseModel):
    """A person's answer to a `ToolApprovalRequest`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    approved: bool
    """Whether the call may run."""
    reason: str | None = None
    """Why, when given; a denial's reason reaches the model with the refusal."""


class PendingRequest(BaseModel):
    """A request a paused workflow waits on."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    request_id: str
    """The id the response must be given under."""
    kind: Literal["user_input", "tool_approval"]
    """What is asked: a user message, or approval of a tool call."""
    agent: str
    """The agent that asked."""
    tool_call: ToolCall | None = None
    """The call waiting for approval (tool approvals only)."""
    decision: ApprovalDecision | None = None
    """The answer already given, while other requests of the same step are still open."""


class PendingHandoff(BaseModel):
    """A handoff decided in a step that is still waiting for tool approvals."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    source: str
    """The agent handing off."""
    target: str
    """The agent taking over."""
    reason: str = ""
    """Why, as the model wrote it."""
    task: str = ""
    """What the target should do, as the model wrote it."""
    update: dict[str, JsonValue] | None = None
    """The shared-state update the handoff carried (already applied), shown to the target."""


class Checkpoint(BaseModel):
    """Where a handoff workflow stands after one step; small, versioned, JSON only."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    v: Literal[1] = 1
    """The layout version."""
    id: str = Field(default_factory=lambda: uuid.uuid4().hex, pattern=_ID.pattern)
    """Unique checkpoint id."""
    parent_id: str | None = None
    """The checkpoint this one follows, or None for a thread's first."""
    workflow: str
    """The workflow's name."""
    session_id: str
    """The history session holding the conversation."""
    last_message_id: str | None = None
    """The id of the conversation's newest message when the checkpoint was taken. A resume
    that finds messages stored after it completes the step that stored them instead of
    running that step again; None means unknown (nothing is assumed)."""
    created_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    """When the checkpoint was taken (UTC)."""
    status: Literal["running", "waiting", "idle"]
    """`running`: the current agent's model call is next (re-run after a failure);
    `waiting`: requests are pending; `idle`: the run ended and a new message starts one."""
    current_agent: str
    """The agent in control."""
    pending: tuple[PendingRequest, ...] = ()
    """Open requests (with any answers already given)."""
    pending_handoff: PendingHandoff | None = None
    """A handoff to carry out once pending tool approvals are answered."""
    handoffs: int = 0
    """Handoffs since the last user message."""
    trail: tuple[str, ...] = ()
    """Agents that held control since the last user message, in order (the ping-pong guard)."""
    autonomous_turns: dict[str, int] = Field(default_factory=dict)
    """Continue prompts each agent received since the last user message."""
    tool_rounds: int = 0
    """Rounds of tool calls in the current agent's turn so far."""
    session: dict[str, JsonValue] = Field(default_factory=dict)
    """The `Session` (user id and context-provider state), as `Session.to_dict()`."""
    state: dict[str, JsonValue] | None = None
    """The workflow's shared state as JSON (None for a workflow without one)."""
    queue: tuple[PendingHandoff, ...] = ()
    """Delegations a supervisor made in one message, after the first: carried out in order,
    each when the worker before it answers."""
    delegations: dict[str, tuple[str, ...]] = Field(default_factory=dict)
    """Per target, digests of what each supervisor delegation or self-route since the last
    user message gave it (the ping-pong guard's record of progress)."""

    def to_json(self) -> bytes:
        """Return the stored form: UTF-8 JSON."""
        return self.model_dump_json().encode()

    @classmethod
    def from_json(cls, data: bytes | str, *, session_id: str = "", position: int = 0) -> Self:
        """Decode the stored form.

        Raises:
            SchemaMismatch: The document was written in another layout version.
            CorruptRecord: The document is not a valid checkpoint.
        """
        try:
            raw = json.loads(data)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise CorruptRecord(session_id, position, f"checkpoint is not JSON: {exc}") from None
        if isinstance(raw, dict) and raw.get("v") != CHECKPOINT_FORMAT_VERSION:
            raise SchemaMismatch(raw.get("v"), CHECKPOINT_FORMAT_VERSION, "a stored checkpoint")
        try:
            return cls.model_validate(raw)
        except ValidationError as exc:
            error = exc.errors(include_url=False)[0]
            where = ".".join(str(part) for part in error["loc"]) or "checkpoint"
            raise CorruptRecord(
                session_id, position, f"invalid checkpoint: {where}: {error['msg']}"
            ) from None


def _check_thread(workflow: object, session_id: object) -> str:
    if not isinstance(workflow, str) or not workflow:
        raise InvalidArgument("workflow", workflow, "must be a non-empty str")
    if not isinstance(session_id, str) or not session_id:
        raise InvalidArgument("session_id", session_id, "must be a non-empty str")
    return thread_key(workflow, session_id)


def _check_limit(limit: object) -> int | None:
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise InvalidArgument("limit", limit, "must be a positive int or None")
    return limit


class CheckpointStore(AsyncCloseable, ABC):
    """Stores the checkpoints of workflow threads; a thread is one `(workflow, session)`.

    Rules every store keeps: saving is atomic and idempotent by checkpoint id (saving an id
    again changes nothing); a thread's checkpoints come back in the order they were saved;
    threads are isolated whatever characters their names hold (see `thread_key`); with
    `max_checkpoints`, only the newest N of a thread are kept. The public methods validate and
    encode once, here, and call one `_` primitive each.

    Args:
        max_checkpoints: Keep at most this many checkpoints per thread (newest kept).

    Raises:
        ConfigurationError: `max_checkpoints` is not a positive int.
    """

    def __init__(self, *, max_checkpoints: int | None = None) -> None:
        if max_checkpoints is not None and (
            isinstance(max_checkpoints, bool)
            or not isinstance(max_checkpoints, int)
            or max_checkpoints < 1
        ):
            raise ConfigurationError(
                f"max_checkpoints must be a positive int, got {max_checkpoints!r}"
            )
        self.max_checkpoints = max_checkpoints
        self._closed = False

    async def save_checkpoint(self, checkpoint: Checkpoint) -> None:
        """Store `checkpoint` as its thread's newest. Saving a stored id again is a no-op.

        Raises:
            InvalidArgument: `checkpoint` is not a `Checkpoint`.
            BackendUnavailable: The store could not be reached.
            ProviderClosed: The store was closed.
        """
        self._check_open("save_checkpoint")
        if not isinstance(checkpoint, Checkpoint):
            raise InvalidArgument("checkpoint", checkpoint, "expected a Checkpoint")
        thread = _check_thread(checkpoint.workflow, checkpoint.session_id)
        with self._map_errors():
            await self._put(thread, checkpoint, checkpoint.to_json(), self.max_checkpoints)

    async def get_checkpoint(
        self, workflow: str, session_id: str, checkpoint_id: str | None = None
    ) -> Checkpoint | None:
        """Return one checkpoint of the thread: `checkpoint_id`, or the newest when None.

        Returns None when the thread has no such checkpoint.

        Raises:
            CorruptRecord: The stored document cannot be decoded.
            SchemaMismatch: It was written in another layout version.
            ProviderClosed: The store was closed.
        """
        self._check_open("get_checkpoint")
        thread = _check_thread(workflow, session_id)
        if checkpoint_id is not None and (
            not isinstance(checkpoint_id, str) or not _ID.match(checkpoint_id)
        ):
            raise InvalidArgument("checkpoint_id", checkpoint_id, "not a checkpoint id")
        with self._map_errors():
            data = await self._get(thread, checkpoint_id)
        return None if data is None else Checkpoint.from_json(data, session_id=session_id)

    async def list_checkpoints(
        self, workflow: str, session_id: str, *, limit: int | None = None
    ) -> list[Checkpoint]:
        """Return the thread's checkpoints, newest first; with `limit=N`, only the newest N.

        An unknown thread has none.

        Raises:
            ProviderClosed: The store was closed.
        """
        self._check_open("list_checkpoints")
        thread = _check_thread(workflow, session_id)
        limit = _check_limit(limit)
        with self._map_errors():
            rows = await self._list(thread, limit)
        return [
            Checkpoint.from_json(row, session_id=session_id, position=index)
            for index, row in enumerate(rows)
        ]

    async def delete_checkpoints(self, workflow: str, session_id: str) -> None:
        """Delete every checkpoint of the thread. Deleting an unknown thread is a no-op.

        Raises:
            ProviderClosed: The store was closed.
        """
        self._check_open("delete_checkpoints")
        thread = _check_thread(workflow, session_id)
        with self._map_errors():
            await self._delete(thread)

    async def aclose(self) -> None:
        """Release connections this store opened. Idempotent; a client or engine passed in is
        left open. Any other method called afterwards raises `ProviderClosed`."""
        if self._closed:
            return
        self._closed = True
        with self._map_errors():
            await self._aclose()

    @property
    def closed(self) -> bool:
        """Whether `aclose()` was called."""
        return self._closed

    def _check_open(self, method: str) -> None:
        if self._closed:
            raise ProviderClosed(type(self).__name__, method)

    @contextlib.contextmanager
    def _map_errors(self) -> Iterator[None]:
        """Translate driver exceptions into memweave errors; backends override this."""
        yield

    # -- backend primitives -------------------------------------------------------------------

    @abstractmethod
    async def _put(
        self, thread: str, checkpoint: Checkpoint, data: bytes, max_checkpoints: int | None
    ) -> None:
        """Atomically append `data` (the encoded `checkpoint`) unless the thread holds its id
        already, then keep only the newest `max_checkpoints`."""

    @abstractmethod
    async def _get(self, thread: str, checkpoint_id: str | None) -> bytes | None:
        """Return the stored document (the newest when `checkpoint_id` is None), or None."""

    @abstractmethod
    async def _list(self, thread: str, limit: int | None) -> list[bytes]:
        """Return stored documents newest first, at most `limit`."""

    @abstractmethod
    async def _delete(self, thread: str) -> None:
        """Delete the thread's documents."""

    async def _aclose(self) -> None:
        """Release resources; called once by `aclose`."""


class InMemoryCheckpointStore(CheckpointStore):
    """Checkpoints in this process's memory, as encoded JSON; thread-safe, lost on exit.

    Stored bytes are decoded on every read, so changing a returned checkpoint never changes
    the store. Works in any event loop, and in several at once: it holds no connections, and
    one thread lock guards it.

    Args:
        namespace: Checked and kept (any non-empty str), so options written for any store
            work here; each store's data is its own anyway.
        max_checkpoints: Keep at most this many checkpoints per thread (newest kept).
    """

    def __init__(self, *, namespace: str | None = None, max_checkpoints: int | None = None) -> None:
        self.namespace = check_namespace(namespace, ANY, owner=type(self).__name__)
        """The namespace given (default `memweave`); it stores nothing apart here."""
        super().__init__(max_checkpoints=max_checkpoints)
        self._threads: dict[str, list[tuple[str, bytes]]] = {}
        self._lock = threading.Lock()

    async def _put(
        self, thread: str, checkpoint: Checkpoint, data: bytes, max_checkpoints: int | None
    ) -> None:
        checkpoint_id = checkpoint.id
        with self._lock:
            entries = self._threads.setdefault(thread, [])
            if any(stored_id == checkpoint_id for stored_id, _ in entries):
                return
            entries.append((checkpoint_id, data))
            if max_checkpoints is not None and len(entries) > max_checkpoints:
                del entries[: len(entries) - max_checkpoints]

    async def _get(self, thread: str, checkpoint_id: str | None) -> bytes | None:
        with self._lock:
            entries = self._threads.get(thread, [])
            if checkpoint_id is None:
                return entries[-1][1] if entries else None
            return next((data for stored_id, data in entries if stored_id == checkpoint_id), None)

    async def _list(self, thread: str, limit: int | None) -> list[bytes]:
        with self._lock:
            entries = self._threads.get(thread, [])
            chosen = entries if limit is None else entries[-limit:]
            return [data for _, data in reversed(chosen)]

    async def _delete(self, thread: str) -> None:
        with self._lock:
            self._threads.pop(thread, None)


_SQL_SCHEMES = {
    "sqlite",
    "sqlite+aiosqlite",
    "postgresql",
    "postgresql+asyncpg",
    "mysql",
    "mysql+aiomysql",
    "mariadb",
    "mariadb+aiomysql",
}
_REDIS_SCHEMES = {"redis", "rediss", "unix", "redis+cluster", "rediss+cluster"}


def checkpoint_store_from_url(url: str, **options: Any) -> CheckpointStore:
    """Build the checkpoint store that `url` names; `options` go to its constructor.

    Takes the URLs of `memweave.providers.from_url`: `memory://`, SQLAlchemy URLs
    (`sqlite+aiosqlite:///chat.db`, `postgresql+asyncpg://...`, `mysql+aiomysql://...`) and
    `redis://`, `rediss://`, `unix://` and `redis+cluster://`. Every store takes
    `namespace=`, with the meaning and default of the history providers'.

    Raises:
        ConfigurationError: The scheme has no checkpoint store.
        MissingDependency: The backend's driver is not installed.
    """
    if not isinstance(url, str) or "://" not in url:
        raise ConfigurationError(f"not a URL: {url!r}; expected <scheme>://...")
    scheme = url.split("://", 1)[0].lower()
    if scheme == "memory":
        return InMemoryCheckpointStore(**options)
    if scheme in _SQL_SCHEMES:
        from memweave.orchestration._checkpoints_sql import SQLCheckpointStore

        return SQLCheckpointStore(url, **options)
    if scheme in _REDIS_SCHEMES:
        from memweave.orchestration._checkpoints_redis import RedisCheckpointStore

        return RedisCheckpointStore(url, **options)
    supported = ", ".join(sorted({"memory", *_SQL_SCHEMES, *_REDIS_SCHEMES}))
    raise ConfigurationError(
        f"no checkpoint store for URL scheme {scheme!r} in {mask_url(url)!r}; supported: "
        f"{supported}"
    )


_LAZY = {
    "SQLCheckpointStore": "memweave.orchestration._checkpoints_sql",
    "RedisCheckpointStore": "memweave.orchestration._checkpoints_redis",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
