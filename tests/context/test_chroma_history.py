"""`ChromaChatHistoryProvider` beyond the conformance suite: search, URLs, embedders, the lock,
what pages and session listings fetch, times, and sessions stored without them.

(Backend-only checks; they belong with the provider tests and sit here with the other Chroma
tests.)
"""

from __future__ import annotations

import asyncio
import sys
import textwrap
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import chromadb
import pytest

from memweave import ChatMessage, ToolCall
from memweave.context import ChromaDefaultEmbeddings
from memweave.errors import BackendUnavailable, ConfigurationError, InvalidArgument
from memweave.providers import from_url
from memweave.providers._chroma_client import parse_chroma_url
from memweave.providers._chroma_sessions import seq_base, session_key
from memweave.providers.chroma import ChromaChatHistoryProvider
from tests.context.conftest import HashEmbeddings

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
async def make_history(
    tmp_path: Path, real_embedder: ChromaDefaultEmbeddings
) -> AsyncIterator[Callable[..., ChromaChatHistoryProvider]]:
    """Build providers on an embedded folder of this test; closed after it."""
    made: list[ChromaChatHistoryProvider] = []

    def make(**options: Any) -> ChromaChatHistoryProvider:
        options.setdefault("embedder", real_embedder)
        history = ChromaChatHistoryProvider(f"chroma://{tmp_path / 'chroma'}", **options)
        made.append(history)
        return history

    yield make
    for history in made:
        await history.aclose()


async def test_search_finds_messages_by_meaning(
    make_history: Callable[..., ChromaChatHistoryProvider],
) -> None:
    """search ranks the session's messages by similarity; scores lie in [0, 1]."""
    history = make_history()
    await history.add_messages(
        "s1",
        [
            ChatMessage.user("My flight to Osaka leaves on Friday morning."),
            ChatMessage.assistant("Great, I will remind you on Thursday."),
            ChatMessage.assistant(tool_calls=[ToolCall(id="c1", name="lookup")]),
            ChatMessage.tool("c1", "The quarterly report is due next week."),
            ChatMessage.user("I also need a vegetarian recipe for the dinner party."),
        ],
    )
    await history.add_messages("s2", [ChatMessage.user("My flight to Osaka was cancelled.")])
    hits = await history.search("when do I travel to Japan?", session_id="s1", k=10)
    assert hits[0].message.text == "My flight to Osaka leaves on Friday morning."
    assert len(hits) == 4  # the tool call without text is never a hit; s2 is not searched
    assert all(0.0 <= hit.score <= 1.0 for hit in hits)
    assert [hit.score for hit in hits] == sorted((hit.score for hit in hits), reverse=True)


async def test_search_of_expired_or_unknown_session_is_empty(
    make_history: Callable[..., ChromaChatHistoryProvider],
) -> None:
    """An unknown session, a blank query, or an expired session finds nothing."""
    history = make_history(ttl=timedelta(hours=1))
    await history.add_messages("s1", [ChatMessage.user("remember the milk")])
    assert await history.search("milk", session_id="nobody") == []
    assert await history.search("   ", session_id="s1") == []
    assert len(await history.search("milk", session_id="s1")) == 1
    await history.clear("s1")
    assert await history.search("milk", session_id="s1") == []
    with pytest.raises(InvalidArgument):
        await history.search("milk", session_id="s1", k=0)


def test_urls_name_folder_or_server() -> None:
    """`chroma:///path` is embedded, `chroma+http(s)://host:port` a server; options parse."""
    assert parse_chroma_url("chroma:///var/lib/chat") == ("path", {"path": "/var/lib/chat"})
    assert parse_chroma_url("chroma://data/chat?namespace=abc") == (
        "path",
        {"path": "data/chat", "namespace": "abc"},
    )
    assert parse_chroma_url("chroma+https://db.example:9000?tenant=t") == (
        "http",
        {"host": "db.example", "port": 9000, "ssl": True, "tenant": "t"},
    )
    for bad in ("chroma://", "chroma+http://:80", "chroma:///x?colour=red", "redis://x"):
        with pytest.raises(ConfigurationError):
            parse_chroma_url(bad)


