"""What every `MemweaveStore` backend shares: item identity, namespace paths, the stored JSON
body, and the primitives a backend implements (`StoreBackend`).

Identity never comes from the labels themselves. An item's id is a BLAKE2b digest of its
`[namespace, key]` as JSON, and its namespace path is the concatenation of one fixed-width hex
digest per label. So no character of a label or key (`:`, `|`, `{}`, `%`, `_`, `.`, case,
unicode) can change a key name, a hash tag, a `LIKE` or glob pattern, or a collation's idea of
equality, and the items under a namespace prefix are exactly those whose path starts with the
prefix's path: one index range on every backend.
"""

from __future__ import annotations

import hashlib
import json
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from memweave.errors import CorruptRecord, InvalidArgument, MissingDependency

try:
    from langgraph.store.base import InvalidNamespaceError
except ModuleNotFoundError as exc:  # pragma: no cover - needs an environment without it
    raise MissingDependency("langgraph", "langgraph") from exc

__all__ = [
    "BODY_VERSION",
    "LABEL_WIDTH",
    "MAX_DEPTH",
    "CorruptItem",
    "InvalidNamespace",
    "ItemWrite",
    "StoreBackend",
    "StoredItem",
    "StoredRow",
    "check_json",
    "check_namespace",
    "decode_row",
    "encode_body",
    "item_id",
    "namespace_path",
    "path_range",
]

BODY_VERSION = 1
"""Version of the stored item body (`encode_body`)."""

LABEL_WIDTH = 32
"""Hex characters of one label's digest in a namespace path."""

MAX_DEPTH = 32
"""Most labels a namespace may have (the path column holds `MAX_DEPTH * LABEL_WIDTH` chars)."""


class InvalidNamespace(InvalidArgument, InvalidNamespaceError):
    """A namespace (or namespace prefix) cannot be stored: LangGraph's rules (non-empty str
    labels without `.`, no NUL, a root label other than `"langgraph"` for writes) or memweave's
    depth limit. Also a LangGraph `InvalidNamespaceError`, so code catching that still does."""

    def __init__(self, namespace: object, reason: str) -> None:
        super().__init__("namespace", namespace, reason)


class CorruptItem(CorruptRecord):
    """A stored item could not be decoded; other items stay readable.

    `session_id` holds the item's namespace as JSON and `message_id` its key, when known.
    """

    def __init__(self, namespace: str, key: str | None, reason: str) -> None:
        super().__init__(namespace, None, reason, message_id=key)
        self.args = (f"corrupt stored item {key!r} in namespace {namespace}: {reason}",)


def check_namespace(namespace: object, *, write: bool = False) -> tuple[str, ...]:
    """Return `namespace` as a tuple of labels, or raise `InvalidNamespace`.

    Args:
        namespace: The caller's value (a namespace, a prefix, or a match path).
        write: Also apply the rules of writes (non-empty, root label not `"langgraph"`).
    """
    if not isinstance(namespace, tuple | list):
        raise InvalidNamespace(namespace, "must be a tuple of str labels")
    labels = tuple(namespace)
    if write and not labels:
        raise InvalidNamespace(namespace, "must not be empty")
    if len(labels) > MAX_DEPTH:
        raise InvalidNamespace(namespace, f"has more than {MAX_DEPTH} labels")
    for label in labels:
        if not isinstance(label, str):
            raise InvalidNamespace(namespace, f"label {label!r} is not a str")
        if not label:
            raise InvalidNamespace(namespace, "labels must not be empty")
        if "." in label:
            raise InvalidNamespace(namespace, f"label {label!r} contains a period")
        if "\x00" in label:
            raise InvalidNamespace(namespace, f"label {label!r} contains a NUL character")
    if write and labels[0] == "langgraph":
        raise InvalidNamespace(namespace, 'the root label "langgraph" is reserved')
    return labels


def _digest(text: str, size: int) -> str:
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=size).hexdigest()


def item_id(namespace: Sequence[str], key: str) -> str:
    """The item's storage id: 32 hex characters, the same on every backend."""
    return _digest(json.dumps([list(namespace), key], ensure_ascii=False), 16)


