"""Opening Chroma: the embedded folder lock one process holds, `chroma://` URL parsing, the
client a URL names, a time limit on an HTTP client's requests, and the translation of
Chroma's errors."""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from memweave._urls import mask_url
from memweave.errors import (
    BackendTimeout,
    BackendUnavailable,
    ConfigurationError,
    MemweaveError,
    MissingDependency,
)

__all__ = [
    "DEFAULT_MAX_BATCH",
    "ClientMaker",
    "EmbeddedChroma",
    "client_maker",
    "get_or_create_collection",
    "limit_requests",
    "map_chroma_errors",
    "max_batch_of",
    "parse_chroma_url",
]

ClientMaker = Callable[[], tuple[Any, Callable[[], None] | None]]
"""Makes a Chroma client; returns it and what closes it (None: nothing to close)."""

DEFAULT_MAX_BATCH = 5_461
"""Records per Chroma write when the client does not say (embedded Chroma's own limit)."""

# HTTP statuses a Chroma server answers when a later attempt may succeed.
_TRANSIENT_STATUSES = frozenset({429, 502, 503, 504})

_HELD: dict[str, list[int]] = {}  # folder -> [lock file descriptor, open handles]
_HELD_GUARD = threading.Lock()


class EmbeddedChroma:
    """An embedded Chroma (`chromadb.PersistentClient`) on a folder this process holds.

    Embedded Chroma is one process's store: two processes writing one folder lose data, and a
    process reading what another wrote may see a stale copy. So while any handle on a folder
    is open, this process holds an exclusive lock on `<folder>/memweave.lock`, and another
    process asking for the folder gets a `ConfigurationError` saying to run a Chroma server
    instead. Handles in one process share the folder; when the last one closes, Chroma's
    client is closed (which stops its cached copy) and the lock is released, so another
    process may take the folder over.

    Args:
        path: The folder (created if missing).
        tenant: Chroma tenant; Chroma's default when None.
        database: Chroma database; Chroma's default when None.

    Raises:
        ConfigurationError: Another process holds the folder.
        MissingDependency: chromadb is not installed.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        tenant: str | None = None,
        database: str | None = None,
    ) -> None:
        try:
            import chromadb
            from chromadb.config import DEFAULT_DATABASE, DEFAULT_TENANT
        except ImportError as exc:
            raise MissingDependency("chromadb", "chroma") from exc
        self.folder = os.path.realpath(os.fspath(path))
        with _HELD_GUARD:
            held = _HELD.get(self.folder)
            if held is None:
                os.makedirs(self.folder, exist_ok=True)
                held = _HELD[self.folder] = [_lock_folder(self.folder), 0]
            held[1] += 1
        self._open = True
        try:
            self.client: Any = chromadb.PersistentClient(
                self.folder,
                tenant=tenant or DEFAULT_TENANT,
                database=database or DEFAULT_DATABASE,
            )
            """The Chroma client."""
        except BaseException:
            self._release()
            raise

    def close(self) -> None:
        """Close the client and, with the process's last handle on the folder, release it.
        Idempotent."""
        if not self._open:
            return
        try:
            self.client.close()
        finally:
            self._release()

    def _release(self) -> None:
        self._open = False
        with _HELD_GUARD:
            held = _HELD[self.folder]
            held[1] -= 1
            if held[1] == 0:
                del _HELD[self.folder]
                os.close(held[0])  # closing the descriptor drops its lock


def _lock_folder(folder: str) -> int:
    descriptor = os.open(os.path.join(folder, "memweave.lock"), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        import fcntl
    except ImportError:  # not POSIX: no advisory locks; the rule is only documented there
        return descriptor
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        os.close(descriptor)
        raise ConfigurationError(
            f"the embedded Chroma folder {folder!r} is in use by another process; embedded "
            f"Chroma serves one process, so share it through a Chroma server (`chroma run "
            f"--path {folder}`, then chroma+http://host:port)"
        ) from exc
    return descriptor


def parse_chroma_url(url: str) -> tuple[str, dict[str, Any]]:
    """`chroma:///path` -> ("path", {...}); `chroma+http(s)://host:port` -> ("http", {...})."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise ConfigurationError(f"invalid Chroma URL {mask_url(url)!r}: {exc}") from exc
    query = {key: values[-1] for key, values in parse_qs(parts.query).items()}
    unknown = sorted(set(query) - {"namespace", "collection", "tenant", "database"})
    if unknown:
        raise ConfigurationError(
            f"unknown option {unknown[0]!r} in Chroma URL {mask_url(url)!r}; "
            "known: namespace, tenant, database"
        )
    scheme = parts.scheme.lower()
    if scheme == "chroma":
        path = (parts.netloc + parts.path) if parts.netloc else parts.path
        if not path:
            raise ConfigurationError(f"Chroma URL {mask_url(url)!r} names no folder")
        return "path", {"path": path, **query}
    if scheme in ("chroma+http", "chroma+https"):
        if not parts.hostname:
            raise ConfigurationError(f"Chroma URL {mask_url(url)!r} names no host")
        return "http", {
            "host": parts.hostname,
            "port": port or 8000,
            "ssl": scheme == "chroma+https",
            **query,
        }
    raise ConfigurationError(
        f"not a Chroma URL: {mask_url(url)!r}; expected chroma:///path or chroma+http://host:port"
    )


