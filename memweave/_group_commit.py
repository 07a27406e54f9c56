"""`GroupCommit`: items submitted by concurrent callers, written together in batches."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

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
        self._queue: list[tuple[ItemT, asyncio.Future[ResultT]]] = []
        self._writer: asyncio.Task[None] | None = None

    async def submit(self, item: ItemT) -> ResultT:
        """Queue `item` and return its result once its batch is written."""
        future: asyncio.Future[ResultT] = asyncio.get_running_loop().create_future()
        self._queue.append((item, future))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._drain())
        return await asyncio.shield(future)

    async def flush(self) -> None:
        """Wait until every item queued so far is written."""
        while self._writer is not None and not self._writer.done():
            await asyncio.shield(self._writer)

    async def _drain(self) -> None:
        while self._queue:
            cut = len(self._queue) if self._max_batch is None else self._max_batch
            batch, self._queue = self._queue[:cut], self._queue[cut:]
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
