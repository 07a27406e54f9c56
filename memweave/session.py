"""`Session`: one conversation's id, its user, and per-provider state; plus the session-id rules."""

from __future__ import annotations

import re
import uuid
from typing import Any, Self

from pydantic import BaseModel, ConfigDict, Field, JsonValue, ValidationError, field_validator

from memweave.errors import InvalidSessionId

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


class Session(BaseModel):
    """One conversation: its id, the user it belongs to, and state kept by context providers.

    Each context provider keeps its per-session state under its own `source_id` in `state`.
    `to_dict()` / `from_dict()` round-trip through JSON, so a conversation resumes in another
    process.

    Example:
        ```python
        session = Session(user_id="ada")
        again = Session.from_dict(session.to_dict())
        assert again == session
        ```
    """

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

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
            error = exc.errors(include_url=False)[0]
            reason = str(error["msg"]).removeprefix("Value error, ")
            raise InvalidSessionId(data.get("id"), reason) from None

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
    def from_dict(cls, data: dict[str, Any]) -> Self:
        """Rebuild a session from `to_dict()` output."""
        fields = dict(data)
        version = fields.pop("v", 1)
        if version != 1:
            raise InvalidSessionId(fields.get("id"), f"unsupported session format {version!r}")
        return cls(**fields)