def client_maker(
    url: str | None, folder: Path | None, *, timeout: float | None
) -> tuple[dict[str, Any], ClientMaker]:
    """The options left in `url`'s query (`namespace`, `collection`) and what makes the
    client `url` names; or, with no `url`, an embedded Chroma on `folder`, used as it is
    (no URL syntax).

    Raises:
        ConfigurationError: A bad URL.
    """
    import chromadb
    from chromadb.config import DEFAULT_DATABASE, DEFAULT_TENANT

    options: dict[str, Any]
    if url is None:
        kind, options = "path", {"path": folder}
    else:
        kind, options = parse_chroma_url(url)
    tenant = options.pop("tenant", DEFAULT_TENANT)
    database = options.pop("database", DEFAULT_DATABASE)
    if kind == "path":
        path = os.fspath(options.pop("path"))

        def embedded() -> tuple[Any, Callable[[], None] | None]:
            made = EmbeddedChroma(path, tenant=tenant, database=database)
            return made.client, made.close

        return options, embedded
    host, port, ssl = options.pop("host"), options.pop("port"), options.pop("ssl")

    def server() -> tuple[Any, Callable[[], None] | None]:
        made: Any = chromadb.HttpClient(
            host=host, port=port, ssl=ssl, tenant=tenant, database=database
        )
        limit_requests(made, timeout)
        return made, made.close

    return options, server


def get_or_create_collection(client: Any, name: str, metadata: dict[str, Any]) -> tuple[Any, bool]:
    """The cosine collection `name`, created with `metadata` if missing; and whether this
    call created it. A collection another process creates in between is returned as found
    (its metadata is the caller's to check)."""
    import chromadb.errors

    try:
        return client.get_collection(name, embedding_function=None), False
    except chromadb.errors.NotFoundError:
        pass
    try:
        created = client.create_collection(
            name,
            metadata=metadata,
            configuration={"hnsw": {"space": "cosine"}},
            embedding_function=None,
        )
        return created, True
    except chromadb.errors.ChromaError:
        return client.get_collection(name, embedding_function=None), False


def max_batch_of(client: Any) -> int:
    """Most records one write (`add`, `upsert`, `update`) of `client` takes: its
    `get_max_batch_size()` (a server says in its pre-flight checks), else
    `DEFAULT_MAX_BATCH`."""
    try:
        size = int(client.get_max_batch_size())
    except Exception:  # not a chromadb client, or a server that does not say: the default
        return DEFAULT_MAX_BATCH
    return size if size > 0 else DEFAULT_MAX_BATCH


def limit_requests(client: Any, timeout: float | None) -> None:
    """Give a Chroma HTTP client's requests a `timeout` (chromadb sends them with none, so a
    request to a stalled server would hold the provider's worker thread for good). Does
    nothing for an embedded client, or when chromadb keeps its HTTP session elsewhere."""
    import httpx

    session = getattr(getattr(client, "_server", None), "_session", None)
    if timeout is not None and isinstance(session, httpx.Client):
        session.timeout = httpx.Timeout(timeout)


@contextlib.contextmanager
def map_chroma_errors(url: str, *, timeout: float | None) -> Iterator[None]:
    """Translate Chroma's and httpx's exceptions into memweave errors.

    An unreachable server, a dropped connection or an overloaded server (HTTP 429, 502-504)
    is a `BackendUnavailable` with `transient=True`; a request timeout is a `BackendTimeout`.
    """
    import chromadb.errors
    import httpx

    try:
        yield
    except MemweaveError:
        raise
    except httpx.TimeoutException as exc:
        raise BackendTimeout("a Chroma request", timeout or 0.0, url=url) from exc
    except httpx.TransportError as exc:
        raise BackendUnavailable(f"{type(exc).__name__}: {exc}", url=url, transient=True) from exc
    except chromadb.errors.ChromaError as exc:
        transient = exc.code() in _TRANSIENT_STATUSES
        raise BackendUnavailable(
            f"{type(exc).__name__}: {exc}", url=url, transient=transient
        ) from exc
    except (httpx.HTTPError, OSError) as exc:
        transient = isinstance(exc, ConnectionError)
        raise BackendUnavailable(
            f"{type(exc).__name__}: {exc}", url=url, transient=transient
        ) from exc
    except ValueError as exc:
        # chromadb's HTTP client reports an unreachable server as a ValueError.
        if "connect" in str(exc).lower():
            raise BackendUnavailable(str(exc), url=url, transient=True) from exc
        raise
