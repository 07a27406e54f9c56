"""`PerLoop`: what an async object keeps per event loop (connections, locks, queues), so the
object works in any loop, or is bound to the first loop that used it and says so elsewhere.

Connections, `asyncio.Lock`s and queued futures belong to the event loop they were made in:
used from another one (a new `asyncio.run`, a test framework's per-test loop, a thread with a
loop of its own) they fail with raw `RuntimeError`s, or hang. So an object keeps one of each
per loop, made on first use in that loop, and releases a loop's connections when that loop
shuts down.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import weakref
from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import Generic, TypeVar

from memweave.errors import EventLoopMismatch

__all__ = ["PerLoop", "is_loop_error"]

T = TypeVar("T")

logger = logging.getLogger(__name__)

_OTHER_LOOP_TIMEOUT = 10.0
"""Seconds `aclose()` waits for another thread's running loop to release its value."""

_LOOP_ERRORS = (
    "event loop is closed",
    "different loop",
    "different event loop",
    "other than the current one",
)


def is_loop_error(error: BaseException) -> bool:
    """Whether `error` is asyncio's or a driver's complaint about a wrong or closed event
    loop (a client the caller used in another loop before handing it over)."""
    if not isinstance(error, RuntimeError):
        return False
    text = str(error).lower()
    return any(marker in text for marker in _LOOP_ERRORS)


class _Entry(Generic[T]):
    """One loop's value, and the guard that releases it when that loop shuts down."""

    __slots__ = ("closing", "guard", "value")

    def __init__(self, value: T) -> None:
        self.value = value
        self.guard: AsyncGenerator[None, None] | None = None
        self.closing: asyncio.Future[None] | None = None


class PerLoop(Generic[T]):
    """One value per event loop, made by `make()` on first use in that loop.

    `get()` returns the running loop's value; its fast path is one identity comparison with
    the loop of the previous call. With `close`, a loop's value is closed on that loop when it
    shuts down: each value gets a guard, an async generator started on its loop, and asyncio
    closes every such generator in `loop.shutdown_asyncgens()`, which `asyncio.run`,
    `asyncio.Runner` and pytest-asyncio call before closing a loop. A loop closed without it
    can run nothing more, so its value is only dropped (`discard`), without awaiting anything,
    the next time another loop makes its value.

    With `bound=(owner, resource)`, there is only ever one value (e.g. a client the caller
    gave): the first loop that calls `get()` keeps it, and `get()` in any other loop raises
    `EventLoopMismatch(owner, resource)`.

    Safe to share between threads, each running its own loop.

    Args:
        make: Makes the value of the calling loop (called in that loop, never concurrently).
        close: Releases a value, on its own loop.
        discard: Lets go of the value of a loop closed without shutting down (synchronous:
            nothing can run on that loop any more).
        bound: Serve only the first loop, naming the object and what it holds in the error.
    """

    def __init__(
        self,
        make: Callable[[], T],
        *,
        close: Callable[[T], Awaitable[None]] | None = None,
        discard: Callable[[T], None] | None = None,
        bound: tuple[str, str] | None = None,
    ) -> None:
        self._make = make
        self._close = close
        self._discard = discard
        self._bound = bound
        self._home: asyncio.AbstractEventLoop | None = None
        self._entries: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Entry[T]] = (
            weakref.WeakKeyDictionary()
        )
        self._last: tuple[asyncio.AbstractEventLoop, T] | None = None
        self._lock = threading.Lock()

    def get(self) -> T:
        """The running loop's value, made now if it has none.

        Raises:
            EventLoopMismatch: `bound` was given and another loop used this first.
            RuntimeError: No event loop is running in this thread (a bug of the caller).
        """
        loop = asyncio.get_running_loop()
        last = self._last
        if last is not None and last[0] is loop:
            return last[1]
        return self._find(loop)

    def _find(self, loop: asyncio.AbstractEventLoop) -> T:
        with self._lock:
            entry = self._entries.get(loop)
            if entry is None:
                if self._bound is not None:
                    if self._home is None:
                        self._home = loop
                    elif self._home is not loop:
                        raise EventLoopMismatch(*self._bound)
                self._drop_closed()
                entry = _Entry(self._make())
                if self._close is not None:
                    entry.guard = self._start_guard(entry)
                self._entries[loop] = entry
            self._last = (loop, entry.value)
            return entry.value

    def _drop_closed(self) -> None:
        """Forget the values of loops closed without shutting down their async generators:
        their connections can no longer be closed (that would need their loop)."""
        for loop in [loop for loop in list(self._entries.keys()) if loop.is_closed()]:
            entry = self._entries.pop(loop, None)
            if entry is not None and self._discard is not None:
                logger.debug("dropping %r of an event loop closed without shutdown", entry.value)
                self._discard(entry.value)

    def _start_guard(self, entry: _Entry[T]) -> AsyncGenerator[None, None]:
        guard = self._guard(entry)
        # Run it to its `yield` here: the first step registers it with the running loop (the
        # loop's first-iteration hook), so the loop's shutdown closes it, running `finally`.
        step = guard.asend(None)
        with contextlib.suppress(StopIteration):
            step.send(None)
        return guard

    async def _guard(self, entry: _Entry[T]) -> AsyncGenerator[None, None]:
        try:
            yield
        finally:
            await self._release(entry)

    async def _release(self, entry: _Entry[T]) -> None:
        """Close `entry`'s value once, on the running loop (its own), and forget it."""
        with self._lock:
            for loop, held in list(self._entries.items()):
                if held is entry:
                    del self._entries[loop]
            last = self._last
            if last is not None and last[1] is entry.value:
                self._last = None
        if self._close is None:
            return
        if entry.closing is None:
            entry.closing = asyncio.ensure_future(self._close(entry.value))
        await asyncio.shield(entry.closing)

    async def aclose(self) -> None:
        """Release every loop's value that can be: the running loop's here, a loop running
        in another thread's there (waiting for it a bounded time); a loop that is not running
        closes its value when it shuts down, and a closed loop's value is dropped."""
        here = asyncio.get_running_loop()
        with self._lock:
            entries = list(self._entries.items())
            self._entries.clear()
            self._last = None
        errors: list[BaseException] = []
        for loop, entry in entries:
            try:
                if loop.is_closed():
                    if self._discard is not None:
                        self._discard(entry.value)
                elif loop is here:
                    await self._release(entry)
                elif loop.is_running():
                    done = asyncio.run_coroutine_threadsafe(self._release(entry), loop)
                    await asyncio.wait_for(asyncio.wrap_future(done), _OTHER_LOOP_TIMEOUT)
            except TimeoutError:
                logger.warning(
                    "an event loop in another thread did not release its connections within "
                    "%.0f s; they close when that loop shuts down",
                    _OTHER_LOOP_TIMEOUT,
                )
            except Exception as exc:  # the other values are still released; raised below
                errors.append(exc)
        if errors:
            raise errors[0]
