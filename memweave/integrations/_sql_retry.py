"""The retry policies of the integrations' SQL storages, on tenacity as
`memweave.providers.sql` has them: table setup racing other processes' DDL, and a transaction
the database aborted to break a deadlock or a serialization conflict."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

from sqlalchemy import exc
from tenacity import (
    AsyncRetrying,
    retry_if_exception,
    stop_after_attempt,
    wait_incrementing,
    wait_random_exponential,
)

from memweave.providers._resilience import retry_after
from memweave.providers._sql_errors import is_conflict, is_denied
from memweave.providers._sql_setup import ATTEMPTS

__all__ = ["rerun_conflicts", "set_up_racing"]

T = TypeVar("T")

_SETUP_WAIT = wait_incrementing(start=0.05, increment=0.05)
_RERUN_WAIT = wait_random_exponential(multiplier=0.01, max=0.5)


def _racing(error: BaseException) -> bool:
    """A database error other than a missing privilege: another process may be creating the
    same tables right now, so looking again may succeed."""
    return isinstance(error, exc.DBAPIError) and not is_denied(error)


async def set_up_racing(create: Callable[[], Awaitable[T]]) -> T:
    """Run `create` (tables made if missing), again after a database error that another
    process's concurrent DDL may cause, up to `ATTEMPTS` tries; then raise the last one."""
    result: T = await AsyncRetrying(
        stop=stop_after_attempt(ATTEMPTS),
        wait=_SETUP_WAIT,
        retry=retry_if_exception(_racing),
        reraise=True,
    )(create)
    return result


async def rerun_conflicts(transaction: Callable[[], Awaitable[T]]) -> T:
    """Run `transaction`, again after the database aborted it to break a deadlock or a
    serialization conflict (nothing of it was applied), up to `ATTEMPTS` tries. The first
    try runs directly: tenacity only takes over after a conflict."""
    try:
        return await transaction()
    except exc.DBAPIError as error:
        if not is_conflict(error):
            raise
        first = error
    retrying = AsyncRetrying(
        stop=stop_after_attempt(ATTEMPTS),
        wait=_RERUN_WAIT,
        retry=retry_if_exception(is_conflict),
        reraise=True,
    )
    return await retry_after(first, transaction, retrying)
