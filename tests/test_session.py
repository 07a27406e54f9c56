"""Session: JSON round trip and the session-id rules."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from memweave import InvalidSessionId, Session
from memweave.session import validate_session_id


def test_session_round_trips_through_json() -> None:
    """`to_dict()` / `from_dict()` round-trip through JSON text."""
    session = Session(id="chat-1", user_id="ada", state={"memory": {"seen": [1, 2]}})
    again = Session.from_dict(json.loads(json.dumps(session.to_dict())))
    assert again == session


def test_session_generates_id() -> None:
    """A session without an id gets a fresh one."""
    assert Session().id != Session().id


def test_session_rejects_bad_id() -> None:
    """A session id that cannot be stored raises `InvalidSessionId`."""
    with pytest.raises(InvalidSessionId):
        Session(id="")


def test_session_from_dict_rejects_unknown_version() -> None:
    """A session document of an unknown version is refused."""
    with pytest.raises(InvalidSessionId, match="format"):
        Session.from_dict({"v": 7, "id": "x"})


@given(st.text(alphabet=st.characters(blacklist_categories=("Cc", "Cs")), min_size=1, max_size=256))
def test_valid_ids_are_returned_unchanged(session_id: str) -> None:
    """Every non-empty id of at most 256 characters without control characters is valid as is."""
    assert validate_session_id(session_id) == session_id
