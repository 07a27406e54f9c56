"""MariaDB/MySQL: always utf8mb4, ids compared exactly, and the size limit of one message.

These run on the real server (`MEMWEAVE_TEST_MYSQL_URL`, default `mysql+aiomysql://root@
127.0.0.1:3306/test`); each test uses fresh session ids and clears what it stored.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import create_async_engine

from memweave import ChatMessage, ConfigurationError, MessageTooLarge
from memweave._codec import encode
from memweave.orchestration import SQLCheckpointStore
from memweave.providers.sql import SQLChatHistoryProvider
from tests.conformance._harness_sql import mysql_url

__all__ = ["mysql_url"]

MiB = 1 << 20


@pytest.fixture
async def history(mysql_url: str) -> AsyncIterator[SQLChatHistoryProvider]:
    """A provider on the shared server; sessions it made are cleared afterwards."""
    provider = SQLChatHistoryProvider(mysql_url)
    yield provider
    for session in await provider.list_sessions(prefix=PREFIX):
        await provider.clear(session)
    await provider.aclose()


PREFIX = f"mwt-limits-{uuid.uuid4().hex[:8]}-"


def fresh(suffix: str = "") -> str:
    """A session id no other test uses, ending with `suffix`."""
    return f"{PREFIX}{uuid.uuid4().hex[:8]}{suffix}"


@pytest.mark.parametrize("charset", ["utf8", "utf8mb3", "latin1", "ascii", "UTF8"])
def test_sql_provider_rejects_a_charset_without_all_of_unicode(charset: str) -> None:
    """A URL charset that cannot hold every character is a `ConfigurationError` naming the
    fix, before anything connects (`utf8` would turn `😀` into `?`)."""
    with pytest.raises(ConfigurationError, match="charset=utf8mb4") as info:
        SQLChatHistoryProvider(f"mysql+aiomysql://root@127.0.0.1:1/test?charset={charset}")
    assert f"charset={charset}" in str(info.value)


def test_checkpoint_store_rejects_a_charset_without_all_of_unicode() -> None:
    """The checkpoint store builds its engines the same way, and refuses the same URLs."""
    with pytest.raises(ConfigurationError, match="charset=utf8mb4"):
        SQLCheckpointStore("mysql+aiomysql://root@127.0.0.1:1/test?charset=utf8")


@pytest.mark.parametrize("query", ["", "?charset=utf8mb4", "?charset=UTF8MB4"])
async def test_sql_provider_talks_utf8mb4(mysql_url: str, query: str) -> None:
    """Without a charset, or with utf8mb4, the connection talks utf8mb4."""
    url = mysql_url.split("?")[0] + query
    provider = SQLChatHistoryProvider(url)
    try:
        async with provider.engine.connect() as conn:
            found = await conn.exec_driver_sql("SELECT @@character_set_connection")
            assert found.scalar() == "utf8mb4"
    finally:
        await provider.aclose()


async def test_sql_provider_rejects_an_engine_talking_utf8(mysql_url: str) -> None:
    """An engine passed in that talks utf8 (here through `connect_args`, which no URL shows)
    is refused on first use with a `ConfigurationError`, before any message is sent."""
    engine = create_async_engine(mysql_url.split("?")[0], connect_args={"charset": "utf8"})
    provider = SQLChatHistoryProvider(client=engine)
    try:
        with pytest.raises(ConfigurationError, match="talks utf8"):
            await provider.add_messages(fresh(), [ChatMessage.user("hi")])
    finally:
        await provider.aclose()
        await engine.dispose()


async def test_add_messages_keeps_emoji_and_case_variant_ids_apart(
    history: SQLChatHistoryProvider,
) -> None:
    """Session and message ids differing only in an emoji, case or a trailing space are
    different ids: each message is stored under its own."""
    base = fresh("-id-")
    variants = ["\U0001f600", "\U0001f601", "a", "A", "a ", "\u00e1"]
    for variant in variants:
        message = ChatMessage.user(variant, id=f"m-{variant}")
        await history.add_messages(base + variant, [message])
        same_session = ChatMessage.user(f"again {variant}", id=f"m-{variant}x")
        await history.add_messages(base + variant, [same_session])
    assert await history.list_sessions(prefix=base) == sorted(base + v for v in variants)
    for variant in variants:
        stored = await history.list_messages(base + variant)
        assert [m.id for m in stored] == [f"m-{variant}", f"m-{variant}x"]
    session = fresh()
    await history.add_messages(session, [ChatMessage.user(v, id=f"id-{v}") for v in variants])
    assert [m.text for m in await history.list_messages(session)] == variants


def sized_message(size: int, **fields: Any) -> ChatMessage:
    """A user message whose stored form is exactly `size` bytes."""
    fields.setdefault("created_at", datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=UTC))
    overhead = len(encode(ChatMessage.user("z", **fields))) - 1
    return ChatMessage.user("z" * (size - overhead), **fields)


async def _limit(history: SQLChatHistoryProvider) -> int:
    async with history.engine.connect() as conn:
        packet = (await conn.exec_driver_sql("SELECT @@max_allowed_packet")).scalar()
    return (int(packet) - 8 * 1024) // 2


async def test_add_messages_over_the_packet_limit_raises_message_too_large(
    history: SQLChatHistoryProvider,
) -> None:
    """A 9 MiB message (hex twice that, over the default 16 MiB `max_allowed_packet`) raises
    `MessageTooLarge` before anything is sent, not a lost connection; nothing is stored and
    the provider goes on working."""
    limit = await _limit(history)
    session = fresh()
    big = ChatMessage.user("x" * max(9 * MiB, limit + 1))
    with pytest.raises(MessageTooLarge) as info:
        await history.add_messages(session, [ChatMessage.user("small"), big])
    assert (info.value.position, info.value.limit) == (1, limit)
    assert info.value.backend == "SQLChatHistoryProvider"
    assert await history.session_info(session) is None
    await history.add_messages(session, [ChatMessage.user("after")])
    assert [m.text for m in await history.list_messages(session)] == ["after"]


async def test_add_messages_at_the_packet_limit_round_trips(
    history: SQLChatHistoryProvider,
) -> None:
    """A message exactly at the limit, with the longest ids (256 emoji each), is stored and
    read back equal: the limit leaves room for the statement around it."""
    limit = await _limit(history)
    session = fresh()[:40] + "\U0001f600" * 216
    message_id = "\U0001f601" * 256
    message = sized_message(limit, id=message_id)
    assert len(encode(message)) == limit
    await history.add_messages(session, [message])
    assert await history.list_messages(session) == [message]
