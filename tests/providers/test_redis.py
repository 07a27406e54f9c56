"""Redis-only checks: round trips, key layout and hash tags, the sessions index, the copy of
system entries behind reduced reads, client ownership, URLs and error translation. The shared
rules live in tests/conformance."""

from __future__ import annotations

import hashlib
import importlib
import socket
import sys
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from typing import Any

import pytest
import redis
from redis.asyncio import Redis, RedisCluster
from redis.asyncio.connection import (
    Connection,
    ConnectionPool,
    SSLConnection,
    UnixDomainSocketConnection,
)
from redis.crc import key_slot

from memweave import ChatMessage, ChatReducer, MessageCountReducer, TokenBudgetReducer
from memweave._codec import decode_many
from memweave.errors import BackendUnavailable, ConfigurationError, MissingDependency
from memweave.providers import from_url
from memweave.providers.base import StoredRecord
from memweave.providers.redis import RedisChatHistoryProvider
from tests._redis_cluster import redis_cluster_url
from tests.conformance._builders import make_messages, texts, tool_pair
from tests.conformance._harness_redis import redis_url

__all__ = ["redis_cluster_url", "redis_url"]

HOSTILE_IDS = ["{", "}", "{tag}", "a{b}c", "}{", "*", "a:*", "?", "[a-z]", "[", "\\", "ab"]


class CountingConnection(Connection):
    """A real connection that records what it sends: one entry per socket write (round trip),
    listing the commands packed into it."""

    sent: list[list[tuple[Any, ...]]]

    def __init__(self, **kwargs: Any) -> None:
        self.packing: list[tuple[Any, ...]] = []
        super().__init__(**kwargs)

    def pack_command(self, *args: Any) -> list[bytes]:
        self.packing.append(tuple(args))
        return super().pack_command(*args)

    async def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        self.sent.append(self.packing)
        self.packing = []
        await super().send_packed_command(command, check_health)


def _name(command: tuple[Any, ...]) -> str:
    head = command[0]
    return (head.decode() if isinstance(head, bytes) else str(head)).upper()


@pytest.fixture
def key_prefix() -> str:
    """A provider prefix no other test uses, so the test can find and delete its keys."""
    return f"mwtest-{uuid.uuid4().hex}"


@pytest.fixture(params=["redis", "redis_cluster"])
async def url(request: pytest.FixtureRequest, key_prefix: str) -> AsyncIterator[str]:
    """URL of the single server or of the test cluster; deletes this test's keys afterwards."""
    value: str = request.getfixturevalue(f"{request.param}_url")
    yield value
    provider = RedisChatHistoryProvider(value, prefix=key_prefix)
    try:
        client = provider._client
        async for key in client.scan_iter(match=f"{key_prefix}:*"):
            await client.delete(key)
    finally:
        await provider.aclose()


@pytest.fixture
async def counted(
    redis_url: str, key_prefix: str
) -> AsyncIterator[tuple[RedisChatHistoryProvider, list[list[tuple[Any, ...]]]]]:
    """A provider on the single server whose client records every round trip."""
    sent: list[list[tuple[Any, ...]]] = []
    connection_class = type("Counting", (CountingConnection,), {"sent": sent})
    pool = ConnectionPool.from_url(redis_url, connection_class=connection_class)
    client = Redis(connection_pool=pool)
    provider = RedisChatHistoryProvider(client=client, prefix=key_prefix)
    await client.ping()  # connect (and its handshake) before anything is counted
    yield provider, sent
    await provider.aclose()
    async for key in client.scan_iter(match=f"{key_prefix}:*"):
        await client.delete(key)
    await client.aclose()


async def _keys_of(provider: RedisChatHistoryProvider) -> list[str]:
    keys = [key async for key in provider._client.scan_iter(match=f"{provider.prefix}:*")]
    return sorted(k.decode() if isinstance(k, bytes) else k for k in keys)


# -- round trips ------------------------------------------------------------------------------


@pytest.mark.parametrize("options", [{}, {"max_messages": 5, "ttl": timedelta(hours=1)}])
@pytest.mark.parametrize("size", [1, 10])
async def test_add_messages_is_one_round_trip(
    counted: tuple[RedisChatHistoryProvider, list[list[tuple[Any, ...]]]],
    options: dict[str, Any],
    size: int,
) -> None:
    """`add_messages` is one EVALSHA: dedup, append, trim, ttl and index in one round trip."""
    base, sent = counted
    provider = RedisChatHistoryProvider(client=base._client, prefix=base.prefix, **options)
    session = f"s-{uuid.uuid4().hex}"
    await provider.add_messages(session, make_messages(2))  # the script is cached from here
    sent.clear()
    await provider.add_messages(session, make_messages(size))
    assert [[_name(c) for c in trip] for trip in sent] == [["EVALSHA"]]


