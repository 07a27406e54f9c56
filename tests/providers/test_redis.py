"""Redis-only checks: round trips, key layout and hash tags, the sessions index, the copy of
system entries behind reduced reads, client ownership, URLs and error translation. The shared
rules live in tests/conformance."""

from __future__ import annotations

import asyncio
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
from memweave.providers import _redis_scripts as scripts
from memweave.providers import from_url
from memweave.providers._redis_index import SHARDS
from memweave.providers.base import BATCH_SIZE, StoredRecord
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
    """A namespace no other test uses, so the test can find and delete its keys."""
    return f"mwtest-{uuid.uuid4().hex}"


@pytest.fixture(params=["redis", "redis_cluster"])
async def url(request: pytest.FixtureRequest, key_prefix: str) -> AsyncIterator[str]:
    """URL of the single server or of the test cluster; deletes this test's keys afterwards."""
    value: str = request.getfixturevalue(f"{request.param}_url")
    yield value
    provider = RedisChatHistoryProvider(value, namespace=key_prefix)
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
    provider = RedisChatHistoryProvider(client=client, namespace=key_prefix)
    await client.ping()  # connect (and its handshake) before anything is counted
    # A server that has not run a script yet answers NOSCRIPT once (one more round trip):
    # load them all first, so the counts do not depend on what ran on the server before.
    for script in scripts._BY_SHA.values():
        await client.script_load(script.source)
    sent.clear()
    yield provider, sent
    await provider.aclose()
    async for key in client.scan_iter(match=f"{key_prefix}:*"):
        await client.delete(key)
    await client.aclose()


async def _keys_of(provider: RedisChatHistoryProvider) -> list[str]:
    keys = [key async for key in provider._client.scan_iter(match=f"{provider.namespace}:*")]
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
    provider = RedisChatHistoryProvider(client=base._client, namespace=base.namespace, **options)
    session = f"s-{uuid.uuid4().hex}"
    await provider.add_messages(session, make_messages(2))  # the script is cached from here
    sent.clear()
    await provider.add_messages(session, make_messages(size))
    assert [[_name(c) for c in trip] for trip in sent] == [["EVALSHA"]]


