"""`Session`: one conversation's id, its user, and per-provider state; plus the session-id rules."""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from typing import Any, Self

from pydantic import BaseModel, ConfigDict, Field, JsonValue, ValidationError, field_validator

from memweave.errors import InvalidArgument, InvalidSessionId

__all__ = ["MAX_SESSION_ID_LENGTH", "Session", "validate_session_id"]

MAX_SESSION_ID_LENGTH = 256
"""The longest session id, in characters, that every backend stores."""

_FORBIDDEN = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")


def validate_session_id(session_id: object) -> str:
    """Return `session_id` unchanged if every backend can store it, else raise `InvalidSessionId`.

    A valid id is a non-empty `str` of at most 256 characters with no control characters and
    no lone surrogates. Anything else is allowed (`* : { } % _ ' " / \\`, spaces, any unicode)
    and compared exactly: `abc`, `ABC`, `abc ` and `ábc` are four sessions.
    """
    if not isinstance(session_id, str):
        raise InvalidSessionId(session_id, f"must be a str, not {type(session_id).__name__}")
    if not session_id:
        raise InvalidSessionId(session_id, "must not be empty")
    if len(session_id) > MAX_SESSION_ID_LENGTH:
        raise InvalidSessionId(
            session_id, f"is {len(session_id)} characters; at most {MAX_SESSION_ID_LENGTH} allowed"
        )
    bad = _FORBIDDEN.search(session_id)
    if bad is not None:
        raise InvalidSessionId(
            session_id, f"holds the control character or surrogate {bad.group()!r}"
        )
    return session_id


def _session_error(exc: ValidationError) -> InvalidSessionId | InvalidArgument:
    """Translate pydantic's error into the typed error for the field that failed."""
    error = exc.errors(include_url=False)[0]
    original = error.get("ctx", {}).get("error")
    if isinstance(original, InvalidSessionId | InvalidArgument):
        return original
    loc = [str(part) for part in error["loc"]]
    reason = str(error["msg"]).removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        reason = "unknown field"
    value = error.get("input")
    if not loc:
        return InvalidArgument("session", value, reason)
    if loc[0] == "id":
        return InvalidSessionId(value, reason)
    if len(loc) > 1:
        reason = f"at {'.'.join(loc[1:])}: {reason}"
    return InvalidArgument(loc[0], value, reason)


class Session(BaseModel):
    """One conversation: its id, the user it belongs to, and state kept by context providers.

    Each context provider keeps its per-session state under its own `source_id` in `state`.
    `to_dict()` / `from_dict()` round-trip through JSON, so a conversation resumes in another
    process.

    Building, validating (`model_validate`, `model_validate_json`) or assigning a field checks
    it: a bad `id` raises `InvalidSessionId`; a bad or unknown other field raises
    `InvalidArgument` naming it.

    Example:
        ```python
        session = Session(user_id="ada")
        again = Session.from_dict(session.to_dict())
        assert again == session
        ```
    """

    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)

    id: str = Field(default_factory=lambda: uuid.uuid4().hex)
    """The session id under which history providers store the conversation."""
    user_id: str | None = None
    """The user the conversation belongs to; long-term memory is scoped by it."""
    state: dict[str, JsonValue] = Field(default_factory=dict)
    """JSON state per context provider, keyed by the provider's `source_id`."""

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as exc:
            raise _session_error(exc) from None

    # Only the error type differs from BaseModel.__init__, so validation may skip this wrapper
    # (`model_validate` maps the errors itself).
    __init__.__pydantic_base_init__ = True  # type: ignore[attr-defined]

    def __setattr__(self, name: str, value: Any) -> None:
        try:
            super().__setattr__(name, value)
        except ValidationError as exc:
            raise _session_error(exc) from None

    @classmethod
    def model_validate(cls, obj: Any, **options: Any) -> Self:
        """Validate a dict (or session) into a `Session`; raises as the constructor does."""
        try:
            return super().model_validate(obj, **options)
        except ValidationError as exc:
            raise _session_error(exc) from None

    @classmethod
    def model_validate_json(cls, json_data: str | bytes | bytearray, **options: Any) -> Self:
        """Validate a JSON document into a `Session`; raises as the constructor does."""
        try:
            return super().model_validate_json(json_data, **options)
        except ValidationError as exc:
            raise _session_error(exc) from None

    @field_validator("id")
    @classmethod
    def _check_id(cls, value: str) -> str:
        try:
            return validate_session_id(value)
        except InvalidSessionId as exc:
            raise ValueError(exc.reason) from None

    def to_dict(self) -> dict[str, Any]:
        """Return the session as a JSON-compatible dict."""
        return {"v": 1, "id": self.id, "user_id": self.user_id, "state": self.state}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        """Rebuild a session from `to_dict()` output.

        Raises:
            InvalidSessionId: `data["id"]` is not a valid session id.
            InvalidArgument: `data` is not a mapping, has an unknown format version `v`, or
                a bad or unknown other field (the error names it).
        """
        if not isinstance(data, Mapping):
            raise InvalidArgument("data", data, "must be a mapping made by Session.to_dict()")
        fields = dict(data)
        version = fields.pop("v", 1)
        if version != 1:
            raise InvalidArgument("v", version, "unsupported session format; expected 1")
        return cls.model_validate(fields)