async def test_add_messages_in_cluster_sends_one_command_per_slot(
    redis_cluster_url: str, key_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In a cluster an add is the session script plus the index script, sent concurrently."""
    provider = RedisChatHistoryProvider(
        redis_cluster_url, prefix=key_prefix, ttl=timedelta(hours=1)
    )
    sent: list[tuple[int, str]] = []
    original = Connection.send_packed_command

    async def recording(self: Connection, command: Any, check_health: bool = True) -> None:
        first = command if isinstance(command, bytes) else b"".join(command)
        sent.append((self.port, first.split(b"\r\n")[2].decode().upper()))
        await original(self, command, check_health)

    try:
        session = f"s-{uuid.uuid4().hex}"
        await provider.add_messages(session, make_messages(2))
        monkeypatch.setattr(Connection, "send_packed_command", recording)
        await provider.add_messages(session, make_messages(3))
        monkeypatch.undo()
        assert sorted(name for _, name in sent) == ["EVALSHA", "EVALSHA"]
        assert await provider.count_messages(session) == 5
    finally:
        monkeypatch.undo()
        async for key in provider._client.scan_iter(match=f"{key_prefix}:*"):
            await provider._client.delete(key)
        await provider.aclose()


async def test_list_messages_limit_is_one_lrange(
    counted: tuple[RedisChatHistoryProvider, list[list[tuple[Any, ...]]]],
) -> None:
    """`limit=N` is served by `LRANGE key -N -1`, never by reading the whole history."""
    provider, sent = counted
    await provider.add_messages("s", make_messages(50))
    sent.clear()
    assert texts(await provider.list_messages("s", limit=20)) == texts(make_messages(50)[-20:])
    assert len(sent) == 1
    (command,) = sent[0]
    assert _name(command) == "LRANGE"
    assert [int(x) for x in command[2:]] == [-20, -1]


async def test_list_sessions_never_scans(
    counted: tuple[RedisChatHistoryProvider, list[list[tuple[Any, ...]]]],
) -> None:
    """`list_sessions` reads the index (one script) and checks existence (one pipeline)."""
    provider, sent = counted
    for session in ("t-a", "t-b", "u-a"):
        await provider.add_messages(session, make_messages(1))
    sent.clear()
    assert await provider.list_sessions(prefix="t-") == ["t-a", "t-b"]
    names = [[_name(c) for c in trip] for trip in sent]
    assert names == [["EVALSHA"], ["EXISTS", "EXISTS"]]


# -- key layout -------------------------------------------------------------------------------


async def test_session_keys_share_one_slot(url: str, key_prefix: str) -> None:
    """All keys of a session carry the same hash tag, so they share one cluster slot."""
    provider = RedisChatHistoryProvider(url, prefix=key_prefix, ttl=timedelta(hours=1))
    try:
        await provider.add_messages("s", [ChatMessage.system("rules"), *make_messages(3)])
        index = {f"{key_prefix}:{{{key_prefix}}}:sessions", f"{key_prefix}:{{{key_prefix}}}:expiry"}
        keys = await _keys_of(provider)
        assert index <= set(keys)
        session_keys = [k for k in keys if k not in index]
        assert len(session_keys) == 4
        assert len({key_slot(k.encode()) for k in session_keys}) == 1
    finally:
        await provider.aclose()


@pytest.mark.parametrize("session", HOSTILE_IDS)
async def test_hostile_id_cannot_change_hash_tag_or_key_pattern(
    url: str, key_prefix: str, session: str
) -> None:
    """Braces and glob characters in an id never reach a key name: the tag is a digest."""
    provider = RedisChatHistoryProvider(url, prefix=key_prefix, max_messages=10)
    try:
        await provider.add_messages(session, [ChatMessage.user(session)])
        tag = hashlib.blake2b(session.encode(), digest_size=16).hexdigest()
        session_keys = [k for k in await _keys_of(provider) if f"{{{key_prefix}}}" not in k]
        assert session_keys == sorted(
            f"{key_prefix}:{{{tag}}}:{n}" for n in ("ids", "meta", "msgs")
        )
        assert texts(await provider.list_messages(session)) == [session]
    finally:
        await provider.aclose()


async def test_hostile_ids_are_isolated_from_lookalikes(url: str, key_prefix: str) -> None:
    """Clearing `*`, `a*` or `[a-z]` leaves `ab` and every other session untouched."""
    provider = RedisChatHistoryProvider(url, prefix=key_prefix)
    try:
        for session in HOSTILE_IDS:
            await provider.add_messages(session, [ChatMessage.user(session)])
        for doomed in ("*", "a:*", "[a-z]", "?"):
            await provider.clear(doomed)
        kept = [s for s in HOSTILE_IDS if s not in ("*", "a:*", "[a-z]", "?")]
        for session in kept:
            assert texts(await provider.list_messages(session)) == [session]
        assert await provider.list_sessions() == sorted(kept)
        assert await provider.list_sessions(prefix="[") == ["["]
        assert await provider.list_sessions(prefix="{") == ["{", "{tag}"]
    finally:
        await provider.aclose()


@pytest.mark.parametrize("prefix", ["", "a{b", "a}", "has space", "tab\t"])
def test_prefix_that_would_break_keys_is_rejected(prefix: str) -> None:
    """A key prefix holding braces, spaces or control characters is a configuration error."""
    with pytest.raises(ConfigurationError, match="prefix"):
        RedisChatHistoryProvider("redis://localhost:6379/0", prefix=prefix)


# -- storage invariants -----------------------------------------------------------------------


async def test_trim_keeps_id_set_and_role_list_in_step(url: str, key_prefix: str) -> None:
    """Trimming removes the trimmed ids and roles with the entries, so all three agree."""
    provider = RedisChatHistoryProvider(url, prefix=key_prefix, max_messages=4)
    try:
        for round_ in range(6):
            await provider.add_messages("s", [ChatMessage.user(f"u{round_}"), *tool_pair(2)])
        msgs, meta, ids = provider._keys("s")
        client = provider._client
        stored = await provider.list_messages("s")
        assert await client.llen(msgs) == await client.llen(meta) == await client.scard(ids)
        assert {m.id.encode() for m in stored} == set(await client.smembers(ids))
        assert [m[:1] for m in await client.lrange(meta, 0, -1)] == [
            m.role[0].encode() for m in stored
        ]
    finally:
        await provider.aclose()


async def test_trimmed_id_is_stored_again_when_re_added(url: str, key_prefix: str) -> None:
    """A trimmed message's id is forgotten, so re-adding it stores it again (as in memory)."""
    provider = RedisChatHistoryProvider(url, prefix=key_prefix, max_messages=2)
    try:
        first, *rest = make_messages(3)
        await provider.add_messages("s", [first, *rest])
        assert texts(await provider.list_messages("s")) == texts(rest)
        await provider.add_messages("s", [first])
        assert texts(await provider.list_messages("s")) == [rest[-1].text, first.text]
    finally:
        await provider.aclose()


async def test_ttl_is_set_on_every_key_and_in_the_index(url: str, key_prefix: str) -> None:
    """With a ttl, every key of the session expires together and the index records when."""
    provider = RedisChatHistoryProvider(url, prefix=key_prefix, ttl=timedelta(minutes=10))
    try:
        await provider.add_messages("s", [ChatMessage.system("rules"), *make_messages(2)])
        client = provider._client
        ttls = [await client.pttl(key) for key in provider._session_keys("s")]
        assert all(9 * 60_000 < t <= 10 * 60_000 for t in ttls)
        assert await client.zscore(provider._index[1], "s") is not None
    finally:
        await provider.aclose()


async def test_clear_removes_session_from_index(url: str, key_prefix: str) -> None:
    """`clear` deletes the session's keys and its index entries."""
    provider = RedisChatHistoryProvider(url, prefix=key_prefix, ttl=timedelta(hours=1))
    try:
        await provider.add_messages("s", [ChatMessage.system("rules"), *make_messages(2)])
        await provider.clear("s")
        assert await _keys_of(provider) == []
    finally:
        await provider.aclose()


async def test_stale_index_entry_is_not_listed(url: str, key_prefix: str) -> None:
    """An index entry whose keys are gone (evicted, or a lost race) is not listed."""
    provider = RedisChatHistoryProvider(url, prefix=key_prefix)
    try:
        await provider.add_messages("live", make_messages(1))
        await provider._client.zadd(provider._index[0], {"ghost": 0})
        assert await provider.list_sessions() == ["live"]
    finally:
        await provider.aclose()


async def test_key_of_another_type_is_a_configuration_error(url: str, key_prefix: str) -> None:
    """A foreign value under a memweave key raises `ConfigurationError`, not a redis error."""
    provider = RedisChatHistoryProvider(url, prefix=key_prefix)
    try:
        await provider._client.set(provider._keys("s")[0], "not a list")
        with pytest.raises(ConfigurationError, match="prefix"):
            await provider.count_messages("s")
    finally:
        await provider.aclose()


async def test_scripts_are_reloaded_after_script_flush(
    redis_cluster_url: str, key_prefix: str
) -> None:
    """After `SCRIPT FLUSH` (a restart, a failover) scripts load again on NOSCRIPT.

    Runs on the test's own cluster, since flushing the shared server's scripts is not ours to do.
    """
    provider = RedisChatHistoryProvider(redis_cluster_url, prefix=key_prefix)
    try:
        await provider.add_messages("s", make_messages(1))
        await provider._client.script_flush()
        await provider.add_messages("s", make_messages(2, text="after"))
        assert await provider.count_messages("s") == 3
        assert await provider.list_sessions() == ["s"]
    finally:
        async for key in provider._client.scan_iter(match=f"{key_prefix}:*"):
            await provider._client.delete(key)
        await provider.aclose()


# -- reduced reads and the copy of system entries ---------------------------------------------


def _long_session(size: int) -> list[ChatMessage]:
    """`size` or so messages with tool groups, and system messages spread over the whole
    session: at the start, every 97 messages, and one among the newest 64."""
    messages: list[ChatMessage] = [ChatMessage.system("rules 0")]
    while len(messages) < size:
        at = len(messages)
        if at % 97 < 3:
            messages.append(ChatMessage.system(f"rules {at}"))
        elif at % 13 == 0:
            messages += tool_pair(1 + at % 3)
        else:
            messages += make_messages(2, text=f"turn {at}")
    messages.insert(len(messages) - 20, ChatMessage.system("late rules"))
    return messages


async def _system_rows(provider: RedisChatHistoryProvider, session: str) -> list[bytes]:
    """The stored entries of the session's system messages, picked out of a full read."""
    rows = await provider._read(session, None)
    messages = decode_many(rows, session_id=session, on_corrupt="raise")
    return [row for row, m in zip(rows, messages, strict=True) if m.role == "system"]


async def _add_in_batches(
    provider: RedisChatHistoryProvider, session: str, messages: list[ChatMessage]
) -> None:
    for first in range(0, len(messages), 300):
        await provider.add_messages(session, messages[first : first + 300])


_REDUCERS: dict[str, Callable[[], ChatReducer]] = {
    "count": lambda: MessageCountReducer(12),
    "tokens": lambda: TokenBudgetReducer(400),
}


@pytest.mark.parametrize("max_messages", [None, 1500])
@pytest.mark.parametrize("reducer_name", sorted(_REDUCERS))
async def test_reduced_read_of_long_session_equals_reducing_full_read(
    url: str, key_prefix: str, reducer_name: str, max_messages: int | None
) -> None:
    """A reduced read of a long session returns exactly what reducing a full read returns,
    with system messages anywhere in it and after trimming has dropped some of them."""
    reducer = _REDUCERS[reducer_name]()
    plain = RedisChatHistoryProvider(url, prefix=key_prefix, max_messages=max_messages)
    reduced = RedisChatHistoryProvider(url, prefix=key_prefix, reducer=reducer)
    try:
        messages = _long_session(2000)
        await _add_in_batches(plain, "s", messages)
        stored = await plain.list_messages("s")
        assert (stored == messages) is (max_messages is None)
        expected = await reducer.reduce(stored)
        assert sum(m.role == "system" for m in expected) > 3  # older ones are read, not paged
        assert await reduced.list_messages("s") == expected
        assert await reduced.list_messages("s", limit=5) == expected[-5:]
    finally:
        await plain.aclose()
        await reduced.aclose()


async def test_reduced_read_of_long_session_never_reads_whole_session(
    counted: tuple[RedisChatHistoryProvider, list[list[tuple[Any, ...]]]],
) -> None:
    """A reduced read reads the newest page and the copy of system entries, so its cost follows
    the window and not the history length."""
    base, sent = counted
    reducer = MessageCountReducer(10)
    provider = RedisChatHistoryProvider(client=base._client, prefix=base.prefix, reducer=reducer)
    messages = _long_session(3000)
    await _add_in_batches(provider, "s", messages)
    sent.clear()
    assert await provider.list_messages("s") == await reducer.reduce(messages)
    msgs, sys_key = provider._session_keys("s")[0], provider._session_keys("s")[3]
    commands = [command for trip in sent for command in trip]
    assert [(_name(c), c[1], *(int(x) for x in c[2:])) for c in commands] == [
        ("LRANGE", msgs, -64, -1),
        ("LRANGE", sys_key, 0, -1),
    ]


async def test_read_system_follows_append_trim_remove_and_replace(
    url: str, key_prefix: str
) -> None:
    """`_read_system` returns the stored system entries, oldest first, after every kind of
    change: appends, trimming, removals at the head and in the middle, and replacement."""
    provider = RedisChatHistoryProvider(url, prefix=key_prefix)
    trimming = RedisChatHistoryProvider(url, prefix=key_prefix, max_messages=12)
    systems = [ChatMessage.system(f"rules {i}") for i in range(6)]

    async def check(expected: list[ChatMessage]) -> None:
        rows = await provider._read_system("s")
        assert rows == await _system_rows(provider, "s")
        assert decode_many(rows, session_id="s", on_corrupt="raise") == expected

    try:
        await check([])
        await provider.add_messages("s", [systems[0], *make_messages(3), systems[1]])
        await provider.add_messages("s", [*tool_pair(2), systems[2]])
        await provider.add_messages("s", [systems[2], *make_messages(2, text="b")])  # known id
        await check(systems[:3])
        await trimming.add_messages("s", [*make_messages(2, text="c"), systems[3]])
        await check(systems[1:4])  # systems[0] was trimmed, the others stay
        await trimming.add_messages("s", [*make_messages(6, text="d"), systems[4]])
        await check(systems[3:5])
        stored = await provider.list_messages("s")
        middle = [m.id for m in stored[1:-1] if m.role != "system"][:2]
        await provider._remove("s", [systems[4].id, *middle])  # mark and sweep
        await check(systems[3:4])
        await provider.add_messages("s", [systems[5], *make_messages(2, text="e")])
        await provider._remove("s", [systems[3].id])  # head of the copy, middle of the session
        await check(systems[5:])
        head = await provider.list_messages("s", limit=None)
        await provider._remove("s", [m.id for m in head[: head.index(systems[5]) + 1]])
        await check([])
        last = (await provider.list_messages("s"))[-1].id
        new = [systems[1], *make_messages(2, text="f"), systems[0]]
        assert await provider._replace(
            "s", [StoredRecord.of(m) for m in new], expected_last_id=last
        )
        await check([systems[1], systems[0]])
        await provider.clear("s")
        await check([])
        assert await _keys_of(provider) == []
    finally:
        await provider.aclose()
        await trimming.aclose()


async def test_system_copy_left_behind_is_dropped_when_session_restarts(
    url: str, key_prefix: str
) -> None:
    """If the other keys of a session vanish without the copy (say, they expired apart), an
    append to the then empty session drops the stale copy."""
    provider = RedisChatHistoryProvider(url, prefix=key_prefix)
    try:
        await provider.add_messages("s", [ChatMessage.system("old"), *make_messages(2)])
        await provider._client.delete(*provider._keys("s"))
        await provider.add_messages("s", make_messages(2, text="new"))
        assert await provider._read_system("s") == []
    finally:
        await provider.aclose()


async def test_system_copy_takes_the_session_expiry(url: str, key_prefix: str) -> None:
    """A system message added without a ttl to a session that has one expires with it."""
    expiring = RedisChatHistoryProvider(url, prefix=key_prefix, ttl=timedelta(minutes=10))
    lasting = RedisChatHistoryProvider(url, prefix=key_prefix)
    try:
        await expiring.add_messages("s", make_messages(2))
        await lasting.add_messages("s", [ChatMessage.system("rules")])
        client = expiring._client
        msgs, _, _, sys_key = expiring._session_keys("s")
        copy_ttl, session_ttl = await client.pttl(sys_key), await client.pttl(msgs)
        assert 9 * 60_000 < copy_ttl <= 10 * 60_000
        assert abs(copy_ttl - session_ttl) < 1_000
    finally:
        await expiring.aclose()
        await lasting.aclose()


# -- clients and URLs -------------------------------------------------------------------------


async def test_aclose_leaves_a_passed_client_open(redis_url: str, key_prefix: str) -> None:
    """A client passed in stays open after `aclose`; the caller owns it."""
    client = Redis.from_url(redis_url)
    closed: list[bool] = []
    original = client.aclose

    async def tracking_aclose(*args: Any, **kwargs: Any) -> None:
        closed.append(True)
        await original(*args, **kwargs)

    client.aclose = tracking_aclose  # type: ignore[method-assign]
    async with RedisChatHistoryProvider(client=client, prefix=key_prefix) as provider:
        await provider.count_messages("s")
    assert closed == []
    assert await client.ping()
    await original()


async def test_aclose_closes_an_owned_client(redis_url: str, key_prefix: str) -> None:
    """A client the provider built from a URL is closed by `aclose`."""
    provider = RedisChatHistoryProvider(redis_url, prefix=key_prefix)
    await provider.count_messages("s")
    assert isinstance(provider._client, Redis)
    pool = provider._client.connection_pool
    await provider.aclose()
    assert not any(c.is_connected for c in pool._available_connections)


def test_url_and_client_together_are_rejected(redis_url: str) -> None:
    """Passing both `url` and `client` is a configuration error."""
    with pytest.raises(ConfigurationError, match="either"):
        RedisChatHistoryProvider(redis_url, client=Redis.from_url(redis_url))


async def test_from_url_builds_working_backends(url: str, key_prefix: str) -> None:
    """`from_url` turns `redis://` and `redis+cluster://host:port` into a working provider."""
    provider = from_url(url, prefix=key_prefix)
    try:
        assert isinstance(provider, RedisChatHistoryProvider)
        expected = RedisCluster if url.startswith("redis+cluster://") else Redis
        assert type(provider._client) is expected
        await provider.add_messages("s", make_messages(2))
        assert await provider.count_messages("s") == 2
    finally:
        await provider.aclose()


@pytest.mark.parametrize(
    ("url", "check"),
    [
        (
            "rediss://localhost:6390/0",
            lambda c: c.connection_pool.connection_class is SSLConnection,
        ),
        (
            "unix:///tmp/memweave-test.sock",
            lambda c: c.connection_pool.connection_class is UnixDomainSocketConnection,
        ),
        (
            "rediss+cluster://localhost:7000",
            lambda c: (
                isinstance(c, RedisCluster)
                and c.connection_kwargs["connection_class"] is SSLConnection
            ),
        ),
    ],
)
async def test_from_url_picks_the_transport(url: str, check: Callable[[Any], bool]) -> None:
    """`rediss://` uses TLS, `unix://` a socket file, `rediss+cluster://` a TLS cluster."""
    provider = from_url(url)
    try:
        assert isinstance(provider, RedisChatHistoryProvider)
        assert check(provider._client)
    finally:
        await provider.aclose()


def test_bad_url_is_a_configuration_error() -> None:
    """A malformed Redis URL raises `ConfigurationError`, with any password masked."""
    with pytest.raises(ConfigurationError) as info:
        RedisChatHistoryProvider("redis://:s3cret@localhost:notaport/0")
    assert "s3cret" not in str(info.value)


def test_missing_redis_raises_missing_dependency(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without redis-py, using the backend raises `MissingDependency` naming the extra."""
    for name in [n for n in sys.modules if n == "redis" or n.startswith("redis.")]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.delitem(sys.modules, "memweave.providers.redis")
    with pytest.raises(MissingDependency) as info:
        from_url("redis://localhost:6379/0")
    assert (info.value.package, info.value.extra) == ("redis", "redis")
    assert "pip install 'memweave[redis]'" in str(info.value)
    with pytest.raises(ImportError):
        importlib.import_module("memweave.providers.redis")


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize(("scheme", "path"), [("redis", "/0"), ("redis+cluster", "")])
async def test_unreachable_server_is_backend_unavailable_with_password_masked(
    scheme: str, path: str
) -> None:
    """A connection failure is `BackendUnavailable`, and its URL hides the password."""
    port = _closed_port()
    provider = RedisChatHistoryProvider(f"{scheme}://ada:s3cret@127.0.0.1:{port}{path}")
    try:
        calls = [
            provider.add_messages("s", make_messages(1)),
            provider.list_messages("s"),
            provider.count_messages("s"),
            provider.list_sessions(),
        ]
        for call in calls:
            with pytest.raises(BackendUnavailable) as info:
                await call
            assert "s3cret" not in str(info.value)
            assert info.value.url == f"{scheme}://ada:***@127.0.0.1:{port}{path}"
            assert isinstance(info.value.__cause__, redis.RedisError | redis.RedisClusterException)
    finally:
        await provider.aclose()
