"""Single-message edits: `delete_messages` and `truncate_after`, atomic, leaving no orphan."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from memweave import ChatMessage
from memweave.errors import InvalidArgument
from memweave.providers import ChatHistoryProvider
from tests.conformance._builders import make_messages, texts, tool_pair


async def ids_of(history: ChatHistoryProvider, session_id: str) -> list[str]:
    """The stored message ids, oldest first."""
    return [m.id for m in await history.list_messages(session_id)]


async def test_delete_messages_deletes_exactly_those(
    history: ChatHistoryProvider, session_id: str
) -> None:
    """`delete_messages` deletes the named messages and keeps the others in order."""
    messages = make_messages(6)
    await history.add_messages(session_id, messages)
    assert await history.delete_messages(session_id, [messages[1].id, messages[4].id]) == 2
    assert texts(await history.list_messages(session_id)) == texts(
        [messages[i] for i in (0, 2, 3, 5)]
    )
    assert await history.count_messages(session_id) == 4


async def test_delete_messages_ignores_unknown_ids(
    history: ChatHistoryProvider, session_id: str
) -> None:
    """Ids not stored in the session are ignored; an empty list deletes nothing."""
    messages = make_messages(3)
    await history.add_messages(session_id, messages)
    assert await history.delete_messages(session_id, ["nope", messages[0].id, "nope"]) == 1
    assert await history.delete_messages(session_id, []) == 0
    assert await history.delete_messages(session_id + "-unknown", ["x"]) == 0
    assert await ids_of(history, session_id) == [m.id for m in messages[1:]]


async def test_delete_messages_takes_the_tool_results_along(
    history: ChatHistoryProvider, session_id: str
) -> None:
    """Deleting an assistant message that called tools also deletes its tool results."""
    before, pair, after = make_messages(2), tool_pair(3), make_messages(2)
    await history.add_messages(session_id, [*before, *pair, *after])
    assert await history.delete_messages(session_id, [pair[0].id]) == 4
    assert await ids_of(history, session_id) == [m.id for m in [*before, *after]]


async def test_delete_messages_refuses_an_orphaning_tool_result(
    history: ChatHistoryProvider, session_id: str
) -> None:
    """Naming a tool result without its calling message raises and deletes nothing."""
    messages = [*make_messages(1), *tool_pair(2), *make_messages(1)]
    await history.add_messages(session_id, messages)
    with pytest.raises(InvalidArgument) as raised:
        await history.delete_messages(session_id, [messages[0].id, messages[2].id])
    assert raised.value.value == messages[2].id
    assert await ids_of(history, session_id) == [m.id for m in messages]


async def test_delete_messages_with_call_and_results_named_counts_each_once(
    history: ChatHistoryProvider, session_id: str
) -> None:
    """Naming a call together with its results deletes the group once."""
    pair = tool_pair(2)
    messages = [*make_messages(1), *pair]
    await history.add_messages(session_id, messages)
    assert await history.delete_messages(session_id, [m.id for m in pair]) == 3
    assert await ids_of(history, session_id) == [messages[0].id]


async def test_delete_messages_of_every_message_removes_the_session(
    history: ChatHistoryProvider, session_id: str, session_prefix: str
) -> None:
    """A session left empty is gone: not listed, no info."""
    messages = make_messages(3)
    await history.add_messages(session_id, messages)
    await history.delete_messages(session_id, [m.id for m in messages])
    assert await history.count_messages(session_id) == 0
    assert session_id not in await history.list_sessions(session_prefix)
    assert await history.session_info(session_id) is None


async def test_delete_messages_then_readd_stores_again(
    history: ChatHistoryProvider, session_id: str
) -> None:
    """A deleted id is forgotten: adding that message again stores it (at the end)."""
    messages = make_messages(3)
    await history.add_messages(session_id, messages)
    await history.delete_messages(session_id, [messages[0].id])
    await history.add_messages(session_id, [messages[0]])
    assert await ids_of(history, session_id) == [m.id for m in (*messages[1:], messages[0])]


async def test_delete_messages_keeps_system_messages_for_windowed_reads(
    history: ChatHistoryProvider, session_id: str
) -> None:
    """After deleting a system message, a windowed read no longer returns it."""
    from memweave.reducers import MessageCountReducer

    system = [ChatMessage.system("rule one"), ChatMessage.system("rule two")]
    await history.add_messages(session_id, [system[0], *make_messages(80), system[1]])
    await history.add_messages(session_id, make_messages(80, text="late"))
    await history.delete_messages(session_id, [system[0].id])
    window = await history.list_messages(session_id, reducer=MessageCountReducer(4))
    assert [m.text for m in window if m.role == "system"] == ["rule two"]


@pytest.mark.parametrize("bad", ["one-id", b"bytes", 42, None, [1, 2]])
async def test_delete_messages_needs_an_iterable_of_str(
    history: ChatHistoryProvider, session_id: str, bad: object
) -> None:
    """A lone str, bytes, a non-iterable or non-str ids are an `InvalidArgument`."""
    with pytest.raises(InvalidArgument):
        await history.delete_messages(session_id, bad)  # type: ignore[arg-type]


async def test_delete_messages_is_isolated_per_session(
    history: ChatHistoryProvider, new_session_id: Callable[[str], str]
) -> None:
    """Deleting an id in one session leaves another session holding the same id alone."""
    a, b = new_session_id("-a"), new_session_id("-b")
    shared = make_messages(2)
    await history.add_messages(a, shared)
    await history.add_messages(b, shared)
    await history.delete_messages(a, [shared[0].id])
    assert await ids_of(history, b) == [m.id for m in shared]


async def test_truncate_after_deletes_every_newer_message(
    history: ChatHistoryProvider, session_id: str
) -> None:
    """`truncate_after(id)` keeps that message and everything older."""
    messages = make_messages(8)
    await history.add_messages(session_id, messages)
    assert await history.truncate_after(session_id, messages[4].id) == 3
    assert await ids_of(history, session_id) == [m.id for m in messages[:5]]
    assert await history.truncate_after(session_id, messages[4].id) == 0


async def test_truncate_after_keeps_the_tool_results_of_a_call(
    history: ChatHistoryProvider, session_id: str
) -> None:
    """Truncating after a tool call keeps its results, so the call is never orphaned."""
    pair = tool_pair(2)
    messages = [*make_messages(1), *pair, *make_messages(3)]
    await history.add_messages(session_id, messages)
    assert await history.truncate_after(session_id, pair[0].id) == 3
    assert await ids_of(history, session_id) == [m.id for m in [messages[0], *pair]]


async def test_truncate_after_unknown_id_is_invalid(
    history: ChatHistoryProvider, session_id: str
) -> None:
    """An id not stored in the session is an `InvalidArgument`; nothing changes."""
    messages = make_messages(3)
    await history.add_messages(session_id, messages)
    with pytest.raises(InvalidArgument):
        await history.truncate_after(session_id, "no-such-id")
    with pytest.raises(InvalidArgument):
        await history.truncate_after(session_id + "-unknown", messages[0].id)
    assert await history.count_messages(session_id) == 3


async def test_truncate_after_then_append_continues_from_the_cut(
    history: ChatHistoryProvider, session_id: str
) -> None:
    """A regenerated turn appended after a truncate follows the kept message; pages see it."""
    messages = make_messages(6)
    await history.add_messages(session_id, messages)
    await history.truncate_after(session_id, messages[2].id)
    retry = ChatMessage.assistant("regenerated")
    await history.add_messages(session_id, [retry])
    assert texts(await history.list_messages(session_id)) == [*texts(messages[:3]), "regenerated"]
    page = await history.list_messages(session_id, limit=2, before=retry.id)
    assert texts(page) == texts(messages[1:3])
    info = await history.session_info(session_id)
    assert info is not None
    assert info.message_count == 4


async def test_edits_racing_appends_lose_nothing_else(
    history: ChatHistoryProvider, session_id: str
) -> None:
    """Deletes racing appends delete exactly the named messages; every appended one stays."""
    seed = make_messages(20, text="seed")
    await history.add_messages(session_id, seed)
    batches = [make_messages(2, text=f"w{n}") for n in range(10)]
    doomed = [m.id for m in seed[::2]]

    async def deleter() -> None:
        for chunk in range(0, len(doomed), 2):
            await history.delete_messages(session_id, doomed[chunk : chunk + 2])

    await asyncio.gather(deleter(), *(history.add_messages(session_id, batch) for batch in batches))
    stored = await ids_of(history, session_id)
    expected = {m.id for m in seed[1::2]} | {m.id for b in batches for m in b}
    assert set(stored) == expected
    assert len(stored) == len(expected)
    assert await history.count_messages(session_id) == len(expected)


async def test_delete_messages_refuses_a_tool_result_without_any_caller(
    history: ChatHistoryProvider, session_id: str
) -> None:
    """A tool result stored with no older message is still refused alone: deleting a tool
    result always goes through the message that called it."""
    orphan = ChatMessage.tool("call_lost", "late result")
    messages = [orphan, *make_messages(2)]
    await history.add_messages(session_id, messages)
    with pytest.raises(InvalidArgument):
        await history.delete_messages(session_id, [orphan.id])
    assert await ids_of(history, session_id) == [m.id for m in messages]
