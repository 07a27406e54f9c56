"""Which backend an integration's storage runs on, from the `url` or `client=` it was given.

The integrations' storages (the LangGraph saver and store, Agent Framework checkpoint
storage) run on SQL or Redis; their stored names come from `namespace=` through
`memweave.providers._namespace.StoredNames`.
"""

from __future__ import annotations

from typing import Literal

from memweave._urls import mask_url
from memweave.errors import ConfigurationError

__all__ = ["backend_kind", "required_backend"]

_SQL_SCHEMES = frozenset({"sqlite", "postgresql", "postgres", "mysql", "mariadb"})
_REDIS_SCHEMES = frozenset({"redis", "rediss", "unix", "redis+cluster", "rediss+cluster"})


def backend_kind(url: str | None, client: object) -> Literal["sql", "redis"] | None:
    """Which backend a storage's `url` or `client` is for: `"sql"` for a SQLAlchemy URL or
    `AsyncEngine`, `"redis"` for a Redis URL or any other client; None for neither, or a URL
    of another scheme.

    Raises:
        ConfigurationError: Both `url` and `client`, or a `url` that is not a URL.
    """
    if url is not None and client is not None:
        raise ConfigurationError("pass one of url and client=, not both")
    if client is not None:
        from sqlalchemy.ext.asyncio import AsyncEngine

        return "sql" if isinstance(client, AsyncEngine) else "redis"
    if url is None:
        return None
    if not isinstance(url, str) or "://" not in url:
        raise ConfigurationError(f"not a URL: {url!r}; expected <scheme>://...")
    scheme = url.split("://", 1)[0].lower()
    if scheme in _REDIS_SCHEMES:
        return "redis"
    if scheme.split("+", 1)[0] in _SQL_SCHEMES:
        return "sql"
    return None


def required_backend(owner: str, url: str | None, client: object) -> Literal["sql", "redis"]:
    """As `backend_kind`, for a storage that needs a `url` or `client` naming SQL or Redis.

    Raises:
        ConfigurationError: Neither or both given, or a URL of another backend.
    """
    kind = backend_kind(url, client)
    if kind is not None:
        return kind
    if url is None:
        raise ConfigurationError(f"{owner} needs a url or client=")
    raise ConfigurationError(
        f"{owner} has no backend for {mask_url(url)!r}; use a SQLAlchemy URL "
        "(sqlite+aiosqlite://, postgresql+asyncpg://, mysql+aiomysql://) or redis://"
    )
