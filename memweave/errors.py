"""The memweave exception hierarchy.

Every error memweave raises on purpose derives from `MemweaveError`; no driver exception
(redis, SQLAlchemy, asyncpg, pydantic, openai) escapes a public method.

```
* MemweaveError
  x InvalidMessage          (also ValueError)     a message broke a rule of the data model
    + MessageTooLarge                             a message is larger than the backend can hold
  x InvalidSessionId        (also ValueError)     a session id cannot be stored safely
  x InvalidArgument         (also ValueError)     a call got an argument outside its range
  x CorruptRecord                                 a stored entry could not be decoded
  x SessionChanged                                a session changed under a paged read
  x ProviderClosed                                a method was called after aclose()
  x BackendUnavailable      (also ConnectionError) a server could not be reached or failed
    + BackendTimeout        (also TimeoutError)   a call did not finish within its timeout
  x ConfigurationError                            memweave was set up wrongly
    + MissingDependency     (also ImportError)    an optional extra is not installed
    + SchemaMismatch                              stored data was written by another schema
    + ModelUnavailable                            a model's files are missing and were not fetched
  x ModelError                                    a chat or embedding model call failed
    + ModelHTTPError                              the model server answered with an error status
  x SyncCallInEventLoop     (also RuntimeError)   a blocking call was made inside a running loop
  x EventLoopMismatch       (also RuntimeError)   an object was used outside the loop it is bound to
```
"""

from __future__ import annotations

from memweave._urls import mask_url

__all__ = [
    "BackendTimeout",
    "BackendUnavailable",
    "ConfigurationError",
    "CorruptRecord",
    "EventLoopMismatch",
    "InvalidArgument",
    "InvalidMessage",
    "InvalidSessionId",
    "MemweaveError",
    "MessageTooLarge",
    "MissingDependency",
    "ModelError",
    "ModelHTTPError",
    "ModelUnavailable",
    "ProviderClosed",
    "SchemaMismatch",
    "SessionChanged",
    "SyncCallInEventLoop",
]


class MemweaveError(Exception):
    """Base class of every error memweave raises on purpose."""


class InvalidMessage(MemweaveError, ValueError):
    """A message broke a rule of the data model; nothing was stored.

    Attributes:
        field: The offending field (`"role"`, `"tool_call_id"`, ...), when one is to blame.
        position: Index of the message in the batch it came in, when it came in a batch.
        reason: What rule was broken.
    """

    def __init__(self, reason: str, *, field: str | None = None, position: int | None = None):
        self.reason = reason
        self.field = field
        self.position = position
        where = f"message {position}: " if position is not None else ""
        what = f"field {field!r}: " if field is not None else ""
        super().__init__(f"invalid message: {where}{what}{reason}")


class MessageTooLarge(InvalidMessage):
    """A message's stored form is larger than the backend can hold; nothing was sent.

    Retrying cannot help: shorten the message, or store large payloads elsewhere and keep a
    reference in the message.

    Attributes:
        size: The message's stored size in bytes.
        limit: The most bytes one message may take on this backend.
        backend: The backend's class name.
    """

    def __init__(self, size: int, limit: int, *, backend: str, position: int | None = None):
        self.size = size
        self.limit = limit
        self.backend = backend
        super().__init__(
            f"its stored form is {size:,} bytes, over the {limit:,}-byte limit of one message "
            f"on {backend}",
            position=position,
        )


class InvalidSessionId(MemweaveError, ValueError):
    """A session id cannot be stored safely on every backend.

    Attributes:
        session_id: The rejected value.
        reason: Which rule it broke.
    """

    def __init__(self, session_id: object, reason: str):
        self.session_id = session_id
        self.reason = reason
        shown = repr(session_id)
        if len(shown) > 80:
            shown = shown[:77] + "..."
        super().__init__(f"invalid session id {shown}: {reason}")


class InvalidArgument(MemweaveError, ValueError):
    """A call or constructor got an argument outside its allowed range.

    Attributes:
        name: The parameter's name.
        value: The rejected value.
        reason: Which rule it broke.
    """

    def __init__(self, name: str, value: object, reason: str):
        self.name = name
        self.value = value
        self.reason = reason
        super().__init__(f"invalid {name}={value!r}: {reason}")


class CorruptRecord(MemweaveError):
    """A stored entry could not be decoded; the rest of the session stays readable.

    Attributes:
        session_id: The session holding the entry.
        position: Index of the entry in the session, oldest first (0 is the oldest stored
            entry), also when only the newest entries were read. For such a partial read it
            is worked out from a count taken after the read, so a writer appending in
            between shifts it. None for a page read with `before=`, which does not know
            where it starts; `message_id` names the entry then.
        reason: What was wrong with it.
        message_id: The stored message id of the entry, when the read knew it.
    """

    def __init__(
        self,
        session_id: str,
        position: int | None,
        reason: str,
        *,
        message_id: str | None = None,
    ):
        self.session_id = session_id
        self.position = position
        self.reason = reason
        self.message_id = message_id
        where = []
        if position is not None:
            where.append(f"at position {position}")
        if message_id is not None:
            where.append(f"with message id {message_id!r}")
        super().__init__(
            f"corrupt stored message in session {session_id!r} {' '.join(where)}: {reason}"
        )


