"""`diagnose`: read the settings of a history backend's server that can lose or corrupt data.

The checks themselves live in one module per backend family (`_diagnose_redis`,
`_diagnose_sql`, `_diagnose_sqlite`, `_diagnose_chroma`); this module holds the result types
and picks the module a URL or a client belongs to. Every check only reads: nothing is
written, created or changed on the server or on disk.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, computed_field

from memweave._deprecation import renamed_argument
from memweave._urls import mask_url
from memweave.errors import BackendTimeout, BackendUnavailable, ConfigurationError
from memweave.providers._namespace import sql_names

__all__ = ["Concern", "Diagnosis", "Finding", "Severity", "diagnose"]

Severity = Literal["error", "warning", "info"]
"""How bad a finding is: `"error"`, the setting loses or corrupts data in normal operation
(a restart, a full memory, an emoji); `"warning"`, it loses data in rarer cases (a crash, a
power loss), or a setting could not be read; `"info"`, a limit or trade-off worth knowing."""

Concern = Literal["durability", "eviction", "encoding", "size", "access", "unchecked"]
"""What a finding is about: surviving crashes and restarts, keys evicted for memory, text
stored exactly, how large a message may be, whether memweave can write at all, or a setting
that could not be read."""

_PROBLEMS: frozenset[Severity] = frozenset({"error", "warning"})


class Finding(BaseModel):
    """One server setting (or property of the store) that puts stored conversations at risk."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    severity: Severity
    """How bad it is (see `Severity`)."""
    concern: Concern
    """What it is about (see `Concern`)."""
    setting: str
    """The setting as the server names it (`maxmemory-policy`, `fsync`, `journal_mode`)."""
    found: str
    """The value found, as the server shows it."""
    where: str | None = None
    """The node, table or column it was found on, when the backend has several."""
    why: str
    """What can happen to stored conversations because of it."""
    fix: str
    """How to change it."""


class Diagnosis(BaseModel):
    """What `diagnose` found on one backend."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    url: str
    """The backend's URL, with any password masked."""
    backend: str
    """`"redis"`, `"redis-cluster"`, `"postgresql"`, `"mysql"`, `"mariadb"`, `"sqlite"`,
    `"chroma"`, `"chroma-server"` or `"memory"`."""
    server: str | None = None
    """The server's version, when it has one."""
    findings: tuple[Finding, ...] = ()
    """Every finding, most severe first."""

    @computed_field  # type: ignore[prop-decorator]
    @property
    def ok(self) -> bool:
        """True when no finding is an error or a warning (notes of severity `"info"` may
        remain)."""
        return not any(finding.severity in _PROBLEMS for finding in self.findings)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def durable(self) -> bool:
        """True when no error or warning says that an acknowledged write can be lost (to a
        restart, a crash, a power loss or eviction) and nothing needed to say so went unread.

        This replaces a static `durable` capability: whether a Redis, SQL or Chroma store
        keeps what it acknowledged depends on the server's settings, not on the backend."""
        risky = {"durability", "eviction", "unchecked"}
        return not any(
            finding.severity in _PROBLEMS and finding.concern in risky for finding in self.findings
        )


_ORDER: dict[Severity, int] = {"error": 0, "warning": 1, "info": 2}


def make_diagnosis(
    url: str, backend: str, findings: list[Finding], *, server: str | None = None
) -> Diagnosis:
    """A `Diagnosis` with its findings sorted most severe first (stable otherwise)."""
    ordered = sorted(findings, key=lambda finding: _ORDER[finding.severity])
    return Diagnosis(url=mask_url(url), backend=backend, server=server, findings=tuple(ordered))


_SCHEMES: dict[str, str] = {
    "memory": "memory",
    "sqlite": "sqlite",
    "sqlite+aiosqlite": "sqlite",
    "postgresql": "sql",
    "postgresql+asyncpg": "sql",
    "mysql": "sql",
    "mysql+aiomysql": "sql",
    "mariadb+aiomysql": "sql",
    "redis": "redis",
    "rediss": "redis",
    "unix": "redis",
    "redis+cluster": "redis",
    "rediss+cluster": "redis",
    "chroma": "chroma",
    "chroma+http": "chroma",
    "chroma+https": "chroma",
}


