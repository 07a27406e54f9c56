"""What passes between `ChatHistoryProvider` and a backend's primitives: encoded records,
pages, session facts and delete outcomes, and the batch helpers every backend shares."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from pydantic import BaseModel, ConfigDict

from memweave._codec import encode
from memweave.messages import ChatMessage

__all__ = ["DeleteOutcome", "PageRow", "SessionInfo", "StoredRecord", "dedupe_batch", "trim_count"]

PageRow = tuple[str, bytes]
"""One stored entry of a page: its message id and its versioned JSON."""


class SessionInfo(BaseModel):
    """What a backend knows about one live session, without reading its messages."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str
    """The session id."""
    message_count: int
    """How many messages are stored."""
    created_at: datetime | None
    """When the session's first stored message was added (UTC); None for a session stored
    by a memweave that did not record it."""
    updated_at: datetime | None
    """When messages were last added to or deleted from the session (UTC); None as for
    `created_at`."""


@dataclass(frozen=True, slots=True)
class DeleteOutcome:
    """What `_delete` did: how many entries went, or which named tool result it refused."""

    deleted: int
    """Entries deleted (the named ones plus the tool results taken along)."""
    orphan: str | None = None
    """A named tool result whose calling message was not named; nothing was deleted then."""


@dataclass(frozen=True, slots=True)
class StoredRecord:
    """One encoded message as handed to a backend primitive."""

    id: str
    """The message id; a backend stores a given id at most once per session."""
    role: str
    """The message role, so trimming can tell tool results without decoding."""
    data: bytes
    """The versioned JSON of the message (see `memweave._codec`)."""

    @classmethod
    def of(cls, message: ChatMessage, *, position: int | None = None) -> StoredRecord:
        """Encode `message`, at `position` in its batch (for errors).

        Raises:
            InvalidMessage: The message cannot be stored exactly (see `_codec.encode`).
        """
        return cls(message.id, message.role, encode(message, position=position))


def dedupe_batch(records: Iterable[StoredRecord]) -> list[StoredRecord]:
    """Keep the first record of each message id in a batch, in order."""
    seen: set[str] = set()
    out: list[StoredRecord] = []
    for record in records:
        if record.id not in seen:
            seen.add(record.id)
            out.append(record)
    return out


def trim_count(roles_oldest_first: Sequence[str], max_messages: int) -> int:
    """How many entries to drop from the head so at most `max_messages` remain.

    Tool results left at the head after the cut go too, because the assistant message that
    called them was dropped.
    """
    drop = max(0, len(roles_oldest_first) - max_messages)
    while drop < len(roles_oldest_first) and roles_oldest_first[drop] == "tool":
        drop += 1
    return drop
