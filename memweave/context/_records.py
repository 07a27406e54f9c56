"""Checking what callers hand to vector memory, and turning it into scoped records."""

from __future__ import annotations

import hashlib
import json
import os
from datetime import UTC, datetime
from typing import Literal, overload

from pydantic import JsonValue, TypeAdapter, ValidationError

from memweave.context._lexical import NewMemory
from memweave.errors import InvalidArgument

__all__ = ["MAX_ID_LENGTH", "check_id", "memory_key", "new_memory", "read_scope"]

MAX_ID_LENGTH = 256
"""The longest user, session or memory id, in characters."""

_METADATA = TypeAdapter(dict[str, JsonValue])


def memory_key(scope: str, memory_id: str) -> str:
    """The Chroma record id of memory `memory_id` in `scope`: ids are per scope, so two users'
    ids never collide, and any characters are safe."""
    digest = hashlib.blake2b(digest_size=20)
    digest.update(scope.encode("utf-8", "surrogatepass"))
    digest.update(b"\x00")
    digest.update(memory_id.encode("utf-8", "surrogatepass"))
    return "m" + digest.hexdigest()


@overload
def check_id(name: str, value: object, *, optional: Literal[False]) -> str: ...


@overload
def check_id(name: str, value: object, *, optional: bool = True) -> str | None: ...


def check_id(name: str, value: object, *, optional: bool = True) -> str | None:
    """Return `value` if it is a usable id (None allowed when `optional`), else raise
    `InvalidArgument` naming `name`. Any characters but control ones and lone surrogates."""
    if value is None and optional:
        return None
    if not isinstance(value, str) or not value:
        raise InvalidArgument(name, value, "must be a non-empty str")
    if len(value) > MAX_ID_LENGTH:
        raise InvalidArgument(name, value, f"must be at most {MAX_ID_LENGTH} characters")
    if any(ord(char) < 32 or 0xD800 <= ord(char) <= 0xDFFF for char in value):
        raise InvalidArgument(name, value, "must not hold control characters or surrogates")
    return value


def read_scope(user_id: object, session_id: object, *, operation: str) -> tuple[str, str | None]:
    """The scope of a read or delete: a user's memories (optionally one session of them), or
    the memories written without a user in one session.

    Returns `(scope, session filter)`. Raises `InvalidArgument` when neither id is given: no
    call spans every user.
    """
    user = check_id("user_id", user_id)
    session = check_id("session_id", session_id)
    if user is not None:
        return "user:" + user, session
    if session is not None:
        return "session:" + session, None
    raise InvalidArgument(
        "user_id", None, f"{operation} needs user_id or session_id; no call spans every user"
    )


def new_memory(
    text: object,
    *,
    user_id: object,
    session_id: object,
    metadata: object,
    memory_id: object,
    speaker: object,
    role: object,
    created_at: object,
) -> NewMemory:
    """Check `add`'s arguments and build the record, stamped with the user (else session)."""
    if not isinstance(text, str) or not text.strip():
        raise InvalidArgument("text", text, "must be a non-empty str")
    user = check_id("user_id", user_id)
    session = check_id("session_id", session_id)
    if user is None and session is None:
        raise InvalidArgument("user_id", None, "add needs user_id or session_id to scope it")
    scope = "user:" + user if user is not None else "session:" + str(session)
    mid = check_id("id", memory_id) or os.urandom(16).hex()
    if speaker is not None and not isinstance(speaker, str):
        raise InvalidArgument("speaker", speaker, "must be a str or None")
    if role is not None and not isinstance(role, str):
        raise InvalidArgument("role", role, "must be a str or None")
    try:
        data = _METADATA.validate_python({} if metadata is None else metadata)
        json.dumps(data, allow_nan=False)
    except (ValidationError, TypeError, ValueError) as exc:
        raise InvalidArgument("metadata", metadata, "must be a JSON object") from exc
    when = datetime.now(UTC) if created_at is None else created_at
    if not isinstance(when, datetime):
        raise InvalidArgument("created_at", created_at, "must be a datetime or None")
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return NewMemory(
        key=memory_key(scope, mid),
        id=mid,
        scope=scope,
        session_id=session or "",
        text=text,
        speaker=speaker or None,
        role=role or None,
        created_at=when.timestamp(),
        metadata=data,
    )
