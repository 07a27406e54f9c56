"""Bad input: what cannot be stored exactly is refused with a typed error, never changed."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from memweave import ChatMessage, InvalidArgument, InvalidMessage, MessageTooLarge, ToolCall
from memweave.providers import ChatHistoryProvider
from tests.conformance._builders import make_messages, texts
from tests.conformance._harness import lower_message_limit

SURROGATE = "x\ud800y"

UNENCODABLE: list[tuple[str, Any]] = [
    ("content", lambda: ChatMessage.user(SURROGATE)),
    ("name", lambda: ChatMessage.user("hi", name=SURROGATE)),
    ("refusal", lambda: ChatMessage.assistant(refusal=SURROGATE)),
    ("content", lambda: ChatMessage.user([{"type": "text", "text": SURROGATE}])),
    ("content", lambda: ChatMessage.user([{"type": "text", "text": "a", SURROGATE: 1}])),
    (
        "tool_calls",
        lambda: ChatMessage.assistant(tool_calls=[ToolCall(id="c", name="f", arguments=SURROGATE)]),
    ),
    ("metadata", lambda: ChatMessage.user("hi", metadata={"k": SURROGATE})),
    ("metadata", lambda: ChatMessage.user("hi", metadata={SURROGATE: 1})),
    ("metadata", lambda: ChatMessage.user("hi", metadata={"k": [{"deep": SURROGATE}]})),
]


@pytest.mark.parametrize(("field", "build"), UNENCODABLE)
async def test_add_messages_lone_surrogate_is_refused_naming_the_field(
    history: ChatHistoryProvider, session_id: str, field: str, build: Any
) -> None:
    """Text holding a lone surrogate raises `InvalidMessage` naming its field and position;
    nothing of the batch is stored."""
    await history.add_messages(session_id, make_messages(1, text="before"))
    with pytest.raises(InvalidMessage) as info:
        await history.add_messages(session_id, [*make_messages(2, text="batch"), build()])
    assert (info.value.field, info.value.position) == (field, 2)
    assert "surrogate" in info.value.reason
    assert texts(await history.list_messages(session_id)) == ["before 0"]


NOT_FINITE = [float("nan"), float("inf"), float("-inf")]


def unvalidated(**fields: Any) -> ChatMessage:
    """A user message with `fields` set past validation, as `model_construct` allows."""
    return ChatMessage.model_construct(**{**ChatMessage.user("hi").__dict__, **fields})


@pytest.mark.parametrize("value", NOT_FINITE, ids=repr)
@pytest.mark.parametrize("where", ["metadata", "content"])
async def test_add_messages_non_finite_float_is_refused_not_nulled(
    history: ChatHistoryProvider, session_id: str, value: float, where: str
) -> None:
    """A nan or infinity in `metadata` or a content part, in a message made without
    validation, raises `InvalidMessage` naming the field; it is never stored as null."""
    if where == "metadata":
        message = unvalidated(metadata={"f": [1.0, {"g": value}]})
    else:
        message = unvalidated(content=[{"type": "text", "text": "hi", "score": value}])
    with pytest.raises(InvalidMessage) as info:
        await history.add_messages(session_id, [ChatMessage.user("first"), message])
    assert (info.value.field, info.value.position) == (where, 1)
    assert await history.count_messages(session_id) == 0


async def test_add_messages_non_finite_float_from_json_is_refused(
    history: ChatHistoryProvider, session_id: str
) -> None:
    """`model_validate_json` accepts JSON's `NaN` token; storing that message is refused."""
    message = ChatMessage.model_validate_json('{"role": "user", "metadata": {"f": NaN}}')
    with pytest.raises(InvalidMessage) as info:
        await history.add_messages(session_id, [message])
    assert info.value.field == "metadata"
    assert await history.count_messages(session_id) == 0


# Any character, lone surrogates included (and drawn often enough to matter).
ANY_TEXT = st.text(
    st.characters(exclude_categories=()) | st.sampled_from(["\ud800", "\udfff"]), max_size=6
)
JSON_LEAVES = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | ANY_TEXT
)
JSON_VALUES = st.recursive(
    JSON_LEAVES,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(ANY_TEXT, inner, max_size=3),
    max_leaves=8,
)


