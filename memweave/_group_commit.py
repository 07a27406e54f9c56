"""`GroupCommit`: items submitted by concurrent callers, written together in batches."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

from memweave._loops import PerLoop

__all__ = ["GroupCommit"]

ItemT = TypeVar("ItemT")
ResultT = TypeVar("ResultT")


class GroupCommit(Generic[ItemT, ResultT]):
    """Queues items from concurrent callers and writes them with `write`, many at a time.

    The first `submit` starts a writer task; items submitted while it writes wait and go
    out together in the next batch (at most `max_batch` items), so a burst of concurrent
    writes costs a few round trips instead of one each. `write` returns one result per item,
    in order; if it raises, every caller of that batch gets the error and later batches
    still run. A caller cancelled while waiting leaves its item queued: it is written anyway.
    Each event loop has a queue and writer of its own, so callers in several loops (threads,
    consecutive `asyncio.run`s) may share one `GroupCommit`; batches never mix loops.

    Args:
        write: Writes a batch and returns one result per item.
        max_batch: Most items per `write` call; unbounded when None.
    """

    def __init__(
        self,
        write: Callable[[list[ItemT]], Awaitable[Sequence[ResultT]]],
        *,
        max_batch: int | None = None,
    ) -> None:
        self._write = write
        self._max_batch = max_batch
        self._lanes: PerLoop[_Lane[ItemT, ResultT]] = PerLoop(_Lane)

    async def submit(self, item: ItemT) -> ResultT:
        """Queue `item` and return its result once its batch is written."""
        lane = self._lanes.get()
        future: asyncio.Future[ResultT] = asyncio.get_running_loop().create_future()
        lane.queue.append((item, future))
        if lane.writer is None or lane.writer.done():
            lane.writer = asyncio.create_task(self._drain(lane))
        return await asyncio.shield(future)

    async def flush(self) -> None:
        """Wait until every item queued so far in the running event loop is written."""
        lane = self._lanes.get()
        while lane.writer is not None and not lane.writer.done():
            await asyncio.shield(lane.writer)

    async def _drain(self, lane: _Lane[ItemT, ResultT]) -> None:
        while lane.queue:
            cut = len(lane.queue) if self._max_batch is None else self._max_batch
            batch, lane.queue = lane.queue[:cut], lane.queue[cut:]
            try:
                results = await self._write([item for item, _ in batch])
            except BaseException as exc:
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                if not isinstance(exc, Exception):
                    raise
                continue
            for (_, future), result in zip(batch, results, strict=True):
                if not future.done():
                    future.set_result(result)


class _Lane(Generic[ItemT, ResultT]):
    """One event loop's queue and writer task."""

    __slots__ = ("queue", "writer")

    def __init__(self) -> None:
        self.queue: list[tuple[ItemT, asyncio.Future[ResultT]]] = []
        self.writer: asyncio.Task[None] | None = None