def test_from_url_builds_the_provider(tmp_path: Path) -> None:
    """from_url knows the chroma schemes and passes the namespace on."""
    history = from_url(f"chroma://{tmp_path}?namespace=my_chats", max_messages=10)
    assert isinstance(history, ChromaChatHistoryProvider)
    assert history.collection_name == "my_chats_history"
    assert history.max_messages == 10
    assert isinstance(from_url("chroma+http://127.0.0.1:1"), ChromaChatHistoryProvider)


async def test_another_embedder_is_refused(tmp_path: Path) -> None:
    """A collection written with one embedder refuses another with ConfigurationError."""
    url = f"chroma://{tmp_path}"
    async with ChromaChatHistoryProvider(url, embedder=HashEmbeddings(64)) as first:
        await first.add_messages("s", [ChatMessage.user("hello")])
    async with ChromaChatHistoryProvider(url, embedder=HashEmbeddings(32)) as other:
        with pytest.raises(ConfigurationError, match="test/hash-64"):
            await other.count_messages("s")


async def test_foreign_collection_is_refused(tmp_path: Path) -> None:
    """A collection this provider did not make raises ConfigurationError."""
    client = chromadb.PersistentClient(str(tmp_path))
    client.create_collection("not_history", embedding_function=None)
    async with ChromaChatHistoryProvider(
        client=client, namespace="not", embedder=HashEmbeddings()
    ) as history:
        with pytest.raises(ConfigurationError, match="not created by"):
            await history.count_messages("s")


async def test_unreachable_server_is_backend_unavailable() -> None:
    """A server nobody listens on raises BackendUnavailable."""
    async with ChromaChatHistoryProvider(
        "chroma+http://127.0.0.1:9", embedder=HashEmbeddings()
    ) as history:
        with pytest.raises(BackendUnavailable):
            await history.count_messages("s")


_HOLDER = """
import sys, time
from memweave.providers.chroma import EmbeddedChroma
EmbeddedChroma(sys.argv[1])
print("locked", flush=True)
sys.stdin.readline()
"""


async def test_embedded_folder_belongs_to_one_process(tmp_path: Path) -> None:
    """While another process uses an embedded folder, opening it raises ConfigurationError."""
    holder = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        textwrap.dedent(_HOLDER),
        str(tmp_path),
        cwd=ROOT,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    assert holder.stdin is not None
    assert holder.stdout is not None
    try:
        assert (await asyncio.wait_for(holder.stdout.readline(), 60)).strip() == b"locked"
        async with ChromaChatHistoryProvider(
            f"chroma://{tmp_path}", embedder=HashEmbeddings()
        ) as history:
            with pytest.raises(ConfigurationError, match="another process"):
                await history.count_messages("s")
    finally:
        holder.stdin.write(b"\n")
        holder.stdin.close()
        await asyncio.wait_for(holder.wait(), 60)


# -- issue 11: pages by sequence windows, session listing by rank, times, sweeps ----------------


class _CountingCollection:
    """Wraps a Chroma collection, counting the records its `get` calls return."""

    def __init__(self, collection: Any) -> None:
        self._collection = collection
        self.fetched = 0

    def get(self, *args: Any, **kwargs: Any) -> Any:
        got = self._collection.get(*args, **kwargs)
        self.fetched += len(got["ids"])
        return got

    def __getattr__(self, name: str) -> Any:
        return getattr(self._collection, name)


async def _counting(history: ChromaChatHistoryProvider) -> _CountingCollection:
    counting = _CountingCollection(await history._ready())
    history._collection = counting
    return counting


@pytest.fixture
async def make_fast_history(
    tmp_path: Path,
) -> AsyncIterator[Callable[..., ChromaChatHistoryProvider]]:
    """Build providers with a small deterministic embedder, for storage-only rules."""
    made: list[ChromaChatHistoryProvider] = []

    def make(**options: Any) -> ChromaChatHistoryProvider:
        options.setdefault("embedder", HashEmbeddings(8))
        history = ChromaChatHistoryProvider(f"chroma://{tmp_path / 'chroma'}", **options)
        made.append(history)
        return history

    yield make
    for history in made:
        await history.aclose()


