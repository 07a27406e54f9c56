"""`ThroughSync`: a blocking provider dressed as an async one, so the conformance clauses
(written against the async API) check the blocking face instead of being written twice.

Every call is a plain call of the blocking method in a worker thread, which runs no event
loop: exactly how a WSGI or Celery thread uses `memweave.sync`. Concurrent awaits become
concurrent threads sharing one blocking object.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import AsyncIterator, Callable, Iterator
from types import TracebackType
from typing import Any, Self, TypeVar

from memweave import sync

_T = TypeVar("_T")
_END = object()
_HELPER = concurrent.futures.ThreadPoolExecutor(4, thread_name_prefix="through-sync")


def in_thread_now(function: Callable[..., _T], *args: Any, **kwargs: Any) -> _T:
    """Call `function` in another thread and wait, from anywhere (a running loop included):
    for what must happen at the call itself, such as an argument check."""
    return _HELPER.submit(function, *args, **kwargs).result()


class ThroughSync:
    """Looks like a `memweave.providers.ChatHistoryProvider`; drives a blocking one."""

    def __init__(self, blocking: sync.ChatHistoryProvider) -> None:
        self.blocking = blocking

    @classmethod
    def build(cls, make: Callable[[], sync.ChatHistoryProvider]) -> Self:
        """Build the blocking provider in a thread without an event loop."""
        return cls(in_thread_now(make))

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self.blocking, name)
        if not callable(attribute):
            return attribute

        async def call(*args: Any, **kwargs: Any) -> Any:
            return await asyncio.to_thread(attribute, *args, **kwargs)

        return call

    def iter_messages(self, session_id: str, **options: Any) -> AsyncIterator[Any]:
        iterator = in_thread_now(self.blocking.iter_messages, session_id, **options)
        return _drain(iterator)

    async def aclose(self) -> None:
        await asyncio.to_thread(self.blocking.close)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


async def _drain(iterator: Iterator[Any]) -> AsyncIterator[Any]:
    try:
        while (item := await asyncio.to_thread(next, iterator, _END)) is not _END:
            yield item
    finally:
        await asyncio.to_thread(_close, iterator)


def _close(iterator: Iterator[Any]) -> None:
    close = getattr(iterator, "close", None)
    if close is not None:
        close()
