"""How the SQL stores tell database failures apart: which ones a retry may cure (and which of
those left the transaction certainly unapplied), which are a timeout, a missing privilege or
a schema problem; and how they become memweave errors (`map_sql_errors`)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from sqlalchemy import exc

from memweave._loops import is_loop_error
from memweave.errors import (
    BackendTimeout,
    BackendUnavailable,
    ConfigurationError,
    EventLoopMismatch,
    MemweaveError,
)

__all__ = ["is_conflict", "is_denied", "is_lost", "map_sql_errors", "reason"]

# SQLSTATEs: serialization failure, deadlock.
_CONFLICT_STATES = frozenset({"40001", "40P01"})
# SQLSTATEs a later attempt may not meet: the connection failed, the server is shutting down
# or starting, has too many connections, or a lock was not granted in time.
_TRANSIENT_STATES = frozenset(
    {"08000", "08001", "08003", "08004", "08006", "08007", "57P01", "57P02", "57P03", "53300"}
    | {"55P03"}
)
# MySQL/MariaDB: ER_LOCK_DEADLOCK, ER_WARN_I_S_SKIPPED_TABLE (concurrent DDL).
_MYSQL_CONFLICTS = frozenset({1213, 1684})
# MySQL/MariaDB: too many connections, server shutdown, lock wait timeout, connection killed,
# can't connect (socket, TCP), server gone away, lost connection (also mid-query and at
# the handshake), disconnected for inactivity.
_MYSQL_TRANSIENT = frozenset({1040, 1053, 1205, 1927, 2002, 2003, 2006, 2013, 2055, 4031})
_SQLITE_LOCKED = "database is locked"


def _code(error: exc.DBAPIError) -> object:
    args: tuple[object, ...] = getattr(error.orig, "args", ())
    return args[0] if args else None


def is_conflict(error: BaseException | None) -> bool:
    """The database aborted the transaction to break a deadlock or a serialization conflict
    (or MariaDB met concurrent DDL): nothing of it was applied, and it may be rerun."""
    if not isinstance(error, exc.DBAPIError):
        return False
    if getattr(error.orig, "sqlstate", None) in _CONFLICT_STATES:
        return True
    return _code(error) in _MYSQL_CONFLICTS


def is_lost(error: BaseException | None) -> bool:
    """The connection failed, could not be made, or the server was unavailable (a later
    attempt, on a new connection, may succeed)."""
    if isinstance(error, ConnectionError):
        return True
    if not isinstance(error, exc.DBAPIError):
        return isinstance(error, OSError) and not isinstance(error, TimeoutError)
    if error.connection_invalidated:
        return True
    if getattr(error.orig, "sqlstate", None) in _TRANSIENT_STATES:
        return True
    return _code(error) in _MYSQL_TRANSIENT


def is_denied(error: exc.DBAPIError) -> bool:
    """The database refused a statement for lack of a privilege (or a read-only file)."""
    orig = error.orig
    if getattr(orig, "sqlstate", None) == "42501":
        return True
    if _code(error) in (1142, 1143, 1044, 1227):  # MySQL/MariaDB access denied
        return True
    return "readonly database" in str(orig)


def reason(error: BaseException) -> str:
    """The driver's own message, kept short: SQLAlchemy's also quotes the statement and its
    parameters, which may be a megabyte of message text."""
    text = f"{type(error).__name__}: {error}"
    return text if len(text) <= 500 else text[:497] + "..."


@contextlib.contextmanager
def map_sql_errors(
    url: str, *, statement_limit: float, bound_to: str, owner: str, schema_hint: str
) -> Iterator[None]:
    """Translate SQLAlchemy and driver exceptions into memweave errors.

    A failure a retry may cure is a `BackendUnavailable` with `transient=True`; a driver's
    timeout (asyncpg's command timeout, SQLite's busy timeout, the pool's wait) is a
    `BackendTimeout` with the limit; a missing privilege or missing tables are a
    `ConfigurationError` (`schema_hint` says which tables).

    Args:
        url: The store's URL without password, for errors.
        statement_limit: The driver's statement limit in seconds, for timeout errors.
        bound_to: What ties the store to one event loop (see `Engines.bound_to`).
        owner: The store's class name.
        schema_hint: How to describe the store's tables in a schema error.
    """
    try:
        yield
    except MemweaveError:
        raise
    except exc.DBAPIError as error:
        orig = error.orig if error.orig is not None else error
        text = reason(orig)
        if is_denied(error):
            raise ConfigurationError(
                f"the database user of {url} may not do this (a role that may only "
                f"SELECT can list and read, not write): {text}"
            ) from error
        if _SQLITE_LOCKED in text:
            raise BackendTimeout(
                "waiting for SQLite's write lock", statement_limit, url=url
            ) from error
        if (
            isinstance(error, exc.ProgrammingError)
            or "no such table" in text
            or ("no such index" in text)
        ):
            raise ConfigurationError(f"{schema_hint}: {text}") from error
        transient = is_conflict(error) or is_lost(error)
        raise BackendUnavailable(text, url=url, transient=transient) from error
    except exc.TimeoutError as error:
        # The pool had no free connection within `pool_timeout`.
        raise BackendTimeout(
            "waiting for a free pooled connection", statement_limit, url=url
        ) from error
    except TimeoutError as error:
        # asyncpg's command timeout, raised bare (it says nothing of its own).
        raise BackendTimeout("a SQL statement", statement_limit, url=url) from error
    except (exc.SQLAlchemyError, OSError) as error:
        raise BackendUnavailable(reason(error), url=url, transient=is_lost(error)) from error
    except RuntimeError as error:
        if is_loop_error(error):
            # An engine passed in after the caller used it in another loop.
            raise EventLoopMismatch(owner, bound_to) from error
        raise
