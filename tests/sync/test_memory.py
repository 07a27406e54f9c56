"""Blocking long-term memory: `VectorMemory` as plain calls, and as an agent's provider."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from memweave import sync
from memweave.errors import InvalidArgument, ProviderClosed
from memweave.session import Session
from memweave.testing import ScriptedChatClient
from tests.context.conftest import HashEmbeddings


@pytest.fixture
def memory(tmp_path: Path) -> Iterator[sync.VectorMemory]:
    """A blocking `VectorMemory` on an embedded Chroma in `tmp_path`."""
    with sync.VectorMemory(tmp_path / "chroma", embedder=HashEmbeddings()) as built:
        yield built


def test_add_search_count_delete_clear(memory: sync.VectorMemory) -> None:
    """Every direct method works as a plain call, scoped per user."""
    seat = memory.add("Ada prefers window seats.", user_id="ada")
    assert memory.add("Ada prefers window seats.", user_id="ada") == seat
    memory.add("Ada drinks green tea.", user_id="ada")
    memory.add("Bob prefers aisle seats.", user_id="bob")
    hits = memory.search("window seats", user_id="ada", k=1)
    assert [hit.id for hit in hits] == [seat]
    assert memory.count_memories(user_id="ada") == 2
    assert memory.delete(seat, user_id="ada")
    assert not memory.delete(seat, user_id="ada")
    assert memory.clear(user_id="ada") == 1
    assert memory.count_memories(user_id="bob") == 1
    assert memory.source_id == "vector_memory"


def test_memory_raises_the_async_errors(memory: sync.VectorMemory) -> None:
    """A read without a scope fails closed with the async error."""
    with pytest.raises(InvalidArgument):
        memory.search("anything")


def test_invoking_and_invoked_as_plain_calls(memory: sync.VectorMemory) -> None:
    """`invoked` remembers a turn and `invoking` brings it back as context."""
    from memweave import ChatMessage

    session = Session(user_id="ada")
    memory.invoked(
        session,
        [ChatMessage.user("My cat is called Miso.")],
        [ChatMessage.assistant("Nice name.")],
    )
    context = memory.invoking(session, [ChatMessage.user("What is my cat called?")])
    assert context.instructions is not None
    assert "Miso" in context.instructions


def test_blocking_memory_serves_a_blocking_agent(memory: sync.VectorMemory) -> None:
    """A blocking agent uses a blocking `VectorMemory` as a context provider."""
    memory.add("The user's name is Ada.", user_id="ada")
    client = ScriptedChatClient(["Hi Ada!"])
    agent = sync.Agent("helper", client, context_providers=[memory])
    agent.run("What is my name?", session=Session(user_id="ada"))
    sent = client.requests[0].messages
    assert any("Ada" in message.text for message in sent if message.role == "system")
    assert agent.context_providers == (memory,)


def test_memory_after_close_raises_provider_closed(tmp_path: Path) -> None:
    """After `close()`, every method raises `ProviderClosed`."""
    memory = sync.VectorMemory(tmp_path / "chroma", embedder=HashEmbeddings())
    memory.close()
    with pytest.raises(ProviderClosed, match="add"):
        memory.add("x", user_id="u")
    with pytest.raises(ProviderClosed, match="count"):
        memory.count_memories(user_id="u")
