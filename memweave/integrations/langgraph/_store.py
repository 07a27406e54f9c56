"""`MemweaveStore`: LangGraph's long-term memory store (`BaseStore`) on memweave's backends."""

from __future__ import annotations

import asyncio
import logging
import math
import uuid
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

from memweave.errors import (
    ConfigurationError,
    CorruptRecord,
    InvalidArgument,
    MissingDependency,
    ProviderClosed,
    SyncCallInEventLoop,
)

try:
    from langgraph.store.base import (
        BaseStore,
        GetOp,
        IndexConfig,
        Item,
        ListNamespacesOp,
        MatchCondition,
        Op,
        PutOp,
        Result,
        SearchItem,
        SearchOp,
        TTLConfig,
    )
except ModuleNotFoundError as exc:  # pragma: no cover - needs an environment without it
    raise MissingDependency("langgraph", "langgraph") from exc

from memweave._deprecation import renamed_argument
from memweave._portal import in_event_loop, portal
from memweave.integrations._backends import required_backend
from memweave.integrations.langgraph._store_backend import (
    CorruptItem,
    InvalidNamespace,
    ItemWrite,
    StoreBackend,
    StoredItem,
    StoredRow,
    check_json,
    check_namespace,
    decode_row,
    encode_body,
    item_id,
    namespace_path,
    path_range,
)
from memweave.integrations.langgraph._store_search import check_filter, index_texts, matches, rank
from memweave.integrations.langgraph._store_ttl import Sweeper
from memweave.providers._namespace import StoredNames

if TYPE_CHECKING:
    from memweave.context._fusion import Vector
    from memweave.integrations.langgraph._store_vectors import VectorIndex

__all__ = ["CorruptItem", "InvalidNamespace", "MemweaveStore"]

logger = logging.getLogger(__name__)


def _backend_for(url: str | None, client: Any, names: StoredNames) -> StoreBackend:
    if required_backend("MemweaveStore", url, client) == "sql":
        from memweave.integrations.langgraph._store_sql import SQLStoreBackend

        return SQLStoreBackend(url, engine=client, table_prefix=names.sql_prefix())
    from memweave.integrations.langgraph._store_redis import RedisStoreBackend

    return RedisStoreBackend(url, client=client, prefix=names.redis_prefix())


