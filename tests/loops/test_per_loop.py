"""`PerLoop` and `GroupCommit`: what an object keeps per event loop, and when it is released."""

from __future__ import annotations

import asyncio
import threading

import pytest

from memweave import EventLoopMismatch, MemweaveError
from memweave._group_commit import GroupCommit
from memweave._loops import PerLoop
from tests.loops.conftest import in_thread_loop


class Resource:
    """A value that records the loop it was made in and the loop it was closed on."""

    def __init__(self) -> None:
        self.made_in = asyncio.get_running_loop()
        self.closed_on: asyncio.AbstractEventLoop | None = None

    async def close(self) -> None:
        assert self.closed_on is None, "closed twice"
        self.closed_on = asyncio.get_running_loop()


def _per_loop(made: list[Resource], bound: tuple[str, str] | None = None) -> PerLoop[Resource]:
    def make() -> Resource:
        made.append(Resource())
        return made[-1]

    async def close(value: Resource) -> None:
        await value.close()

    return PerLoop(make, close=close, bound=bound)


async def _get_twice(values: PerLoop[Resource]) -> Resource:
    first = values.get()
    await asyncio.sleep(0)
    assert values.get() is first
    return first


def test_each_loop_gets_its_own_value() -> None:
    """A loop gets the same value on every call, and another loop another value."""
    made: list[Resource] = []
    values = _per_loop(made)
    first = asyncio.run(_get_twice(values))
    second = asyncio.run(_get_twice(values))
    assert first is not second
    assert made == [first, second]


def test_a_value_is_closed_on_its_loop_when_the_loop_shuts_down() -> None:
    """`asyncio.run` shuts the loop down, which closes the loop's value on that loop."""
    made: list[Resource] = []
    values = _per_loop(made)
    value = asyncio.run(_get_twice(values))
    assert value.closed_on is value.made_in
    assert value.made_in.is_closed()


def test_a_loop_closed_without_shutdown_drops_its_value() -> None:
    """A loop closed without shutting down its async generators can run nothing more: its
    value is dropped, unclosed and without error, and the next loop gets a new one."""
    made: list[Resource] = []
    values = _per_loop(made)
    loop = asyncio.new_event_loop()
    try:
        old = loop.run_until_complete(_get_twice(values))
    finally:
        loop.close()
    new = asyncio.run(_get_twice(values))
    assert new is not old
    assert old.closed_on is None
    assert new.closed_on is new.made_in


def test_aclose_releases_the_values_of_loops_running_in_other_threads() -> None:
    """`aclose()` closes its own loop's value here and a running thread's loop's value on
    that loop, before the thread's loop ends."""
    made: list[Resource] = []
    values = _per_loop(made)
    ready, finish = threading.Event(), threading.Event()
    still_open: list[bool] = []

    async def other() -> Resource:
        value = values.get()
        ready.set()
        await asyncio.to_thread(finish.wait, 30)
        still_open.append(value.closed_on is None)
        return value

    async def main() -> tuple[Resource, Resource]:
        mine = values.get()
        waiting = asyncio.create_task(in_thread_loop(other)())
        await asyncio.to_thread(ready.wait, 30)
        await values.aclose()
        finish.set()
        return mine, await waiting

    mine, theirs = asyncio.run(main())
    assert mine.closed_on is mine.made_in
    assert theirs.closed_on is theirs.made_in
    assert still_open == [False]


def test_bound_serves_only_the_first_loop() -> None:
    """With `bound`, the first loop keeps the one value; any other loop gets
    `EventLoopMismatch` naming the object and what it holds, also from a thread."""
    made: list[Resource] = []
    values = _per_loop(made, ("Thing", "the client passed in"))
    value = asyncio.run(_get_twice(values))
    for _ in range(2):
        with pytest.raises(EventLoopMismatch) as caught:
            asyncio.run(_get_twice(values))
        assert isinstance(caught.value, MemweaveError)
        assert isinstance(caught.value, RuntimeError)
        assert (caught.value.owner, caught.value.resource) == ("Thing", "the client passed in")

    async def from_a_thread() -> Resource:
        return await in_thread_loop(lambda: _get_twice(values))()

    with pytest.raises(EventLoopMismatch):
        asyncio.run(from_a_thread())
    assert made == [value]


def test_group_commit_keeps_a_queue_per_loop() -> None:
    """Submits from several loops at once are written in batches of one loop each, and every
    caller gets its own result."""
    batches: list[list[tuple[int, int]]] = []

    async def write(items: list[tuple[int, int]]) -> list[int]:
        batches.append(items)
        await asyncio.sleep(0.001)
        assert {loop for loop, _ in items} == {id(asyncio.get_running_loop())}
        return [n for _, n in items]

    commit: GroupCommit[tuple[int, int], int] = GroupCommit(write, max_batch=8)

    async def submit_many(offset: int) -> list[int]:
        loop = id(asyncio.get_running_loop())
        results = await asyncio.gather(*(commit.submit((loop, offset + n)) for n in range(40)))
        await commit.flush()
        return list(results)

    async def main() -> tuple[list[int], list[int]]:
        return await asyncio.gather(submit_many(0), in_thread_loop(lambda: submit_many(100))())

    for _ in range(3):
        mine, theirs = asyncio.run(main())
        assert mine == list(range(40))
        assert theirs == list(range(100, 140))
    assert all(len(batch) <= 8 for batch in batches)


def test_aclose_drops_the_value_of_a_closed_loop_with_discard() -> None:
    """`aclose()` hands the value of a loop closed without shutdown to `discard`, without
    awaiting on that loop."""
    made: list[Resource] = []
    discarded: list[Resource] = []

    async def close(value: Resource) -> None:
        await value.close()

    def make() -> Resource:
        made.append(Resource())
        return made[-1]

    values = PerLoop(make, close=close, discard=discarded.append)
    loop = asyncio.new_event_loop()
    try:
        old = loop.run_until_complete(_get_twice(values))
    finally:
        loop.close()
    asyncio.run(values.aclose())
    assert discarded == [old]
    assert old.closed_on is None
