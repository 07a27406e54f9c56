"""What the memory catalogue stores: its rows, the keys it finds them by, and the SQL filter
that selects the memories of a scope (see `memweave.context._lexical`)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

__all__ = ["NewMemory", "Row", "chunks", "exact_key", "scope_filter", "text_key"]


def text_key(text: str) -> str:
    """Hash of the exact text: a scope stores one memory per text."""
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()


def exact_key(text: str) -> str:
    """Hash of the text with case and whitespace runs ignored: what an exact-match query equals."""
    folded = " ".join(text.casefold().split())
    return hashlib.blake2b(folded.encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()


@dataclass(frozen=True, slots=True)
class NewMemory:
    """A memory to store, with its keys computed."""

    key: str
    id: str
    scope: str
    session_id: str
    text: str
    speaker: str | None
    role: str | None
    created_at: float
    metadata: dict[str, Any]
    sessions: tuple[str, ...] = ()
    """Further sessions it is visible from (known when caught up from Chroma)."""

    @property
    def text_key(self) -> str:
        """See `text_key()`."""
        return text_key(self.text)


@dataclass(frozen=True, slots=True)
class Row:
    """One stored memory."""

    seq: int
    key: str
    id: str
    scope: str
    session_id: str
    text: str
    speaker: str | None
    role: str | None
    created_at: float
    metadata: str
    prev: int | None
    next: int | None
    vector: bytes
    """The memory's unit vector as little-endian float32, a copy of Chroma's."""


def scope_filter(scope: str, session_id: str | None) -> tuple[str, list[Any]]:
    """A `WHERE` condition on `memories m` selecting the scope's memories (or those visible
    from one session of it: its home memories and those of `memory_sessions`), with its
    arguments."""
    if session_id is None:
        return "m.scope = ?", [scope]
    return (
        "m.scope = ? AND (m.session_id = ? OR m.seq IN "
        "(SELECT seq FROM memory_sessions WHERE scope = ? AND session_id = ?))",
        [scope, session_id, scope, session_id],
    )


def chunks(values: list[Any], size: int = 400) -> Iterator[list[Any]]:
    """`values` in slices of at most `size`: SQLite caps the bound parameters of a statement."""
    for start in range(0, len(values), size):
        yield values[start : start + size]