def namespace_path(labels: Sequence[str]) -> str:
    """The namespace's path: one `LABEL_WIDTH`-character digest per label, concatenated."""
    return "".join(_digest(label, LABEL_WIDTH // 2) for label in labels)


def path_range(labels: Sequence[str]) -> tuple[str, str] | None:
    """`[low, high)` bounds holding exactly the paths under the prefix `labels` (None: all).

    A path under the prefix starts with the prefix's path and goes on with hex digits (or,
    in Redis index members, a `|`), all below `}`.
    """
    if not labels:
        return None
    low = namespace_path(labels)
    return low, low + "}"


def encode_body(
    namespace: Sequence[str],
    key: str,
    value: Mapping[str, Any],
    texts: Sequence[str] | None,
    version: str,
) -> str:
    """The stored JSON of an item (times and TTL are kept by the backend beside it).

    Raises:
        InvalidArgument: `value` is not a JSON object (str keys; JSON values; finite numbers).
    """
    if not isinstance(value, Mapping):
        raise InvalidArgument("value", value, "must be a mapping (a JSON object) or None")
    check_json(dict(value))
    body = {
        "v": BODY_VERSION,
        "ns": list(namespace),
        "key": key,
        "value": dict(value),
        "texts": None if texts is None else list(texts),
        "version": version,
    }
    try:
        return json.dumps(body, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    except (TypeError, ValueError) as exc:
        raise InvalidArgument(
            "value", value, f"is not JSON (store JSON values only; {exc})"
        ) from None


def check_json(value: Any, *, path: str = "value") -> None:
    """Raise `InvalidArgument` unless `value` is plain JSON: dicts with str keys, lists,
    str, finite numbers, bools and None (so what is read back equals what was put)."""
    stack: list[tuple[str, Any]] = [(path, value)]
    while stack:
        where, item = stack.pop()
        if item is None or isinstance(item, str | bool | int):
            continue
        if isinstance(item, float):
            if item != item or item in (float("inf"), float("-inf")):
                raise InvalidArgument(where, item, "is not a finite number")
            continue
        if isinstance(item, dict):
            for name, child in item.items():
                if not isinstance(name, str):
                    raise InvalidArgument(where, name, "has a non-str key (JSON keys are str)")
                stack.append((f"{where}.{name}", child))
            continue
        if isinstance(item, list):
            stack.extend((f"{where}[{index}]", child) for index, child in enumerate(item))
            continue
        raise InvalidArgument(
            where, item, f"is a {type(item).__name__}, not JSON (store JSON values only)"
        )


@dataclass(frozen=True, slots=True)
class ItemWrite:
    """One put or delete of a batch, ready for a backend."""

    id: str
    """`item_id(namespace, key)`."""
    path: str
    """`namespace_path(namespace)`."""
    namespace: tuple[str, ...]
    """The labels."""
    body: str | None
    """`encode_body(...)`, or None to delete the item."""
    ttl: float | None = None
    """Seconds the item lives after its last write or refreshing read; None: no expiry."""


@dataclass(frozen=True, slots=True)
class StoredRow:
    """An item as a backend returns it, still encoded."""

    id: str
    body: str | bytes
    created_at: float
    """Seconds since the epoch, on the backend's clock."""
    updated_at: float
    ttl: float | None
    """The item's TTL in seconds, or None."""


@dataclass(frozen=True, slots=True)
class StoredItem:
    """A decoded stored item."""

    id: str
    namespace: tuple[str, ...]
    key: str
    value: dict[str, Any]
    texts: tuple[str, ...] | None
    """The indexed texts (None: the item is not indexed for search queries)."""
    version: str
    """Changes with every put; vectors are kept per version."""
    created_at: float
    updated_at: float
    ttl: float | None


def decode_row(row: StoredRow) -> StoredItem:
    """Decode a backend row.

    Raises:
        CorruptItem: The body is not a valid stored item.
    """
    try:
        body = json.loads(row.body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise CorruptItem("?", None, f"item {row.id} is not JSON: {exc}") from None
    if not isinstance(body, dict):
        raise CorruptItem("?", None, f"item {row.id} is not a JSON object")
    namespace, key = body.get("ns"), body.get("key")
    shown = json.dumps(namespace, ensure_ascii=False)
    shown_key = key if isinstance(key, str) else None
    if body.get("v") != BODY_VERSION:
        raise CorruptItem(shown, shown_key, f"unknown body version {body.get('v')!r}")
    texts = body.get("texts")
    valid = (
        isinstance(namespace, list)
        and all(isinstance(label, str) for label in namespace)
        and isinstance(key, str)
        and isinstance(body.get("value"), dict)
        and isinstance(body.get("version"), str)
        and (texts is None or (isinstance(texts, list) and all(isinstance(t, str) for t in texts)))
    )
    if not valid or not isinstance(namespace, list) or not isinstance(key, str):
        raise CorruptItem(shown, shown_key, "missing or mistyped fields")
    if item_id(namespace, key) != row.id:
        raise CorruptItem(shown, shown_key, f"stored under id {row.id}, not its own")
    return StoredItem(
        id=row.id,
        namespace=tuple(namespace),
        key=key,
        value=body["value"],
        texts=None if texts is None else tuple(texts),
        version=body["version"],
        created_at=row.created_at,
        updated_at=row.updated_at,
        ttl=row.ttl,
    )


class StoreBackend(ABC):
    """The primitives of one storage backend of `MemweaveStore`; each is one atomic step.

    Reads never return an expired item. Backends translate their driver's exceptions into
    memweave errors themselves.
    """

    url: str
    """The backend's URL without its password, for messages."""

    @abstractmethod
    async def write(self, writes: Sequence[ItemWrite]) -> None:
        """Apply puts and deletes (at most one per id) atomically. A put keeps the item's
        `created_at`, stamps `updated_at` and sets its expiry from `ttl`."""

    @abstractmethod
    async def read(self, ids: Sequence[str], *, refresh: bool) -> list[StoredRow]:
        """The live items among `ids`; with `refresh`, their TTLs restart now."""

    @abstractmethod
    async def scan(
        self, bounds: tuple[str, str] | None, window: tuple[int, int] | None
    ) -> list[StoredRow]:
        """The live items whose path lies in `bounds` (None: all). With `window=(offset,
        limit)`, only that slice of them, most recently updated first (ties by id); else all,
        in any order."""

    @abstractmethod
    async def namespaces(self, bounds: tuple[str, str] | None) -> list[tuple[str, ...]]:
        """The distinct namespaces holding live items whose path lies in `bounds`."""

    @abstractmethod
    async def touch(self, rows: Sequence[StoredRow]) -> None:
        """Restart the TTL of these items (those without one are left alone)."""

    @abstractmethod
    async def sweep(self) -> list[str]:
        """Delete what expired (in bounded batches) and return the ids removed."""

    @abstractmethod
    async def setup(self) -> None:
        """Create tables ahead of first use (else done lazily; a no-op where none are needed)."""

    @abstractmethod
    async def aclose(self) -> None:
        """Release what the backend built; a client or engine passed in is left open."""
