"""Session: JSON round trip and the session-id rules."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from memweave import InvalidArgument, InvalidSessionId, Session
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


@pytest.mark.parametrize(
    ("fields", "name"),
    [
        ({"user_id": 5}, "user_id"),
        ({"user_id": "ada", "state": {"memory": object()}}, "state"),
        ({"state": []}, "state"),
        ({"colour": "red"}, "colour"),
    ],
)
def test_session_bad_field_raises_invalid_argument_naming_it(
    fields: dict[str, object], name: str
) -> None:
    """A bad field other than the id raises `InvalidArgument` naming that field, not
    `InvalidSessionId`."""
    with pytest.raises(InvalidArgument) as info:
        Session(id="chat-1", **fields)
    assert info.value.name == name
    assert not isinstance(info.value, InvalidSessionId)
    with pytest.raises(InvalidArgument) as info:
        Session.model_validate({"id": "chat-1", **fields})
    assert info.value.name == name


def test_session_validate_rejects_bad_id() -> None:
    """`model_validate` and `model_validate_json` raise `InvalidSessionId` for a bad id."""
    with pytest.raises(InvalidSessionId):
        Session.model_validate({"id": "a\nb"})
    with pytest.raises(InvalidSessionId):
        Session.model_validate_json('{"id": ""}')


def test_session_validate_json_rejects_bad_field() -> None:
    """`model_validate_json` raises `InvalidArgument` naming a bad field other than the id."""
    with pytest.raises(InvalidArgument) as info:
        Session.model_validate_json('{"id": "chat-1", "user_id": 5}')
    assert info.value.name == "user_id"
    with pytest.raises(InvalidArgument):
        Session.model_validate_json("not json")


def test_session_assignment_is_validated_with_typed_errors() -> None:
    """Assigning a bad id raises `InvalidSessionId`; a bad other field `InvalidArgument`."""
    session = Session(id="chat-1")
    with pytest.raises(InvalidSessionId):
        session.id = ""
    with pytest.raises(InvalidArgument) as info:
        session.user_id = 5  # type: ignore[assignment]
    assert info.value.name == "user_id"
    assert session == Session(id="chat-1")


def test_session_from_dict_rejects_unknown_version() -> None:
    """A session document of an unknown version is refused, naming the version field."""
    with pytest.raises(InvalidArgument, match="format") as info:
        Session.from_dict({"v": 7, "id": "x"})
    assert info.value.name == "v"


def test_session_from_dict_rejects_non_mapping() -> None:
    """`from_dict` of something that is not a mapping raises `InvalidArgument`."""
    with pytest.raises(InvalidArgument):
        Session.from_dict(["id", "x"])  # type: ignore[arg-type]


@given(st.text(alphabet=st.characters(blacklist_categories=("Cc", "Cs")), min_size=1, max_size=256))
def test_valid_ids_are_returned_unchanged(session_id: str) -> None:
    """Every non-empty id of at most 256 characters without control characters is valid as is."""
    assert validate_session_id(session_id) == session_id
