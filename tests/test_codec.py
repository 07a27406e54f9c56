"""The stored form: versioned JSON that round-trips every message exactly."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from memweave import ChatMessage, CorruptRecord, ToolCall
from memweave._codec import decode_many, decode_one, encode
from tests.test_messages import openai_messages

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=10),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3)
    ),
    max_leaves=8,
)


@st.composite
def messages(draw: st.DrawFn) -> ChatMessage:
    """Messages of every role with metadata and arbitrary UTC timestamps."""
    created = draw(
        st.datetimes(
            min_value=datetime(1970, 1, 2), max_value=datetime(2200, 1, 1), timezones=st.just(UTC)
        )
    )
    metadata = draw(st.dictionaries(st.text(max_size=8), JSON_VALUES, max_size=3))
    return ChatMessage.from_openai(draw(openai_messages()), created_at=created, metadata=metadata)


@given(st.lists(messages(), max_size=6))
def test_codec_round_trips_every_field(batch: list[ChatMessage]) -> None:
    """Decoding the encoded form gives back equal messages, in order."""
    assert decode_many([encode(m) for m in batch], session_id="s") == batch


@given(messages())
def test_encoded_form_is_versioned_json(message: ChatMessage) -> None:
    """A stored entry is UTF-8 JSON of the form `{"v": 1, "m": {...}}`."""
    document = json.loads(encode(message).decode("utf-8"))
    assert document["v"] == 1
    assert document["m"]["id"] == message.id


def test_decode_reports_position_of_corrupt_entry() -> None:
    """A corrupt entry raises `CorruptRecord` with the session and its position."""
    rows = [encode(ChatMessage.user("a")), b"{oops", encode(ChatMessage.user("b"))]
    with pytest.raises(CorruptRecord) as info:
        decode_many(rows, session_id="s1", first_position=10)
    assert (info.value.session_id, info.value.position) == ("s1", 11)


def test_decode_rejects_unknown_version() -> None:
    """An entry of a future format version is reported, not misread."""
    with pytest.raises(CorruptRecord, match="v"):
        decode_one(b'{"v": 2, "m": {"role": "user"}}', session_id="s", position=0)


def test_decode_skip_returns_the_rest() -> None:
    """With `on_corrupt="skip"` the good entries are returned."""
    good = [ChatMessage.user("a"), ChatMessage.user("b")]
    rows = [encode(good[0]), b"[]", encode(good[1])]
    assert decode_many(rows, session_id="s", on_corrupt="skip") == good


@pytest.mark.parametrize("corrupt_at", [None, 700])
def test_large_page_decode_leaves_the_collector_as_it_was(corrupt_at: int | None) -> None:
    """A large page is decoded with the cyclic collector held, which is then restored, also
    when the page holds a corrupt entry (found, with its position, as on a small page)."""
    import gc

    rows = [encode(ChatMessage.user(f"m{i}")) for i in range(1_000)]
    if corrupt_at is not None:
        rows[corrupt_at] = b"not json"
    collections: list[str] = []
    gc.collect()  # so that building `rows` leaves no collection due
    gc.callbacks.append(lambda phase, info: collections.append(phase))
    try:
        assert gc.isenabled()
        if corrupt_at is None:
            decoded = decode_many(rows, session_id="s")
            # Unheld, 1,000 messages set off about ten collections; held, one runs at the end.
            assert collections.count("start") <= 1
            assert [m.text for m in decoded] == [f"m{i}" for i in range(1_000)]
        else:
            with pytest.raises(CorruptRecord) as caught:
                decode_many(rows, session_id="s")
            assert caught.value.position == corrupt_at
        assert gc.isenabled()
        gc.disable()
        decode_many(rows, session_id="s", on_corrupt="skip")
        assert not gc.isenabled(), "a disabled collector must stay disabled"
    finally:
        gc.callbacks.pop()
        gc.enable()


@given(messages())
def test_encoded_form_leaves_out_exactly_the_default_fields(message: ChatMessage) -> None:
    """The stored bytes are what pydantic's `exclude_defaults` writes (without paying for the
    id and timestamp factories it calls), so every stored entry keeps one form."""
    expected = message.__pydantic_serializer__.to_json(message, exclude_defaults=True)
    assert encode(message) == b'{"v":1,"m":' + expected + b"}"


def test_encoded_form_leaves_out_default_tool_call_arguments() -> None:
    message = ChatMessage.assistant(
        tool_calls=[ToolCall(id="a", name="now"), ToolCall(id="b", name="f", arguments='{"x":1}')]
    )
    stored = json.loads(encode(message))["m"]
    assert stored["tool_calls"] == [
        {"id": "a", "name": "now"},
        {"id": "b", "name": "f", "arguments": '{"x":1}'},
    ]
    assert decode_one(encode(message), session_id="s", position=0) == message