def same_json(left: object, right: object) -> bool:
    """Exact equality of JSON values: types, float bits (`-0.0` too) and key order."""
    if type(left) is not type(right):
        return False
    if isinstance(left, float):
        assert isinstance(right, float)
        return left == right and math.copysign(1, left) == math.copysign(1, right)
    if isinstance(left, dict):
        assert isinstance(right, dict)
        return list(left) == list(right) and all(same_json(left[k], right[k]) for k in left)
    if isinstance(left, list):
        assert isinstance(right, list)
        return len(left) == len(right) and all(map(same_json, left, right))
    return left == right


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(metadata=st.dictionaries(ANY_TEXT, JSON_VALUES, max_size=4))
async def test_add_messages_metadata_round_trips_exactly_or_is_refused(
    history: ChatHistoryProvider, new_session_id: Any, metadata: dict[str, Any]
) -> None:
    """Any metadata is read back exactly as given, or refused with `InvalidMessage`; it is
    never changed on the way."""
    session = new_session_id("")
    refused: InvalidMessage | None = None
    try:
        await history.add_messages(session, [ChatMessage.user("hi", metadata=metadata)])
    except InvalidMessage as exc:
        refused = exc
    if refused is not None:
        assert refused.field == "metadata"
        assert await history.count_messages(session) == 0
        return
    [stored] = await history.list_messages(session)
    assert same_json(stored.metadata, metadata)
    await history.clear(session)


async def test_add_messages_over_the_size_limit_raises_message_too_large(
    history: ChatHistoryProvider, session_id: str
) -> None:
    """A message over the backend's size limit raises `MessageTooLarge` naming its size,
    the limit and its position, before anything is sent; nothing of the batch is stored."""
    await history.add_messages(session_id, make_messages(1, text="before"))
    big = ChatMessage.user("x" * 2_000)
    lower_message_limit(history, 1_000)
    with pytest.raises(MessageTooLarge) as info:
        await history.add_messages(session_id, [ChatMessage.user("small"), big])
    error = info.value
    assert (error.position, error.limit, error.backend) == (1, 1_000, type(history).__name__)
    assert error.size > 2_000
    assert isinstance(error, InvalidMessage)
    assert texts(await history.list_messages(session_id)) == ["before 0"]


async def test_add_messages_at_the_size_limit_is_stored(
    history: ChatHistoryProvider, session_id: str
) -> None:
    """A message whose stored form is exactly the limit is stored; one byte less is not."""
    message = ChatMessage.user("y" * 500)
    lower_message_limit(history, 1)
    with pytest.raises(MessageTooLarge) as info:
        await history.add_messages(session_id, [message])
    size = info.value.size
    lower_message_limit(history, size - 1)
    with pytest.raises(MessageTooLarge):
        await history.add_messages(session_id, [message])
    lower_message_limit(history, size)
    await history.add_messages(session_id, [message])
    assert await history.list_messages(session_id) == [message]


@pytest.mark.parametrize(
    "bad_id", [SURROGATE, "a\nb", "x" * 257], ids=["surrogate", "newline", "long"]
)
async def test_message_id_arguments_no_message_can_have_count_as_unknown(
    history: ChatHistoryProvider, session_id: str, bad_id: str
) -> None:
    """An id argument no message can have is unknown, with the typed errors of any unknown
    id: `delete_messages` ignores it, `truncate_after` and `before=` raise
    `InvalidArgument`, and a session prefix holding it lists nothing."""
    await history.add_messages(session_id, make_messages(2))
    assert await history.delete_messages(session_id, [bad_id]) == 0
    with pytest.raises(InvalidArgument, match="message_id"):
        await history.truncate_after(session_id, bad_id)
    with pytest.raises(InvalidArgument, match="before"):
        await history.list_messages(session_id, before=bad_id)
    assert await history.list_sessions(prefix=session_id + bad_id) == []
    assert await history.count_messages(session_id) == 2
