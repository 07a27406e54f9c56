"""The SQL storages' retry policies: a deadlock is rerun, boundedly; other errors are not."""

from __future__ import annotations

import pytest
from sqlalchemy import exc

from memweave.integrations._sql_retry import rerun_conflicts, set_up_racing
from memweave.providers._sql_setup import ATTEMPTS


class _DriverError(Exception):
    """A driver error carrying a SQLSTATE, as asyncpg's do."""

    def __init__(self, sqlstate: str) -> None:
        super().__init__(f"sqlstate {sqlstate}")
        self.sqlstate = sqlstate


def _error(sqlstate: str) -> exc.DBAPIError:
    return exc.OperationalError("UPDATE t", None, _DriverError(sqlstate))


class _Flaky:
    """Fails with `errors` in turn, then returns the number of calls."""

    def __init__(self, *errors: BaseException) -> None:
        self.errors = list(errors)
        self.calls = 0

    async def __call__(self) -> int:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return self.calls


async def test_rerun_conflicts_reruns_a_deadlocked_transaction() -> None:
    """A transaction aborted by a deadlock (SQLSTATE 40P01) is run again until it commits."""
    work = _Flaky(_error("40P01"), _error("40001"))
    assert await rerun_conflicts(work) == 3


async def test_rerun_conflicts_gives_up_after_the_attempts() -> None:
    """Conflicts on every try raise the last one after `ATTEMPTS` tries."""
    work = _Flaky(*(_error("40P01") for _ in range(ATTEMPTS + 1)))
    with pytest.raises(exc.OperationalError):
        await rerun_conflicts(work)
    assert work.calls == ATTEMPTS


async def test_rerun_conflicts_raises_other_errors_at_once() -> None:
    """An error that is not a conflict (a unique violation) is raised without a rerun."""
    work = _Flaky(_error("23505"))
    with pytest.raises(exc.OperationalError):
        await rerun_conflicts(work)
    assert work.calls == 1


async def test_set_up_racing_looks_again_but_not_without_a_privilege() -> None:
    """Setup racing another process's DDL is tried again; a missing privilege is not."""
    racing = _Flaky(_error("42P07"))
    assert await set_up_racing(racing) == 2
    denied = _Flaky(_error("42501"))
    with pytest.raises(exc.OperationalError):
        await set_up_racing(denied)
    assert denied.calls == 1
