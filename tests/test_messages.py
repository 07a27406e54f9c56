"""ChatMessage and ToolCall: validation, constructors, views and the OpenAI round trip."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from memweave import ChatMessage, InvalidMessage, ToolCall

TEXT = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=40)
IDS = st.text(alphabet=st.characters(blacklist_categories=("Cc", "Cs")), min_size=1, max_size=20)


def test_constructors_set_roles() -> None:
    """The four constructors build messages of their role."""
    call = ToolCall(id="c1", name="lookup", arguments='{"q": 1}')
    assert ChatMessage.user("hi", name="ada").role == "user"
    assert ChatMessage.assistant(tool_calls=[call]).tool_calls == (call,)
    assert ChatMessage.system("rules").role == "system"
    assert ChatMessage.tool("c1", "42").tool_call_id == "c1"


def test_messages_get_unique_ids_and_utc_times() -> None:
    """Ids are generated and unique; created_at is timezone-aware UTC."""
    first, second = ChatMessage.user("a"), ChatMessage.user("a")
    assert first.id != second.id
    assert first.created_at.utcoffset() == timedelta(0)


def test_naive_and_offset_times_become_utc() -> None:
    """Naive datetimes are taken as UTC; other offsets are converted to UTC."""
    naive = ChatMessage.user("a", created_at=datetime(2024, 1, 1, 12))
    assert naive.created_at == datetime(2024, 1, 1, 12, tzinfo=UTC)
    plus2 = ChatMessage.user(
        "a", created_at=datetime(2024, 1, 1, 12, tzinfo=timezone(timedelta(hours=2)))
    )
    assert plus2.created_at == datetime(2024, 1, 1, 10, tzinfo=UTC)
    assert plus2.created_at.utcoffset() == timedelta(0)


INVALID_FIELDS: list[tuple[dict[str, Any], str]] = [
    ({"role": "wizard", "content": "x"}, "role"),
    ({"role": "user", "content": "x", "colour": "red"}, "colour"),
    ({"role": "tool", "content": "x"}, "tool_call_id"),
    ({"role": "user", "content": "x", "tool_call_id": "c1"}, "tool_call_id"),
    ({"role": "user", "content": "x", "tool_calls": [{"id": "c", "name": "f"}]}, "tool_calls"),
    ({"role": "user", "content": "x", "refusal": "no"}, "refusal"),
    ({"role": "user", "content": [{"type": "video", "url": "x"}]}, "content"),
    ({"role": "user", "content": [{"type": "text"}]}, "content"),
    ({"role": "user", "content": "x", "id": ""}, "id"),
    ({"role": "user", "content": "x", "id": "a\nb"}, "id"),
    ({"role": "user", "content": 5}, "content"),
    ({"role": "assistant", "tool_calls": [{"id": "", "name": "f"}]}, "tool_calls"),
]


@pytest.mark.parametrize(("fields", "field"), INVALID_FIELDS)
def test_invalid_fields_raise_invalid_message_naming_field(
    fields: dict[str, Any], field: str
) -> None:
    """Unknown fields and roles and broken role rules raise `InvalidMessage` naming the field."""
    with pytest.raises(InvalidMessage) as info:
        ChatMessage(**fields)
    assert info.value.field == field
    assert field in str(info.value)


@pytest.mark.parametrize(("fields", "field"), INVALID_FIELDS)
def test_model_validate_raises_invalid_message_naming_field(
    fields: dict[str, Any], field: str
) -> None:
    """`model_validate` raises `InvalidMessage` naming the field, as the constructor does."""
    with pytest.raises(InvalidMessage) as info:
        ChatMessage.model_validate(fields)
    assert info.value.field == field


@pytest.mark.parametrize(("fields", "field"), INVALID_FIELDS)
def test_model_validate_json_raises_invalid_message_naming_field(
    fields: dict[str, Any], field: str
) -> None:
    """`model_validate_json` raises `InvalidMessage` naming the field, as the constructor does."""
    with pytest.raises(InvalidMessage) as info:
        ChatMessage.model_validate_json(json.dumps(fields))
    assert info.value.field == field


@pytest.mark.parametrize("data", ["not json", "[1, 2]", "5"])
def test_model_validate_json_raises_invalid_message_on_non_object(data: str) -> None:
    """Text that is not a JSON object raises `InvalidMessage`."""
    with pytest.raises(InvalidMessage):
        ChatMessage.model_validate_json(data)


def test_model_validate_round_trips_valid_message() -> None:
    """Valid dumps validate back into an equal message."""
    message = ChatMessage.assistant("a", tool_calls=[ToolCall(id="c1", name="f")])
    assert ChatMessage.model_validate(message.model_dump()) == message
    assert ChatMessage.model_validate_json(message.model_dump_json()) == message


@pytest.mark.parametrize(
    ("fields", "field"),
    [({"id": "", "name": "f"}, "id"), ({"id": "c", "name": ""}, "name"), ({"id": "c"}, "name")],
)
def test_tool_call_raises_invalid_message_naming_field(fields: dict[str, Any], field: str) -> None:
    """`ToolCall`, built or validated, raises `InvalidMessage` naming the field."""
    with pytest.raises(InvalidMessage) as info:
        ToolCall(**fields)
    assert info.value.field == field
    with pytest.raises(InvalidMessage) as info:
        ToolCall.model_validate(fields)
    assert info.value.field == field
    with pytest.raises(InvalidMessage) as info:
        ToolCall.model_validate_json(json.dumps(fields))
    assert info.value.field == field


def test_messages_are_frozen() -> None:
    """A message cannot be changed after it is built."""
    message = ChatMessage.user("a")
    with pytest.raises(Exception, match="frozen"):
        message.content = "b"  # type: ignore[misc]


def test_text_joins_text_parts() -> None:
    """`.text` joins the text parts and skips the others."""
    message = ChatMessage.user(
        [
            {"type": "text", "text": "first"},
            {"type": "image_url", "image_url": {"url": "https://x/y.png", "detail": "low"}},
            {"type": "text", "text": "second"},
        ]
    )
    assert message.text == "first\nsecond"


def test_to_openai_tool_call_only_assistant_has_null_content() -> None:
    """An assistant message with only tool calls has `content: null` on the wire."""
    message = ChatMessage.assistant(tool_calls=[ToolCall(id="c1", name="f", arguments="{}")])
    assert message.to_openai() == {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
        ],
    }


def test_to_openai_omits_memweave_fields() -> None:
    """`id`, `created_at` and `metadata` never appear in the OpenAI form; `name` only when set."""
    assert ChatMessage.user("hi", metadata={"x": 1}).to_openai() == {
        "role": "user",
        "content": "hi",
    }
    assert ChatMessage.user("hi", name="ada").to_openai() == {
        "role": "user",
        "content": "hi",
        "name": "ada",
    }
    assert ChatMessage.tool("c1", "r").to_openai() == {
        "role": "tool",
        "content": "r",
        "tool_call_id": "c1",
    }


def test_from_openai_accepts_sdk_dump_with_empty_extras() -> None:
    """The OpenAI SDK's `model_dump()` of a reply (with null audio/function_call) is accepted."""
    dumped = {
        "content": "hello",
        "refusal": None,
        "role": "assistant",
        "annotations": [],
        "audio": None,
        "function_call": None,
        "tool_calls": None,
    }
    assert ChatMessage.from_openai(dumped).to_openai() == {"role": "assistant", "content": "hello"}


