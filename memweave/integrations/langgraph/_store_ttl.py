"""`Sweeper`: the task that deletes a `MemweaveStore`'s expired items at an interval."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from memweave.errors import ProviderClosed

__all__ = ["Sweeper"]

logger = logging.getLogger(__name__)


class Sweeper:
    """Runs `sweep()` every `interval` seconds in a task of the loop that started it, until
    stopped; a failed sweep is logged and tried again at the next interval.

    Args:
        sweep: Deletes expired items and returns how many.
    """

    def __init__(self, sweep: Callable[[], Awaitable[int]]) -> None:
        self._sweep = sweep
        self._task: asyncio.Task[None] | None = None
        self._stop: asyncio.Event | None = None

    def start(self, interval: float) -> asyncio.Task[None]:
        """Start the task (or return the running one)."""
        if self._task is not None and not self._task.done():
            return self._task
        stop = self._stop = asyncio.Event()

        async def sweep_forever() -> None:
            while True:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=interval)
                    return
                try:
                    swept = await self._sweep()
                    if swept:
                        logger.info("swept %d expired store items", swept)
                except ProviderClosed:
                    return
                except Exception:  # a failed sweep is retried at the next interval
                    logger.warning("store TTL sweep failed", exc_info=True)

        self._task = asyncio.create_task(sweep_forever(), name="memweave-store-ttl-sweeper")
        return self._task

    async def stop(self, timeout: float | None = None) -> bool:  # noqa: ASYNC109
        """Stop the task; False if it did not stop within `timeout` seconds (then cancelled)."""
        task, self._task = self._task, None
        if task is None or task.done():
            return True
        if self._stop is not None:
            self._stop.set()
        try:
            await asyncio.wait_for(asyncio.shield(task), timeout)
        except TimeoutError:
            task.cancel()
            return False
        return True