async def test_add_messages_in_cluster_writes_the_index_only_for_a_new_session(
    redis_cluster_url: str, key_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In a cluster, creating a session is its script then the index script; later adds are
    the session script alone, so appends do not all go to the index's slots."""
    provider = RedisChatHistoryProvider(
        redis_cluster_url, namespace=key_prefix, ttl=timedelta(hours=1)
    )
    sent: list[tuple[int, str]] = []
    original = Connection.send_packed_command
    handshake = {"CLIENT", "HELLO", "AUTH", "SELECT", "READONLY"}  # a new connection's, not ours

    async def recording(self: Connection, command: Any, check_health: bool = True) -> None:
        first = command if isinstance(command, bytes) else b"".join(command)
        sent.append((self.port, first.split(b"\r\n")[2].decode().upper()))
        await original(self, command, check_health)

    try:
        session = f"s-{uuid.uuid4().hex}"
        await provider.add_messages("warm-up", make_messages(1))
        monkeypatch.setattr(Connection, "send_packed_command", recording)
        await provider.add_messages(session, make_messages(2))
        created = list(sent)
        sent.clear()
        await provider.add_messages(session, make_messages(3))
        monkeypatch.undo()
        assert [name for _, name in created if name not in handshake] == ["EVALSHA", "EVALSHA"]
        assert [name for _, name in sent if name not in handshake] == ["EVALSHA"]
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


async def test_list_sessions_reads_a_bounded_range_of_each_shard(
    counted: tuple[RedisChatHistoryProvider, list[list[tuple[Any, ...]]]],
) -> None:
    """A page is one pipeline of `ZRANGEBYLEX ... LIMIT 0 limit` per index shard (plus one
    bounded purge step), then one pipeline of `EXISTS`: never a scan of the index."""
    provider, sent = counted
    for session in ("t-a", "t-b", "t-c", "u-a"):
        await provider.add_messages(session, make_messages(1))
    sent.clear()
    assert await provider.list_sessions(prefix="t-", limit=2) == ["t-a", "t-b"]
    assert len(sent) == 2, [[_name(c) for c in trip] for trip in sent]
    first, second = sent
    ranges = [c for c in first if _name(c) == "ZRANGEBYLEX"]
    assert len(ranges) == SHARDS + 1  # the shards and the index of earlier releases
    assert {tuple(c[2:]) for c in ranges} == {(b"[t-", b"(t-\xff", b"LIMIT", 0, 2)}
    assert [_name(c) for c in first if c not in ranges] == ["EVALSHA"]
    assert [_name(c) for c in second] == ["EXISTS", "EXISTS"]
    assert await provider.list_sessions(prefix="t-", after="t-b") == ["t-c"]


# -- key layout -------------------------------------------------------------------------------


async def test_session_keys_share_one_slot(url: str, key_prefix: str) -> None:
    """All keys of a session carry the same hash tag, so they share one cluster slot."""
    provider = RedisChatHistoryProvider(url, namespace=key_prefix, ttl=timedelta(hours=1))
    try:
        await provider.add_messages("s", [ChatMessage.system("rules"), *make_messages(3)])
        shard = provider._session_keys("s").shard
        index = {shard.sessions.decode(), shard.expiry.decode()}
        keys = await _keys_of(provider)
        assert index <= set(keys)
        session_keys = [k for k in keys if k not in index]
        assert len(session_keys) == 5
        assert len({key_slot(k.encode()) for k in session_keys}) == 1
    finally:
        await provider.aclose()


@pytest.mark.parametrize("session", HOSTILE_IDS)
async def test_hostile_id_cannot_change_hash_tag_or_key_pattern(
    url: str, key_prefix: str, session: str
) -> None:
    """Braces and glob characters in an id never reach a key name: the tag is a digest."""
    provider = RedisChatHistoryProvider(url, namespace=key_prefix, max_messages=10)
    try:
        await provider.add_messages(session, [ChatMessage.user(session)])
        tag = hashlib.blake2b(session.encode(), digest_size=16).hexdigest()
        session_keys = [k for k in await _keys_of(provider) if f"{{{key_prefix}" not in k]
        assert session_keys == sorted(
            f"{key_prefix}:{{{tag}}}:{n}" for n in ("ids", "info", "meta", "msgs")
        )
        assert texts(await provider.list_messages(session)) == [session]
    finally:
        await provider.aclose()


async def test_hostile_ids_are_isolated_from_lookalikes(url: str, key_prefix: str) -> None:
    """Clearing `*`, `a*` or `[a-z]` leaves `ab` and every other session untouched."""
    provider = RedisChatHistoryProvider(url, namespace=key_prefix)
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


@pytest.mark.parametrize("namespace", ["", "a{b", "a}", "has space", "tab\t"])
def test_namespace_that_would_break_keys_is_rejected(namespace: str) -> None:
    """A namespace holding braces, spaces or control characters is a configuration error."""
    with pytest.raises(ConfigurationError, match="namespace"):
        RedisChatHistoryProvider("redis://localhost:6379/0", namespace=namespace)


# -- storage invariants -----------------------------------------------------------------------


async def test_trim_keeps_id_set_and_role_list_in_step(url: str, key_prefix: str) -> None:
    """Trimming removes the trimmed ids and roles with the entries, so all three agree."""
    provider = RedisChatHistoryProvider(url, namespace=key_prefix, max_messages=4)
    try:
        for round_ in range(6):
            await provider.add_messages("s", [ChatMessage.user(f"u{round_}"), *tool_pair(2)])
        msgs, meta, ids = provider._session_keys("s").session[:3]
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
    provider = RedisChatHistoryProvider(url, namespace=key_prefix, max_messages=2)
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
    provider = RedisChatHistoryProvider(url, namespace=key_prefix, ttl=timedelta(minutes=10))
    try:
        await provider.add_messages("s", [ChatMessage.system("rules"), *make_messages(2)])
        client = provider._client
        keys = provider._session_keys("s")
        ttls = [await client.pttl(key) for key in keys.session]
        assert all(9 * 60_000 < t <= 10 * 60_000 for t in ttls)
        assert await client.zscore(keys.shard.expiry, "s") is not None
    finally:
        await provider.aclose()


async def test_clear_removes_session_from_index(url: str, key_prefix: str) -> None:
    """`clear` deletes the session's keys and its index entries."""
    provider = RedisChatHistoryProvider(url, namespace=key_prefix, ttl=timedelta(hours=1))
    try:
        await provider.add_messages("s", [ChatMessage.system("rules"), *make_messages(2)])
        await provider.clear("s")
        assert await _keys_of(provider) == []
    finally:
        await provider.aclose()


async def test_stale_index_entry_is_not_listed(url: str, key_prefix: str) -> None:
    """An index entry whose keys are gone (evicted, or a lost race) is not listed."""
    provider = RedisChatHistoryProvider(url, namespace=key_prefix)
    try:
        await provider.add_messages("live", make_messages(1))
        await provider._client.zadd(provider._session_keys("ghost").shard.sessions, {"ghost": 0})
        assert await provider.list_sessions() == ["live"]
    finally:
        await provider.aclose()


async def test_key_of_another_type_is_a_configuration_error(url: str, key_prefix: str) -> None:
    """A foreign value under a memweave key raises `ConfigurationError`, not a redis error."""
    provider = RedisChatHistoryProvider(url, namespace=key_prefix)
    try:
        await provider._client.set(provider._session_keys("s").msgs, "not a list")
        with pytest.raises(ConfigurationError, match="namespace"):
            await provider.count_messages("s")
    finally:
        await provider.aclose()


async def test_scripts_are_reloaded_after_script_flush(
    redis_cluster_url: str, key_prefix: str
) -> None:
    """After `SCRIPT FLUSH` (a restart, a failover) scripts load again on NOSCRIPT, also
    those sent inside a pipeline.

    Runs on the test's own cluster, since flushing the shared server's scripts is not ours to do.
    """
    provider = RedisChatHistoryProvider(redis_cluster_url, namespace=key_prefix)
    try:
        await provider.add_messages("s", make_messages(1))
        await provider._client.script_flush()
        await provider.add_messages("s", make_messages(2, text="after"))
        assert await provider.count_messages("s") == 3
        await provider._client.script_flush()
        assert await provider.list_sessions() == ["s"]  # a script inside a pipeline
        await provider._client.script_flush()
        assert await provider.prune(timedelta(days=1)) == 0
        last = (await provider.list_messages("s"))[-1]
        await provider._client.script_flush()
        assert len(await provider.list_messages("s", limit=2, before=last.id)) == 2
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
    plain = RedisChatHistoryProvider(url, namespace=key_prefix, max_messages=max_messages)
    reduced = RedisChatHistoryProvider(url, namespace=key_prefix, reducer=reducer)
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
    provider = RedisChatHistoryProvider(
        client=base._client, namespace=base.namespace, reducer=reducer
    )
    messages = _long_session(3000)
    await _add_in_batches(provider, "s", messages)
    sent.clear()
    assert await provider.list_messages("s") == await reducer.reduce(messages)
    msgs, sys_key = provider._session_keys("s").msgs, provider._session_keys("s").session[3]
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
    provider = RedisChatHistoryProvider(url, namespace=key_prefix)
    trimming = RedisChatHistoryProvider(url, namespace=key_prefix, max_messages=12)
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
    provider = RedisChatHistoryProvider(url, namespace=key_prefix)
    try:
        await provider.add_messages("s", [ChatMessage.system("old"), *make_messages(2)])
        await provider._client.delete(*provider._session_keys("s").session[:3])
        await provider.add_messages("s", make_messages(2, text="new"))
        assert await provider._read_system("s") == []
    finally:
        await provider.aclose()


async def test_system_copy_takes_the_session_expiry(url: str, key_prefix: str) -> None:
    """A system message added without a ttl to a session that has one expires with it."""
    expiring = RedisChatHistoryProvider(url, namespace=key_prefix, ttl=timedelta(minutes=10))
    lasting = RedisChatHistoryProvider(url, namespace=key_prefix)
    try:
        await expiring.add_messages("s", make_messages(2))
        await lasting.add_messages("s", [ChatMessage.system("rules")])
        client = expiring._client
        msgs, _, _, sys_key, _ = expiring._session_keys("s").session
        copy_ttl, session_ttl = await client.pttl(sys_key), await client.pttl(msgs)
        assert 9 * 60_000 < copy_ttl <= 10 * 60_000
        assert abs(copy_ttl - session_ttl) < 1_000
    finally:
        await expiring.aclose()
        await lasting.aclose()


# -- the sessions index, purge and prune ------------------------------------------------------


async def _command_calls(client: RedisCluster, command: str) -> dict[int, int]:
    """`INFO commandstats` calls of `command` on each master of the cluster, by port."""
    calls: dict[int, int] = {}
    for node in client.get_primaries():
        direct = Redis(host=node.host, port=node.port)
        try:
            stats = await direct.info("commandstats")
        finally:
            await direct.aclose()
        calls[node.port] = int(stats.get(f"cmdstat_{command}", {}).get("calls", 0))
    assert len(calls) == 3, "the client has not read the cluster's slot map yet"
    return calls


async def _drop_prefix(provider: RedisChatHistoryProvider) -> None:
    async for key in provider._client.scan_iter(match=f"{provider.namespace}:*", count=1000):
        await provider._client.delete(key)


async def test_cluster_appends_spread_over_the_masters(
    redis_cluster_url: str, key_prefix: str
) -> None:
    """Appends to 1,000 sessions in a 3-master cluster: no master serves more than half of
    the commands (the index is sharded and written only when a session is created)."""
    provider = RedisChatHistoryProvider(
        redis_cluster_url, namespace=key_prefix, ttl=timedelta(hours=1)
    )
    try:
        await provider.add_messages("warm-up", make_messages(1))
        assert isinstance(provider._client, RedisCluster)
        before = await _command_calls(provider._client, "evalsha")
        sessions = [f"s-{i}" for i in range(1000)]
        for round_ in range(3):
            for first in range(0, len(sessions), 100):
                await asyncio.gather(
                    *(
                        provider.add_messages(s, make_messages(1, text=f"r{round_}"))
                        for s in sessions[first : first + 100]
                    )
                )
        after = await _command_calls(provider._client, "evalsha")
        served = {port: after[port] - before[port] for port in after}
        assert len(served) == 3
        assert sum(served.values()) == 3000 + 1000  # the appends, and one index write each
        assert max(served.values()) <= sum(served.values()) // 2
        assert len(await provider.list_sessions(prefix="s-")) == 1000
    finally:
        await _drop_prefix(provider)
        await provider.aclose()


async def test_list_sessions_pages_past_members_whose_keys_are_gone(
    url: str, key_prefix: str
) -> None:
    """Pages stay exact when shards are uneven and most members are dead: the listing
    reads further rounds instead of returning a short or out-of-order page."""
    provider = RedisChatHistoryProvider(url, namespace=key_prefix)
    try:
        sessions = [f"s-{i:04d}" for i in range(400)]
        for first in range(0, len(sessions), 100):
            await asyncio.gather(
                *(provider.add_messages(s, make_messages(1)) for s in sessions[first : first + 100])
            )
        dead = {s for i, s in enumerate(sessions) if i % 5 or 100 <= i < 300}
        for session in dead:  # as if evicted: the keys go, the index members stay
            await provider._client.delete(*provider._session_keys(session).session)
        live = [s for s in sessions if s not in dead]
        pages: list[list[str]] = []
        page = await provider.list_sessions(limit=7)
        while page:
            pages.append(page)
            page = await provider.list_sessions(limit=7, after=page[-1])
        assert [s for p in pages for s in p] == live
        assert all(len(p) == 7 for p in pages[:-1])
        assert await provider.list_sessions(prefix="s-02", limit=3) == []
        assert await provider.list_sessions(after="s-0150") == live[len(live) // 2 :]
    finally:
        await provider.aclose()


async def test_index_expiry_is_written_at_creation_only(url: str, key_prefix: str) -> None:
    """A later add renews the keys' ttl but leaves the index alone; the purge re-scores a
    member whose keys outlived its recorded expiry instead of dropping it."""
    provider = RedisChatHistoryProvider(url, namespace=key_prefix, ttl=timedelta(minutes=10))
    try:
        await provider.add_messages("s", make_messages(1))
        keys = provider._session_keys("s")
        client = provider._client
        await client.zadd(keys.shard.expiry, {"s": 1})  # as if renewals had moved the expiry on
        await provider.add_messages("s", make_messages(1, text="later"))
        assert await client.zscore(keys.shard.expiry, "s") == 1
        assert await provider.purge_expired() == 0
        score = await client.zscore(keys.shard.expiry, "s")
        assert score is not None
        assert score > 1_000_000
        assert await provider.list_sessions() == ["s"]
    finally:
        await provider.aclose()


async def _legacy_session(provider: RedisChatHistoryProvider, session: str) -> None:
    """Store `session` as a memweave without per-session times or index shards did."""
    await provider.add_messages(session, make_messages(2))
    keys = provider._session_keys(session)
    client = provider._client
    await client.delete(keys.info)
    await client.zrem(keys.shard.sessions, session)
    await client.zrem(keys.shard.expiry, session)
    await client.zadd(provider._index.legacy.sessions, {session: 0})


async def test_sessions_in_the_earlier_index_are_listed_and_pruned(
    url: str, key_prefix: str
) -> None:
    """Sessions listed only in the unsharded index of earlier releases are still listed and
    paged; having no recorded times, prune stamps them the first time instead of deleting."""
    provider = RedisChatHistoryProvider(url, namespace=key_prefix)
    try:
        for session in ("a", "c", "e"):
            await _legacy_session(provider, session)
        for session in ("b", "d"):
            await provider.add_messages(session, make_messages(1))
        assert await provider.list_sessions() == ["a", "b", "c", "d", "e"]
        assert await provider.list_sessions(limit=2, after="a") == ["b", "c"]
        info = await provider.session_info("a")
        assert info is not None
        assert info.message_count == 2
        assert (info.created_at, info.updated_at) == (None, None)
        await asyncio.sleep(0.01)
        assert await provider.prune(timedelta(milliseconds=1), dry_run=True) == 2
        assert await provider.prune(timedelta(milliseconds=1)) == 2  # b and d
        info = await provider.session_info("a")
        assert info is not None
        assert info.created_at is None
        assert info.updated_at is not None
        assert await provider.list_sessions() == ["a", "c", "e"]
        await provider.clear("c")
        assert await provider._client.zscore(provider._index.legacy.sessions, "c") is None
        await asyncio.sleep(0.01)
        assert await provider.prune(timedelta(milliseconds=1)) == 2
        assert await provider.list_sessions() == []
        assert await _keys_of(provider) == []
    finally:
        await provider.aclose()


async def test_expired_sessions_leave_the_earlier_index(url: str, key_prefix: str) -> None:
    """An expired session listed in the unsharded index of earlier releases is purged."""
    provider = RedisChatHistoryProvider(url, namespace=key_prefix, ttl=timedelta(minutes=10))
    try:
        await _legacy_session(provider, "old")
        legacy = provider._index.legacy
        client = provider._client
        await client.zadd(legacy.expiry, {"old": 1})
        for key in provider._session_keys("old").session:
            await client.pexpireat(key, 1)
        assert await provider.purge_expired() == 1
        assert await _keys_of(provider) == []
    finally:
        await provider.aclose()


async def test_purge_expired_works_in_bounded_batches(
    counted: tuple[RedisChatHistoryProvider, list[list[tuple[Any, ...]]]],
) -> None:
    """`purge_expired` drops expired members whose keys are gone, asking for at most
    `BATCH_SIZE` of them per script and checking their keys in one pipeline per batch."""
    provider, sent = counted
    shard = provider._index.shards[3]
    ghosts = {f"ghost-{i}": 1 for i in range(2 * BATCH_SIZE + 7)}
    await provider._client.zadd(shard.sessions, dict.fromkeys(ghosts, 0))
    await provider._client.zadd(shard.expiry, ghosts)
    sent.clear()
    assert await provider.purge_expired() == len(ghosts)
    assert await provider._client.exists(shard.sessions, shard.expiry) == 0
    expired_sha = scripts.EXPIRED.sha
    asked = [
        int(c[-1]) for trip in sent for c in trip if _name(c) == "EVALSHA" and c[1] == expired_sha
    ]
    assert asked
    assert max(asked) <= BATCH_SIZE
    assert max(len(trip) for trip in sent) <= BATCH_SIZE


async def test_list_sessions_purges_a_few_expired_members_on_the_way(
    url: str, key_prefix: str
) -> None:
    """Each `list_sessions` call also drops a bounded number of expired members of one
    shard, so the index does not grow when nobody runs `purge_expired`."""
    provider = RedisChatHistoryProvider(url, namespace=key_prefix)
    try:
        client = provider._client
        for shard in provider._index.all:
            await client.zadd(shard.sessions, {"ghost-1": 0, "ghost-2": 0})
            await client.zadd(shard.expiry, {"ghost-1": 1, "ghost-2": 1})
        for _ in provider._index.all:
            assert await provider.list_sessions() == []
        assert await _keys_of(provider) == []
    finally:
        await provider.aclose()


async def test_unindex_lists_again_a_session_recreated_meanwhile(url: str, key_prefix: str) -> None:
    """Dropping a member from the index outside the session's script re-checks its keys, so
    a session re-created by another writer in between stays listed."""
    provider = RedisChatHistoryProvider(url, namespace=key_prefix, ttl=timedelta(minutes=5))
    try:
        await provider.add_messages("s", make_messages(1))
        await provider._index.unindex(["s"])
        assert await provider.list_sessions() == ["s"]
        keys = provider._session_keys("s")
        assert await provider._client.zscore(keys.shard.expiry, "s") is not None
    finally:
        await provider.aclose()


async def test_prune_keeps_a_session_updated_after_it_was_read(url: str, key_prefix: str) -> None:
    """The delete re-checks the updated time in the session's own script: a session written
    between the sweep's read and its delete stays, and stays listed."""
    provider = RedisChatHistoryProvider(url, namespace=key_prefix)
    try:
        await provider.add_messages("s", make_messages(1))
        info = await provider.session_info("s")
        assert info is not None
        assert info.updated_at is not None
        updated_ms = int(info.updated_at.timestamp() * 1000)
        assert await provider._index._delete_stale(["s"], cutoff=updated_ms) == 0
        assert await provider.list_sessions() == ["s"]
        assert await provider._index._delete_stale(["s"], cutoff=updated_ms + 1) == 1
        assert await provider.list_sessions() == []
        assert await _keys_of(provider) == []
    finally:
        await provider.aclose()


async def test_session_info_times_come_from_the_server_clock(url: str, key_prefix: str) -> None:
    """`created_at` is set when the session starts, `updated_at` on every stored change, both
    in one hash beside the session's keys that expires with them."""
    provider = RedisChatHistoryProvider(url, namespace=key_prefix, ttl=timedelta(minutes=10))
    try:
        seconds, _ = await provider._client.time()
        await provider.add_messages("s", make_messages(3))
        first = await provider.session_info("s")
        assert first is not None
        assert first.created_at is not None
        assert abs(first.created_at.timestamp() - int(seconds)) < 5
        await asyncio.sleep(0.01)
        stored = await provider.list_messages("s")
        assert await provider.delete_messages("s", [stored[1].id]) == 1
        second = await provider.session_info("s")
        assert second is not None
        assert second.created_at == first.created_at
        assert second.updated_at is not None
        assert first.updated_at is not None
        assert second.updated_at > first.updated_at
        assert await provider._client.pttl(provider._session_keys("s").info) > 9 * 60_000
    finally:
        await provider.aclose()


# -- pages and edits --------------------------------------------------------------------------


async def _check_in_step(provider: RedisChatHistoryProvider, session: str) -> None:
    """The entries, role list, id set and system copy of a session agree."""
    msgs, meta, ids, sys_key, _ = provider._session_keys(session).session
    client = provider._client
    stored = await provider.list_messages(session)
    tags = await client.lrange(meta, 0, -1)
    assert await client.llen(msgs) == len(tags) == await client.scard(ids) == len(stored)
    assert [t.decode() for t in tags] == [m.role[0] + m.id for m in stored]
    assert await client.lrange(sys_key, 0, -1) == await _system_rows(provider, session)


async def test_delete_and_truncate_keep_every_key_in_step(url: str, key_prefix: str) -> None:
    """Deletes at the head, in the middle and at the tail, with tool groups and system
    messages, and truncation keep entries, roles, ids and the system copy in step."""
    provider = RedisChatHistoryProvider(url, namespace=key_prefix)
    try:
        messages = _long_session(300)
        await provider.add_messages("s", messages)
        groups = [m for m in messages if m.tool_calls]
        systems = [m for m in messages if m.role == "system"]
        doomed = [messages[0].id, groups[3].id, systems[4].id, messages[150].id, messages[-1].id]
        assert await provider.delete_messages("s", doomed) >= len(set(doomed))
        await _check_in_step(provider, "s")
        stored = await provider.list_messages("s")
        assert groups[3].id not in {m.id for m in stored}
        assert not any(
            m.role == "tool" and m.tool_call_id in {c.id for c in groups[3].tool_calls or []}
            for m in stored
        )
        cut = stored[len(stored) // 2]
        await provider.truncate_after("s", cut.id)
        await _check_in_step(provider, "s")
        await provider.truncate_after("s", stored[0].id)
        await _check_in_step(provider, "s")
        remaining = await provider.list_messages("s")
        assert await provider.delete_messages("s", [m.id for m in remaining]) == len(remaining)
        assert await _keys_of(provider) == []
    finally:
        await provider.aclose()


async def test_paging_with_a_known_position_never_searches(
    redis_cluster_url: str, key_prefix: str
) -> None:
    """Streaming a long session checks each cursor at the position its page was read from
    (`LINDEX`), so no page runs `LPOS`; a cursor this provider has not seen is searched."""
    writer = RedisChatHistoryProvider(redis_cluster_url, namespace=key_prefix)
    reader = RedisChatHistoryProvider(redis_cluster_url, namespace=key_prefix)
    try:
        messages = make_messages(20_000)
        for first in range(0, len(messages), 5000):
            await writer.add_messages("s", messages[first : first + 5000])
        assert isinstance(reader._client, RedisCluster)
        assert await reader.count_messages("s") == len(messages)  # the cluster map is read
        before = sum((await _command_calls(reader._client, "lpos")).values())
        count = 0
        async for message in reader.iter_messages("s", page_size=1000):
            assert message.id == messages[count].id
            count += 1
        assert count == len(messages)
        older = await reader.list_messages("s", limit=2500, before=messages[-1].id)
        older += await reader.list_messages("s", limit=10, before=older[0].id)
        assert sum((await _command_calls(reader._client, "lpos")).values()) == before
        fresh = await writer.list_messages("s", limit=3, before=messages[10_000].id)
        assert [m.id for m in fresh] == [m.id for m in messages[9997:10_000]]
        assert sum((await _command_calls(reader._client, "lpos")).values()) > before
    finally:
        await _drop_prefix(writer)
        await writer.aclose()
        await reader.aclose()


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
    async with RedisChatHistoryProvider(client=client, namespace=key_prefix) as provider:
        await provider.count_messages("s")
    assert closed == []
    assert await client.ping()
    await original()


async def test_aclose_closes_an_owned_client(redis_url: str, key_prefix: str) -> None:
    """A client the provider built from a URL is closed by `aclose`."""
    provider = RedisChatHistoryProvider(redis_url, namespace=key_prefix)
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
    provider = from_url(url, namespace=key_prefix)
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
