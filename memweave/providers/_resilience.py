"""Timeouts and safe retries of storage calls: the `timeout=` and `retries=` options, their URL
form, and `CallPolicy`, which runs one storage step under both.

A step's first attempt runs directly, watched for its deadline by one timer per event loop
(not one per call, as `asyncio.timeout` would arm), so a call that succeeds pays next to
nothing; only after a transient failure does tenacity take over, with bounded exponential
backoff and jitter, inside the same time budget.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Awaitable, Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, TypeVar, overload
from urllib.parse import unquote

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
    stop_after_delay,
    wait_exponential,
    wait_random,
)
from tenacity.stop import stop_base

from memweave._loops import PerLoop
from memweave._urls import mask_url
from memweave.errors import BackendTimeout, BackendUnavailable, ConfigurationError, MemweaveError

__all__ = [
    "DEFAULT_RETRIES",
    "DEFAULT_TIMEOUT",
    "MAX_RETRIES",
    "CallPolicy",
    "check_retries",
    "check_timeout",
    "is_retryable",
    "resolve_options",
    "retry_after",
]

logger = logging.getLogger("memweave.providers")

T = TypeVar("T")
_V = TypeVar("_V")

DEFAULT_TIMEOUT = 10.0
"""Seconds one storage step may take, all its attempts included, unless told otherwise."""

DEFAULT_RETRIES = 3
"""How many times a step that failed for a transient reason is tried again, by default."""

MAX_RETRIES = 10
"""The most `retries` a store accepts."""

BACKOFF = wait_exponential(multiplier=0.1, max=2.0) + wait_random(0, 0.1)
"""Seconds to wait before retry k (1, 2, ...): 0.1 x 2^(k-1), at most 2, plus up to 0.1 of
random jitter; so the default 3 retries wait about 0.7-1.0 s in all. (Tenacity's
`wait_exponential_jitter` computes the same, but names its first argument differently in
8.x and 9.x.)"""

_OPTIONS = ("timeout", "retries")


def check_timeout(value: object) -> float | None:
    """Return `value` as seconds, or None for no limit.

    Raises:
        ConfigurationError: Not a positive, finite number of seconds or None.
    """
    if value is None:
        return None
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value <= 0
    ):
        raise ConfigurationError(
            f"timeout must be a positive number of seconds, or None for no limit; got {value!r}"
        )
    return float(value)


def check_retries(value: object) -> int:
    """Return `value` as a retry count.

    Raises:
        ConfigurationError: Not an int from 0 to `MAX_RETRIES`.
    """
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_RETRIES:
        raise ConfigurationError(
            f"retries must be an int from 0 (no retries) to {MAX_RETRIES}; got {value!r}"
        )
    return value


@overload
def resolve_options(url: str, timeout: object, retries: object) -> tuple[str, float | None, int]:
    pass


@overload
def resolve_options(
    url: str | None, timeout: object, retries: object
) -> tuple[str | None, float | None, int]:
    pass


def resolve_options(
    url: str | None, timeout: object, retries: object
) -> tuple[str | None, float | None, int]:
    """Take `timeout` and `retries` out of the URL's query (`?timeout=2.5&retries=0`) and
    settle them with the keyword options; return the URL without them and the two values.

    The URL's value replaces the keyword's default; given both ways with different values,
    the option is refused. `?timeout=none` means no limit. Other query parameters are kept
    exactly as written, for the driver.

    Raises:
        ConfigurationError: A bad value, in the URL or as a keyword, or a conflict.
    """
    seconds = check_timeout(timeout)
    count = check_retries(retries)
    if not isinstance(url, str) or "?" not in url:
        return url, seconds, count
    head, _, query = url.partition("?")
    query, hash_mark, fragment = query.partition("#")
    kept: list[str] = []
    found: dict[str, str] = {}
    for part in query.split("&"):
        name, _, value = part.partition("=")
        if unquote(name) in _OPTIONS:
            found[unquote(name)] = unquote(value)
        elif part:
            kept.append(part)
    if not found:
        return url, seconds, count
    shown = mask_url(url)
    if "timeout" in found:
        text = found["timeout"].strip()
        try:
            parsed = None if text.lower() == "none" else check_timeout(float(text))
        except (ValueError, ConfigurationError):
            raise ConfigurationError(
                f"timeout={text!r} in the URL {shown!r} must be a positive number of seconds "
                "or none"
            ) from None
        seconds = _settle("timeout", seconds, parsed, DEFAULT_TIMEOUT, shown)
    if "retries" in found:
        text = found["retries"].strip()
        try:
            counted = check_retries(int(text))
        except (ValueError, ConfigurationError):
            raise ConfigurationError(
                f"retries={text!r} in the URL {shown!r} must be an int from 0 to {MAX_RETRIES}"
            ) from None
        count = _settle("retries", count, counted, DEFAULT_RETRIES, shown)
    rest = head + ("?" + "&".join(kept) if kept else "") + hash_mark + fragment
    return rest, seconds, count


def _settle(name: str, keyword: _V, in_url: _V, default: _V, shown: str) -> _V:
    if keyword != default and keyword != in_url:
        raise ConfigurationError(
            f"{name} is given twice, as {name}={keyword!r} and in the URL {shown!r} as "
            f"{in_url!r}; give it once"
        )
    return in_url


def is_retryable(error: BaseException) -> bool:
    """Whether a failed step may be tried again: a transient `BackendUnavailable` that is not
    a timeout (a step that ran out of time has no time left to try again)."""
    return (
        isinstance(error, BackendUnavailable)
        and error.transient
        and not isinstance(error, BackendTimeout)
    )


async def retry_after(
    first: BaseException, attempt: Callable[[], Awaitable[T]], retrying: AsyncRetrying
) -> T:
    """Go on with `retrying` for a call whose first attempt, made directly, failed with
    `first`: tenacity sees that failure as its attempt 1, waits as its policy says, and makes
    the later attempts with `attempt`. (Entering tenacity only after a failure keeps it off
    the happy path, where it would cost more than the call.)"""
    pending = [first]

    async def again() -> T:
        if pending:
            raise pending.pop()
        return await attempt()

    result: T = await retrying(again)
    return result


def _log_retry(operation: str) -> Callable[[RetryCallState], None]:
    def log(state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome is not None else None
        wait = state.next_action.sleep if state.next_action is not None else 0.0
        logger.info(
            "%s failed (attempt %d): %s; retrying in %.2f s",
            operation,
            state.attempt_number,
            error,
            wait,
        )

    return log


_GRACE = 0.2
"""Seconds a call cut off by its deadline may spend unwinding before it is cancelled again:
a driver may hold the cancelled call to close its connection gracefully (SQLAlchemy 2.1
gives asyncpg up to 2 s, which a paused server uses up), and a second cancellation makes it
close at once."""
_CANCELS = 5
"""The most times a call past its deadline is cancelled; one that ignores them all is left
to finish."""


class _Watch:
    """One running call with a deadline: its task, and how often the watcher cancelled it."""

    __slots__ = ("cancelling", "cancels", "deadline", "task", "watcher")

    def __init__(self, watcher: _Watcher, task: asyncio.Task[Any], deadline: float) -> None:
        self.watcher = watcher
        self.task = task
        self.deadline = deadline
        """When the watcher next acts: the call's deadline, then its next cancellation."""
        self.cancels = 0
        self.cancelling = task.cancelling()
        """Cancellations already requested when the call started (not ours to undo)."""

    def release(self) -> bool:
        """Stop watching; return True when the deadline cut the call off and no one else
        cancelled the task meanwhile (the call then times out; otherwise it is cancelled)."""
        self.watcher.watches.discard(self)
        cancels, self.cancels = self.cancels, 0  # undo our requests once, even if asked again
        remaining = self.task.cancelling()
        for _ in range(cancels):
            remaining = self.task.uncancel()
        return cancels > 0 and remaining <= self.cancelling


