"""Fact extraction on a Chroma server: facts and their history are shared through it."""

from __future__ import annotations

from pathlib import Path

import chromadb

from memweave.context import FactExtractor, VectorMemory
from memweave.messages import ChatMessage
from memweave.session import Session
from tests.conformance._harness_chroma import chroma_server_url  # noqa: F401 - a fixture
from tests.context._facts_scripts import FactModel
from tests.context.conftest import HashEmbeddings


async def test_facts_and_history_are_shared_through_a_chroma_server(
    chroma_server_url: str,  # noqa: F811 - the fixture imported above
    tmp_path: Path,
    hash_embedder: HashEmbeddings,
) -> None:
    """Facts learned in the background through one catalogue, then updated and deleted, are
    read with their history through another catalogue on the same server, which read them
    before the change."""
    host, port = chroma_server_url.removeprefix("chroma+http://").rsplit(":", 1)
    client = chromadb.HttpClient(host=host, port=int(port))
    collection = f"facts-{tmp_path.name}"[-60:].strip("-_.") or "facts"
    model = FactModel()
    writer = VectorMemory(
        client=client,
        embedder=hash_embedder,
        lexical_path=tmp_path / "writer.db",
        namespace=collection,
        extractor=FactExtractor(model.client, retry_wait=0),
    )
    reader = VectorMemory(
        client=client,
        embedder=hash_embedder,
        lexical_path=tmp_path / "reader.db",
        namespace=collection,
    )
    async with writer, reader:
        session = Session(user_id="ada")
        await writer.invoked(session, [ChatMessage.user("Likes tea.")], [])
        await writer.invoked(session, [ChatMessage.user("Has a cat.")], [])
        await writer.flush()
        before = await reader.search(
            "coffee tea cat", user_id="ada", kind="fact", k=10, min_score=0.0
        )
        assert sorted(hit.text for hit in before) == ["Has a cat.", "Likes tea."]
        model.decide = lambda existing, facts: [
            {
                "event": "UPDATE",
                "id": next(m["id"] for m in existing if "tea" in m["text"]),
                "text": "Likes coffee.",
            },
            {"event": "DELETE", "id": next(m["id"] for m in existing if "cat" in m["text"])},
        ]
        result = await writer.remember("Coffee now; the cat is gone.", user_id="ada")
        assert sorted(change.event for change in result.changes) == ["DELETE", "UPDATE"]
        hits = await reader.search(
            "coffee tea cat", user_id="ada", kind="fact", k=10, min_score=0.0
        )
        assert [hit.text for hit in hits] == ["Likes coffee."]
        for change in result.changes:
            history = await reader.history(change.memory_id, user_id="ada")
            assert [entry.event for entry in history] == ["ADD", change.event]
            assert history == await writer.history(change.memory_id, user_id="ada")
        assert await reader.count_memories(user_id="bob") == 0