async def diagnose(
    url: str | None = None,
    *,
    client: Any = None,
    namespace: str | None = None,
    timeout: float = 15.0,  # noqa: ASYNC109 - a finite default, raised as BackendTimeout
    table_prefix: str | None = None,
) -> Diagnosis:
    """Read the settings of the backend `url` (or `client`) names that can lose or corrupt
    stored conversations, and say how to fix each.

    Only reads: nothing is written, created or changed. What is checked:

    - Redis (every master of a Cluster): persistence off or snapshots only, `appendfsync`,
      a `maxmemory-policy` that can evict history keys, a failed last save; in a Cluster,
      masters without replicas. A refused `CONFIG GET` (managed Redis) is a finding that says
      what could not be checked.
    - PostgreSQL: `fsync`, `full_page_writes`, `synchronous_commit` (as this connection sees
      it), the database encoding, memweave's tables being `UNLOGGED`.
    - MariaDB/MySQL: the connection, server, database, table and column character sets (all
      utf8mb4; id columns binary and NO PAD), storage engines, `innodb_flush_log_at_trx_commit`,
      `sync_binlog`, and `max_allowed_packet` (the largest message that fits).
    - SQLite: an in-memory database, the journal mode, `synchronous`, a file or folder
      memweave cannot write, a file on a RAM-backed filesystem.
    - Chroma: an embedded folder on a RAM-backed filesystem or not writable; a server is only
      checked to answer (its persistence cannot be read from a client).

    Example:
        ```python
        diagnosis = await diagnose("redis://localhost:6379/0")
        for finding in diagnosis.findings:
            print(finding.severity, finding.setting, finding.found, finding.fix)
        ```

    Args:
        url: A URL `from_url` understands.
        client: Instead of `url`, the client a provider was given: a redis-py async `Redis`
            or `RedisCluster`, or a SQLAlchemy `AsyncEngine` (its connection settings, e.g.
            a `synchronous_commit` it sets, are then what is checked).
        namespace: The SQL provider's namespace, whose tables (`<namespace>_messages`, ...)
            are checked (default `memweave`).
        timeout: Seconds the whole check may take.
        table_prefix: Deprecated: the exact start of the table names (`app_` for
            `app_messages`); use `namespace`. Goes in 0.3.

    Returns:
        The findings, most severe first; `Diagnosis.ok` is True when none is an error or a
        warning.

    Raises:
        BackendUnavailable: The server could not be reached (`BackendTimeout` when it did
            not answer within `timeout`).
        ConfigurationError: Neither or both of `url` and `client` were given, the URL or
            client is not one memweave knows, the namespace is invalid, or both
            `namespace` and `table_prefix` were given.
        MissingDependency: The backend's optional driver is not installed.
    """
    renamed_argument("diagnose()", "table_prefix", table_prefix, "namespace", namespace)
    run = _pick(url, client, _SQLNames(namespace, table_prefix))
    shown = url if url is not None else f"<{type(client).__name__}>"
    try:
        async with asyncio.timeout(timeout):
            return await run()
    except BackendUnavailable:
        raise
    except TimeoutError:
        raise BackendTimeout("diagnose", timeout, url=shown) from None


@dataclass(frozen=True, slots=True)
class _SQLNames:
    """The `namespace` (or deprecated `table_prefix`) diagnose was given; checked only for a
    SQL backend, since other backends' checks read no table."""

    namespace: str | None
    table_prefix: str | None

    def prefix(self) -> str:
        """The start of the table names to check.

        Raises:
            ConfigurationError: The namespace or table prefix is not valid for SQL.
        """
        return sql_names(self.namespace, self.table_prefix, owner="diagnose()")[1]


def _pick(url: str | None, client: Any, names: _SQLNames) -> Callable[[], Awaitable[Diagnosis]]:
    """The check to run for `url` or `client`, chosen before anything connects."""
    if (url is None) == (client is None):
        raise ConfigurationError("pass either url or client to diagnose(), not both or neither")
    if url is not None:
        if not isinstance(url, str) or "://" not in url:
            raise ConfigurationError(f"not a backend URL: {url!r}")
        scheme = url.split("://", 1)[0].lower()
        family = _SCHEMES.get(scheme)
        if family is None:
            raise ConfigurationError(
                f"unsupported URL scheme {scheme!r} in {mask_url(url)!r}; "
                f"supported: {', '.join(_SCHEMES)}"
            )
        return _by_url(family, url, names)
    return _by_client(client, names)


def _by_url(family: str, url: str, names: _SQLNames) -> Callable[[], Awaitable[Diagnosis]]:
    if family == "memory":
        return lambda: _memory(url)
    if family == "sqlite":
        from memweave.providers._diagnose_sqlite import diagnose_sqlite_url

        sqlite_prefix = names.prefix()
        return lambda: diagnose_sqlite_url(url, sqlite_prefix)
    if family == "sql":
        from memweave.providers._diagnose_sql import diagnose_sql_url

        sql_prefix = names.prefix()
        return lambda: diagnose_sql_url(url, sql_prefix)
    if family == "redis":
        from memweave.providers._diagnose_redis import diagnose_redis_url

        return lambda: diagnose_redis_url(url)
    from memweave.providers._diagnose_chroma import diagnose_chroma_url

    return lambda: diagnose_chroma_url(url)


def _by_client(client: Any, names: _SQLNames) -> Callable[[], Awaitable[Diagnosis]]:
    from sqlalchemy.ext.asyncio import AsyncEngine

    if isinstance(client, AsyncEngine):
        from memweave.providers._diagnose_sql import diagnose_engine

        prefix = names.prefix()
        return lambda: diagnose_engine(client, prefix)
    try:
        from redis.asyncio import Redis, RedisCluster
    except ImportError:
        pass
    else:
        if isinstance(client, Redis | RedisCluster):
            from memweave.providers._diagnose_redis import diagnose_redis_client

            return lambda: diagnose_redis_client(client)
    raise ConfigurationError(
        "diagnose(client=...) takes a redis-py async Redis or RedisCluster or a SQLAlchemy "
        f"AsyncEngine, got {type(client).__name__}"
    )


async def _memory(url: str) -> Diagnosis:
    finding = Finding(
        severity="warning",
        concern="durability",
        setting="backend",
        found="in-memory",
        why="the history lives in the provider object: it ends with the process and other "
        "processes never see it",
        fix="use a SQLite file (sqlite+aiosqlite:///chat.db) or a server backend for "
        "history that must outlive the process",
    )
    return make_diagnosis(url, "memory", [finding])