class _Watcher:
    """The calls with a deadline running in one event loop, checked by one timer.

    `asyncio.timeout` arms a timer per call and drops it after, which costs about as much as
    the rest of memweave's work on a fast Redis call. Here one timer per loop is armed for the
    earliest deadline: starting a call that ends later (the usual case, as every call of a
    store gets the same timeout) touches no timer at all. When the timer fires, the tasks
    whose deadline passed are cancelled, as `asyncio.timeout` would, then again every
    `_GRACE` seconds (at most `_CANCELS` times) while they have not left the call, and the
    timer is armed again for the next deadline.
    """

    def __init__(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.watches: set[_Watch] = set()
        self._timer: asyncio.TimerHandle | None = None

    def watch(self, task: asyncio.Task[Any], timeout: float) -> _Watch:
        """Start watching `task`, which must be done within `timeout` seconds from now."""
        watch = _Watch(self, task, self.loop.time() + timeout)
        self.watches.add(watch)
        self._arm(watch.deadline)
        return watch

    def _arm(self, when: float) -> None:
        timer = self._timer
        if timer is None or when < timer.when():
            if timer is not None:
                timer.cancel()
            self._timer = self.loop.call_at(when, self._expire)

    def _expire(self) -> None:
        self._timer = None
        now = self.loop.time()
        earliest: float | None = None
        for watch in list(self.watches):
            if watch.deadline <= now:
                if watch.cancels >= _CANCELS:
                    self.watches.discard(watch)  # it ignores cancellation: let it be
                    continue
                watch.cancels += 1
                watch.task.cancel()
                watch.deadline = now + _GRACE
            if earliest is None or watch.deadline < earliest:
                earliest = watch.deadline
        if earliest is not None:
            self._arm(earliest)


_WATCHERS: PerLoop[_Watcher] = PerLoop(_Watcher)


@dataclass(frozen=True, slots=True)
class CallPolicy:
    """How a store runs one storage step: under a time limit, retrying transient failures.

    Args:
        timeout: Seconds the step may take, all attempts included; None for no limit.
        retries: How many times a retryable failure is tried again (0: never).
        scoped: Whether `run` enforces `timeout` itself (cancelling the step when it runs
            out, as `asyncio.timeout` would); False when the store bounds each of its own
            calls (so `timeout` only bounds the retrying).
    """

    timeout: float | None
    retries: int
    scoped: bool = True

    async def run(
        self,
        operation: str,
        mapping: Callable[[], AbstractContextManager[None]],
        call: Callable[[], Awaitable[T]],
        *,
        retry: bool,
        url: str,
    ) -> T:
        """Run `call` under `mapping` (the store's error translation) within `timeout`.

        With `retry`, a retryable failure (see `is_retryable`) is tried again up to
        `retries` times with backoff, within the same time limit; the last failure is raised
        when none is left. A step that runs out of time raises `BackendTimeout` naming
        `operation`, whichever layer noticed (this limit, or a driver's own timeout). The
        first attempt runs directly; tenacity only takes over after a retryable failure.
        """
        watch: _Watch | None = None
        if self.scoped and self.timeout is not None:
            task = asyncio.current_task()
            if task is not None:
                watch = _WATCHERS.get().watch(task, self.timeout)
        try:
            try:
                with mapping():
                    return await call()
            except BackendUnavailable as exc:
                if not (retry and self.retries and is_retryable(exc)):
                    raise
                first = exc
            return await self._retry(operation, mapping, call, first)
        except (asyncio.CancelledError, TimeoutError, MemweaveError) as exc:
            # A driver may turn the cancellation into an error of its own: the deadline
            # still is what ended the step.
            if watch is not None and watch.release() and self.timeout is not None:
                cause = None if isinstance(exc, asyncio.CancelledError) else exc
                raise BackendTimeout(operation, self.timeout, url=url or None) from cause
            if isinstance(exc, BackendTimeout) and exc.operation != operation:
                raise BackendTimeout(operation, exc.timeout, url=url or None) from exc
            raise
        finally:
            if watch is not None:
                watch.release()

    async def _retry(
        self,
        operation: str,
        mapping: Callable[[], AbstractContextManager[None]],
        call: Callable[[], Awaitable[T]],
        first: BaseException,
    ) -> T:
        async def attempt() -> T:
            with mapping():
                return await call()

        stop: stop_base = stop_after_attempt(self.retries + 1)
        if self.timeout is not None:
            stop = stop | stop_after_delay(self.timeout)
        retrying = AsyncRetrying(
            stop=stop,
            wait=BACKOFF,
            retry=retry_if_exception(is_retryable),
            reraise=True,
            before_sleep=_log_retry(operation),
        )
        return await retry_after(first, attempt, retrying)
