"""The stored form: versioned JSON that round-trips every message exactly."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from memweave import ChatMessage, CorruptRecord, InvalidMessage, ToolCall
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


SURROGATE = "x\udfffy"

UNENCODABLE: list[tuple[Any, str, str]] = [
    (lambda: ChatMessage.user(SURROGATE), "content", ""),
    (lambda: ChatMessage.user([{"type": "text", "text": SURROGATE}]), "content", "[0]['text']"),
    (lambda: ChatMessage.user("hi", name=SURROGATE), "name", ""),
    (lambda: ChatMessage.assistant(refusal=SURROGATE), "refusal", ""),
    (
        lambda: ChatMessage.assistant(tool_calls=[ToolCall(id="c", name="f", arguments=SURROGATE)]),
        "tool_calls",
        "[0].arguments",
    ),
    (lambda: ChatMessage.user("hi", metadata={"k": [SURROGATE]}), "metadata", "['k'][0]"),
    # pydantic writes a lone surrogate in a top-level key as invalid UTF-8 instead of failing.
    (lambda: ChatMessage.user("hi", metadata={SURROGATE: 1}), "metadata", "key"),
    (lambda: ChatMessage.user([{"type": "text", "text": "t", SURROGATE: 1}]), "content", "key"),
]


@pytest.mark.parametrize(("build", "field", "where"), UNENCODABLE)
def test_encode_names_the_field_holding_a_lone_surrogate(
    build: Any, field: str, where: str
) -> None:
    """Text UTF-8 cannot encode raises `InvalidMessage` naming the field, where in it, and
    the batch position; no pydantic error escapes."""
    with pytest.raises(InvalidMessage) as info:
        encode(build(), position=4)
    assert (info.value.field, info.value.position) == (field, 4)
    assert "lone surrogate '\\udfff' at index 1" in info.value.reason
    assert where in info.value.reason


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")], ids=repr)
def test_encode_refuses_non_finite_numbers_that_skipped_validation(value: float) -> None:
    """A nan or infinity in a message made without validation raises `InvalidMessage`
    instead of being stored as null."""
    base = ChatMessage.user("hi").__dict__
    unvalidated = [
        ChatMessage.model_construct(**{**base, "metadata": {"a": {"b": [value]}}}),
        ChatMessage.model_construct(
            **{**base, "content": [{"type": "text", "text": "t", "v": value}]}
        ),
    ]
    for message, field in zip(unvalidated, ["metadata", "content"], strict=True):
        with pytest.raises(InvalidMessage) as info:
            encode(message)
        assert info.value.field == field
        assert repr(value) in info.value.reason


def test_encode_refuses_nan_read_from_json() -> None:
    """`model_validate_json` reads JSON's `NaN` token; encoding that message is refused."""
    message = ChatMessage.model_validate_json('{"role": "user", "metadata": {"f": [NaN]}}')
    with pytest.raises(InvalidMessage, match=r"\['f'\]\[0\]") as info:
        encode(message)
    assert info.value.field == "metadata"


def test_encode_refuses_what_json_cannot_hold() -> None:
    """A value of no JSON type, put in past validation, raises `InvalidMessage`."""
    message = ChatMessage.model_construct(
        **{**ChatMessage.user("hi").__dict__, "metadata": {"o": object()}}
    )
    with pytest.raises(InvalidMessage, match="cannot be encoded as JSON"):
        encode(message)


ANY_TEXT = st.text(st.characters(exclude_categories=()) | st.sampled_from(["\ud800", "\udc00"]))
ANY_JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True, allow_infinity=True)
    | ANY_TEXT,
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(ANY_TEXT, children, max_size=3)
    ),
    max_leaves=10,
)


@given(
    content=ANY_TEXT,
    name=st.none() | ANY_TEXT,
    arguments=ANY_TEXT,
    metadata=st.dictionaries(ANY_TEXT, ANY_JSON, max_size=3),
)
def test_encode_round_trips_exactly_or_refuses(
    content: str, name: str | None, arguments: str, metadata: dict[str, Any]
) -> None:
    """Whatever text and JSON a message holds, its stored form is valid UTF-8 and decodes to
    an equal message, or building or encoding it raises `InvalidMessage`: never a change."""
    try:
        message = ChatMessage.assistant(
            content,
            name=name,
            tool_calls=[ToolCall(id="c1", name="f", arguments=arguments)],
            metadata=metadata,
        )
        data = encode(message)
    except InvalidMessage:
        return
    data.decode("utf-8")  # strict: no lossy bytes
    decoded = decode_one(data, session_id="s", position=0)
    assert decoded == message
    assert json.dumps(decoded.metadata, sort_keys=False) == json.dumps(metadata, sort_keys=False)