def test_from_openai_keeps_refusal() -> None:
    """A refusal is kept through the round trip."""
    wire = {"role": "assistant", "content": None, "refusal": "I can't help with that."}
    message = ChatMessage.from_openai(wire)
    assert message.refusal == "I can't help with that."
    assert message.to_openai() == wire


@pytest.mark.parametrize(
    "wire",
    [
        {"role": "user", "content": "x", "colour": "red"},
        {"role": "assistant", "tool_calls": [{"id": "c", "type": "custom", "custom": {}}]},
        {"role": "assistant", "tool_calls": [{"id": "c", "type": "function"}]},
        {"role": "assistant", "tool_calls": ["nope"]},
        ["role", "user"],
    ],
)
def test_from_openai_rejects_bad_input(wire: Any) -> None:
    """Unknown keys and malformed tool calls raise `InvalidMessage`."""
    with pytest.raises(InvalidMessage):
        ChatMessage.from_openai(wire)


CONTENT_PART = st.one_of(
    st.builds(lambda t: {"type": "text", "text": t}, TEXT),
    st.builds(
        lambda u, d: {"type": "image_url", "image_url": {"url": u, "detail": d}},
        TEXT,
        st.sampled_from(["low", "high", "auto"]),
    ),
    st.builds(
        lambda data, fmt: {"type": "input_audio", "input_audio": {"data": data, "format": fmt}},
        TEXT,
        st.sampled_from(["wav", "mp3"]),
    ),
    st.builds(lambda f: {"type": "file", "file": {"file_id": f}}, TEXT),
)
CONTENT = st.one_of(TEXT, st.lists(CONTENT_PART, max_size=4))
TOOL_CALLS = st.lists(st.builds(ToolCall, id=IDS, name=IDS, arguments=TEXT), max_size=3)


