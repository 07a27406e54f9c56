"""The Redis stores' clients and errors: a client per event loop built from a URL with
memweave's time limits (`loop_clients`, `client_from_url`), and the translation of redis-py
exceptions into memweave errors that says which ones a retry may cure (`map_redis_errors`)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from memweave._loops import PerLoop, is_loop_error
from memweave._urls import mask_url
from memweave.errors import (
    BackendTimeout,
    BackendUnavailable,
    ConfigurationError,
    EventLoopMismatch,
    MemweaveError,
)
from memweave.providers._resilience import DEFAULT_RETRIES, DEFAULT_TIMEOUT, resolve_options

try:
    from redis.asyncio import Redis, RedisCluster
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff
    from redis.exceptions import (
        AuthenticationError,
        AuthorizationError,
        ClusterError,
        RedisClusterException,
        RedisError,
        ResponseError,
        SlotNotCoveredError,
    )
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import TimeoutError as RedisTimeoutError
except ImportError as exc:  # pragma: no cover - exercised in a test that hides redis
    from memweave.errors import MissingDependency

    raise MissingDependency("redis", "redis") from exc

__all__ = [
    "DEFAULT_URL",
    "client_from_url",
    "describe",
    "loop_clients",
    "map_redis_errors",
    "socket_timeout",
]

DEFAULT_URL = "redis://localhost:6379/0"

T = TypeVar("T")

_CLUSTER_SCHEMES = {"redis+cluster": "redis", "rediss+cluster": "rediss"}

# Error replies a later attempt may not get: a server loading its data, a cluster moving
# slots, failing over or down, a replica promoted under the client, a busy script.
_TRANSIENT_REPLIES = (
    "LOADING",
    "TRYAGAIN",
    "CLUSTERDOWN",
    "MOVED",
    "ASK",
    "MASTERDOWN",
    "READONLY",
    "BUSY",
    "NOREPLICAS",
)


def client_from_url(url: str, *, timeout: float | None = DEFAULT_TIMEOUT) -> Redis | RedisCluster:
    """A redis-py async client for `url`: `redis://`, `rediss://`, `unix://`, or a cluster
    through any node with `redis+cluster://` / `rediss+cluster://`.

    Its sockets give up after `timeout` seconds (connect and read; a `?timeout=` in the URL
    replaces it, and redis-py's own `socket_timeout`/`socket_connect_timeout` parameters in
    the URL win). A single-server client retries nothing itself: the store retries the calls
    that are safe to repeat, and only those. A cluster client keeps redis-py's handling of
    redirections and topology changes.

    Raises:
        ConfigurationError: `url` is not a Redis URL redis-py accepts (password masked), or
            a bad `timeout`.
    """
    if not isinstance(url, str):
        raise ConfigurationError(f"url must be a str, got {url!r}")
    url, timeout, _ = resolve_options(url, timeout, DEFAULT_RETRIES)
    options: dict[str, Any] = {}
    if timeout is not None:
        options.update(socket_timeout=timeout, socket_connect_timeout=timeout)
    scheme, _, rest = url.partition("://")
    try:
        if scheme.lower() in _CLUSTER_SCHEMES:
            return RedisCluster.from_url(f"{_CLUSTER_SCHEMES[scheme.lower()]}://{rest}", **options)
        client: Redis = Redis.from_url(url, retry=Retry(NoBackoff(), 0), **options)
    except (ValueError, TypeError, RedisError, RedisClusterException) as exc:
        raise ConfigurationError(f"invalid Redis URL {mask_url(url)!r}: {exc}") from exc
    return client


def loop_clients(
    url: str | None,
    client: Redis | RedisCluster | None,
    *,
    owner: str,
    link: Callable[[Redis | RedisCluster], T],
    client_of: Callable[[T], Redis | RedisCluster],
    timeout: float | None = DEFAULT_TIMEOUT,
) -> tuple[PerLoop[T], Redis | RedisCluster]:
    """The clients of a Redis store, per event loop (see `memweave._loops.PerLoop`), and the
    first one (built now, so a bad URL fails at once).

    From a URL, each loop gets a client of its own (see `client_from_url` for `timeout`),
    closed on that loop when it shuts down. A client passed in serves the loop that first
    used it. `link` wraps a client in what the store keeps per loop; `client_of` finds the
    client in it again.

    Raises:
        ConfigurationError: Both or a bad `client`, or a bad URL.
    """
    if client is not None and url is not None:
        raise ConfigurationError("pass either url or client, not both")
    if client is None:
        source = url if url is not None else DEFAULT_URL
        first = client_from_url(source, timeout=timeout)
        spare = [first]

        def make() -> T:
            return link(spare.pop() if spare else client_from_url(source, timeout=timeout))

        async def close(value: T) -> None:
            await client_of(value).aclose()

        return PerLoop(make, close=close), first
    if not isinstance(client, Redis | RedisCluster):
        raise ConfigurationError(
            f"client must be a redis.asyncio Redis or RedisCluster, got {client!r}"
        )
    given = client
    return PerLoop(lambda: link(given), bound=(owner, "the client passed in")), client


def socket_timeout(client: Redis | RedisCluster) -> float | None:
    """The read timeout `client`'s connections were built with (None: none)."""
    if isinstance(client, RedisCluster):
        kwargs = client.nodes_manager.connection_kwargs
    else:
        kwargs = client.connection_pool.connection_kwargs
    value = kwargs.get("socket_timeout")
    return float(value) if isinstance(value, int | float) else None


