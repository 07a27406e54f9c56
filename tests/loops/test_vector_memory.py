"""`VectorMemory` from any event loop: embedded or given a Chroma server's client, it works in
consecutive loops and in a thread's loop while the main loop uses it."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from memweave.context import VectorMemory
from tests.context.conftest import HashEmbeddings
from tests.loops.conftest import RUNS, in_thread_loop


@pytest.fixture(params=["embedded", "server"])
def make_memory(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[Callable[[], VectorMemory]]:
    """Builds a memory on an embedded Chroma folder, or on the test session's Chroma server
    (through a client passed in, with a catalogue file of its own); closed and dropped after."""
    made: list[VectorMemory] = []
    namespace = f"loops-{threading.get_ident()}-{id(made)}"
    client = None
    if request.param == "server":
        import chromadb

        url: str = request.getfixturevalue("chroma_server_url")
        client = chromadb.HttpClient(host="127.0.0.1", port=int(url.rsplit(":", 1)[1]))

    def make() -> VectorMemory:
        if client is None:
            memory = VectorMemory(tmp_path / "chroma", embedder=HashEmbeddings())
        else:
            memory = VectorMemory(
                client=client,
                namespace=namespace,
                embedder=HashEmbeddings(),
                lexical_path=tmp_path / "catalogue.sqlite3",
            )
        made.append(memory)
        return memory

    yield make
    for memory in made:
        asyncio.run(memory.aclose())
    if client is not None:
        client.delete_collection(f"{namespace}_memory")


def test_consecutive_asyncio_runs_share_one_memory(make_memory: Callable[[], VectorMemory]) -> None:
    """One memory serves 50 consecutive `asyncio.run` calls: each adds a memory and finds it,
    and every memory is stored once."""
    memory = make_memory()

    async def step(n: int) -> None:
        text = f"note number {n} about topic{n}"
        memory_id = await memory.add(text, user_id="ada", session_id="s")
        assert await memory.add(text, user_id="ada", session_id="s") == memory_id
        assert await memory.count_memories(user_id="ada") == n + 1
        hits = await memory.search(f"topic{n}", user_id="ada", k=1)
        assert [hit.text for hit in hits] == [text]

    for n in range(RUNS):
        asyncio.run(step(n))
    assert asyncio.run(memory.count_memories(user_id="ada")) == RUNS


def test_a_thread_with_its_own_loop_shares_the_memory(
    make_memory: Callable[[], VectorMemory],
) -> None:
    """A thread running its own loop adds and searches while the main loop does; every
    memory of each is stored once, and adds batched in one loop never wait on the other."""
    memory = make_memory()
    start = threading.Barrier(2)
    turns = 15

    async def writer(user: str) -> None:
        await asyncio.to_thread(start.wait, 30)
        for n in range(turns):
            text = f"{user} remembers item{n}"
            await asyncio.gather(
                memory.add(text, user_id=user), memory.add(f"{text} again", user_id=user)
            )
            hits = await memory.search(f"item{n}", user_id=user, k=2, mode="lexical")
            assert {hit.text for hit in hits} == {text, f"{text} again"}

    async def main() -> None:
        await asyncio.gather(writer("ada"), in_thread_loop(lambda: writer("bob"))())

    asyncio.run(main())
    assert asyncio.run(memory.count_memories(user_id="ada")) == 2 * turns
    assert asyncio.run(memory.count_memories(user_id="bob")) == 2 * turns