def _when(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def _count(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidArgument(name, value, "must be an int >= 0")
    return value


def _ttl_seconds(minutes: object) -> float | None:
    if minutes is None:
        return None
    if (
        isinstance(minutes, bool)
        or not isinstance(minutes, int | float)
        or not math.isfinite(minutes)
        or minutes <= 0
    ):
        raise InvalidArgument("ttl", minutes, "must be a positive number of minutes or None")
    return float(minutes) * 60.0


def _matches_path(condition: MatchCondition, namespace: tuple[str, ...]) -> bool:
    path = tuple(condition.path)
    if len(namespace) < len(path):
        return False
    part = namespace[: len(path)] if condition.match_type == "prefix" else namespace[-len(path) :]
    return all(want == "*" or want == got for want, got in zip(path, part, strict=True))


class MemweaveStore(BaseStore):
    """LangGraph's `BaseStore` on memweave's SQL (SQLite, PostgreSQL, MariaDB/MySQL) or Redis
    backends, with hybrid (lexical and dense) search; process-safe.

    Items are JSON objects under hierarchical namespaces. Each item is one row (SQL) or key
    (Redis) addressed by a digest of its namespace and key, and a namespace prefix is one index
    range over digests of its labels (see `memweave.integrations.langgraph._store_backend`),
    so namespaces are isolated whatever their labels hold: `:`, `|`, `{}`, `%`, `_`, case and
    unicode variants never reach another namespace. A batch's puts and deletes are one
    transaction (SQL) or script (Redis); a put keeps `created_at` and, on both, every time is
    the database's clock. Concurrent writers of one item: the last put wins, whole.

    Search: `filter` and `query` apply to the items under the prefix. Without a query, items
    come most recently updated first (one indexed query on SQL without a filter). With a
    `query`, every item under the prefix that passes the filter is scored: BM25 over its
    indexed texts, always (memweave's FTS5 index, built in memory for the candidates), fused
    with the dense similarity of its vectors when `index` names an embedder. Scores are in
    [0, 1], higher is better (1: a text equal to the query); items put with `index=False`
    come last, unscored. A query search so costs the prefix's item count, like LangGraph's
    `InMemoryStore`: meant for per-user memories, not for one huge namespace.

    Vectors live in a Chroma collection (an embedded Chroma folder, a Chroma server, or by
    default a temporary folder deleted by `aclose()`), kept per item version: a search embeds
    and stores whatever current vectors are missing (another process's puts, a new folder).
    Embedded Chroma belongs to one process; several processes share a Chroma server.

    TTL (`ttl=TTLConfig`, minutes): an item expires that long after its last put, or after a
    read with `refresh_ttl` (the default, `refresh_on_read`). Expired items are never returned
    (`omit_expired` is always on). On Redis the key expires by itself; on SQL, rows stay until
    `sweep_ttl()`, which the sweeper runs every `sweep_interval_minutes` once started
    (`start_ttl_sweeper()`, or `async with` when the interval is configured).

    Event loops and blocking calls: built from a URL, the store works in any event loop (a
    connection pool per loop); with a `client` passed in, in the loop that first used it.
    The blocking methods (`get`, `put`, `search`, ... which LangGraph's synchronous `invoke`
    calls) run on memweave's portal loop and refuse inside a running loop
    (`SyncCallInEventLoop`); use the `a`-methods there.

    Args:
        url: `sqlite+aiosqlite:///store.db`, `postgresql+asyncpg://...`, `mysql+aiomysql://...`,
            `redis://...` or `redis+cluster://...`.
        client: A SQLAlchemy `AsyncEngine`, or a `redis.asyncio.Redis` or `RedisCluster`, to
            use instead (left open by `aclose()`).
        namespace: The store's place on the server, keeping stores apart (not an item's
            namespace): SQL table `<namespace>_store_items`, Redis keys
            `{<namespace>:store}:...`, Chroma collection `<namespace>_store`; default
            `"memweave"`.
        index: LangGraph's `IndexConfig`: `fields` (JSON paths of the indexed texts; `["$"]`,
            the whole value, by default), and optionally `embed` (a memweave
            `EmbeddingFunction`, a LangChain `Embeddings`, an embedding function, or a
            provider string) with its `dims`.
        ttl: LangGraph's `TTLConfig`.
        vectors: Where vectors live: `chroma:///folder` or `chroma+http://host:port`.
        chroma_client: A Chroma client to use instead of `vectors` (left open).
        engine: Deprecated name of `client` for a SQLAlchemy engine.
        collection: Deprecated: the Chroma collection name as given.
        table_prefix: Deprecated: the SQL table prefix as given (`namespace` N is `N_`).
        prefix: Deprecated: the Redis key prefix as given (`namespace` N is `N`).

    Raises:
        ConfigurationError: Not exactly one of `url` and `client`; a bad URL or option; a
            namespace the backend cannot use in its names; a new option with its deprecated
            name.
        MissingDependency: The backend's driver, or chromadb for vectors, is not installed.

    Example:
        ```python
        async with MemweaveStore.from_url("sqlite+aiosqlite:///store.db") as store:
            await store.aput(("users", "ada"), "prefs", {"text": "likes window seats"})
            hits = await store.asearch(("users", "ada"), query="where to sit")
        ```
    """

    supports_ttl: bool = True

    def __init__(
        self,
        url: str | None = None,
        *,
        client: Any = None,
        namespace: str | None = None,
        index: IndexConfig | None = None,
        ttl: TTLConfig | None = None,
        vectors: str | None = None,
        chroma_client: Any = None,
        engine: Any = None,
        collection: str | None = None,
        table_prefix: str | None = None,
        prefix: str | None = None,
    ) -> None:
        name = type(self).__name__
        client = renamed_argument(name, "engine", engine, "client", client)
        renamed_argument(name, "table_prefix", table_prefix, "namespace", namespace)
        renamed_argument(name, "prefix", prefix, "namespace", namespace)
        renamed_argument(name, "collection", collection, "namespace", namespace)
        names = StoredNames(
            name, namespace, prefix=prefix, table_prefix=table_prefix, collection=collection
        )
        if ttl is not None and not isinstance(ttl, dict):
            raise ConfigurationError(f"ttl must be a TTLConfig dict, got {ttl!r}")
        self.ttl_config = ttl
        if ttl is not None:
            _ttl_seconds(ttl.get("default_ttl"))
        if index is not None and not isinstance(index, dict):
            raise ConfigurationError(f"index must be an IndexConfig dict, got {index!r}")
        fields = (index or {}).get("fields") or ["$"]
        if not isinstance(fields, list) or not all(isinstance(f, str) for f in fields):
            raise ConfigurationError(f'index["fields"] must be a list of str, got {fields!r}')
        self.index_config = index
        self._fields: list[str] = fields
        self._vectors: VectorIndex | None = None
        if index is not None and index.get("embed") is not None:
            # numpy and chromadb (the chroma extra) are needed only with an embedder.
            from memweave.integrations.langgraph._store_vectors import VectorIndex, make_embedder

            embedder = make_embedder(index)
            assert embedder is not None
            self._vectors = VectorIndex(
                embedder,
                location=vectors,
                client=chroma_client,
                collection=names.chroma_collection("store"),
            )
        elif vectors is not None or chroma_client is not None:
            raise ConfigurationError(
                'vectors need an embedder: pass index={"embed": ..., "dims": ...}'
            )
        self._backend = _backend_for(url, client, names)
        self._sweeper = Sweeper(self.sweep_ttl)
        self._closed = False

    @classmethod
    def from_url(cls, url: str, **options: Any) -> Self:
        """Build a store from a URL; `async with` it to close what it opened.

        Takes the keyword options of the constructor.
        """
        return cls(url, **options)

    # -- the batch --------------------------------------------------------------------------------

    def batch(self, ops: Iterable[Op]) -> list[Result]:
        """Run `abatch` on memweave's portal loop and wait (LangGraph's blocking calls).

        Raises:
            SyncCallInEventLoop: Called in a thread running an event loop.
        """
        if in_event_loop():
            raise SyncCallInEventLoop("MemweaveStore.batch", "MemweaveStore.abatch")
        return portal().run(self.abatch, ops)

    async def abatch(self, ops: Iterable[Op]) -> list[Result]:
        """Run LangGraph store operations in order; a run of consecutive puts (deletes are
        puts of None) is one atomic write, where the last put of an item wins.

        Raises:
            InvalidNamespace: A namespace breaks LangGraph's rules.
            InvalidArgument: A value is not JSON, a filter is malformed, a limit is negative.
            CorruptItem: An item read by `GetOp` cannot be decoded.
            BackendUnavailable: The backend (or Chroma) failed.
            ModelError: The embedder failed.
            ProviderClosed: The store was closed.
        """
        self._check_open("abatch")
        todo = list(ops)
        results: list[Result] = [None] * len(todo)
        start = 0
        while start < len(todo):
            kind = type(todo[start])
            end = start + 1
            if kind in (PutOp, GetOp):
                while end < len(todo) and type(todo[end]) is kind:
                    end += 1
            chunk = todo[start:end]
            if kind is PutOp:
                await self._put(chunk)  # type: ignore[arg-type]
            elif kind is GetOp:
                results[start:end] = await self._get(chunk)  # type: ignore[arg-type]
            elif kind is SearchOp:
                results[start] = await self._search(chunk[0])  # type: ignore[arg-type]
            elif kind is ListNamespacesOp:
                results[start] = await self._list_namespaces(chunk[0])  # type: ignore[arg-type]
            else:
                raise InvalidArgument("op", todo[start], "is not a LangGraph store operation")
            start = end
        return results

    # -- puts ---------------------------------------------------------------------------------

    async def _put(self, ops: Sequence[PutOp]) -> None:
        last: dict[str, PutOp] = {}
        for op in ops:
            namespace = check_namespace(op.namespace, write=True)
            if not isinstance(op.key, str):
                raise InvalidArgument("key", op.key, "must be a str")
            last[item_id(namespace, op.key)] = op
        writes: list[ItemWrite] = []
        to_embed: list[tuple[str, str, list[str]]] = []
        for ident, op in last.items():
            namespace = tuple(op.namespace)
            path = namespace_path(namespace)
            if op.value is None:
                writes.append(ItemWrite(ident, path, namespace, None))
                continue
            if not isinstance(op.value, Mapping):
                raise InvalidArgument("value", op.value, "must be a mapping (a JSON object)")
            check_json(dict(op.value))
            texts = self._texts(op)
            version = uuid.uuid4().hex
            body = encode_body(namespace, op.key, op.value, texts, version)
            writes.append(ItemWrite(ident, path, namespace, body, _ttl_seconds(op.ttl)))
            if texts:
                to_embed.append((ident, version, texts))
        vectors: list[tuple[str, str, Sequence[Vector]]] = []
        if self._vectors is not None and to_embed:
            flat = [text for _, _, texts in to_embed for text in texts]
            embedded = await self._vectors.embedder.embed_documents(flat)
            at = 0
            for ident, version, texts in to_embed:
                vectors.append((ident, version, embedded[at : at + len(texts)]))
                at += len(texts)
        await self._backend.write(writes)
        if self._vectors is not None:
            embedded_ids = {ident for ident, _, _ in vectors}
            stale = [write.id for write in writes if write.id not in embedded_ids]
            try:
                await self._vectors.delete(stale)
                await self._vectors.put(vectors)
            except ConfigurationError:
                raise
            except Exception:  # the items are stored; searches embed missing vectors again
                logger.warning("storing vectors failed; searches will embed them", exc_info=True)

    def _texts(self, op: PutOp) -> list[str] | None:
        if op.index is False:
            return None
        fields = self._fields if op.index is None else op.index
        if not isinstance(fields, list) or not all(isinstance(f, str) for f in fields):
            raise InvalidArgument("index", op.index, "must be False, None or a list of str")
        assert op.value is not None
        return index_texts(op.value, fields)

    # -- gets ---------------------------------------------------------------------------------

    async def _get(self, ops: Sequence[GetOp]) -> list[Result]:
        ids: list[str] = []
        for op in ops:
            namespace = check_namespace(op.namespace)
            if not isinstance(op.key, str):
                raise InvalidArgument("key", op.key, "must be a str")
            ids.append(item_id(namespace, op.key))
        rows: dict[str, StoredRow] = {}
        for refresh in (True, False):
            wanted = list(
                dict.fromkeys(
                    ident
                    for ident, op in zip(ids, ops, strict=True)
                    if bool(op.refresh_ttl) is refresh
                )
            )
            for row in await self._backend.read(wanted, refresh=refresh):
                rows[row.id] = row
        out: list[Result] = []
        for ident in ids:
            found = rows.get(ident)
            if found is None:
                out.append(None)
                continue
            item = decode_row(found)
            out.append(
                Item(
                    value=item.value,
                    key=item.key,
                    namespace=item.namespace,
                    created_at=_when(item.created_at),
                    updated_at=_when(item.updated_at),
                )
            )
        return out

    # -- search -------------------------------------------------------------------------------

    def _decoded(self, rows: Iterable[StoredRow]) -> list[tuple[StoredItem, StoredRow]]:
        out: list[tuple[StoredItem, StoredRow]] = []
        for row in rows:
            try:
                out.append((decode_row(row), row))
            except CorruptRecord as exc:  # the rest of the namespace stays readable
                logger.warning("skipping a stored item: %s", exc)
        return out

    async def _search(self, op: SearchOp) -> list[SearchItem]:
        prefix = check_namespace(op.namespace_prefix)
        filter = check_filter(op.filter)
        limit, offset = _count("limit", op.limit), _count("offset", op.offset)
        if op.query is not None and not isinstance(op.query, str):
            raise InvalidArgument("query", op.query, "must be a str or None")
        bounds = path_range(prefix)
        scores: dict[str, float] = {}
        if not op.query and not filter:
            found = self._decoded(await self._backend.scan(bounds, (offset, limit)))
        else:
            found = [
                (item, row)
                for item, row in self._decoded(await self._backend.scan(bounds, None))
                if matches(item.value, filter)
            ]
            found.sort(key=lambda pair: (-pair[0].updated_at, pair[0].id))
            if op.query:
                scores = await self._scores(op.query, [item for item, _ in found])
                found.sort(key=lambda pair: -scores.get(pair[0].id, -1.0))
            found = found[offset : offset + limit]
        if op.refresh_ttl:
            await self._backend.touch([row for _, row in found])
        return [
            SearchItem(
                namespace=item.namespace,
                key=item.key,
                value=item.value,
                created_at=_when(item.created_at),
                updated_at=_when(item.updated_at),
                score=scores.get(item.id) if op.query else None,
            )
            for item, _ in found
        ]

    async def _scores(self, query: str, items: Sequence[StoredItem]) -> dict[str, float]:
        documents = {item.id: item.texts for item in items if item.texts is not None}
        if self._vectors is None:
            return await rank(documents, query)
        indexed = [item for item in items if item.texts]
        stored = await self._vectors.fetch([item.id for item in indexed])
        vectors: dict[str, list[Vector]] = {}
        missing: list[StoredItem] = []
        for item in indexed:
            current = stored.get(item.id, {}).get(item.version)
            if current:
                vectors[item.id] = current
            else:
                missing.append(item)
        if missing:
            # Written by another process without this vector store, or before a crash.
            flat = [text for item in missing for text in item.texts or ()]
            embedded = await self._vectors.embedder.embed_documents(flat)
            healed: list[tuple[str, str, Sequence[Vector]]] = []
            at = 0
            for item in missing:
                count = len(item.texts or ())
                vectors[item.id] = embedded[at : at + count]
                healed.append((item.id, item.version, vectors[item.id]))
                at += count
            await self._vectors.put(healed)
        query_vector = await self._vectors.embedder.embed_query(query)
        return await rank(documents, query, query_vector=query_vector, vectors=vectors)

    # -- namespaces ---------------------------------------------------------------------------

    async def _list_namespaces(self, op: ListNamespacesOp) -> list[tuple[str, ...]]:
        conditions = list(op.match_conditions or ())
        fixed: tuple[str, ...] = ()
        for condition in conditions:
            if not isinstance(condition, MatchCondition) or condition.match_type not in (
                "prefix",
                "suffix",
            ):
                raise InvalidArgument("match_conditions", condition, "expected prefix or suffix")
            path = check_namespace(condition.path)
            if condition.match_type == "prefix" and not fixed:
                for label in path:
                    if label == "*":
                        break
                    fixed += (label,)
        limit, offset = _count("limit", op.limit), _count("offset", op.offset)
        if op.max_depth is not None:
            _count("max_depth", op.max_depth)
        found = {
            namespace[: op.max_depth] if op.max_depth is not None else namespace
            for namespace in await self._backend.namespaces(path_range(fixed))
            if all(_matches_path(condition, namespace) for condition in conditions)
        }
        return sorted(found)[offset : offset + limit]

    # -- TTL ---------------------------------------------------------------------------------------

    async def sweep_ttl(self) -> int:
        """Delete expired items now (and their vectors); return how many were removed.

        Raises:
            BackendUnavailable: The backend failed.
            ProviderClosed: The store was closed.
        """
        self._check_open("sweep_ttl")
        removed = await self._backend.sweep()
        if self._vectors is not None and removed:
            await self._vectors.delete(removed)
        return len(removed)

    async def start_ttl_sweeper(
        self, sweep_interval_minutes: float | None = None
    ) -> asyncio.Task[None]:
        """Start sweeping expired items every `sweep_interval_minutes` (default: the TTL
        config's, else 5) in a task of the running loop; return the task. Idempotent."""
        self._check_open("start_ttl_sweeper")
        minutes = sweep_interval_minutes or (self.ttl_config or {}).get("sweep_interval_minutes")
        return self._sweeper.start(float(minutes or 5) * 60.0)

    async def stop_ttl_sweeper(self, timeout: float | None = None) -> bool:  # noqa: ASYNC109
        """Stop the sweeper; return False if it did not stop within `timeout` seconds."""
        return await self._sweeper.stop(timeout)

    # -- lifecycle ----------------------------------------------------------------------------

    async def setup(self) -> None:
        """Create the backend's table ahead of first use (optional: done on first use)."""
        self._check_open("setup")
        await self._backend.setup()

    async def aclose(self) -> None:
        """Stop the sweeper and release what the store opened (a client passed in is left
        open; a temporary vector folder is deleted). Idempotent; any other method
        called afterwards raises `ProviderClosed`."""
        if self._closed:
            return
        self._closed = True
        await self.stop_ttl_sweeper()
        try:
            await self._backend.aclose()
        finally:
            if self._vectors is not None:
                await self._vectors.aclose()

    def close(self) -> None:
        """`aclose()` from blocking code (on memweave's portal loop)."""
        if in_event_loop():
            raise SyncCallInEventLoop("MemweaveStore.close", "MemweaveStore.aclose")
        portal().run(self.aclose)

    @property
    def closed(self) -> bool:
        """Whether the store was closed."""
        return self._closed

    async def __aenter__(self) -> Self:
        if (self.ttl_config or {}).get("sweep_interval_minutes"):
            await self.start_ttl_sweeper()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _check_open(self, method: str) -> None:
        if self._closed:
            raise ProviderClosed(type(self).__name__, method)

    def __repr__(self) -> str:
        return f"MemweaveStore(url={self._backend.url!r})"
