"""Blocking history providers: `ChatHistoryProvider`, `InMemoryChatHistoryProvider`, `from_url`."""

from __future__ import annotations

import importlib
from collections.abc import Iterable, Iterator
from datetime import timedelta
from typing import Any, ClassVar

from memweave._portal import in_event_loop, iterate
from memweave.errors import InvalidArgument, ProviderClosed
from memweave.messages import ChatMessage
from memweave.providers import base as _base
from memweave.providers import memory as _memory
from memweave.providers import url as _url
from memweave.providers.base import ReduceOn, SessionInfo
from memweave.reducers.base import ChatReducer as AsyncChatReducer
from memweave.sync._reducers import ChatReducer
from memweave.sync._wrap import BlockingCloseable, mirrors, run, unwrap

__all__ = ["ChatHistoryProvider", "InMemoryChatHistoryProvider", "from_url"]


class ChatHistoryProvider(BlockingCloseable[_base.ChatHistoryProvider]):
    """Blocking face of a `memweave.providers.ChatHistoryProvider`: the same methods, arguments,
    results and errors, as plain calls.

    Each method runs the async provider's method on memweave's portal loop and waits, so the
    contract of each method is the async one (see `memweave.providers.ChatHistoryProvider`).
    One object serves every thread of a process (a WSGI server's, a thread pool's); calls from
    several threads run concurrently, as tasks would. Inside a running event loop every
    method raises `SyncCallInEventLoop` naming the coroutine to await instead.

    Build one with `from_url` or a backend class of `memweave.sync`
    (`SQLChatHistoryProvider(...)`, ...), which build the async provider on the portal loop.

    Args:
        provider: An async provider to drive (e.g. your own backend) that no event loop has
            used yet; from now on use it only through this object, which closes it.

    Raises:
        InvalidArgument: `provider` is not a `memweave.providers.ChatHistoryProvider`.

    Example:
        ```python
        from memweave import ChatMessage, sync

        with sync.from_url("sqlite+aiosqlite:///chat.db") as history:
            history.add_messages("s1", [ChatMessage.user("hi")])
            print(history.list_messages("s1", limit=20))
        ```
    """

    _wraps: ClassVar[type[object]] = _base.ChatHistoryProvider

    def __init__(self, provider: _base.ChatHistoryProvider) -> None:
        if not isinstance(provider, _base.ChatHistoryProvider):
            raise InvalidArgument(
                "provider", provider, "expected a memweave.providers.ChatHistoryProvider"
            )
        super().__init__(provider)

    # Settings, read from the async provider (they never change after it is built).

    @property
    def max_messages(self) -> int | None:
        """At most this many messages are kept per session (None: no limit)."""
        return self._async.max_messages

    @property
    def ttl(self) -> timedelta | None:
        """A session is forgotten this long after its last add (None: never)."""
        return self._async.ttl

    @property
    def reducer(self) -> AsyncChatReducer | None:
        """The provider's reducer, if any."""
        return self._async.reducer

    @property
    def reduce_on(self) -> ReduceOn:
        """Whether the reducer gives a view on read or rewrites storage on write."""
        return self._async.reduce_on

    @property
    def timeout(self) -> float | None:
        """Seconds each round of storage work may take, retries included (None: no limit)."""
        return self._async.timeout

    @property
    def retries(self) -> int:
        """How many times a transiently failed round of an idempotent call is tried again."""
        return self._async.retries

    # -- the history API ----------------------------------------------------------------------

    def add_messages(self, session_id: str, messages: Iterable[ChatMessage]) -> None:
        """Append `messages` to the session, atomically and idempotently by message id."""
        self._call(self._async.add_messages, session_id, messages)

    def list_messages(
        self,
        session_id: str,
        *,
        limit: int | None = None,
        before: str | None = None,
        reducer: AsyncChatReducer | ChatReducer | None = None,
    ) -> list[ChatMessage]:
        """Return the session's messages, oldest first; with `limit=N`, only the newest N.

        `before=` pages back from a message; `reducer=` (async or blocking) reads its window.
        """
        return self._call(
            self._async.list_messages,
            session_id,
            limit=limit,
            before=before,
            reducer=unwrap(reducer),
        )

    def iter_messages(self, session_id: str, *, page_size: int = 500) -> Iterator[ChatMessage]:
        """Yield the session's messages, oldest first, reading one page per step.

        Arguments are checked at the call. Closing the iterator (or leaving a `for` loop
        and dropping it) stops the read.
        """
        if self._closed:
            raise ProviderClosed(type(self).__name__, "iter_messages")
        if in_event_loop():
            raise self._refusal("iter_messages")
        pages = self._async.iter_messages(session_id, page_size=page_size)
        return iterate(pages, page_size, lambda: self._refusal("iter_messages"))

    def count_messages(self, session_id: str) -> int:
        """Return how many messages are stored for the session (0 when unknown or expired)."""
        return self._call(self._async.count_messages, session_id)

    def delete_messages(self, session_id: str, message_ids: Iterable[str]) -> int:
        """Delete these messages (and the tool results of a deleted tool call); return how
        many went."""
        return self._call(self._async.delete_messages, session_id, message_ids)

    def truncate_after(self, session_id: str, message_id: str) -> int:
        """Delete every message newer than `message_id`; return how many went."""
        return self._call(self._async.truncate_after, session_id, message_id)

    def clear(self, session_id: str) -> None:
        """Delete every message of the session. Clearing an unknown session is a no-op."""
        self._call(self._async.clear, session_id)

    def list_sessions(
        self,
        prefix: str | None = None,
        *,
        limit: int | None = None,
        after: str | None = None,
    ) -> list[str]:
        """Return the ids of live sessions, sorted by code point; page with `limit`/`after`."""
        return self._call(self._async.list_sessions, prefix, limit=limit, after=after)

    def session_info(self, session_id: str) -> SessionInfo | None:
        """Return the session's message count and times, or None when unknown or expired."""
        return self._call(self._async.session_info, session_id)

    def prune(self, older_than: timedelta, *, dry_run: bool = False) -> int:
        """Delete the sessions not updated within `older_than`; return how many."""
        return self._call(self._async.prune, older_than, dry_run=dry_run)

    def purge_expired(self) -> int:
        """Reclaim the storage of sessions whose `ttl` ran out; return how many went."""
        return self._call(self._async.purge_expired)


