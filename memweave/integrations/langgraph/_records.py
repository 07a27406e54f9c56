"""What every `MemweaveCheckpointSaver` storage shares: storage keys, the stored checkpoint
document, and the primitives a storage implements (`CheckpointStorage`).

Keys never come from the names themselves. A thread id, a checkpoint namespace, a run id and a
`(channel, version)` pair are each stored under a BLAKE2b digest (`key_of`), so no character
of them (`:`, `|`, `{}`, `%`, `_`, case, unicode) can change a key name, a hash tag, a pattern
or a collation's idea of equality; the names themselves are stored beside the keys.

A checkpoint is stored as three parts: its document (the LangGraph `Checkpoint` as JSON, with
channel values that are JSON scalars inline), its metadata (JSON), and one blob per channel
value that is not (LangGraph's serializer's `(type, bytes)`), keyed by channel and version so
that a value unchanged from one checkpoint to the next is stored once.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import re
import uuid
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from memweave.errors import CorruptRecord, InvalidArgument, SchemaMismatch

__all__ = [
    "DOCUMENT_VERSION",
    "Blob",
    "CheckpointStorage",
    "CorruptCheckpoint",
    "Cursor",
    "Head",
    "NewCheckpoint",
    "Write",
    "blob_key",
    "check_name",
    "decode_document",
    "decode_metadata",
    "encode_json",
    "inline",
    "key_of",
]

DOCUMENT_VERSION = 1
"""Version of the stored checkpoint document written by this memweave."""

_UNSTORABLE = re.compile(r"[\x00\ud800-\udfff]")


class CorruptCheckpoint(CorruptRecord):
    """A stored checkpoint (its document, metadata, a channel value or a pending write) could
    not be decoded; the thread's other checkpoints stay readable.

    Also a `CorruptRecord`: `session_id` holds the thread id and `message_id` the checkpoint id.

    Attributes:
        thread_id: The thread holding the checkpoint.
        checkpoint_ns: Its namespace (`""` for the root graph).
        checkpoint_id: The checkpoint's id.
    """

    def __init__(self, thread_id: str, checkpoint_ns: str, checkpoint_id: str, reason: str):
        super().__init__(thread_id, None, reason, message_id=checkpoint_id)
        self.thread_id = thread_id
        self.checkpoint_ns = checkpoint_ns
        self.checkpoint_id = checkpoint_id
        where = f" (namespace {checkpoint_ns!r})" if checkpoint_ns else ""
        self.args = (
            f"corrupt stored checkpoint {checkpoint_id!r} in thread {thread_id!r}{where}: {reason}",
        )


def key_of(text: str) -> str:
    """The storage key of a name: 32 hex characters of its BLAKE2b digest.

    The one escaping function of both storages: a digest cannot hold a brace, a glob or `LIKE`
    character, and compares exactly under any collation.
    """
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


def blob_key(channel: str, version: str | int | float) -> str:
    """The key of one channel's value at one version (`"1"` and `1` are different versions)."""
    return key_of(json.dumps([channel, version], ensure_ascii=False))


def check_name(name: str, value: object, *, empty: bool = False, coerce: bool = False) -> str:
    """Return `value` if it can be stored as a thread id, namespace, checkpoint or task id.

    Any characters are allowed except NUL and lone surrogates, which some databases cannot
    store; names are compared exactly. With `coerce`, an int or UUID becomes its `str()`, as
    LangGraph's own savers do with thread ids.

    Raises:
        InvalidArgument: `value` is not a str (or is empty without `empty`), or holds NUL or a
            lone surrogate.
    """
    if coerce and isinstance(value, int | uuid.UUID) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        raise InvalidArgument(name, value, f"must be a str, not {type(value).__name__}")
    if not value and not empty:
        raise InvalidArgument(name, value, "must not be empty")
    bad = _UNSTORABLE.search(value)
    if bad is not None:
        raise InvalidArgument(name, value, f"holds {bad.group()!r}, which cannot be stored")
    return value


def inline(value: object) -> bool:
    """Whether a channel value is kept in the document: a JSON scalar that JSON gives back
    exactly (`None`, `bool`, `int`, `str` and finite `float`, not their subclasses)."""
    kind = type(value)
    if kind is float:
        return math.isfinite(value)  # type: ignore[arg-type]
    return value is None or kind in (str, int, bool)


def encode_json(name: str, value: object) -> bytes:
    """Encode `value` as compact UTF-8 JSON.

    Raises:
        InvalidArgument: `value` holds something JSON cannot (a `NaN`, an object, ...).
    """
    try:
        return json.dumps(
            value, ensure_ascii=False, allow_nan=False, separators=(",", ":")
        ).encode()
    except (TypeError, ValueError) as exc:
        raise InvalidArgument(name, value, f"cannot be stored as JSON: {exc}") from None


@dataclass(slots=True)
class Write:
    """One stored pending write."""

    task_id: str
    idx: int
    channel: str
    type: str
    data: bytes
    task_path: str = ""


@dataclass(slots=True)
class Blob:
    """One stored channel value, under `blob_key(channel, version)`."""

    key: str
    type: str
    data: bytes | None


