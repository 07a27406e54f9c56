"""`from_url`: build the right history backend from a URL."""

from __future__ import annotations

import importlib
import inspect
from typing import Any
from urllib.parse import urlsplit

from memweave._urls import mask_url
from memweave.errors import ConfigurationError
from memweave.providers._resilience import DEFAULT_RETRIES, DEFAULT_TIMEOUT, resolve_options
from memweave.providers.base import ChatHistoryProvider

__all__ = ["SUPPORTED_SCHEMES", "backend_options", "from_url"]

# scheme -> (module, class name); modules are imported only when their scheme is used, so a
# missing optional driver only matters to users of that backend.
_BACKENDS: dict[str, tuple[str, str]] = {
    "memory": ("memweave.providers.memory", "InMemoryChatHistoryProvider"),
    "sqlite": ("memweave.providers.sql", "SQLChatHistoryProvider"),
    "sqlite+aiosqlite": ("memweave.providers.sql", "SQLChatHistoryProvider"),
    "postgresql": ("memweave.providers.sql", "SQLChatHistoryProvider"),
    "postgresql+asyncpg": ("memweave.providers.sql", "SQLChatHistoryProvider"),
    "mysql": ("memweave.providers.sql", "SQLChatHistoryProvider"),
    "mysql+aiomysql": ("memweave.providers.sql", "SQLChatHistoryProvider"),
    "mariadb+aiomysql": ("memweave.providers.sql", "SQLChatHistoryProvider"),
    "redis": ("memweave.providers.redis", "RedisChatHistoryProvider"),
    "rediss": ("memweave.providers.redis", "RedisChatHistoryProvider"),
    "unix": ("memweave.providers.redis", "RedisChatHistoryProvider"),
    "redis+cluster": ("memweave.providers.redis", "RedisChatHistoryProvider"),
    "rediss+cluster": ("memweave.providers.redis", "RedisChatHistoryProvider"),
    "chroma": ("memweave.providers.chroma", "ChromaChatHistoryProvider"),
    "chroma+http": ("memweave.providers.chroma", "ChromaChatHistoryProvider"),
    "chroma+https": ("memweave.providers.chroma", "ChromaChatHistoryProvider"),
}

SUPPORTED_SCHEMES: tuple[str, ...] = tuple(_BACKENDS)
"""URL schemes `from_url` understands."""

_RENAMED = frozenset({"prefix", "table_prefix", "collection", "engine"})
"""Deprecated option names (of `namespace` and `client`): still taken, never suggested."""


def from_url(url: str, **options: Any) -> ChatHistoryProvider:
    """Build the history backend that `url` names; `options` go to its constructor.

    | URL | backend |
    |---|---|
    | `memory://` | `InMemoryChatHistoryProvider` |
    | `sqlite+aiosqlite:///chat.db` | `SQLChatHistoryProvider` on a SQLite file |
    | `postgresql+asyncpg://user:pw@host/db` | `SQLChatHistoryProvider` on PostgreSQL |
    | `mysql+aiomysql://user:pw@host/db` | `SQLChatHistoryProvider` on MariaDB/MySQL |
    | `redis://host:6379/0`, `rediss://...` | `RedisChatHistoryProvider` |
    | `redis+cluster://host:7000` | `RedisChatHistoryProvider` on a Redis Cluster |
    | `chroma:///path`, `chroma+http://host:8000` | `ChromaChatHistoryProvider` |

    Every backend takes `namespace=` (the name its data lives under, so several applications
    share one server; default `memweave`). Every scheme also takes the options `timeout` and
    `retries` as query parameters
    (`?timeout=2.5&retries=0`, `?timeout=none` for no limit); they are taken out of the URL
    before the driver sees it. A value in the URL replaces the option's default; giving one
    both ways with different values is a `ConfigurationError`.

    Example:
        ```python
        history = from_url("sqlite+aiosqlite:///chat.db", max_messages=500)
        history = from_url("redis://localhost:6379/0?timeout=2.5&retries=0")
        ```

    Raises:
        ConfigurationError: The URL cannot be parsed, its scheme is unknown (the message
            lists the supported ones), or an option is not one the backend takes (the message
            lists those it takes).
        MissingDependency: The backend's optional driver is not installed.
    """
    if not isinstance(url, str) or "://" not in url:
        raise ConfigurationError(
            f"not a URL: {mask_url(url) if isinstance(url, str) else url!r}; "
            f"expected <scheme>://..., with scheme one of: {', '.join(SUPPORTED_SCHEMES)}"
        )
    try:
        urlsplit(url).port  # noqa: B018 - parses host and port, which a backend would do later
    except ValueError as exc:
        raise ConfigurationError(f"cannot parse URL {mask_url(url)!r}: {exc}") from None
    scheme = url.split("://", 1)[0].lower()
    target = _BACKENDS.get(scheme)
    if target is None:
        raise ConfigurationError(
            f"unsupported URL scheme {scheme!r} in {mask_url(url)!r}; "
            f"supported: {', '.join(SUPPORTED_SCHEMES)}"
        )
    module_name, class_name = target
    backend: type[ChatHistoryProvider] = getattr(importlib.import_module(module_name), class_name)
    accepted = backend_options(backend)
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        current = [name for name in accepted if name not in _RENAMED]
        raise ConfigurationError(
            f"{class_name} does not take option(s) {', '.join(map(repr, unknown))} "
            f"(from_url({mask_url(url)!r}, ...)); it takes: {', '.join(current)}"
        )
    if scheme == "memory":
        # No driver reads this URL, so its `timeout`/`retries` are settled here.
        _, timeout, retries = resolve_options(
            url,
            options.pop("timeout", DEFAULT_TIMEOUT),
            options.pop("retries", DEFAULT_RETRIES),
        )
        return backend(timeout=timeout, retries=retries, **options)
    return backend(url, **options)  # type: ignore[call-arg,arg-type]


def backend_options(backend: type[ChatHistoryProvider]) -> list[str]:
    """The keyword options `backend`'s constructor takes besides the URL, in order."""
    parameters = inspect.signature(backend.__init__).parameters.values()
    return [
        p.name
        for p in parameters
        if p.kind is inspect.Parameter.KEYWORD_ONLY
        or (p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD and p.name not in ("self", "url"))
    ]