@st.composite
def openai_messages(draw: st.DrawFn) -> dict[str, Any]:
    """OpenAI chat-completions message dicts of every role."""
    role = draw(st.sampled_from(["system", "user", "assistant", "tool"]))
    wire: dict[str, Any] = {"role": role, "content": draw(CONTENT)}
    if role != "tool" and draw(st.booleans()):
        wire["name"] = draw(IDS)
    if role == "tool":
        wire["tool_call_id"] = draw(IDS)
    if role == "assistant":
        calls = draw(TOOL_CALLS)
        if calls:
            wire["tool_calls"] = [
                {
                    "id": c.id,
                    "type": "function",
                    "function": {"name": c.name, "arguments": c.arguments},
                }
                for c in calls
            ]
        if draw(st.booleans()):
            wire["refusal"] = draw(TEXT)
        if wire["content"] == "" and (calls or "refusal" in wire):
            wire["content"] = None
    return wire


@given(openai_messages())
def test_openai_round_trip_is_exact(wire: dict[str, Any]) -> None:
    """`from_openai` then `to_openai` gives back exactly the OpenAI message."""
    assert ChatMessage.from_openai(wire).to_openai() == wire


SURROGATE = "a\ud83db"


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")], ids=repr)
@pytest.mark.parametrize(
    ("fields", "field"),
    [
        (lambda v: {"metadata": {"score": v}}, "metadata"),
        (lambda v: {"metadata": {"a": [1, {"b": v}]}}, "metadata"),
        (lambda v: {"content": [{"type": "text", "text": "hi", "score": v}]}, "content"),
    ],
)
def test_chat_message_rejects_non_finite_numbers(value: float, fields: Any, field: str) -> None:
    """A nan or infinity in a JSON-valued field raises `InvalidMessage` naming the field,
    since JSON cannot hold it (it would come back as null)."""
    with pytest.raises(InvalidMessage) as info:
        ChatMessage(role="user", **fields(value))
    assert info.value.field == field
    assert repr(value) in info.value.reason
    assert "JSON" in info.value.reason


@pytest.mark.parametrize(
    ("build", "field"),
    [
        (lambda: ChatMessage.user("hi", id=SURROGATE), "id"),
        (lambda: ChatMessage.tool(SURROGATE, "r"), "tool_call_id"),
        (lambda: ToolCall(id=SURROGATE, name="f"), "id"),
        (lambda: ToolCall(id="c", name=SURROGATE), "name"),
    ],
)
def test_ids_with_a_lone_surrogate_are_rejected_clearly(build: Any, field: str) -> None:
    """An id holding a lone surrogate raises `InvalidMessage` that names the surrogate."""
    with pytest.raises(InvalidMessage) as info:
        build()
    assert info.value.field == field
    assert "lone surrogate '\\ud83d' at index 1" in info.value.reason


@pytest.mark.parametrize(
    ("wire", "field"),
    [
        ({"role": "assistant", "content": SURROGATE}, "content"),
        ({"role": "user", "content": [{"type": "text", "text": SURROGATE}]}, "content"),
        ({"role": "user", "content": "hi", "name": SURROGATE}, "name"),
        ({"role": "assistant", "content": None, "refusal": SURROGATE}, "refusal"),
        (
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "c",
                        "type": "function",
                        "function": {"name": "f", "arguments": SURROGATE},
                    }
                ],
            },
            "tool_calls",
        ),
    ],
)
def test_from_openai_rejects_lone_surrogates(wire: dict[str, Any], field: str) -> None:
    """Wire text holding a lone surrogate (half of a split emoji) raises `InvalidMessage`
    naming the field, instead of a message no history can store."""
    with pytest.raises(InvalidMessage) as info:
        ChatMessage.from_openai(wire)
    assert info.value.field == field
    assert "surrogate" in info.value.reason


@given(st.text(st.characters(exclude_categories=()) | st.sampled_from(["\ud800", "\udc00"])))
def test_from_openai_accepts_exactly_the_encodable_text(text: str) -> None:
    """`from_openai` keeps any text UTF-8 can encode and refuses any other."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        with pytest.raises(InvalidMessage):
            ChatMessage.from_openai({"role": "user", "content": text})
    else:
        assert ChatMessage.from_openai({"role": "user", "content": text}).content == text