class SessionChanged(MemweaveError):
    """A paged read could not go on: every message it had reached was deleted meanwhile.

    Attributes:
        session_id: The session being read.
    """

    def __init__(self, session_id: str):
        self.session_id = session_id
        super().__init__(
            f"session {session_id!r} changed under a paged read: the messages of the last page "
            "were all deleted (by max_messages, delete_messages, truncate_after or clear); "
            "start the read again"
        )


class ProviderClosed(MemweaveError):
    """A method was called on an object after its `aclose()` (or `close()`).

    Attributes:
        owner: The class name of the closed object.
        method: The method that was called.
    """

    def __init__(self, owner: str, method: str):
        self.owner = owner
        self.method = method
        super().__init__(
            f"{owner}.{method}() called after aclose(); build a new {owner} (or call it "
            "before closing)"
        )


class BackendUnavailable(MemweaveError, ConnectionError):
    """A storage server could not be reached, or failed while serving a call.

    Attributes:
        url: The backend's URL with any password masked, when known.
        reason: The driver's description of the failure.
        transient: True when the same call may succeed if tried again (a dropped
            connection, a timeout, a failover, a server still loading); memweave retries
            such failures of idempotent calls itself before raising.
    """

    def __init__(self, reason: str, *, url: str | None = None, transient: bool = False):
        self.url = mask_url(url) if url is not None else None
        self.reason = reason
        self.transient = transient
        where = f" at {self.url}" if self.url else ""
        super().__init__(f"backend unavailable{where}: {reason}")


class BackendTimeout(BackendUnavailable, TimeoutError):
    """A call to a storage server did not finish within its time limit.

    Attributes:
        operation: The public method that timed out (e.g. `"add_messages"`).
        timeout: The limit in seconds.
    """

    def __init__(self, operation: str, timeout: float, *, url: str | None = None):
        self.operation = operation
        self.timeout = timeout
        super().__init__(
            f"{operation} did not finish within its timeout of {timeout:g} s",
            url=url,
            transient=True,
        )


class ConfigurationError(MemweaveError):
    """memweave was configured wrongly: a bad option, URL or combination of settings."""


class MissingDependency(ConfigurationError, ImportError):
    """An optional dependency is missing; the message names the extra that installs it.

    Attributes:
        package: The importable package that is missing.
        extra: The memweave extra that provides it.
    """

    def __init__(self, package: str, extra: str):
        self.package = package
        self.extra = extra
        super().__init__(
            f"{package!r} is not installed; install it with: pip install 'memweave[{extra}]'"
        )


class SchemaMismatch(ConfigurationError):
    """Stored data was written with a schema version this memweave does not read.

    Attributes:
        found: The schema version found in storage.
        expected: The schema version this memweave writes.
    """

    def __init__(self, found: object, expected: object, where: str):
        self.found = found
        self.expected = expected
        super().__init__(
            f"{where} has schema version {found!r}, but this memweave uses {expected!r}; "
            "migrate the data or use a different table prefix"
        )


class ModelUnavailable(ConfigurationError):
    """A local model's files (an embedding model, a tiktoken encoding) are missing or
    incomplete where memweave looks for them, and were not fetched.

    Attributes:
        model: The model, e.g. `"all-MiniLM-L6-v2"` or `"tiktoken o200k_base"`.
        location: The folder the files were looked for in.
    """

    def __init__(self, model: str, location: str, detail: str):
        self.model = model
        self.location = location
        super().__init__(f"{model} could not be loaded from {location!r}: {detail}")


class ModelError(MemweaveError):
    """A call to a chat or embedding model failed."""


class ModelHTTPError(ModelError):
    """A model server answered with an HTTP error status.

    Attributes:
        status_code: The HTTP status code.
        model: The model that was asked, when known.
        body: The decoded error body, when there was one.
    """

    def __init__(self, status_code: int, *, model: str | None = None, body: object = None):
        self.status_code = status_code
        self.model = model
        self.body = body
        about = f" for model {model!r}" if model else ""
        super().__init__(f"model server answered HTTP {status_code}{about}: {body!r}")


class SyncCallInEventLoop(MemweaveError, RuntimeError):
    """A blocking call (`memweave.sync`) was made in a thread whose event loop is running.

    Blocking there would stall every task of that loop, so memweave refuses at once instead
    of waiting; in async code, await the async method named in the message.

    Attributes:
        method: The blocking method that was called.
        instead: The async method to await instead.
    """

    def __init__(self, method: str, instead: str):
        self.method = method
        self.instead = instead
        super().__init__(
            f"{method} was called inside a running event loop, where it would block the loop; "
            f"await {instead} instead"
        )


class EventLoopMismatch(MemweaveError, RuntimeError):
    """An object whose connections are bound to one event loop was used from another.

    A provider or store built from a URL opens connections per event loop and works in any
    loop. One given a client or engine by the caller cannot open connections of its own, and
    the caller's connections belong to the loop that first used them; so it serves that loop
    only, and refuses in any other (a new `asyncio.run`, another test's loop, another thread's
    loop) before touching the connections.

    Attributes:
        owner: The class name of the object.
        resource: What is bound to the other loop (e.g. `"the client passed in"`).
    """

    def __init__(self, owner: str, resource: str):
        self.owner = owner
        self.resource = resource
        super().__init__(
            f"{owner} was used in an event loop other than the one {resource} is bound to (the "
            f"loop that first used it); build the {owner} from a URL (it then opens connections "
            "per event loop), or use memweave.sync from blocking code, or make one client and "
            f"one {owner} per event loop"
        )
