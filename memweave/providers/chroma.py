"""`ChromaChatHistoryProvider`: histories in a Chroma collection, embedded or on a Chroma server."""

from __future__ import annotations

import asyncio
import functools
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, overload

from memweave._codec import OnCorrupt
from memweave._deprecation import renamed_argument, warn_renamed
from memweave._group_commit import GroupCommit
from memweave._urls import mask_url
from memweave.embeddings import EmbeddingFunction
from memweave.errors import ConfigurationError, MissingDependency
from memweave.providers import _chroma_sessions as _sessions
from memweave.providers._chroma_args import old_search_call, resolve_names
from memweave.providers._chroma_client import ClientMaker, EmbeddedChroma, client_maker
from memweave.providers._chroma_collection import embed_records, unit_vectors
from memweave.providers._chroma_history_ops import HistoryOps
from memweave.providers._chroma_search import MessageHit, check_search, decode_hits
from memweave.providers._chroma_worker import ChromaWorker
from memweave.providers._home import default_chroma_path
from memweave.providers._limits import chroma_limit
from memweave.providers._namespace import DEFAULT_NAMESPACE
from memweave.providers._resilience import resolve_options
from memweave.providers.base import (
    BATCH_SIZE,
    DEFAULT_RETRIES,
    DEFAULT_TIMEOUT,
    DeleteOutcome,
    PageRow,
    ReduceOn,
    SessionInfo,
    StoredRecord,
    dedupe_batch,
)
from memweave.reducers.base import ChatReducer

__all__ = ["DEFAULT_COLLECTION", "ChromaChatHistoryProvider", "EmbeddedChroma", "MessageHit"]

DEFAULT_COLLECTION = f"{DEFAULT_NAMESPACE}_history"
"""The collection of the default namespace (`memweave_history`)."""


@dataclass(frozen=True, slots=True)
class _Append:
    session_id: str
    records: list[StoredRecord]
    max_messages: int | None
    ttl: timedelta | None