@dataclass(slots=True)
class Head:
    """A stored checkpoint as read back, with its writes and blobs once `details` loaded them."""

    thread_id: str
    checkpoint_ns: str
    checkpoint_id: str
    parent_id: str | None
    document: bytes
    metadata: bytes
    refs: tuple[str, ...]
    """The keys of the blobs holding its channel values."""
    writes: list[Write] = field(default_factory=list)
    blobs: dict[str, Blob] = field(default_factory=dict)

    @property
    def thread_key(self) -> str:
        """`key_of(thread_id)`."""
        return key_of(self.thread_id)

    @property
    def ns_key(self) -> str:
        """`key_of(checkpoint_ns)`."""
        return key_of(self.checkpoint_ns)


@dataclass(slots=True)
class NewCheckpoint:
    """A checkpoint ready to store: its head, the blobs of its new channel versions, and the
    facts the storage indexes."""

    head: Head
    blobs: list[Blob]
    run_id: str | None
    delta: bool
    """The thread uses a `DeltaChannel` (which `prune(strategy="keep_latest")` refuses)."""


@dataclass(frozen=True, slots=True)
class Cursor:
    """A position in newest-first order: rows strictly after it come next.

    Rows are ordered by checkpoint id, then namespace key, then thread key, all descending;
    a cursor of a checkpoint id alone (the keys left empty) is the position just below it.
    """

    checkpoint_id: str
    ns_key: str = ""
    thread_key: str = ""

    def before(self, checkpoint_id: str, ns_key: str, thread_key: str) -> bool:
        """Whether a row comes after this position."""
        return (checkpoint_id, ns_key, thread_key) < (
            self.checkpoint_id,
            self.ns_key,
            self.thread_key,
        )


def decode_document(head: Head) -> dict[str, Any]:
    """Decode a head's document into `{"checkpoint": {...}, "blobs": [...]}`.

    Raises:
        SchemaMismatch: It was written in another document version.
        CorruptCheckpoint: It is not a valid document.
    """
    raw = _loads(head, head.document, "document")
    if not isinstance(raw, dict):
        raise _corrupt(head, "the document is not a JSON object")
    if raw.get("v") != DOCUMENT_VERSION:
        raise SchemaMismatch(raw.get("v"), DOCUMENT_VERSION, "a stored LangGraph checkpoint")
    checkpoint, blobs = raw.get("checkpoint"), raw.get("blobs")
    if (
        not isinstance(checkpoint, dict)
        or not isinstance(checkpoint.get("channel_values"), dict)
        or not isinstance(checkpoint.get("channel_versions"), dict)
        or not isinstance(blobs, list)
    ):
        raise _corrupt(head, "the document lacks its checkpoint, channel values or blob list")
    return raw


def decode_metadata(head: Head) -> dict[str, Any]:
    """Decode a head's metadata.

    Raises:
        CorruptCheckpoint: It is not a JSON object.
    """
    raw = _loads(head, head.metadata, "metadata")
    if not isinstance(raw, dict):
        raise _corrupt(head, "the metadata is not a JSON object")
    return raw


def _loads(head: Head, data: bytes, what: str) -> Any:
    try:
        return json.loads(data)
    except (ValueError, TypeError) as exc:
        raise _corrupt(head, f"the {what} is not JSON: {exc}") from None


def _corrupt(head: Head, reason: str) -> CorruptCheckpoint:
    return CorruptCheckpoint(head.thread_id, head.checkpoint_ns, head.checkpoint_id, reason)


class CheckpointStorage(ABC):
    """The primitives a saver's storage implements; each is one atomic step where it writes.

    Names arrive checked (`check_name`); the storage keys them with `key_of`.
    """

    @abstractmethod
    async def put(self, new: NewCheckpoint) -> None:
        """Store the checkpoint (replacing one of the same thread, namespace and id) and the
        blobs it lacks, in one step."""

    @abstractmethod
    async def put_writes(
        self, thread_id: str, checkpoint_ns: str, checkpoint_id: str, writes: Sequence[Write]
    ) -> None:
        """Store writes in one step: one with a negative `idx` replaces the stored one of its
        `(task_id, idx)`, any other is stored only if that pair is free."""

    @abstractmethod
    async def read(
        self,
        thread_id: str | None,
        checkpoint_ns: str | None,
        *,
        checkpoint_id: str | None = None,
        after: Cursor | None = None,
        count: int | None = None,
        details: bool = True,
    ) -> list[Head]:
        """Return checkpoints newest first: of one thread (or all) and namespace (or all),
        only `checkpoint_id` when given, after the cursor, at most `count`; with `details`,
        their writes and blobs too."""

    @abstractmethod
    async def details(self, heads: Sequence[Head]) -> None:
        """Load the writes and blobs of `heads` into them."""

    @abstractmethod
    async def delete_thread(self, thread_id: str) -> None:
        """Delete everything stored for the thread."""

    @abstractmethod
    async def delete_runs(self, run_ids: Sequence[str]) -> None:
        """Delete the checkpoints whose metadata names one of the runs, their writes, and the
        blobs no remaining checkpoint uses."""

    @abstractmethod
    async def copy_thread(self, source: str, target: str) -> None:
        """Copy the source thread's checkpoints, writes and blobs to the target; checkpoints
        the target already holds (same namespace and id) are kept."""

    @abstractmethod
    async def prune(self, thread_ids: Sequence[str], *, keep_latest: bool) -> None:
        """Delete the threads' checkpoints, or all but the newest of each namespace."""

    @abstractmethod
    async def aclose(self) -> None:
        """Release what the storage opened (never a client or engine it was given)."""

    def map_errors(self) -> contextlib.AbstractContextManager[None]:
        """A context manager translating driver exceptions into memweave errors."""
        return contextlib.nullcontext()