def describe(client: Redis | RedisCluster) -> str:
    """A password-free URL naming where `client` connects, for error messages."""
    if isinstance(client, RedisCluster):
        nodes = client.get_nodes() or client.nodes_manager.startup_nodes.values()
        node = next(iter(nodes), None)
        return f"redis+cluster://{node.host}:{node.port}" if node else "redis+cluster://"
    kwargs = client.connection_pool.connection_kwargs
    if "path" in kwargs:
        return f"unix://{kwargs['path']}"
    host, port = kwargs.get("host", "localhost"), kwargs.get("port", 6379)
    return f"redis://{host}:{port}/{kwargs.get('db', 0)}"


def _is_transient(error: BaseException) -> bool:
    if isinstance(error, AuthenticationError | AuthorizationError):
        return False
    if isinstance(error, ResponseError):
        return str(error).startswith(_TRANSIENT_REPLIES)
    if isinstance(error, RedisConnectionError | ClusterError | SlotNotCoveredError):
        return True
    # RedisCluster's "cannot be connected" (no startup node reachable) is an outage; its
    # other errors are misuse.
    return isinstance(error, RedisClusterException) and "cannot be connected" in str(error)


@contextlib.contextmanager
def map_redis_errors(
    url: str, *, timeout: float | None, prefix: str, owner: str, bound_to: str
) -> Iterator[None]:
    """Translate redis-py exceptions into memweave errors.

    A failure a retry may cure (a dropped or refused connection, `LOADING`, `TRYAGAIN`,
    `CLUSTERDOWN`, `MOVED`, a failover) is a `BackendUnavailable` with `transient=True`; a
    socket timeout is a `BackendTimeout` with the limit `timeout` (or 0 when unknown); a
    key of another type under the store's namespace (`prefix`) is a `ConfigurationError`.
    """
    try:
        yield
    except MemweaveError:
        raise
    except ResponseError as exc:
        if str(exc).startswith("WRONGTYPE"):
            raise ConfigurationError(
                f"a key under namespace {prefix!r} at {mask_url(url)} holds data memweave did "
                f"not write ({exc}); use another namespace"
            ) from exc
        raise BackendUnavailable(
            f"{type(exc).__name__}: {exc}", url=url, transient=_is_transient(exc)
        ) from exc
    except (RedisTimeoutError, TimeoutError) as exc:
        raise BackendTimeout("a Redis command", timeout or 0.0, url=url) from exc
    except (RedisError, RedisClusterException) as exc:
        raise BackendUnavailable(
            f"{type(exc).__name__}: {exc}", url=url, transient=_is_transient(exc)
        ) from exc
    except RuntimeError as exc:
        if is_loop_error(exc):
            # A client passed in after the caller used it in another loop.
            raise EventLoopMismatch(owner, bound_to) from exc
        raise