class ChromaChatHistoryProvider(ChromaWorker):
    """Chroma based history store: embedded (one process) or on a Chroma server (many).

    Each message is one record of the collection: its versioned JSON as the document, its
    text's vector as the embedding (so `search` finds messages by meaning), and as metadata
    its session, role, id and an explicit sequence number. Order is by that sequence, never
    by a clock: an append reads the highest sequence stored in the session (only the records
    above the highest this provider has seen, or on its first append to the session, above
    the head the session record holds) and which ids of its batch the session holds, then
    writes the new messages, numbered after it, in one call (with `max_messages`, it then
    reads the session's metadata to trim). A record's id is a hash of
    session and message id, so a message is stored once even when several processes race to
    add it. Each session also has one record holding its expiry time (`ttl`, on this
    machine's clock), its creation and update times, the lowest and highest sequence numbers
    written, and its id's first 1, 2, 3, 4, 6, 8, 12, 16, 24 and 32 characters. Concurrent
    appends through one provider are written together (group commit).

    Chroma has no transactions, so what other backends do in one atomic step is done here in
    a few ordered calls, serialised within the provider: trimming to `max_messages` follows
    the append, and a `reduce_on="write"` rewrite, `delete_messages` and `truncate_after` are
    atomic only among this provider's own calls. Writers in several processes never lose or
    duplicate messages and keep each writer's order; two appends racing in different
    processes may take the same sequence number and are then ordered by writer.

    What calls cost. Chroma answers equality and `$in` from its index, but a `$gte`/`$lte`
    range costs it the whole collection, so no common call uses one. Each message also
    stores `key`, a per-session block start plus its sequence number: a page
    (`list_messages(limit=N)`, `before=`, `iter_messages`) looks up its cursor by record id,
    then one window of about 2N keys next to it with `$in`, widened step by step where
    deletions left gaps, so it costs the page, not the session or the collection. An append
    looks up its batch's ids and the session record by id, and probes the keys just above
    the last head for racing writers (with `max_messages`, it then reads the session's
    metadata to trim). `list_messages()` without a limit, `delete_messages` and
    `truncate_after` (metadata only) read the whole session; `count_messages` and
    `session_info` fetch the ids of its records. `list_sessions(prefix)` looks up the
    sessions sharing the prefix's stored characters; with `after` and `limit`, the sessions
    sharing the cursor's longest stored prefix that holds `limit` ids after it (they come
    first), so a page costs about that group; `list_sessions()` with neither reads every
    session record. `prune` and `purge_expired` query and delete `BATCH_SIZE` sessions per
    step (a range over the session records, on this machine's clock).

    A collection written by an older memweave has session records without these fields and
    messages without `key`: such sessions are read through `seq` ranges and listed through
    a scan of the collection until `prune` gives them an update time (when it first sees
    them); after that sweep the collection is marked and listing scans no more. Upgrade
    every writer of a collection together. A row another process numbered below the
    session's recorded lowest number while racing a trim is left out of pages (full reads
    see it).

    Embedded Chroma (`chroma:///path`, the default) serves one process; use a Chroma server
    (`chroma+http://host:port`) to share histories between processes.

    One message's stored JSON may take up to 499,995,904 bytes embedded (Chroma's log keeps
    it JSON-escaped, up to twice as long, in one SQLite value of at most 10^9 bytes) and
    20,840,448 bytes on a server (half its default 40 MiB request limit, for the same
    escaping, less room for the vector); a bigger message raises `MessageTooLarge` before
    anything is sent. A client passed in counts as a server's unless it is embedded.

    Event loops: the provider works in any event loop (consecutive `asyncio.run` calls, a test
    framework's loop per test, threads each running a loop), also with a `client` passed in:
    Chroma's client is blocking and runs on the provider's own worker thread, whichever loop
    calls, and what waits in a loop (group commit, the opening lock) is kept per loop.

    Timeouts and retries (see `ChatHistoryProvider`): `timeout` bounds each call to Chroma
    (each step the worker thread runs, from when it is handed over; an append makes one per
    session of its group commit), not the embedding of new messages, which takes as long as
    the embedder needs (a local model may spend seconds on a large batch), nor the wait of
    an append for the group commit ahead of it; the requests of a Chroma server's client
    built here get the same timeout. A call cut off goes on in the worker thread, and the
    provider's later calls queue behind it. Appends and reads that fail transiently (an
    unreachable or overloaded server) are retried, within `timeout` in all.

    Args:
        url: `chroma:///path/to/folder` (embedded) or `chroma+http://host:port` /
            `chroma+https://...` (a server); `?namespace=name` sets `namespace`.
            Without a `client` either, the embedded folder `chroma` in memweave's data
            directory (`memweave.providers.data_dir()`: `$MEMWEAVE_HOME`, else the per-user
            data directory), created if missing and logged at INFO; never the working
            directory.
        client: A Chroma client to use instead of a URL; the caller keeps ownership.
        namespace: The name this provider's data lives under, so several applications
            share one server: the collection is `<namespace>_history` (default `memweave`,
            so `memweave_history`). 1-504 characters of `[a-zA-Z0-9._-]`, starting with a
            letter or digit. Also `?namespace=` in the URL.
        embedder: Makes the vectors for `search` (`embed`, `name`, `dimensions`); Chroma's
            default model, `memweave.context.ChromaDefaultEmbeddings`, when None. Recorded
            with the collection: opening it with another raises `ConfigurationError`.
        max_messages: Keep at most this many messages per session (newest kept).
        ttl: Forget a session this long after its last `add_messages` (sliding).
        on_corrupt: `"raise"` or `"skip"` a stored entry that cannot be decoded.
        reducer: Optional reducer applied on read or write (see `reduce_on`).
        reduce_on: `"read"` for a reduced view, `"write"` to store the reduced history.
        timeout: Seconds each call to Chroma may take (default 10); None for no limit.
        retries: How many times a transiently failed append or read is tried again
            (default 3; 0 turns retrying off).
        collection: Deprecated: the exact collection name (as before; also `?collection=`
            in the URL); use `namespace`. Goes in 0.3.

    Raises:
        MissingDependency: chromadb is not installed (`pip install 'memweave[chroma]'`).
        ConfigurationError: A bad URL or option, a name and its deprecated name both, or a
            namespace given both as an option and in the URL, differently; on first use, a
            collection holding another embedder's vectors or not made by this provider.

    Example:
        ```python
        async with ChromaChatHistoryProvider("chroma:///var/lib/chat") as history:
            await history.add_messages("s1", [ChatMessage.user("My flight is on Friday.")])
            hits = await history.search("when do I travel?", session_id="s1", k=3)
        ```
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        client: Any = None,
        namespace: str | None = None,
        embedder: EmbeddingFunction | None = None,
        max_messages: int | None = None,
        ttl: timedelta | None = None,
        on_corrupt: OnCorrupt = "raise",
        reducer: ChatReducer | None = None,
        reduce_on: ReduceOn = "read",
        timeout: float | None = DEFAULT_TIMEOUT,
        retries: int = DEFAULT_RETRIES,
        collection: str | None = None,
    ) -> None:
        owner = type(self).__name__
        renamed_argument(owner, "collection", collection, "namespace", namespace)
        url, timeout, retries = resolve_options(url, timeout, retries)
        super().__init__(
            max_messages=max_messages,
            ttl=ttl,
            on_corrupt=on_corrupt,
            reducer=reducer,
            reduce_on=reduce_on,
            timeout=timeout,
            retries=retries,
        )
        try:
            import chromadb  # noqa: F401 - only to name the extra when it is missing
        except ImportError as exc:
            raise MissingDependency("chromadb", "chroma") from exc
        if url is not None and client is not None:
            raise ConfigurationError("pass either url or client, not both")
        options: dict[str, Any] = {}
        make_client: ClientMaker
        if client is None:
            folder = default_chroma_path(owner) if url is None else None
            self._url = url if url is not None else f"chroma://{folder}"
            options, make_client = client_maker(url, folder, timeout=self.timeout)
        else:
            self._url = "chroma+client://"
            make_client = lambda: (client, None)  # noqa: E731 - the caller's, as it is
        if "collection" in options and "namespace" not in options:
            warn_renamed("?collection= in a Chroma URL", "?namespace=", stacklevel=3)
        names = resolve_names(namespace, collection, options, owner)
        self.namespace = names[0]
        """The name this provider's data lives under."""
        self.collection_name = names[1]
        """Its collection: `<namespace>_history` (a deprecated `collection` as given)."""
        self._start_worker(make_client, embedder)
        self._ops = HistoryOps(uuid.uuid4().hex[:12], self._blank)
        # Concurrent appends to one session become one read and one write (group commit),
        # each call's records staying together in order.
        self._appends: GroupCommit[_Append, None] = GroupCommit(self._write_appends)

    # -- primitives ---------------------------------------------------------------------------

    async def _append(
        self,
        session_id: str,
        records: Sequence[StoredRecord],
        *,
        max_messages: int | None,
        ttl: timedelta | None,
    ) -> None:
        await self._appends.submit(_Append(session_id, list(records), max_messages, ttl))

    async def _write_appends(self, batch: list[_Append]) -> list[None]:
        groups: dict[tuple[str, int | None, timedelta | None], list[StoredRecord]] = {}
        for append in batch:
            key = (append.session_id, append.max_messages, append.ttl)
            groups.setdefault(key, []).extend(append.records)
        merged = {key: dedupe_batch(records) for key, records in groups.items()}
        flat = [record for records in merged.values() for record in records]
        vectors = iter(await embed_records(self.embedder, flat))
        for (session_id, max_messages, ttl), records in merged.items():
            own = [next(vectors) for _ in records]
            await self._run(self._ops.append, session_id, records, own, max_messages, ttl)
        return [None] * len(batch)

    async def _read(self, session_id: str, limit: int | None) -> list[bytes]:
        return await self._run(self._ops.read, session_id, limit)

    async def _read_system(self, session_id: str) -> list[bytes]:
        return await self._run(self._ops.read_system, session_id)

    async def _read_page(
        self, session_id: str, *, after: str | None, before: str | None, limit: int
    ) -> list[PageRow] | None:
        return await self._run(self._ops.read_page, session_id, after, before, limit)

    async def _count(self, session_id: str) -> int:
        return await self._run(self._ops.count, session_id)

    async def _session_info(self, session_id: str) -> SessionInfo | None:
        return await self._run(self._ops.session_info, session_id)

    async def _clear(self, session_id: str) -> None:
        await self._run(self._ops.clear, session_id)

    async def _list_sessions(
        self, prefix: str | None, *, after: str | None, limit: int | None
    ) -> list[str]:
        return await self._run(self._list_blocking, prefix, after, limit)

    def _list_blocking(
        self, collection: Any, prefix: str | None, after: str | None, limit: int | None
    ) -> list[str]:
        return _sessions.list_sessions(collection, prefix, after, limit, legacy=self._legacy)

    async def _delete(self, session_id: str, message_ids: Sequence[str]) -> DeleteOutcome:
        return await self._run(self._ops.delete, session_id, list(message_ids))

    async def _truncate_after(self, session_id: str, message_id: str) -> int | None:
        return await self._run(self._ops.truncate_after, session_id, message_id)

    async def _prune(self, older_than: timedelta, *, dry_run: bool) -> int:
        await self._ready()  # learns whether the collection may hold older session records
        if not dry_run and self._legacy:
            # Sessions stored without an update time count as updated now, when first seen;
            # once none is left, listing no longer looks for them.
            while await self._run(_sessions.stamp_unrecorded) == BATCH_SIZE:
                pass
            await self._run(self._mark_layout)
        total, more = 0, True
        while more:
            # One worker call per batch, so this provider's other calls go on in between.
            done, more = await self._run(
                _sessions.prune_step, self._ops.heads, older_than, dry_run, total
            )
            total += done
        return total

    async def _purge_expired(self) -> int:
        total, more = 0, True
        while more:
            done, more = await self._run(_sessions.purge_step, self._ops.heads)
            total += done
        return total

    async def _remove(self, session_id: str, message_ids: Sequence[str]) -> None:
        await self._run(self._ops.remove, session_id, list(message_ids))

    async def _replace(
        self,
        session_id: str,
        records: Sequence[StoredRecord],
        *,
        expected_last_id: str | None,
    ) -> bool:
        vectors = await embed_records(self.embedder, records)
        return await self._run(self._ops.replace, session_id, records, vectors, expected_last_id)

    async def _aclose(self) -> None:
        await self._appends.flush()
        loop = asyncio.get_running_loop()
        await self._bounded(loop.run_in_executor(self._worker, self._release_client))
        await loop.run_in_executor(None, self._worker.shutdown)

    async def _max_record_bytes(self) -> int:
        await self._ready()
        return chroma_limit(self._client)

    # -- Chroma-only API ----------------------------------------------------------------------

    @overload
    async def search(
        self, query: str, *, session_id: str, k: int = 5
    ) -> list[MessageHit]: ...  # pragma: no cover

    @overload
    async def search(
        self, session_id: str, query: str, k: int = 5, /
    ) -> list[MessageHit]: ...  # pragma: no cover

    async def search(
        self, query: str, *old: Any, session_id: str | None = None, k: int = 5
    ) -> list[MessageHit]:
        """Return the `k` messages of `session_id` most similar in meaning to `query`, best
        first (as `VectorMemory.search(query, *, session_id=..., k=...)`).

        An unknown or expired session gives `[]`. Messages without text are never returned.
        The order of earlier releases, `search(session_id, query, k)`, still works with a
        `DeprecationWarning`; it goes in 0.3.

        Raises:
            InvalidSessionId: The session id cannot be stored.
            InvalidArgument: No `session_id`, `query` is not a str, or `k` is not an int
                from 1 to 1000.
            CorruptRecord: A hit could not be decoded (with `on_corrupt="raise"`).
        """
        if old:
            query, session_id, k = old_search_call(query, old, session_id, k)
        return await self._search(query, session_id, k)

    async def _search(self, query: str, session_id: str | None, k: int) -> list[MessageHit]:
        """`search` once its arguments are in today's order."""
        session_id = check_search(query, session_id, k)
        if not query.strip():
            return []
        [vector] = unit_vectors(await self.embedder.embed([query]), self.embedder.dimensions)
        found = await self._io(
            "search", functools.partial(self._run, self._ops.search, session_id, vector, k)
        )
        return decode_hits(found, session_id, self.on_corrupt)

    def __repr__(self) -> str:
        return (
            f"ChromaChatHistoryProvider(url={mask_url(self._url)!r}, "
            f"collection={self.collection_name!r})"
        )
