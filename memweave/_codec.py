"""The stored form of a message: versioned JSON, shared by every backend.

One stored entry is `{"v": 1, "m": {...}}`, where `m` is the message's fields with defaults
left out. Decoding a page of entries validates them all in one pass of pydantic-core's JSON
parser; only when that fails are entries decoded one by one to find the corrupt ones.
"""

from __future__ import annotations

import contextlib
import gc
import logging
from collections.abc import Iterator, Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, TypeAdapter, ValidationError
from pydantic_core import PydanticSerializationError

from memweave.errors import CorruptRecord, InvalidMessage
from memweave.messages import ChatMessage, json_problem, storage_problem

__all__ = ["FORMAT_VERSION", "OnCorrupt", "decode_many", "decode_one", "encode"]

FORMAT_VERSION = 1
"""Version of the stored JSON layout written by this memweave."""

OnCorrupt = Literal["raise", "skip"]

logger = logging.getLogger("memweave.providers")


class _EnvelopeV1(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    v: Literal[1]
    m: ChatMessage


_PAGE = TypeAdapter(list[_EnvelopeV1])
_ONE = TypeAdapter(_EnvelopeV1)
_PREFIX = b'{"v":1,"m":'
_GC_PAUSE_ROWS = 512


@contextlib.contextmanager
def _gc_paused(rows: int) -> Iterator[None]:
    """Hold the cyclic garbage collector while a large page is decoded.

    Every message allocates a handful of tracked containers, so decoding thousands of them
    set off repeated full-heap collections that found nothing to free (a third of the time
    of a 10,000-message read). The page is decoded without awaiting, so nothing else of this
    event loop runs meanwhile; the collector resumes as it was, also on error.
    """
    if rows < _GC_PAUSE_ROWS or not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


# Fields left out of the stored form when they hold their default. Listed rather than found
# by `exclude_defaults`, which calls the `id` and `created_at` factories (a uuid4 and a
# clock read) on every message only to compare against their results.
_DEFAULTS: tuple[tuple[str, object], ...] = (
    ("content", ""),
    ("name", None),
    ("tool_calls", ()),
    ("tool_call_id", None),
    ("refusal", None),
    ("metadata", {}),
)
_TOOL_CALL_DEFAULT_ARGUMENTS = "{}"


def _defaults_of(message: ChatMessage) -> set[str] | dict[str, Any]:
    """What `exclude_defaults=True` would leave out of `message`, as an `exclude` argument."""
    fields = {name for name, default in _DEFAULTS if getattr(message, name) == default}
    calls = {
        index: {"arguments"}
        for index, call in enumerate(message.tool_calls)
        if call.arguments == _TOOL_CALL_DEFAULT_ARGUMENTS
    }
    if not calls:
        return fields
    return {**dict.fromkeys(fields, True), "tool_calls": calls}


def encode(message: ChatMessage, *, position: int | None = None) -> bytes:
    """Encode one message as stored JSON bytes (UTF-8), its default-valued fields left out.

    Nothing is ever changed on the way: what cannot be stored exactly is refused.

    Args:
        message: The message.
        position: Its index in the batch being stored, for the error.

    Raises:
        InvalidMessage: Naming the field: text holding a lone surrogate (UTF-8 cannot encode
            it), or a non-finite float in `metadata` or a content part (JSON has none; it
            would come back as `null`). Validation refuses the floats already, except in
            messages made by `model_validate_json` or `model_construct`.
    """
    # Only JSON-valued fields can hold floats, and only their keys are written lossily by
    # pydantic (invalid UTF-8 for a lone surrogate); most messages have none, and skip this.
    if message.metadata or type(message.content) is list:
        _check_json_fields(message, position)
    try:
        body = message.__pydantic_serializer__.to_json(message, exclude=_defaults_of(message))
    except PydanticSerializationError as exc:
        # Rare enough to find the field afterwards rather than check every string first.
        field, reason = storage_problem(message) or (None, f"cannot be encoded as JSON: {exc}")
        raise InvalidMessage(reason, field=field, position=position) from None
    return _PREFIX + body + b"}"


def _check_json_fields(message: ChatMessage, position: int | None) -> None:
    for field, value in (("metadata", message.metadata), ("content", message.content)):
        reason = json_problem(value, text_values=False)
        if reason is not None:
            raise InvalidMessage(reason, field=field, position=position)


def _reason(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        error = exc.errors(include_url=False)[0]
        loc = ".".join(str(part) for part in error["loc"])
        return f"{loc}: {error['msg']}" if loc else str(error["msg"])
    return str(exc)


def decode_one(data: bytes | str, *, session_id: str, position: int) -> ChatMessage:
    """Decode one stored entry; raise `CorruptRecord` naming the session and position."""
    try:
        return _ONE.validate_json(data).m
    except (ValidationError, InvalidMessage) as exc:
        raise CorruptRecord(session_id, position, _reason(exc)) from None


def decode_many(
    rows: Sequence[bytes | str],
    *,
    session_id: str,
    on_corrupt: OnCorrupt = "raise",
    first_position: int = 0,
) -> list[ChatMessage]:
    """Decode stored entries, oldest first.

    Args:
        rows: The stored entries, in order.
        session_id: The session they belong to, for error messages.
        on_corrupt: `"raise"` raises `CorruptRecord` at the first bad entry; `"skip"` logs a
            warning for each bad entry and returns the others.
        first_position: Position of `rows[0]` in the session, for error messages.
    """
    if not rows:
        return []
    chunks = [row.encode() if isinstance(row, str) else row for row in rows]
    try:
        with _gc_paused(len(chunks)):
            page = _PAGE.validate_json(b"[" + b",".join(chunks) + b"]")
            return [envelope.m for envelope in page]
    except (ValidationError, InvalidMessage):
        pass
    out: list[ChatMessage] = []
    for offset, chunk in enumerate(chunks):
        try:
            out.append(decode_one(chunk, session_id=session_id, position=first_position + offset))
        except CorruptRecord as exc:
            if on_corrupt == "raise":
                raise
            logger.warning("skipping %s", exc)
    return out
