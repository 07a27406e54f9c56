"""The portal: one private event loop on a daemon thread, where `memweave.sync` runs the async
implementation for blocking callers.

Every async object behind a blocking one is built and used on this one loop, so its
connections are bound to it whichever thread calls. A call from any thread submits a
coroutine and waits for its result; the caller's context variables travel with it. A
forked child gets a fresh portal on first use.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from typing import Any, Generic, ParamSpec, TypeVar

__all__ = ["Portal", "in_event_loop", "iterate", "portal"]

_P = ParamSpec("_P")
_T = TypeVar("_T")


def in_event_loop() -> bool:
    """Whether the calling thread is running an event loop (where blocking would stall it)."""
    return asyncio._get_running_loop() is not None


class Portal:
    """An event loop running forever on a daemon thread; other threads run coroutines on it.

    Args:
        name: The thread's name.
    """

    def __init__(self, name: str = "memweave-portal") -> None:
        self.loop = asyncio.new_event_loop()
        """The portal's event loop."""
        self.thread = threading.Thread(target=self._serve, name=name, daemon=True)
        """The daemon thread running `loop`."""
        self.thread.start()

    def _serve(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_forever()
        finally:
            self.loop.close()

    def run(
        self,
        function: Callable[_P, Coroutine[Any, Any, _T]],
        /,
        *args: _P.args,
        **kwargs: _P.kwargs,
    ) -> _T:
        """Run `function(*args, **kwargs)` on the loop and wait for its result or error.

        The caller must not be running an event loop itself (check `in_event_loop()` first;
        on the portal's own thread this would wait for itself forever). An interrupt while
        waiting (Ctrl-C) cancels the task on the loop.
        """
        call: _Call[_T] = _Call(function(*args, **kwargs))
        # call_soon_threadsafe runs `start` in a copy of this thread's context, so context
        # variables set by the caller are seen by the task.
        self.loop.call_soon_threadsafe(call.start, self.loop)
        try:
            call.done.acquire()
        except BaseException:
            self.loop.call_soon_threadsafe(call.cancel)
            raise
        error, call.error = call.error, None
        if error is not None:
            raise error
        return call.result  # type: ignore[return-value]

    def stop(self) -> None:
        """Stop the loop and wait for the thread to end (tasks still pending are dropped)."""
        if self.thread.is_alive():
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join()


class _Call(Generic[_T]):
    """One coroutine run for a waiting thread: a plain lock signals the end (cheaper than a
    `concurrent.futures.Future`, whose result passes through one more loop callback)."""

    __slots__ = ("cancelled", "coroutine", "done", "error", "result", "task")

    def __init__(self, coroutine: Coroutine[Any, Any, _T]) -> None:
        self.coroutine = coroutine
        self.done = threading.Lock()
        self.done.acquire()
        self.result: _T | None = None
        self.error: BaseException | None = None
        self.task: asyncio.Task[None] | None = None
        self.cancelled = False

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        if self.cancelled:
            self.coroutine.close()
            return
        self.task = loop.create_task(self._run())

    async def _run(self) -> None:
        try:
            self.result = await self.coroutine
        except BaseException as exc:  # handed to the waiting thread, which raises it there
            self.error = exc
            if isinstance(exc, asyncio.CancelledError):
                raise
        finally:
            self.done.release()

    def cancel(self) -> None:
        self.cancelled = True
        if self.task is not None:
            self.task.cancel()


_lock = threading.Lock()
_portal: Portal | None = None


def portal() -> Portal:
    """Return this process's portal, starting it on first use."""
    global _portal
    current = _portal
    if current is not None:
        return current
    with _lock:
        if _portal is None:
            _portal = Portal()
        return _portal


def _forget_after_fork() -> None:
    # The portal's thread does not exist in a forked child; the child starts its own.
    global _portal, _lock
    _portal = None
    _lock = threading.Lock()


os.register_at_fork(after_in_child=_forget_after_fork)


def iterate(
    source: AsyncIterator[_T], chunk: int, refusal: Callable[[], BaseException]
) -> Iterator[_T]:
    """Yield the items of an async iterator from blocking code, fetching `chunk` per trip.

    Each trip to the portal pulls up to `chunk` items, so a source that reads a page at a
    time is read one page per trip (and a `chunk` of 1 advances the source only as far as
    the caller has read). An error is raised after the items that came before it. Closing
    the returned iterator (or dropping it) closes the source on the loop.

    Args:
        source: The async iterator, which must only ever be advanced on the portal loop.
        chunk: Most items fetched per trip.
        refusal: Makes the error raised when the caller's thread runs an event loop.
    """
    finished = False
    try:
        while not finished:
            if in_event_loop():
                raise refusal()
            items, finished, error = portal().run(_take, source, chunk)
            yield from items
            if error is not None:
                finished = True
                raise error
    finally:
        if not finished:
            _close(source)


async def _take(source: AsyncIterator[_T], chunk: int) -> tuple[list[_T], bool, Exception | None]:
    items: list[_T] = []
    try:
        while len(items) < chunk:
            items.append(await anext(source))
    except StopAsyncIteration:
        return items, True, None
    except Exception as exc:  # handed to the caller after the items read before it
        return items, True, exc
    return items, False, None


def _close(source: AsyncIterator[Any]) -> None:
    aclose: Callable[[], Coroutine[Any, Any, None]] | None = getattr(source, "aclose", None)
    if aclose is None:
        return
    if in_event_loop():
        # Dropped inside a loop (or on the portal thread itself): close without waiting.
        asyncio.run_coroutine_threadsafe(aclose(), portal().loop)
        return
    portal().run(aclose)
