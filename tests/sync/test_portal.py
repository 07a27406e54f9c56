"""The portal: one event loop on a daemon thread that runs coroutines for blocking callers."""

from __future__ import annotations

import asyncio
import contextvars
import multiprocessing
import os
import signal
import threading
from collections.abc import AsyncIterator

import pytest

from memweave import ChatMessage, sync
from memweave._portal import Portal, iterate, portal
from memweave.errors import InvalidArgument

_REQUEST_ID: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="")


def test_portal_is_one_daemon_thread_per_process() -> None:
    """Every call of the process goes to one loop, on one daemon thread."""
    first, second = portal(), portal()
    assert first is second
    assert first.thread.daemon
    assert first.thread.is_alive()


def test_portal_runs_coroutines_on_its_own_thread() -> None:
    """A coroutine runs on the portal's thread and loop, and its result comes back."""

    async def where() -> tuple[threading.Thread, asyncio.AbstractEventLoop]:
        return threading.current_thread(), asyncio.get_running_loop()

    thread, loop = portal().run(where)
    assert thread is portal().thread
    assert loop is portal().loop


def test_portal_passes_the_callers_context_variables() -> None:
    """Context variables set by the calling thread are seen by the coroutine (request ids,
    tracing)."""

    async def read() -> str:
        return _REQUEST_ID.get()

    def handle(request: str) -> str:
        _REQUEST_ID.set(request)
        return portal().run(read)

    results: dict[str, str] = {}
    threads = [
        threading.Thread(target=lambda n=n: results.update({f"r{n}": handle(f"r{n}")}))
        for n in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == {f"r{n}": f"r{n}" for n in range(4)}


def test_portal_raises_the_coroutines_error_and_keeps_working() -> None:
    """An error raised by the coroutine reaches the caller as it is; later calls work."""

    async def fail() -> None:
        raise InvalidArgument("x", 1, "bad")

    async def ok() -> int:
        return 7

    with pytest.raises(InvalidArgument, match="bad"):
        portal().run(fail)
    assert portal().run(ok) == 7


@pytest.mark.skipif(
    threading.current_thread() is not threading.main_thread(), reason="signals need main"
)
def test_interrupting_a_blocking_call_cancels_its_task() -> None:
    """Ctrl-C while a blocking call waits cancels the task on the loop."""
    started, cancelled = threading.Event(), threading.Event()

    async def slow() -> None:
        started.set()
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGALRM, interrupt)
    signal.setitimer(signal.ITIMER_REAL, 0.3)
    try:
        with pytest.raises(KeyboardInterrupt):
            portal().run(slow)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    assert started.is_set()
    assert cancelled.wait(5)


def test_a_portal_stops_and_its_thread_ends() -> None:
    """`stop()` ends the loop's thread."""
    own = Portal(name="memweave-test-portal")

    async def answer() -> int:
        return 42

    assert own.run(answer) == 42
    own.stop()
    assert not own.thread.is_alive()


async def _numbers(log: list[str], fail_at: int | None = None) -> AsyncIterator[int]:
    try:
        for n in range(10):
            if n == fail_at:
                raise InvalidArgument("n", n, "boom")
            log.append(f"made {n}")
            yield n
    finally:
        log.append(f"closed on {threading.current_thread().name}")


def _refusal() -> BaseException:
    return RuntimeError("in a loop")


def test_iterate_fetches_in_chunks_and_yields_all() -> None:
    """Items come in order; a chunk is fetched only when the caller reaches it."""
    log: list[str] = []
    items = iterate(_numbers(log), 3, _refusal)
    assert next(items) == 0
    assert log == ["made 0", "made 1", "made 2"]
    assert list(items) == list(range(1, 10))


def test_iterate_yields_items_before_an_error_then_raises_it() -> None:
    """An error of the source comes after the items read before it."""
    items = iterate(_numbers([], fail_at=5), 4, _refusal)
    got = [next(items) for _ in range(5)]
    with pytest.raises(InvalidArgument, match="boom"):
        next(items)
    assert got == [0, 1, 2, 3, 4]


def test_iterate_closed_early_closes_the_source_on_the_portal() -> None:
    """Closing the iterator closes the async source, on the portal's thread."""
    log: list[str] = []
    items = iterate(_numbers(log), 2, _refusal)
    assert next(items) == 0
    items.close()  # type: ignore[attr-defined]
    assert log[-1] == f"closed on {portal().thread.name}"


def _child_uses_the_blocking_face(queue: multiprocessing.Queue[object]) -> None:
    with sync.from_url("memory://") as history:
        history.add_messages("s", [ChatMessage.user("from the child")])
        queue.put((os.getpid(), [m.text for m in history.list_messages("s")]))


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_forked_child_starts_its_own_portal() -> None:
    """A child forked after the parent used the portal gets a portal of its own that works
    (the parent's thread does not exist there)."""
    assert portal().thread.is_alive()
    context = multiprocessing.get_context("fork")
    queue: multiprocessing.Queue[object] = context.Queue()
    child = context.Process(target=_child_uses_the_blocking_face, args=(queue,))
    child.start()
    pid, texts = queue.get(timeout=30)  # type: ignore[misc]
    child.join(30)
    assert child.exitcode == 0
    assert pid != os.getpid()
    assert texts == ["from the child"]