class InMemoryChatHistoryProvider(ChatHistoryProvider):
    """Blocking face of `memweave.providers.InMemoryChatHistoryProvider`: history in this
    process's memory, shared by its threads, lost on exit. Takes the same arguments."""

    _wraps = _memory.InMemoryChatHistoryProvider
    _async: _memory.InMemoryChatHistoryProvider

    @mirrors(_memory.InMemoryChatHistoryProvider)
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._build(_memory.InMemoryChatHistoryProvider, args, kwargs)

    @property
    def namespace(self) -> str:
        """The name this provider's data lives under."""
        return self._async.namespace


# Backend class name -> the module of its blocking face; imported only when used, so a missing
# optional driver only matters to users of that backend.
_FACES = {
    "InMemoryChatHistoryProvider": "memweave.sync._history",
    "SQLChatHistoryProvider": "memweave.sync._sql",
    "RedisChatHistoryProvider": "memweave.sync._redis",
    "ChromaChatHistoryProvider": "memweave.sync._chroma",
}


def from_url(url: str, **options: Any) -> ChatHistoryProvider:
    """Build the blocking provider that `url` names; `options` go to the backend's constructor.

    Takes the URLs of `memweave.providers.from_url` (`memory://`,
    `sqlite+aiosqlite:///chat.db`, `postgresql+asyncpg://...`, `mysql+aiomysql://...`,
    `redis://...`, `chroma:///path`, ...). The result is the backend's blocking class (e.g.
    `memweave.sync.SQLChatHistoryProvider`), built on the portal loop.

    Example:
        ```python
        from memweave import sync

        history = sync.from_url("sqlite+aiosqlite:///chat.db", max_messages=500)
        ```

    Raises:
        ConfigurationError: The URL cannot be parsed, or its scheme is unknown.
        MissingDependency: The backend's optional driver is not installed.
        SyncCallInEventLoop: Called inside a running event loop; use
            `memweave.providers.from_url` and await its methods instead.
    """
    options = {name: unwrap(value) for name, value in options.items()}
    provider = run(
        "memweave.sync.from_url()",
        "the methods of memweave.providers.from_url(...)",
        _from_url,
        url,
        options,
    )
    return adopt_provider(provider)


async def _from_url(url: str, options: dict[str, Any]) -> _base.ChatHistoryProvider:
    return _url.from_url(url, **options)


def adopt_provider(provider: _base.ChatHistoryProvider) -> ChatHistoryProvider:
    """The blocking face of an async provider already on the portal loop: its backend's
    blocking class, or the generic one for a backend memweave does not ship."""
    module = _FACES.get(type(provider).__name__)
    face: type[ChatHistoryProvider] = ChatHistoryProvider
    if module is not None:
        candidate: type[ChatHistoryProvider] = getattr(
            importlib.import_module(module), type(provider).__name__
        )
        if isinstance(provider, candidate._wraps):
            face = candidate
    return face._adopt(provider)
