"""`namespace=` and `client=` of the integrations' storages: one name each on every backend,
resolved to the backend and to what it stores (key, table and collection names).

A namespace keeps several storages apart on one server. Namespace `N` stands for the Redis
key prefix `N`, the SQL table prefix `N_` and, for vectors, the Chroma collection `N_store`,
so the default namespace `"memweave"` names exactly what the storages always stored. The
deprecated options it replaced (`prefix=`, `table_prefix=`, `collection=`) still name one
backend's stored names as given, until memweave 0.3.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from memweave._urls import mask_url
from memweave.errors import ConfigurationError

__all__ = ["DEFAULT_NAMESPACE", "Namespace", "backend_kind", "required_backend"]

DEFAULT_NAMESPACE = "memweave"
"""The namespace of a storage given none: the key, table and collection names memweave's
storages have always used."""

_REDIS_UNSAFE = re.compile(r"[{}\x00-\x20\x7f]")
_SQL_SAFE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,30}")
_CHROMA_SAFE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,505}")
_SQL_SCHEMES = frozenset({"sqlite", "postgresql", "postgres", "mysql", "mariadb"})
_REDIS_SCHEMES = frozenset({"redis", "rediss", "unix", "redis+cluster", "rediss+cluster"})


@dataclass(frozen=True, slots=True)
class Namespace:
    """A storage's namespace, and the deprecated stored names given instead of it.

    Args:
        name: The namespace (`DEFAULT_NAMESPACE` when None).
        prefix: The deprecated Redis key prefix, used as given.
        table_prefix: The deprecated SQL table prefix, used as given.
        collection: The deprecated Chroma collection name, used as given.

    Raises:
        ConfigurationError: `name` is not a non-empty str.
    """

    name: str | None = None
    prefix: str | None = None
    table_prefix: str | None = None
    collection: str | None = None

    def __post_init__(self) -> None:
        if self.name is not None and (not isinstance(self.name, str) or not self.name):
            raise ConfigurationError(f"namespace must be a non-empty str, got {self.name!r}")

    @property
    def _name(self) -> str:
        return self.name if self.name is not None else DEFAULT_NAMESPACE

    def redis_prefix(self) -> str:
        """The first part of every Redis key name: the namespace itself.

        Raises:
            ConfigurationError: The namespace holds a brace (which would change the cluster
                hash tag), a space or a control character.
        """
        return self._stored(
            self.prefix,
            self._name,
            not _REDIS_UNSAFE.search(self._name),
            "must hold no braces, spaces or control characters to name Redis keys (braces "
            "would change the cluster hash tag)",
        )

    def sql_prefix(self) -> str:
        """The first part of every SQL table name: the namespace and an underscore.

        Raises:
            ConfigurationError: The namespace is not 1-31 ASCII letters, digits or
                underscores, not starting with a digit.
        """
        return self._stored(
            self.table_prefix,
            f"{self._name}_",
            _SQL_SAFE.fullmatch(self._name) is not None,
            "must be 1-31 ASCII letters, digits or underscores, not starting with a digit, "
            "to name SQL tables",
        )

    def chroma_collection(self, role: str) -> str:
        """The Chroma collection of the storage's `role` (e.g. `"store"`): `<namespace>_<role>`.

        Raises:
            ConfigurationError: The namespace is not up to 506 of `[A-Za-z0-9._-]`, starting
                with a letter or digit.
        """
        return self._stored(
            self.collection,
            f"{self._name}_{role}",
            _CHROMA_SAFE.fullmatch(self._name) is not None,
            "must be up to 506 characters of [A-Za-z0-9._-], starting with a letter or digit, "
            "to name a Chroma collection",
        )

    def _stored(self, given: str | None, derived: str, fits: bool, rule: str) -> str:
        """The deprecated name `given` as it is, else the name `derived` from the namespace,
        which must keep `rule` (`fits`)."""
        if given is not None:
            return given
        if not fits:
            raise ConfigurationError(f"namespace {rule}, got {self._name!r}")
        return derived


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
