"""`ChromaChatHistoryProvider` beyond the conformance suite: search, URLs, embedders, the lock.

(Backend-only checks; they belong with the provider tests and sit here with the other Chroma
tests.)
"""

from __future__ import annotations

import asyncio
import sys
import textwrap
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
    hits = await history.search("s1", "when do I travel to Japan?", k=10)
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
    assert await history.search("nobody", "milk") == []
    assert await history.search("s1", "   ") == []
    assert len(await history.search("s1", "milk")) == 1
    await history.clear("s1")
    assert await history.search("s1", "milk") == []
    with pytest.raises(InvalidArgument):
        await history.search("s1", "milk", k=0)


def test_urls_name_folder_or_server() -> None:
    """`chroma:///path` is embedded, `chroma+http(s)://host:port` a server; options parse."""
    assert parse_chroma_url("chroma:///var/lib/chat") == ("path", {"path": "/var/lib/chat"})
    assert parse_chroma_url("chroma://data/chat?collection=abc") == (
        "path",
        {"path": "data/chat", "collection": "abc"},
    )
    assert parse_chroma_url("chroma+https://db.example:9000?tenant=t") == (
        "http",
        {"host": "db.example", "port": 9000, "ssl": True, "tenant": "t"},
    )
    for bad in ("chroma://", "chroma+http://:80", "chroma:///x?colour=red", "redis://x"):
        with pytest.raises(ConfigurationError):
            parse_chroma_url(bad)


def test_from_url_builds_the_provider(tmp_path: Path) -> None:
    """from_url knows the chroma schemes and passes the collection on."""
    history = from_url(f"chroma://{tmp_path}?collection=my_chats", max_messages=10)
    assert isinstance(history, ChromaChatHistoryProvider)
    assert history.collection_name == "my_chats"
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
        client=client, collection="not_history", embedder=HashEmbeddings()
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
