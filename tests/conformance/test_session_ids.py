"""Session ids: any non-empty id of at most 256 characters without control characters works,
and ids compare exactly; anything else raises `InvalidSessionId`."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from memweave import ChatMessage, InvalidSessionId
from memweave.providers import ChatHistoryProvider

HOSTILE_SUFFIXES = [
    "*",
    ":",
    "{",
    "}",
    "{tag}",
    "%",
    "_",
    "'",
    '"',
    "/",
    "\\",
    "[a-z]",
    "?",
    "a b",
    " ",
    "\u00e1bc",
    "\ud55c\uad6d\uc5b4",
    "\U0001f600",
    "'; DROP TABLE memweave_messages; --",
    '{"$ne": ""}',
    "\\x00",
    "-",
    "+",
    "(",
]


@pytest.mark.parametrize("suffix", HOSTILE_SUFFIXES)
async def test_session_id_hostile_characters_round_trip(
    history: ChatHistoryProvider, new_session_id: Callable[[str], str], suffix: str
) -> None:
    """Ids holding `* : { } % _` quotes, slashes and any unicode store and list exactly."""
    session = new_session_id(suffix)
    await history.add_messages(session, [ChatMessage.user(suffix)])
    assert [m.text for m in await history.list_messages(session)] == [suffix]
    assert session in await history.list_sessions()


async def test_session_ids_compare_exactly(
    history: ChatHistoryProvider, new_session_id: Callable[[str], str]
) -> None:
    """`abc`, `ABC`, `abc ` and `ábc` are four different sessions."""
    base = new_session_id("")
    variants = [base + "abc", base + "ABC", base + "abc ", base + "\u00e1bc", base + "a\u0301bc"]
    for variant in variants:
        await history.add_messages(variant, [ChatMessage.user(variant)])
    for variant in variants:
        assert [m.text for m in await history.list_messages(variant)] == [variant]
    assert sorted(variants) == await history.list_sessions(prefix=base)


async def test_session_id_longest_allowed_works(
    history: ChatHistoryProvider, session_prefix: str
) -> None:
    """A 256-character id (multi-byte characters included) is accepted."""
    session = session_prefix + "\U0001f600" * (256 - len(session_prefix))
    assert len(session) == 256
    await history.add_messages(session, [ChatMessage.user("long")])
    assert await history.count_messages(session) == 1


@pytest.mark.parametrize(
    "bad",
    ["", "x" * 257, "tab\there", "nul\x00", "newline\n", "del\x7f", "c1\x85", "\ud800", 42, None],
)
async def test_session_id_invalid_raises(history: ChatHistoryProvider, bad: object) -> None:
    """Ids that cannot be stored safely raise `InvalidSessionId` on every method."""
    with pytest.raises(InvalidSessionId):
        await history.add_messages(bad, [ChatMessage.user("x")])  # type: ignore[arg-type]
    with pytest.raises(InvalidSessionId):
        await history.list_messages(bad)  # type: ignore[arg-type]
    with pytest.raises(InvalidSessionId):
        await history.count_messages(bad)  # type: ignore[arg-type]
    with pytest.raises(InvalidSessionId):
        await history.clear(bad)  # type: ignore[arg-type]
