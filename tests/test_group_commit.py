"""GroupCommit: concurrent submits are written together, each caller gets its own result."""

from __future__ import annotations

import asyncio

import pytest

from memweave._group_commit import GroupCommit


async def test_concurrent_submits_share_batches_and_keep_their_results() -> None:
    batches: list[list[int]] = []

    async def write(items: list[int]) -> list[str]:
        batches.append(items)
        await asyncio.sleep(0)
        return [f"r{item}" for item in items]

    commit: GroupCommit[int, str] = GroupCommit(write, max_batch=4)
    results = await asyncio.gather(*(commit.submit(i) for i in range(10)))
    assert results == [f"r{i}" for i in range(10)]
    assert [item for batch in batches for item in batch] == list(range(10))
    assert len(batches) < 10
    assert all(len(batch) <= 4 for batch in batches)


async def test_a_failed_batch_fails_only_its_callers() -> None:
    async def write(items: list[int]) -> list[int]:
        await asyncio.sleep(0)
        if 0 in items:
            raise ValueError("boom")
        return items

    commit: GroupCommit[int, int] = GroupCommit(write, max_batch=1)
    first, second = await asyncio.gather(commit.submit(0), commit.submit(1), return_exceptions=True)
    assert isinstance(first, ValueError)
    assert second == 1


async def test_flush_waits_for_items_of_cancelled_callers() -> None:
    written: list[int] = []
    gate = asyncio.Event()

    async def write(items: list[int]) -> list[None]:
        await gate.wait()
        written.extend(items)
        return [None] * len(items)

    commit: GroupCommit[int, None] = GroupCommit(write)
    caller = asyncio.create_task(commit.submit(7))
    await asyncio.sleep(0)
    caller.cancel()
    with pytest.raises(asyncio.CancelledError):
        await caller
    gate.set()
    await commit.flush()
    assert written == [7]
