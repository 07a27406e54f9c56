"""`MemweaveCheckpointSaver`: LangGraph checkpoints in memweave's SQL and Redis backends."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self, TypeVar, cast

from memweave._closing import AsyncCloseable
from memweave._deprecation import renamed_argument
from memweave._portal import iterate
from memweave._urls import mask_url
from memweave.errors import (
    ConfigurationError,
    InvalidArgument,
    MissingDependency,
    ProviderClosed,
    SyncCallInEventLoop,
)
from memweave.integrations._backends import backend_kind
from memweave.integrations.langgraph._records import CheckpointStorage, Cursor, check_name
from memweave.integrations.langgraph._saver_codec import (
    configurable,
    decode_tuple,
    encode_checkpoint,
    encode_writes,
    ids,
    matches,
    read_id,
    safe_serializer,
    write_id,
)
from memweave.providers._namespace import StoredNames
from memweave.sync._wrap import run

try:
    from langchain_core.runnables import RunnableConfig
    from langgraph.checkpoint.base import (
        BaseCheckpointSaver,
        ChannelVersions,
        Checkpoint,
        CheckpointMetadata,
        CheckpointTuple,
        get_checkpoint_id,
    )
    from langgraph.checkpoint.serde.base import SerializerProtocol
except ModuleNotFoundError as exc:  # pragma: no cover - exercised in a subprocess test
    raise MissingDependency("langgraph", "langgraph") from exc

if TYPE_CHECKING:
    from redis.asyncio import Redis, RedisCluster
    from sqlalchemy.ext.asyncio import AsyncEngine

__all__ = ["MemweaveCheckpointSaver"]

_PAGE = 100
"""Checkpoints read per trip when a list is long or filtered."""
_STRATEGIES = ("keep_latest", "delete")
T = TypeVar("T")


@dataclass(slots=True)
class _Shared:
    """What a saver shares with its `with_allowlist` clones."""

    storage: CheckpointStorage
    closed: bool = False


class MemweaveCheckpointSaver(BaseCheckpointSaver[str], AsyncCloseable):
    """LangGraph checkpoints in SQLite, PostgreSQL, MariaDB/MySQL, Redis or a Redis Cluster.

    A drop-in `BaseCheckpointSaver` with every capability of langgraph-checkpoint: `put`,
    `put_writes`, `get_tuple`, `list` (metadata `filter`, `before`, `limit`), `delete_thread`,
    `delete_for_runs`, `copy_thread` and `prune`, each as an `a`-prefixed coroutine and as a
    blocking method. The blocking methods run the coroutines on memweave's background event
    loop (`memweave.sync`), so they work from any thread; called in a thread whose event loop
    is running they raise `SyncCallInEventLoop` (use the `a` methods there).

    Storage: memweave writes JSON (the checkpoint document, with channel values that are JSON
    scalars inline, and its metadata); every other channel value and pending write is stored as
    LangGraph's serializer's `(type, bytes)`, by default `safe_serializer()`, which never
    unpickles nor imports what the stored data names. A channel value is stored once per
    version, so a checkpoint costs its changed channels, not the whole state. SQL: tables
    `<namespace>_lg_checkpoints`, `_lg_writes` and `_lg_blobs` (see `_saver_sql`). Redis: a
    thread's keys share one hash tag, and each call is one atomic script (see `_saver_redis`).
    Thread ids, checkpoint namespaces and run ids are keyed by digest, so any characters (`:`,
    `|`, `{}`, `%`, `_`, case variants) are isolated.

    Concurrent writers: LangGraph never rewrites a checkpoint: each step stores a new one
    under a fresh, time-ordered id. So two processes running one thread lose nothing: every
    `put` lands, and `put_writes` upserts by `(task_id, idx)` as LangGraph's own savers do (a
    special channel such as an error or interrupt replaces its earlier write; any other write
    is kept as first stored). "Last writer" means the checkpoint with the greatest id: it is
    what `get_tuple` without a `checkpoint_id` returns, and what a new run continues from;
    the other writer's checkpoints stay in the history (`list`), as forks of their parents.

    `prune` and `delete_for_runs` delete a channel value once no remaining checkpoint of its
    namespace uses it; a run forking from a checkpoint they are deleting at that moment may
    find that checkpoint's values gone, as with LangGraph's own savers.

    Event loops: built from a URL, the saver works in any event loop; a `client` you pass in
    serves the loop that first used it (so do not mix the blocking methods and your own loop
    with it), and is left open by `aclose()`.

    Args:
        url: A SQLAlchemy URL (`sqlite+aiosqlite:///checkpoints.db`, `postgresql+asyncpg://...`,
            `mysql+aiomysql://...`) or a Redis URL (`redis://`, `rediss://`, `unix://`,
            `redis+cluster://host:port`). Without a `client` either, a SQLite file in
            memweave's data directory.
        client: A SQLAlchemy `AsyncEngine`, or a `redis.asyncio` `Redis` or `RedisCluster`,
            to use instead of a URL; the caller keeps it.
        namespace: The saver's place on the server, keeping savers apart (not LangGraph's
            `checkpoint_ns`): SQL tables `<namespace>_lg_...`, Redis keys `<namespace>:lg:...`;
            default `"memweave"`.
        serde: The serializer of channel values and writes (default: `safe_serializer()`).
        engine: Deprecated name of `client` for a SQLAlchemy engine.
        table_prefix: Deprecated: the SQL table prefix as given (`namespace` N is `N_`).
        prefix: Deprecated: the Redis key prefix as given (`namespace` N is `N`).

    Raises:
        ConfigurationError: Both `url` and `client`, an unsupported URL scheme, a namespace
            the backend cannot use in its names, or a new option with its deprecated name.
        MissingDependency: The backend's driver is not installed.

    Example:
        ```python
        async with MemweaveCheckpointSaver.from_url("sqlite+aiosqlite:///lg.db") as saver:
            graph = builder.compile(checkpointer=saver)
            await graph.ainvoke(inputs, {"configurable": {"thread_id": "t1"}})
        ```
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        client: AsyncEngine | Redis | RedisCluster | None = None,
        namespace: str | None = None,
        serde: SerializerProtocol | None = None,
        engine: AsyncEngine | None = None,
        table_prefix: str | None = None,
        prefix: str | None = None,
    ) -> None:
        name = type(self).__name__
        given = cast(
            "AsyncEngine | Redis | RedisCluster | None",
            renamed_argument(name, "engine", engine, "client", client),
        )
        renamed_argument(name, "table_prefix", table_prefix, "namespace", namespace)
        renamed_argument(name, "prefix", prefix, "namespace", namespace)
        names = StoredNames(name, namespace, prefix=prefix, table_prefix=table_prefix)
        super().__init__(serde=serde if serde is not None else safe_serializer())
        self._shared = _Shared(_storage(url, given, names))

    @classmethod
    def from_url(cls, url: str, **options: Any) -> Self:
        """Build a saver on `url`; `options` go to the constructor. Use it as
        `async with MemweaveCheckpointSaver.from_url(url) as saver:` (or `with` in blocking
        code), which closes what the saver opened on the way out.

        Raises:
            ConfigurationError: `url` is not a string, or as the constructor.
        """
        if not isinstance(url, str):
            raise ConfigurationError(f"url must be a str, got {url!r}")
        return cls(url, **options)

    # -- async API --------------------------------------------------------------------------

    async def aget_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        """Return the checkpoint `config` names (its `checkpoint_id`, or the thread
        namespace's newest), with its pending writes in `writes_sort_key` order; None when
        there is none.

        Raises:
            CorruptCheckpoint: The stored checkpoint cannot be decoded.
            InvalidArgument: `config` lacks `configurable.thread_id`.
        """
        self._check_open("aget_tuple")
        conf = configurable(config)
        thread_id = check_name("thread_id", conf.get("thread_id"), coerce=True)
        ns = check_name("checkpoint_ns", conf.get("checkpoint_ns") or "", empty=True)
        checkpoint_id = read_id(get_checkpoint_id(config))
        if checkpoint_id == "":
            return None
        with self._storage.map_errors():
            heads = await self._storage.read(thread_id, ns, checkpoint_id=checkpoint_id, count=1)
        return decode_tuple(self.serde, heads[0]) if heads else None

    async def alist(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> AsyncIterator[CheckpointTuple]:
        """Yield checkpoints newest first (by id).

        Args:
            config: Its `thread_id` (and `checkpoint_ns`, when set; else every namespace of
                the thread, and with `checkpoint_id`, only that one); None lists every thread.
            filter: Metadata keys and the values they must equal.
            before: Only checkpoints with ids below this config's `checkpoint_id`.
            limit: At most this many (a `limit` below 1 yields nothing).

        Raises:
            CorruptCheckpoint: A stored checkpoint cannot be decoded (after the ones before it).
        """
        self._check_open("alist")
        thread_id = ns = checkpoint_id = None
        if config is not None:
            conf = configurable(config)
            thread_id = check_name("thread_id", conf.get("thread_id"), coerce=True)
            if conf.get("checkpoint_ns") is not None:
                ns = check_name("checkpoint_ns", conf["checkpoint_ns"], empty=True)
            checkpoint_id = read_id(get_checkpoint_id(config))
        if filter is not None and not isinstance(filter, Mapping):
            raise InvalidArgument("filter", filter, "must be a dict of metadata values")
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int)):
            raise InvalidArgument("limit", limit, "must be an int or None")
        before_id = read_id(get_checkpoint_id(before)) if before is not None else None
        if checkpoint_id == "" or before_id == "" or (limit is not None and limit < 1):
            return
        after = Cursor(before_id) if before_id else None
        left = limit
        while True:
            page = _PAGE if left is None else min(_PAGE, left)
            with self._storage.map_errors():
                heads = await self._storage.read(
                    thread_id,
                    ns,
                    checkpoint_id=checkpoint_id,
                    after=after,
                    count=page,
                    details=not filter,
                )
            chosen = [head for head in heads if not filter or matches(head, filter)]
            if left is not None:
                chosen = chosen[:left]
            if filter and chosen:
                with self._storage.map_errors():
                    await self._storage.details(chosen)
            for head in chosen:
                yield decode_tuple(self.serde, head)
            if left is not None:
                left -= len(chosen)
            if len(heads) < page or left == 0:
                return
            last = heads[-1]
            after = Cursor(last.checkpoint_id, last.ns_key, last.thread_key)

    async def aput(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        """Store `checkpoint` as a child of `config`'s `checkpoint_id` (if any), with the
        values of the channels in `new_versions`; storing an id again replaces it.

        Returns:
            The config of the stored checkpoint.

        Raises:
            InvalidArgument: An id cannot be stored, or metadata or the checkpoint document
                holds something JSON cannot.
        """
        self._check_open("aput")
        conf = configurable(config)
        thread_id = check_name("thread_id", conf.get("thread_id"), coerce=True)
        ns = check_name("checkpoint_ns", conf.get("checkpoint_ns") or "", empty=True)
        parent = conf.get("checkpoint_id") or None
        if parent is not None:
            parent = write_id("parent checkpoint_id", parent)
        checkpoint_id = write_id("checkpoint id", checkpoint.get("id"))
        new = encode_checkpoint(
            self.serde, config, (thread_id, ns, parent), checkpoint, metadata, new_versions
        )
        with self._storage.map_errors():
            await self._storage.put(new)
        return {
            "configurable": {
                "thread_id": thread_id,
                "checkpoint_ns": ns,
                "checkpoint_id": checkpoint_id,
            }
        }

    async def aput_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        """Store a task's writes for `config`'s checkpoint: the `i`-th under `(task_id, i)`
        unless stored already; a special channel (`WRITES_IDX_MAP`: error, interrupt, ...)
        under its fixed negative index, replacing what was there.

        Raises:
            InvalidArgument: `config` lacks its ids, or an id or channel cannot be stored.
        """
        self._check_open("aput_writes")
        conf = configurable(config)
        thread_id = check_name("thread_id", conf.get("thread_id"), coerce=True)
        ns = check_name("checkpoint_ns", conf.get("checkpoint_ns") or "", empty=True)
        checkpoint_id = write_id("checkpoint_id", conf.get("checkpoint_id"))
        task_id = write_id("task_id", task_id)
        task_path = check_name("task_path", task_path, empty=True)
        rows = encode_writes(self.serde, writes, task_id, task_path)
        if rows:
            with self._storage.map_errors():
                await self._storage.put_writes(thread_id, ns, checkpoint_id, rows)

    async def adelete_thread(self, thread_id: str) -> None:
        """Delete every checkpoint, write and value of the thread, in every namespace. An
        unknown thread is a no-op."""
        self._check_open("adelete_thread")
        thread_id = check_name("thread_id", thread_id, coerce=True)
        with self._storage.map_errors():
            await self._storage.delete_thread(thread_id)

    async def adelete_for_runs(self, run_ids: Sequence[str]) -> None:
        """Delete the checkpoints whose metadata `run_id` is one of `run_ids` (in any thread
        and namespace), with their writes. Unknown runs are a no-op.

        Raises:
            InvalidArgument: `run_ids` is a single str, or holds a value that is not a run id.
        """
        self._check_open("adelete_for_runs")
        runs = ids("run_ids", run_ids)
        if runs:
            with self._storage.map_errors():
                await self._storage.delete_runs(runs)

    async def acopy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        """Copy every checkpoint, write and value of one thread to another; checkpoints the
        target holds already (same namespace and id) are kept. An unknown source copies
        nothing."""
        self._check_open("acopy_thread")
        source = check_name("source_thread_id", source_thread_id, coerce=True)
        target = check_name("target_thread_id", target_thread_id, coerce=True)
        if source != target:
            with self._storage.map_errors():
                await self._storage.copy_thread(source, target)

    async def aprune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        """Delete checkpoints of the threads: all (`"delete"`), or all but the newest of each
        namespace (`"keep_latest"`, which keeps that one's writes and values and clears its
        parent when the parent went). Unknown threads are a no-op.

        Raises:
            InvalidArgument: `thread_ids` is a single str, `strategy` is unknown, or
                `"keep_latest"` meets a thread using a `DeltaChannel` (whose values need the
                history; prune it with `"delete"`, or not at all).
        """
        self._check_open("aprune")
        threads = ids("thread_ids", thread_ids)
        if strategy not in _STRATEGIES:
            raise InvalidArgument("strategy", strategy, f"must be one of {_STRATEGIES}")
        if threads:
            with self._storage.map_errors():
                await self._storage.prune(threads, keep_latest=strategy == "keep_latest")

    async def aclose(self) -> None:
        """Release the connections the saver opened (not a `client` given to it).
        Idempotent; any other call afterwards raises `ProviderClosed`."""
        if self._shared.closed:
            return
        self._shared.closed = True
        with self._storage.map_errors():
            await self._storage.aclose()

    @property
    def closed(self) -> bool:
        """Whether `aclose()` (or `close()`) was called."""
        return self._shared.closed

    def get_next_version(self, current: str | None, channel: None) -> str:
        """The next channel version: a zero-padded counter and a random fraction, so two
        writers of one thread never produce the same version of a channel."""
        if current is None:
            number = 0
        elif isinstance(current, int):
            number = current
        else:
            number = int(str(current).split(".", 1)[0])
        return f"{number + 1:032}.{random.random():016}"

    # -- blocking API -----------------------------------------------------------------------

    def get_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        """Blocking `aget_tuple`."""
        return self._run("get_tuple", self.aget_tuple, config)

    def put(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        """Blocking `aput`."""
        return self._run("put", self.aput, config, checkpoint, metadata, new_versions)

    def put_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        """Blocking `aput_writes`."""
        self._run("put_writes", self.aput_writes, config, writes, task_id, task_path)

    def delete_thread(self, thread_id: str) -> None:
        """Blocking `adelete_thread`."""
        self._run("delete_thread", self.adelete_thread, thread_id)

    def delete_for_runs(self, run_ids: Sequence[str]) -> None:
        """Blocking `adelete_for_runs`."""
        self._run("delete_for_runs", self.adelete_for_runs, run_ids)

    def copy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        """Blocking `acopy_thread`."""
        self._run("copy_thread", self.acopy_thread, source_thread_id, target_thread_id)

    def prune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        """Blocking `aprune`."""
        self._run("prune", self.aprune, thread_ids, strategy=strategy)

    def close(self) -> None:
        """Blocking `aclose`."""
        self._run("close", self.aclose)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def list(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> Iterator[CheckpointTuple]:
        """Blocking `alist`: an iterator reading a page of checkpoints per trip."""
        source = self.alist(config, filter=filter, before=before, limit=limit)
        return iterate(source, _PAGE, lambda: _refusal("list", "alist"))

    # -- internals --------------------------------------------------------------------------

    @property
    def _storage(self) -> CheckpointStorage:
        return self._shared.storage

    def _check_open(self, method: str) -> None:
        if self._shared.closed:
            raise ProviderClosed(type(self).__name__, method)

    def _run(
        self,
        method: str,
        function: Callable[..., Coroutine[Any, Any, T]],
        *args: Any,
        **kwargs: Any,
    ) -> T:
        name = type(self).__name__
        return run(f"{name}.{method}", f"{name}.a{method}", function, *args, **kwargs)


def _refusal(method: str, instead: str) -> SyncCallInEventLoop:
    name = MemweaveCheckpointSaver.__name__
    return SyncCallInEventLoop(f"{name}.{method}", f"{name}.{instead}")


def _storage(
    url: str | None, client: AsyncEngine | Redis | RedisCluster | None, names: StoredNames
) -> CheckpointStorage:
    kind = backend_kind(url, client)
    if kind == "redis":
        from memweave.integrations.langgraph._saver_redis import RedisCheckpointStorage

        redis: Any = client
        return RedisCheckpointStorage(url, client=redis, prefix=names.redis_prefix())
    if kind == "sql" or url is None:
        from memweave.integrations.langgraph._saver_sql import SQLCheckpointStorage

        engine: Any = client
        return SQLCheckpointStorage(url, engine=engine, table_prefix=names.sql_prefix())
    raise ConfigurationError(
        f"MemweaveCheckpointSaver stores checkpoints in SQL databases and Redis, not "
        f"{mask_url(url)!r}; for checkpoints in memory use langgraph's InMemorySaver"
    )
