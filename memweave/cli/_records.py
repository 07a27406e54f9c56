"""The export format of `memweave sessions`: one JSON object per message, and its checksum.

A record is the message in the OpenAI chat format plus the memweave envelope:

```json
{"version": 1, "session": "s1", "id": "9f1c...", "created_at": "2024-05-01T09:30:00Z",
 "role": "user", "content": "hi", "name": "ada", "metadata": {}}
```

`version` is the layout of the record (this module writes 1). Reading a record back gives an
equal `ChatMessage`, so export, import and export again yields the same bytes.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator
from typing import IO, Any, NamedTuple

from memweave._codec import encode
from memweave.cli._common import CommandError
from memweave.errors import InvalidMessage, InvalidSessionId
from memweave.messages import ChatMessage
from memweave.session import validate_session_id

__all__ = [
    "RECORD_VERSION",
    "Record",
    "RecordError",
    "checksum",
    "dump_record",
    "read_records",
    "to_record",
]

RECORD_VERSION = 1
"""Layout version of an export record."""

_ENVELOPE = ("version", "session", "id", "created_at", "metadata")


class RecordError(CommandError):
    """A line of an import file is not a valid record.

    Attributes:
        line: The line number, from 1.
        reason: What was wrong with it.
    """

    def __init__(self, line: int, reason: str) -> None:
        self.line = line
        self.reason = reason
        super().__init__(f"line {line}: {reason}")


class Record(NamedTuple):
    """One record read back from an import file."""

    line: int
    """Its line number, from 1."""
    session: str
    """The session it belongs to."""
    message: ChatMessage
    """The message."""
    has_id: bool
    """Whether the record named the message's `id` (without one, a new id was made, so
    importing the line again adds the message again)."""


def to_record(session_id: str, message: ChatMessage) -> dict[str, Any]:
    """Return the export record of `message`, stored in session `session_id`."""
    record: dict[str, Any] = {
        "version": RECORD_VERSION,
        "session": session_id,
        "id": message.id,
        "created_at": message.created_at.isoformat().replace("+00:00", "Z"),
    }
    record.update(message.to_openai())
    record["metadata"] = message.metadata
    return record


def dump_record(record: dict[str, Any]) -> bytes:
    """Return `record` as one UTF-8 line, ending with a newline."""
    text = json.dumps(record, ensure_ascii=False, separators=(",", ":"))
    try:
        return text.encode() + b"\n"
    except UnicodeEncodeError:
        # A lone surrogate has no UTF-8 form; \u escapes keep the line valid and the value exact.
        return json.dumps(record, separators=(",", ":")).encode() + b"\n"


def _from_record(line: int, data: object) -> tuple[str, ChatMessage]:
    if not isinstance(data, dict):
        raise RecordError(line, f"expected a JSON object, got {type(data).__name__}")
    version = data.get("version", RECORD_VERSION)
    if version != RECORD_VERSION:
        raise RecordError(
            line, f"record version {version!r} is not supported (this memweave reads 1)"
        )
    if "session" not in data:
        raise RecordError(line, "the record has no 'session'")
    try:
        session_id = validate_session_id(data["session"])
    except InvalidSessionId as exc:
        raise RecordError(line, str(exc)) from None
    fields = {key: data[key] for key in ("id", "created_at", "metadata") if key in data}
    wire = {key: value for key, value in data.items() if key not in _ENVELOPE}
    try:
        message = ChatMessage.from_openai(wire, **fields)
    except InvalidMessage as exc:
        raise RecordError(line, str(exc)) from None
    return session_id, message


def read_records(stream: IO[bytes]) -> Iterator[Record]:
    """Yield a `Record` for each record in a JSON Lines stream.

    Blank lines are skipped.

    Raises:
        RecordError: A line is not valid JSON or not a valid record; names the line.
    """
    for number, raw in enumerate(stream, start=1):
        if not raw.strip():
            continue
        try:
            data = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise RecordError(number, f"not valid JSON ({exc})") from None
        session_id, message = _from_record(number, data)
        yield Record(number, session_id, message, data.get("id") is not None)


def checksum(messages: Iterable[ChatMessage]) -> str:
    """SHA-256 of the messages' stored form, in order: equal iff ids, order and content are."""
    digest = hashlib.sha256()
    for message in messages:
        data = encode(message)
        digest.update(len(data).to_bytes(8, "big"))
        digest.update(data)
    return digest.hexdigest()
