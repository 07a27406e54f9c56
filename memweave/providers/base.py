"""`ChatHistoryProvider`: the contract every history backend keeps, and the logic they share.

The public methods validate and encode once, here; each then calls one `_`-prefixed primitive
that a backend implements and that carries the atomicity (one Redis script, one SQL
transaction, one lock).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from datetime import timedelta
from typing import ClassVar, Literal, TypeVar

from memweave._closing import AsyncCloseable
from memweave._codec import OnCorrupt
from memweave.errors import InvalidArgument, ProviderClosed
from memweave.messages import ChatMessage, could_be_id, validate_messages
from memweave.providers._base_args import (
    check_before,
    check_limit,
    check_message_id,
    check_message_ids,
    check_older_than,
    check_options,
    check_page_size,
    check_session_query,
    orphaned,
)
from memweave.providers._base_primitives import BATCH_SIZE, HistoryPrimitives
from memweave.providers._base_reads import NOT_IN_SESSION, decoded, iterate, older
from memweave.providers._base_reduce import ReduceOn, reduce_after_append, reduced_view
from memweave.providers._limits import check_sizes
from memweave.providers._records import (
    DeleteOutcome,
    PageRow,
    SessionInfo,
    StoredRecord,
    dedupe_batch,
    trim_count,
)
from memweave.providers._resilience import (
    DEFAULT_RETRIES,
    DEFAULT_TIMEOUT,
    CallPolicy,
    check_retries,
    check_timeout,
)
from memweave.reducers.base import ChatReducer
from memweave.session import validate_session_id

__all__ = [
    "BATCH_SIZE",
    "DEFAULT_RETRIES",
    "DEFAULT_TIMEOUT",
    "ChatHistoryProvider",
    "DeleteOutcome",
    "PageRow",
    "ReduceOn",
    "SessionInfo",
    "StoredRecord",
    "dedupe_batch",
    "trim_count",
]

_T = TypeVar("_T")


class ChatHistoryProvider(AsyncCloseable, HistoryPrimitives):
    """Stores and returns the messages of many conversations, each under a session id.

    Rules every backend keeps (checked by the conformance suite in `tests/conformance`):

    - Order is append order; `list_messages(limit=N)` returns the newest N, oldest first.
    - `add_messages` is one atomic batch: if any item is invalid, nothing is stored.
    - Re-adding a message id already stored in that session stores nothing, also when two
      writers race. Messages are never deduplicated by content.
    - Sessions are isolated whatever characters their ids hold; an id that cannot be stored
      safely raises `InvalidSessionId`.
    - `max_messages` keeps the newest N, trimmed in the same atomic step as the append, and
      never leaves a tool result at the head whose tool call was trimmed.
    - `ttl` is sliding: every add renews it; an expired session reads as empty and is not listed.
    - A corrupt stored entry raises `CorruptRecord` naming its position in the session, or with
      `on_corrupt="skip"` is skipped with a warning while the rest of the session is returned.

    Timeouts and retries. Each round of storage work a call makes (one for most calls; one
    per page for `iter_messages`, paged `before=` reads and reducer windows) must finish
    within `timeout` seconds, all its attempts included, or the call raises `BackendTimeout`
    (a `BackendUnavailable`) naming the call and the limit. (A backend whose round holds
    work that is not a server call, such as Chroma's embedding, bounds each of its server
    calls instead; its docstring says so.) A round of `add_messages`, of a
    read (`list_messages`, `iter_messages`, `count_messages`, `list_sessions`,
    `session_info`) or of `clear` that fails for a transient reason (a dropped or refused
    connection, a failover, a server still loading, a deadlock) is tried again up to
    `retries` times, with exponential backoff and jitter, inside the same time limit: safe,
    because appends are idempotent by message id, reads change nothing and clearing twice
    clears once. `delete_messages`, `truncate_after`, `prune` and `purge_expired` return
    counts that a second run after an unanswered first one would get wrong, so they are never
    retried here (a backend may still rerun a transaction it knows was not applied). A
    failure that is not transient (bad input, a missing privilege, bad data) is never retried.

    Args:
        max_messages: Keep at most this many messages per session (newest kept).
        ttl: Forget a session this long after its last `add_messages`.
        on_corrupt: `"raise"` or `"skip"` a stored entry that cannot be decoded.
        reducer: Optional reducer applied on read or write (see `reduce_on`).
        reduce_on: `"read"` returns a reduced view and leaves storage as it is; `"write"`
            stores the reduced history after each add (see `add_messages` for what happens
            when that reduce fails).
        timeout: Seconds each round of storage work may take, retries included (default
            10); None for no limit.
        retries: How many times a transiently failed round of an idempotent call is tried
            again (default 3; 0 turns retrying off).
    """

    _timeout_scope: ClassVar[Literal["call", "backend", "none"]] = "call"
    """Who enforces `timeout`: the base around each round of work (`"call"`), the backend
    around each of its own server calls (`"backend"`), or nobody, for a store without I/O
    (`"none"`, which is also never retried)."""

    _url: str = ""
    """Where the store is (its password masked when shown), for errors; empty if nowhere."""

    _record_limit: int | None = None
    """`_max_record_bytes()`, once a call has asked the backend."""

    def __init__(
        self,
        *,
        max_messages: int | None = None,
        ttl: timedelta | None = None,
        on_corrupt: OnCorrupt = "raise",
        reducer: ChatReducer | None = None,
        reduce_on: ReduceOn = "read",
        timeout: float | None = DEFAULT_TIMEOUT,
        retries: int = DEFAULT_RETRIES,
    ) -> None:
        check_options(
            max_messages=max_messages,
            ttl=ttl,
            on_corrupt=on_corrupt,
            reducer=reducer,
            reduce_on=reduce_on,
        )
        self.max_messages = max_messages
        self.ttl = ttl
        self.on_corrupt: OnCorrupt = on_corrupt
        self.reducer = reducer
        self.reduce_on: ReduceOn = reduce_on
        self.timeout = check_timeout(timeout)
        """Seconds each round of storage work may take, retries included (None: no limit)."""
        self.retries = check_retries(retries)
        """How many times a transiently failed round of an idempotent call is tried again."""
        self._policy: CallPolicy | None = None
        if self._timeout_scope != "none" and (self.timeout is not None or self.retries):
            self._policy = CallPolicy(
                self.timeout, self.retries, scoped=self._timeout_scope == "call"
            )
        self._closed = False

    # -- public API ---------------------------------------------------------------------------

    async def add_messages(self, session_id: str, messages: Iterable[ChatMessage]) -> None:
        """Append `messages` to the session, atomically and idempotently by message id.

        Messages whose id is already stored in this session (or repeated within the batch) are
        skipped; the others are appended in order. An empty batch still renews the `ttl`.

        With `reduce_on="write"`, the reducer then runs on the stored history and its result
        is stored, as a second step after the append has committed (a reader may see the
        unreduced history in between). A return means the append is stored, whatever the
        reduce did: when the reduce fails with a memweave error (a corrupt stored entry with
        `on_corrupt="raise"`, a failing model or server, or other writers changing the session
        on every attempt), a warning is logged and the history stays unreduced until a later
        add reduces it. An exception outside memweave's hierarchy (a bug in a custom reducer)
        propagates, after the append.

        Raises:
            InvalidSessionId: The session id cannot be stored.
            InvalidMessage: An item is not a `ChatMessage`, or holds what cannot be stored
                exactly (text with a lone surrogate, a `nan` in `metadata`); the error names
                the field and position, and nothing was stored.
            MessageTooLarge: An item's stored form is over the backend's limit (see
                `_max_record_bytes`); found before anything was sent, and nothing was stored.
            BackendUnavailable: The store could not be reached (after the retries).
            BackendTimeout: The append did not finish within `timeout`; it may or may not
                have been stored, and adding the same messages again is safe.
        """
        self._check_open("add_messages")
        session_id = validate_session_id(session_id)
        batch = validate_messages(messages)
        encoded = [StoredRecord.of(message, position=i) for i, message in enumerate(batch)]
        limit = self._record_limit
        if limit is None:
            limit = self._record_limit = await self._io("add_messages", self._max_record_bytes)
        check_sizes(encoded, limit, backend=type(self).__name__)
        records = dedupe_batch(encoded)
        await self._io(
            "add_messages",
            lambda: self._append(session_id, records, max_messages=self.max_messages, ttl=self.ttl),
        )
        if self.reducer is not None and self.reduce_on == "write":
            await reduce_after_append(self, session_id, self.reducer)

    async def list_messages(
        self,
        session_id: str,
        *,
        limit: int | None = None,
        before: str | None = None,
        reducer: ChatReducer | None = None,
    ) -> list[ChatMessage]:
        """Return the session's messages, oldest first; with `limit=N`, only the newest N.

        Three ways to read less than the whole session:

        - `limit=N`: the newest N messages.
        - `limit=N, before=message_id`: the N messages just older than that message (a chat
          UI's "load older"); `before` alone returns every older message. Pages read storage
          as it is: the provider's read reducer does not apply.
        - `reducer=r`: `r`'s window (e.g. a `TokenBudgetReducer`'s), read from the end of
          the session page by page only as far back as `r` needs, plus the system messages;
          so a turn costs the window, not the history. A reducer that needs the whole
          history (one without `reduce_tail`, such as a summarizer's first pass) still gets
          it. `r` replaces the provider's own read reducer for this call.

        An unknown or expired session reads as empty. With `reduce_on="read"` (and no
        `reducer=`, no `before=`) the provider's reducer view is returned, and `limit`
        applies to that view; storage is left as it is.

        Raises:
            InvalidArgument: `limit` is negative, `before` is not a message id stored in the
                session, or `before` was combined with `reducer`.
            CorruptRecord: A stored entry could not be decoded (with `on_corrupt="raise"`).
            ProviderClosed: The provider was closed.
        """
        self._check_open("list_messages")
        session_id = validate_session_id(session_id)
        limit = check_limit(limit)
        if reducer is not None and not isinstance(reducer, ChatReducer):
            raise InvalidArgument("reducer", reducer, "must be a ChatReducer or None")
        if before is not None:
            return await older(self, session_id, check_before(before, reducer), limit)
        if limit == 0:
            return []
        if reducer is None and self.reduce_on == "read":
            reducer = self.reducer
        if reducer is not None:
            messages = await reduced_view(self, session_id, reducer)
            return messages if limit is None else messages[-limit:]
        return await decoded(self, session_id, limit)

    def iter_messages(self, session_id: str, *, page_size: int = 500) -> AsyncIterator[ChatMessage]:
        """Yield the session's messages, oldest first, holding one page of them at a time.

        Each page is read after the last message of the previous one, so messages appended
        while iterating are yielded too, and none is skipped or yielded twice. Deleted
        messages not yet reached are not yielded. The provider's read reducer does not apply.

        Example:
            ```python
            async for message in history.iter_messages("s1", page_size=1000):
                export(message)
            ```

        Arguments are checked at the call, before the first page is read.

        Raises:
            InvalidArgument: `page_size` is not an int from 1 to 10,000.
            SessionChanged: Every message of the last page was deleted before the next page
                was read, so there is no place to go on from.
            CorruptRecord: A stored entry could not be decoded (with `on_corrupt="raise"`).
            ProviderClosed: The provider was closed.
        """
        self._check_open("iter_messages")
        session_id = validate_session_id(session_id)
        return iterate(self, session_id, check_page_size(page_size))

    async def count_messages(self, session_id: str) -> int:
        """Return how many messages are stored for the session (0 when unknown or expired)."""
        self._check_open("count_messages")
        session_id = validate_session_id(session_id)
        return await self._io("count_messages", lambda: self._count(session_id))

    async def delete_messages(self, session_id: str, message_ids: Iterable[str]) -> int:
        """Delete these messages from the session, atomically; return how many went.

        Deleting a message that called tools also deletes the tool results that follow it,
        so no result outlives its call. Ids not stored in the session are ignored. Naming a
        tool result without the message that called it deletes nothing and raises, since it
        would leave a call without its result.

        Raises:
            InvalidArgument: `message_ids` is not an iterable of str (a lone str is refused),
                or names a tool result without its calling message.
            ProviderClosed: The provider was closed.
        """
        self._check_open("delete_messages")
        session_id = validate_session_id(session_id)
        ids = check_message_ids(message_ids)
        if not ids:
            return 0
        outcome = await self._io(
            "delete_messages", lambda: self._delete(session_id, ids), retry=False
        )
        if outcome.orphan is not None:
            raise orphaned(outcome.orphan)
        return outcome.deleted

    async def truncate_after(self, session_id: str, message_id: str) -> int:
        """Delete every message newer than `message_id`, atomically; return how many went.

        For regenerating or editing a turn. The tool results that directly follow
        `message_id` answer its tool calls (or are its siblings) and stay with it.

        Raises:
            InvalidArgument: `message_id` is not a message id stored in the session.
            ProviderClosed: The provider was closed.
        """
        self._check_open("truncate_after")
        session_id = validate_session_id(session_id)
        check_message_id(message_id)
        deleted = await self._io(
            "truncate_after", lambda: self._truncate_after(session_id, message_id), retry=False
        )
        if deleted is None:
            raise InvalidArgument("message_id", message_id, NOT_IN_SESSION)
        return deleted

    async def clear(self, session_id: str) -> None:
        """Delete every message of the session. Clearing an unknown session is a no-op."""
        self._check_open("clear")
        session_id = validate_session_id(session_id)
        await self._io("clear", lambda: self._clear(session_id))

    async def list_sessions(
        self,
        prefix: str | None = None,
        *,
        limit: int | None = None,
        after: str | None = None,
    ) -> list[str]:
        """Return the ids of live sessions, sorted by code point; page with `limit`/`after`.

        Args:
            prefix: Only ids starting with this exact string (taken literally: `%`, `_`, `*`
                and `[` match themselves).
            limit: At most this many ids (None: all of them).
            after: Only ids sorting strictly after this one (the last id of the previous
                page); it need not be a stored id.

        Example:
            ```python
            page = await history.list_sessions(limit=100)
            while page:
                handle(page)
                page = await history.list_sessions(limit=100, after=page[-1])
            ```

        Raises:
            InvalidArgument: `prefix` or `after` is not a str, or `limit` is not a positive int.
            ProviderClosed: The provider was closed.
        """
        self._check_open("list_sessions")
        check_session_query(prefix, after, limit)
        if prefix and not could_be_id(prefix):
            return []  # no stored id starts with it (a lone surrogate, or over 256 characters)
        found = await self._io(
            "list_sessions", lambda: self._list_sessions(prefix or None, after=after, limit=limit)
        )
        found = sorted(found)
        return found if limit is None else found[:limit]

    async def session_info(self, session_id: str) -> SessionInfo | None:
        """Return the session's message count and times, or None when unknown or expired.

        Raises:
            ProviderClosed: The provider was closed.
        """
        self._check_open("session_info")
        session_id = validate_session_id(session_id)
        return await self._io("session_info", lambda: self._session_info(session_id))

    async def prune(self, older_than: timedelta, *, dry_run: bool = False) -> int:
        """Delete the sessions not updated within `older_than`; return how many.

        The retention sweep for sessions without a `ttl` (run it from a cron job). It works
        in batches of `BATCH_SIZE` sessions, so it never holds the server busy for long; a
        session written to during the sweep is kept. With `dry_run=True` nothing is deleted
        and the count says how many would be.

        The whole sweep is one round of work for `timeout`: for a large store, run it through
        a provider built with a longer `timeout` (or None). Batches done before a
        `BackendTimeout` stay done, so calling `prune` again goes on where it stopped.

        Raises:
            InvalidArgument: `older_than` is not a positive timedelta.
            BackendTimeout: The sweep did not finish within `timeout`.
            ProviderClosed: The provider was closed.
        """
        self._check_open("prune")
        check_older_than(older_than)
        return await self._io(
            "prune", lambda: self._prune(older_than, dry_run=bool(dry_run)), retry=False
        )

    async def purge_expired(self) -> int:
        """Reclaim the storage of sessions whose `ttl` ran out; return how many went.

        Expired sessions already read as empty and are never listed; this deletes what is
        left of them, in batches of `BATCH_SIZE`. Backends whose storage expires by itself
        have less (or nothing) to do. Like `prune`, the whole sweep is held to `timeout`.

        Raises:
            BackendTimeout: The sweep did not finish within `timeout`.
            ProviderClosed: The provider was closed.
        """
        self._check_open("purge_expired")
        return await self._io("purge_expired", self._purge_expired, retry=False)

    async def aclose(self) -> None:
        """Release connections this provider opened. Idempotent; a client or engine passed in
        by the caller is left open. Any other method called afterwards raises
        `ProviderClosed`."""
        if self._closed:
            return
        self._closed = True
        await self._io("aclose", self._aclose, retry=False)

    @property
    def closed(self) -> bool:
        """Whether `aclose()` was called."""
        return self._closed

    # -- shared helpers -----------------------------------------------------------------------

    def _check_open(self, method: str) -> None:
        if self._closed:
            raise ProviderClosed(type(self).__name__, method)

    def _io(
        self, operation: str, call: Callable[[], Awaitable[_T]], *, retry: bool = True
    ) -> Awaitable[_T]:
        """Run one round of storage work for the public call `operation`: translate its
        errors, hold it to `timeout`, and (with `retry`) retry its transient failures."""
        policy = self._policy
        if policy is None:
            return self._mapped(call)
        return policy.run(operation, self._map_errors, call, retry=retry, url=self._url)

    async def _mapped(self, call: Callable[[], Awaitable[_T]]) -> _T:
        with self._map_errors():
            return await call()
