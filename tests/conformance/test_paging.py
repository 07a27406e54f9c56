"""Pages: `list_messages(limit=N, before=id)` and `iter_messages(page_size=N)`."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from memweave import ChatMessage
from memweave.errors import InvalidArgument, ProviderClosed
from memweave.providers import ChatHistoryProvider
from memweave.reducers import MessageCountReducer
from tests.conformance._builders import make_messages, texts, tool_pair


async def collect(history: ChatHistoryProvider, session_id: str, page_size: int) -> list[str]:
    """The texts `iter_messages` yields."""
    return [m.text async for m in history.iter_messages(session_id, page_size=page_size)]


async def test_list_messages_before_returns_the_page_just_older(
    history: ChatHistoryProvider, session_id: str
) -> None:
    """`limit=N, before=id` returns the N messages just older than that message, oldest first."""
    messages = make_messages(30)
    await history.add_messages(session_id, messages)
    page = await history.list_messages(session_id, limit=5, before=messages[20].id)
    assert texts(page) == texts(messages[15:20])


async def test_list_messages_before_walks_back_to_the_start(
    history: ChatHistoryProvider, session_id: str
) -> None:
    """Chaining `before=` with the oldest id of each page reads the whole session once."""
    messages = make_messages(23)
    await history.add_messages(session_id, messages)
    newest = await history.list_messages(session_id, limit=5)
    pages = [newest]
    while True:
        page = await history.list_messages(session_id, limit=5, before=pages[-1][0].id)
        if not page:
            break
        pages.append(page)
    assert [m.id for page in reversed(pages) for m in page] == [m.id for m in messages]


async def test_list_messages_before_near_the_start_is_short(
    history: ChatHistoryProvider, session_id: str
) -> None:
    """A page that reaches the start of the session holds only what exists; before the
    oldest message there is nothing."""
    messages = make_messages(6)
    await history.add_messages(session_id, messages)
    assert texts(await history.list_messages(session_id, limit=10, before=messages[2].id)) == (
        texts(messages[:2])
    )
    assert await history.list_messages(session_id, limit=10, before=messages[0].id) == []


async def test_list_messages_before_without_limit_returns_every_older_message(
    history: ChatHistoryProvider, session_id: str
) -> None:
    """`before=` alone returns every message older than that one."""
    messages = make_messages(12)
    await history.add_messages(session_id, messages)
    assert texts(await history.list_messages(session_id, before=messages[9].id)) == texts(
        messages[:9]
    )


async def test_list_messages_before_unknown_id_is_invalid(
    history: ChatHistoryProvider, session_id: str, new_session_id: Callable[[str], str]
) -> None:
    """A `before` id not stored in the session is an `InvalidArgument`, also when it is
    stored in another session or the session does not exist."""
    other = new_session_id("")
    foreign = make_messages(1)
    await history.add_messages(other, foreign)
    await history.add_messages(session_id, make_messages(3))
    for cursor in ("no-such-id", foreign[0].id):
        with pytest.raises(InvalidArgument) as raised:
            await history.list_messages(session_id, limit=2, before=cursor)
        assert raised.value.name == "before"
    with pytest.raises(InvalidArgument):
        await history.list_messages(new_session_id("-empty"), limit=2, before="x")


async def test_list_messages_before_with_limit_zero_checks_the_cursor(
    history: ChatHistoryProvider, session_id: str
) -> None:
    """`limit=0, before=id` returns nothing, and still refuses an unknown id."""
    messages = make_messages(3)
    await history.add_messages(session_id, messages)
    assert await history.list_messages(session_id, limit=0, before=messages[2].id) == []
    with pytest.raises(InvalidArgument):
        await history.list_messages(session_id, limit=0, before="no-such-id")


@pytest.mark.parametrize("cursor", [42, b"id", ["id"]])
async def test_list_messages_before_must_be_a_str(
    history: ChatHistoryProvider, session_id: str, cursor: object
) -> None:
    """A `before` that is not a str is an `InvalidArgument`."""
    with pytest.raises(InvalidArgument):
        await history.list_messages(session_id, limit=2, before=cursor)  # type: ignore[arg-type]


async def test_list_messages_before_and_reducer_cannot_combine(
    history: ChatHistoryProvider, session_id: str
) -> None:
    """`before=` with `reducer=` is an `InvalidArgument`: a window is read from the end."""
    messages = make_messages(3)
    await history.add_messages(session_id, messages)
    with pytest.raises(InvalidArgument):
        await history.list_messages(
            session_id, before=messages[2].id, reducer=MessageCountReducer(2)
        )


async def test_list_messages_before_handles_hostile_message_ids(
    history: ChatHistoryProvider, session_id: str
) -> None:
    """Message ids with pattern, quote and unicode characters work as cursors, exactly."""
    ids = ["a*b", "a%_b", "{x}:y", 'it\'s "q"', "ábc", "ABC", "abc", "abc ", "😀"]
    messages = [ChatMessage.user(f"text {i}", id=mid) for i, mid in enumerate(ids)]
    await history.add_messages(session_id, messages)
    for at in range(1, len(ids)):
        page = await history.list_messages(session_id, limit=1, before=ids[at])
        assert [m.id for m in page] == [ids[at - 1]]


@pytest.mark.parametrize("page_size", [1, 3, 7, 50])
async def test_iter_messages_yields_every_message_once_in_order(
    history: ChatHistoryProvider, session_id: str, page_size: int
) -> None:
    """`iter_messages` yields the whole session, oldest first, whatever the page size."""
    messages = make_messages(21)
    await history.add_messages(session_id, messages)
    assert await collect(history, session_id, page_size) == texts(messages)


async def test_iter_messages_of_unknown_session_is_empty(
    history: ChatHistoryProvider, session_id: str
) -> None:
    """An unknown session yields nothing."""
    assert await collect(history, session_id, 10) == []


@pytest.mark.parametrize("page_size", [0, -1, True, 1.5, "10", 10_001])
async def test_iter_messages_page_size_out_of_range_is_invalid(
    history: ChatHistoryProvider, session_id: str, page_size: object
) -> None:
    """A `page_size` that is not an int from 1 to 10,000 is an `InvalidArgument`, raised at
    the call."""
    with pytest.raises(InvalidArgument):
        history.iter_messages(session_id, page_size=page_size)  # type: ignore[arg-type]


async def test_iter_messages_sees_messages_appended_while_iterating(
    history: ChatHistoryProvider, session_id: str
) -> None:
    """Messages appended between pages are yielded too; none is skipped or repeated."""
    first, later = make_messages(10, text="a"), make_messages(10, text="b")
    await history.add_messages(session_id, first)
    seen: list[str] = []
    added = False
    async for message in history.iter_messages(session_id, page_size=4):
        seen.append(message.text)
        if not added:
            await history.add_messages(session_id, later)
            added = True
    assert seen == texts(first + later)


async def test_iter_messages_under_a_concurrent_writer_skips_and_repeats_nothing(
    history: ChatHistoryProvider, session_id: str
) -> None:
    """Pages read while another task appends batches hold every message once, in order."""
    await history.add_messages(session_id, make_messages(5, text="seed"))
    batches = [make_messages(3, text=f"w{n}") for n in range(15)]

    async def writer() -> None:
        for batch in batches:
            await history.add_messages(session_id, batch)
            await asyncio.sleep(0)

    async def reader() -> list[str]:
        out: list[str] = []
        async for message in history.iter_messages(session_id, page_size=4):
            out.append(message.id)
            await asyncio.sleep(0)
        return out

    _, seen = await asyncio.gather(writer(), reader())
    stored = [m.id for m in await history.list_messages(session_id)]
    assert len(seen) == len(set(seen))
    assert seen == stored[: len(seen)]


async def test_iter_messages_goes_on_after_the_cursor_message_is_deleted(
    history: ChatHistoryProvider, session_id: str
) -> None:
    """When the last message of a page is deleted before the next page is read, iteration
    goes on from the newest message of the page still stored."""
    messages = make_messages(9)
    await history.add_messages(session_id, messages)
    seen: list[str] = []
    async for message in history.iter_messages(session_id, page_size=3):
        seen.append(message.id)
        if message.id == messages[2].id:
            await history.delete_messages(session_id, [messages[2].id])
    assert seen == [m.id for m in messages]


async def test_iter_messages_ignores_the_read_reducer(
    make_history: Callable[..., ChatHistoryProvider], session_id: str
) -> None:
    """`iter_messages` pages storage as it is, whatever reducer the provider reads with."""
    history = make_history(reducer=MessageCountReducer(2), reduce_on="read")
    messages = make_messages(7)
    await history.add_messages(session_id, messages)
    assert await collect(history, session_id, 3) == texts(messages)


async def test_iter_messages_keeps_tool_pairs_across_pages(
    history: ChatHistoryProvider, session_id: str
) -> None:
    """A tool call and its results are yielded in order even when a page splits them."""
    messages = [*make_messages(1), *tool_pair(3), *make_messages(2)]
    await history.add_messages(session_id, messages)
    got = [m async for m in history.iter_messages(session_id, page_size=2)]
    assert [m.id for m in got] == [m.id for m in messages]


async def test_iter_messages_after_aclose_raises_provider_closed(
    make_history: Callable[..., ChatHistoryProvider], session_id: str
) -> None:
    """Reading the next page after `aclose()` raises `ProviderClosed`."""
    history = make_history()
    await history.add_messages(session_id, make_messages(6))
    pages = history.iter_messages(session_id, page_size=2)
    await anext(pages)
    await anext(pages)
    await history.aclose()
    with pytest.raises(ProviderClosed):
        async for _ in pages:
            pass


@settings(
    max_examples=15,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
    deadline=None,
)
@given(
    size=st.integers(min_value=0, max_value=40),
    page=st.integers(min_value=1, max_value=12),
    cut=st.integers(min_value=0, max_value=39),
)
async def test_pages_agree_with_the_whole_read(
    history: ChatHistoryProvider,
    new_session_id: Callable[[str], str],
    size: int,
    page: int,
    cut: int,
) -> None:
    """Any page size and cursor give slices of the whole read: iteration equals it, and a
    `before` page is the slice just before the cursor."""
    session_id = new_session_id("")
    messages = make_messages(size)
    if messages:
        await history.add_messages(session_id, messages)
    ids = [m.id for m in messages]
    assert [m.id async for m in history.iter_messages(session_id, page_size=page)] == ids
    if ids:
        at = cut % len(ids)
        older = await history.list_messages(session_id, limit=page, before=ids[at])
        assert [m.id for m in older] == ids[max(0, at - page) : at]