def _messages(n: int, text: str = "m") -> list[ChatMessage]:
    return [ChatMessage.user(f"{text} {i}") for i in range(n)]


async def test_pages_follow_sequence_order_through_gaps_and_ties(
    make_fast_history: Callable[..., ChromaChatHistoryProvider],
) -> None:
    """Pages slice the whole read when sequence numbers have gaps and ties (racing writers)."""
    history = make_fast_history()
    await history.add_messages("s", _messages(40))

    def renumber(collection: Any) -> None:
        got = collection.get(
            where={"$and": [{"sid": {"$eq": "s"}}, {"kind": {"$eq": "message"}}]},
            include=["metadatas"],
        )
        metadatas = []
        for meta in got["metadatas"]:
            seq = int(meta["seq"])
            # Gaps of 5, and pairs sharing one number with tie-breakers in reverse order.
            new = (seq // 2) * 5 + 1
            tie = "b" if seq % 2 else "a"
            metadatas.append({**meta, "seq": new, "key": seq_base("s") + new, "tie": tie})
        collection.update(ids=got["ids"], metadatas=metadatas)
        collection.update(ids=[session_key("s")], metadatas=[{"head": (40 // 2) * 5 + 1}])

    await history._run(renumber)
    whole = await history.list_messages("s")
    assert len(whole) == 40
    for page_size in (1, 3, 7, 40):
        assert [m.id async for m in history.iter_messages("s", page_size=page_size)] == [
            m.id for m in whole
        ]
    for at in range(0, 40, 3):
        for limit in (1, 4, 9):
            page = await history.list_messages("s", limit=limit, before=whole[at].id)
            assert [m.id for m in page] == [m.id for m in whole[max(0, at - limit) : at]]
    assert [m.id for m in await history.list_messages("s", limit=6)] == [m.id for m in whole[-6:]]


async def test_a_page_reads_about_the_page_not_the_session(
    make_fast_history: Callable[..., ChromaChatHistoryProvider],
) -> None:
    """Paged and newest-N reads fetch about twice the page, also across deletion gaps."""
    history = make_fast_history()
    messages = _messages(1500)
    await history.add_messages("s", messages)
    counting = await _counting(history)

    async def fetched(read: Any) -> int:
        counting.fetched = 0
        await read
        return counting.fetched

    cursor = messages[800].id
    assert await fetched(history.list_messages("s", limit=20, before=cursor)) <= 2 * 20 + 2
    assert await fetched(history.list_messages("s", limit=20)) <= 2 * 20 + 1
    first_page = history.iter_messages("s", page_size=20)
    assert await fetched(anext(first_page)) <= 2 * 20 + 1
    await history.delete_messages("s", [m.id for m in messages[700:795]])
    assert await fetched(history.list_messages("s", limit=20, before=cursor)) <= 8 * 20
    page = await history.list_messages("s", limit=20, before=cursor)
    assert [m.id for m in page] == [m.id for m in messages[685:700] + messages[795:800]]


@pytest.mark.parametrize("layout", ["random", "rising", "falling", "long-shared-prefix"])
async def test_list_sessions_pages_every_id_layout(
    make_fast_history: Callable[..., ChromaChatHistoryProvider], layout: str
) -> None:
    """Paging with `after` lists every session once in code-point order, however ids were
    made and in whatever order they were created."""
    history = make_fast_history()
    n = 120  # more than one sample of the window (100 records for limit=7)
    if layout == "random":
        ids = [f"{layout}/{uuid.uuid4().hex}" for _ in range(n)]
    elif layout == "rising":
        ids = [f"{layout}/{i:05d}" for i in range(n)]
    elif layout == "falling":
        ids = [f"{layout}/{i:05d}" for i in reversed(range(n))]
    else:
        ids = [f"{layout}/{'x' * 40}/{uuid.uuid4().hex[:6]}" for _ in range(n)]
    for start in range(0, n, 50):
        await asyncio.gather(
            *(history.add_messages(i, _messages(1)) for i in ids[start : start + 50])
        )
    await history.add_messages("other", _messages(1))
    listed: list[str] = []
    after: str | None = None
    while page := await history.list_sessions(f"{layout}/", limit=7, after=after):
        listed.extend(page)
        after = page[-1]
    assert listed == sorted(ids)
    assert await history.list_sessions(f"{layout}/", limit=3, after=sorted(ids)[-2]) == [
        sorted(ids)[-1]
    ]


async def test_list_sessions_page_reads_the_group_of_its_cursor(
    make_fast_history: Callable[..., ChromaChatHistoryProvider],
) -> None:
    """A page after a cursor, or under a prefix, fetches the sessions sharing the cursor's
    (or prefix's) first characters, not every session."""
    history = make_fast_history()
    ids = [f"{group:02d}-{i:03d}" for group in range(20) for i in range(20)]
    for start in range(0, len(ids), 100):
        await asyncio.gather(
            *(history.add_messages(i, _messages(1)) for i in ids[start : start + 100])
        )
    counting = await _counting(history)
    assert await history.list_sessions(limit=10, after="07-005") == ids[146:156]
    assert counting.fetched <= 25
    counting.fetched = 0
    assert await history.list_sessions("12-", limit=5) == ids[240:245]
    assert counting.fetched <= 20
    counting.fetched = 0
    assert await history.list_sessions(limit=10, after="07-015") == ids[156:166]
    assert counting.fetched <= 300


async def test_session_times_follow_deletes_and_truncations(
    make_fast_history: Callable[..., ChromaChatHistoryProvider],
) -> None:
    """Deleting or truncating moves `updated_at` and keeps `created_at`; deleting nothing
    moves neither."""
    history = make_fast_history()
    messages = _messages(5)
    await history.add_messages("s", messages)
    first = await history.session_info("s")
    await asyncio.sleep(0.05)
    assert await history.delete_messages("s", ["unknown"]) == 0
    assert await history.session_info("s") == first
    assert await history.delete_messages("s", [messages[4].id]) == 1
    second = await history.session_info("s")
    await asyncio.sleep(0.05)
    assert await history.truncate_after("s", messages[1].id) == 2
    third = await history.session_info("s")
    assert first is not None
    assert second is not None
    assert third is not None
    assert first.created_at == second.created_at == third.created_at
    assert first.updated_at is not None
    assert second.updated_at is not None
    assert third.updated_at is not None
    assert first.updated_at < second.updated_at < third.updated_at
    assert third.message_count == 2


async def test_sessions_of_an_older_layout_are_read_listed_and_stamped_by_prune(
    make_fast_history: Callable[..., ChromaChatHistoryProvider],
) -> None:
    """A session an older memweave stored (no times, no listing fields, messages without
    `key`) is read, paged and listed with None times; `prune` counts it as updated when it
    first sees it, so it goes only a full `older_than` later."""
    writer = make_fast_history()
    messages = _messages(30)
    await writer.add_messages("legacy", messages)

    def make_legacy(collection: Any) -> None:
        got = collection.get(where={"sid": {"$eq": "legacy"}}, include=["metadatas"])
        old = []
        for key, meta in zip(got["ids"], got["metadatas"], strict=True):
            if key == session_key("legacy"):
                keep = ("kind", "sid", "expires", "head")
            else:
                keep = ("kind", "sid", "seq", "tie", "role", "mid", "text")
            old.append({field: meta[field] if field in keep else None for field in meta})
        collection.update(ids=got["ids"], metadatas=old)
        collection.modify(metadata={**collection.metadata, "memweave:layout": 1})

    await writer._run(make_legacy)
    await writer.aclose()
    history = make_fast_history()
    assert await history.list_sessions() == ["legacy"]
    assert await history.list_sessions(limit=1, after="l") == ["legacy"]
    info = await history.session_info("legacy")
    assert info is not None
    assert (info.message_count, info.created_at, info.updated_at) == (30, None, None)
    whole = [m.id for m in messages]
    assert [m.id for m in await history.list_messages("legacy", limit=4)] == whole[-4:]
    page = await history.list_messages("legacy", limit=5, before=whole[20])
    assert [m.id for m in page] == whole[15:20]
    assert [m.id async for m in history.iter_messages("legacy", page_size=7)] == whole
    assert await history.prune(timedelta(seconds=1), dry_run=True) == 0
    assert await history.prune(timedelta(seconds=1)) == 0
    stamped = await history.session_info("legacy")
    assert stamped is not None
    assert (stamped.created_at, stamped.updated_at is not None) == (None, True)
    assert await history.list_sessions(limit=5) == ["legacy"]
    await history.add_messages("legacy", _messages(2, "new"))
    assert [m.text for m in await history.list_messages("legacy", limit=3)] == [
        "m 29",
        "new 0",
        "new 1",
    ]
    await asyncio.sleep(1.1)
    assert await history.prune(timedelta(seconds=1)) == 1
    assert await history.list_sessions() == []


async def test_purge_expired_deletes_the_records_of_expired_sessions(
    make_fast_history: Callable[..., ChromaChatHistoryProvider],
) -> None:
    """`purge_expired` deletes every record of an expired session and nothing else."""
    history = make_fast_history(ttl=timedelta(hours=1))
    await history.add_messages("live", _messages(2))
    await history.add_messages("gone", _messages(3))

    def expire(collection: Any) -> None:
        collection.update(ids=[session_key("gone")], metadatas=[{"expires": 1.0}])

    def records(collection: Any, session_id: str) -> int:
        return len(collection.get(where={"sid": {"$eq": session_id}}, include=[])["ids"])

    await history._run(expire)
    assert await history._run(records, "gone") == 4
    assert await history.purge_expired() == 1
    assert await history._run(records, "gone") == 0
    assert await history._run(records, "live") == 3
    assert await history.purge_expired() == 0


# -- batches larger than Chroma takes in one write ----------------------------------------------


async def test_append_larger_than_chromas_batch_limit_is_written_in_several_calls(
    make_fast_history: Callable[..., ChromaChatHistoryProvider],
) -> None:
    """Embedded Chroma takes at most 5,461 records a write; an append of 6,000 messages is
    stored whole and in order, not refused (it raised BackendUnavailable before)."""
    history = make_fast_history()
    collection = await history._ready()
    assert history._ops.max_batch == collection._client.get_max_batch_size() < 6_000
    messages = _messages(6_000)
    await history.add_messages("s", messages)
    assert await history.count_messages("s") == 6_000
    stored = await history.list_messages("s")
    assert [m.text for m in stored] == [m.text for m in messages]


class _FailingUpserts:
    """Wraps a Chroma collection; its `upsert` number `fail_at` raises, once."""

    def __init__(self, collection: Any, fail_at: int) -> None:
        self._collection = collection
        self.fail_at = fail_at
        self.upserts: list[int] = []

    def upsert(self, **kwargs: Any) -> Any:
        self.upserts.append(len(kwargs["ids"]))
        if len(self.upserts) == self.fail_at:
            raise chromadb.errors.InternalError("the disk is full")
        return self._collection.upsert(**kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._collection, name)


async def test_append_cut_short_between_writes_is_completed_by_a_retry(
    make_fast_history: Callable[..., ChromaChatHistoryProvider],
) -> None:
    """An append written in several calls that fails after the first leaves the session
    readable; the same append again stores every message once, in order, after the
    messages that were there."""
    history = make_fast_history()
    await history.add_messages("s", _messages(2, "before"))
    failing = _FailingUpserts(await history._ready(), fail_at=2)
    history._collection = failing
    history._ops.max_batch = 4
    batch = _messages(10, "batch")
    with pytest.raises(BackendUnavailable):
        await history.add_messages("s", batch)
    assert failing.upserts == [4, 4]  # the first call was written, the second failed
    assert [m.text for m in await history.list_messages("s")][:2] == ["before 0", "before 1"]
    await history.add_messages("s", batch)
    texts = [m.text for m in await history.list_messages("s")]
    assert texts == ["before 0", "before 1", *(m.text for m in batch)]
    assert await history.count_messages("s") == 12
