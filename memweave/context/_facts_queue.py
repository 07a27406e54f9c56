"""`ExtractionQueue`: fact extraction off the turn's critical path, in a bounded queue per loop.

`VectorMemory.invoked` hands each turn's messages to this queue and returns; a worker task
(one per event loop, started on first use) processes the batches one at a time, in order, so
the facts of one turn are consolidated before those of the next.

- Full queue: `submit` waits for room (backpressure). Nothing is dropped; a caller is held
  back only while extraction is `queue_size` batches behind.
- Failures: a batch whose model or store fails (`ModelError`, `BackendUnavailable`) is retried
  with exponential backoff, `retry_attempts` attempts in all. Then, or at once for any other
  error, it is given up: logged at ERROR with its message ids, and counted in `failed`. It is
  not kept for a later flush (its turns are stored word for word anyway, and `remember` can
  be called on them again); the worker goes on with the next batch.
- `flush()` waits until the running loop's queue is empty; `aclose()` flushes every loop's
  queue and stops its worker. Batches left in a loop that ends without either are logged at
  ERROR with their ids and counted in `failed`.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential,
)

from memweave._loops import PerLoop
from memweave.context._facts_models import ExtractionStats
from memweave.errors import BackendUnavailable, ModelError
from memweave.messages import ChatMessage

__all__ = ["ExtractionQueue", "Job"]

_LOG = logging.getLogger("memweave.context.facts")
_MAX_WAIT = 30.0


@dataclass(frozen=True, slots=True)
class Job:
    """One batch of messages to learn facts from, with its scope."""

    messages: tuple[ChatMessage, ...]
    user_id: str | None
    session_id: str | None

    def describe(self) -> str:
        """The batch's message ids and scope, for logs."""
        ids = [message.id for message in self.messages]
        return f"messages {ids} (user {self.user_id!r}, session {self.session_id!r})"


class _Lane:
    """One event loop's queue and worker."""

    __slots__ = ("queue", "worker")

    def __init__(self, size: int) -> None:
        self.queue: asyncio.Queue[Job] = asyncio.Queue(size)
        self.worker: asyncio.Task[None] | None = None


class ExtractionQueue:
    """Processes batches with `process` in the background; see the module docstring.

    Args:
        process: Learns from one batch; raises on failure.
        size: Most batches waiting per event loop.
        attempts: Attempts per batch when it fails with a model or store error.
        wait: Seconds before the first retry, doubling each time (at most 30 s).
    """

    def __init__(
        self,
        process: Callable[[Job], Awaitable[object]],
        *,
        size: int,
        attempts: int,
        wait: float,
    ) -> None:
        self._process = process
        self._attempts = attempts
        self._wait = wait
        self._lanes: PerLoop[_Lane] = PerLoop(lambda: _Lane(size), close=self._close_lane)
        self._lock = threading.Lock()
        self._counts = {"queued": 0, "pending": 0, "completed": 0, "retries": 0, "failed": 0}

    @property
    def stats(self) -> ExtractionStats:
        """The counters so far."""
        with self._lock:
            return ExtractionStats(**self._counts)

    def _count(self, **changes: int) -> None:
        with self._lock:
            for name, change in changes.items():
                self._counts[name] += change

    def _start(self, lane: _Lane) -> None:
        if lane.worker is None or lane.worker.done():
            lane.worker = asyncio.create_task(self._work(lane), name="memweave-fact-extraction")

    async def submit(self, job: Job) -> None:
        """Queue a batch, waiting for room while the queue is full."""
        lane = self._lanes.get()
        self._start(lane)
        await lane.queue.put(job)
        self._count(queued=1, pending=1)

    async def flush(self) -> None:
        """Wait until every batch queued in the running event loop is processed."""
        lane = self._lanes.get()
        if not lane.queue.empty():
            self._start(lane)
        await lane.queue.join()

    async def aclose(self) -> None:
        """Flush every event loop's queue and stop its worker."""
        await self._lanes.aclose()

    async def _close_lane(self, lane: _Lane) -> None:
        worker = lane.worker
        if worker is not None and not worker.done():
            await lane.queue.join()
            worker.cancel()
            await asyncio.gather(worker, return_exceptions=True)
        self._lose(lane, None)

    def _lose(self, lane: _Lane, current: Job | None) -> None:
        """Log and count the batches a stopped worker leaves (`current` and the queued)."""
        lost = [] if current is None else [current]
        while not lane.queue.empty():
            lost.append(lane.queue.get_nowait())
            lane.queue.task_done()
        for job in lost:
            _LOG.error("fact extraction was stopped before it learned from %s", job.describe())
        if lost:
            self._count(failed=len(lost), pending=-len(lost))

    async def _work(self, lane: _Lane) -> None:
        while True:
            job = await lane.queue.get()
            try:
                await self._attempt(job)
            except asyncio.CancelledError:
                lane.queue.task_done()
                self._lose(lane, job)
                raise
            lane.queue.task_done()
            self._count(pending=-1)

    def _before_retry(self, state: RetryCallState) -> None:
        self._count(retries=1)
        failure = state.outcome.exception() if state.outcome is not None else None
        _LOG.warning(
            "fact extraction failed (attempt %d of %d), retrying: %s",
            state.attempt_number,
            self._attempts,
            failure,
        )

    async def _attempt(self, job: Job) -> None:
        try:
            async for attempt in AsyncRetrying(
                stop=stop_after_attempt(self._attempts),
                wait=wait_exponential(multiplier=self._wait, max=_MAX_WAIT),
                retry=retry_if_exception_type((ModelError, BackendUnavailable)),
                before_sleep=self._before_retry,
                reraise=True,
            ):
                with attempt:
                    await self._process(job)
        except Exception as exc:  # given up: logged with its ids and counted, never silently
            self._count(failed=1)
            _LOG.error("gave up fact extraction from %s: %s", job.describe(), exc, exc_info=exc)
        else:
            self._count(completed=1)
