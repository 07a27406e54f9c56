"""LangChain adapters: a `BaseChatMessageHistory` over any memweave backend, and reducers for
LangChain message lists.

- `MemweaveChatMessageHistory`: a LangChain chat history (for `RunnableWithMessageHistory` and
  anything else that takes a `BaseChatMessageHistory`) stored in a memweave
  `ChatHistoryProvider`: SQL, Redis, Chroma or in-memory.
- `reduce_messages` / `reducer_runnable`: shrink a LangChain message list with a memweave
  reducer (`MessageCountReducer`, `TokenBudgetReducer`, `SummarizingReducer`), keeping system
  messages and never separating a tool call from its results.
- `messages_to_memweave` / `messages_from_memweave`: the message conversion both use.
- `run_sync`: how the synchronous methods run memweave's async calls.

The synchronous methods (`messages`, `add_messages`, `clear`, `reducer_runnable(...).invoke`)
run on one private background event loop, so a backend is always used from the same loop,
from any thread. Called from a thread whose event loop is running they raise
`SyncCallInEventLoop` instead of blocking it: use the `a`-prefixed methods there. Use a given
backend either through the synchronous methods or from your own event loop, not both.

Install with `pip install 'memweave[langchain]'`.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Coroutine, Sequence
from typing import Any, TypeGuard, TypeVar

from pydantic import JsonValue, ValidationError

from memweave._portal import in_event_loop, portal
from memweave.errors import (
    ConfigurationError,
    InvalidMessage,
    MissingDependency,
    SyncCallInEventLoop,
)
from memweave.messages import ID_PATTERN, MAX_ID_LENGTH, ChatMessage, ContentPart, ToolCall
from memweave.messages import new_message_id as _new_id
from memweave.orchestration._transcript import read_window
from memweave.providers.base import ChatHistoryProvider
from memweave.reducers.base import ChatReducer
from memweave.session import validate_session_id

try:
    from langchain_core.chat_history import BaseChatMessageHistory
    from langchain_core.messages import BaseMessage, messages_from_dict
    from langchain_core.runnables import Runnable, RunnableLambda
except ModuleNotFoundError as exc:  # pragma: no cover - exercised in a subprocess test
    raise MissingDependency("langchain_core", "langchain") from exc

__all__ = [
    "METADATA_KEY",
    "MemweaveChatMessageHistory",
    "SyncCallInEventLoop",
    "messages_from_memweave",
    "messages_to_memweave",
    "reduce_messages",
    "reducer_runnable",
    "run_sync",
]

METADATA_KEY = "langchain"
"""Key under `ChatMessage.metadata` holding what memweave's own fields cannot."""

_T = TypeVar("_T")
_ROLE = {
    "human": "user",
    "ai": "assistant",
    "system": "system",
    "tool": "tool",
    "HumanMessageChunk": "user",
    "AIMessageChunk": "assistant",
    "SystemMessageChunk": "system",
    "ToolMessageChunk": "tool",
}
_TYPE = {"user": "human", "assistant": "ai", "system": "system", "tool": "tool"}
_NATIVE_PARTS = frozenset({"text", "image_url"})
_ID = re.compile(ID_PATTERN)
_MISSING = object()


# -- the synchronous bridge ---------------------------------------------------------------------


def run_sync(coroutine: Coroutine[Any, Any, _T]) -> _T:
    """Run `coroutine` to completion on memweave's background loop and return its result.

    This is what the synchronous methods use. Use it for the rest of a backend's life in
    synchronous code, e.g. `run_sync(store.aclose())`, so every call runs on the same loop.

    Raises:
        SyncCallInEventLoop: The calling thread's event loop is running.
    """
    return _run_sync(coroutine, "run_sync", "the coroutine")


def _run_sync(coroutine: Coroutine[Any, Any, _T], method: str, instead: str) -> _T:
    if in_event_loop():
        coroutine.close()
        raise SyncCallInEventLoop(method, instead)
    return portal().run(_await, coroutine)


async def _await(coroutine: Coroutine[Any, Any, _T]) -> _T:
    return await coroutine


# -- conversion ---------------------------------------------------------------------------------


def _valid_id(value: object) -> TypeGuard[str]:
    return isinstance(value, str) and 0 < len(value) <= MAX_ID_LENGTH and bool(_ID.match(value))


def _stand_in_id(message_id: str) -> str:
    # Deterministic, so adding the same message again still finds the stored id.
    return "lc-" + hashlib.blake2b(message_id.encode(), digest_size=16).hexdigest()


def _json(value: Any, position: int) -> Any:
    try:
        return json.loads(json.dumps(value, allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise InvalidMessage(
            f"holds data that is not JSON and cannot be stored: {exc}", position=position
        ) from None


def _native_content(content: object) -> str | list[ContentPart]:
    if isinstance(content, str):
        return content
    parts: list[ContentPart] = []
    for block in content if isinstance(content, list) else ():
        if isinstance(block, str):
            parts.append({"type": "text", "text": block})
        elif isinstance(block, dict) and block.get("type") in _NATIVE_PARTS:
            if block["type"] == "text" and isinstance(block.get("text"), str):
                parts.append({"type": "text", "text": block["text"]})
            elif block["type"] == "image_url" and isinstance(block.get("image_url"), dict | str):
                parts.append({"type": "image_url", "image_url": block["image_url"]})
    return parts


def _native(data: dict[str, Any], kind: str, message_id: str) -> ChatMessage:
    role = _ROLE.get(kind, "user")
    content = _native_content(data.get("content"))
    name = data.get("name") if isinstance(data.get("name"), str) else None
    if role == "tool":
        call_id = data.get("tool_call_id")
        if not _valid_id(call_id):
            role = "user"
        else:
            return ChatMessage.tool(call_id, content, name=name, id=message_id)
    if role == "assistant":
        calls = [
            ToolCall(id=call["id"], name=call["name"], arguments=json.dumps(call.get("args", {})))
            for call in data.get("tool_calls") or ()
            if _valid_id(call.get("id")) and isinstance(call.get("name"), str) and call["name"]
        ]
        return ChatMessage.assistant(content, tool_calls=calls, name=name, id=message_id)
    return ChatMessage(role=role, content=content, name=name, id=message_id)


def _rebuilt(message: ChatMessage, kind: str | None = None) -> dict[str, Any]:
    """The LangChain message memweave's own fields describe, as `model_dump()` writes it."""
    kind = kind or _TYPE[message.role]
    data: dict[str, Any] = {
        "content": message.content,
        "name": message.name,
        "id": message.id,
    }
    if kind == "ai":
        data["tool_calls"] = [
            {"name": call.name, "args": _args(call.arguments), "id": call.id, "type": "tool_call"}
            for call in message.tool_calls
        ]
        if message.refusal is not None and message.content == "":
            data["content"] = message.refusal
    if kind == "tool":
        data["tool_call_id"] = message.tool_call_id or ""
    try:
        built = messages_from_dict([{"type": kind, "data": data}])[0]
    except (ValidationError, ValueError):
        # A kind with fields memweave has no place for (a custom role's `role`): the stored
        # metadata then holds the whole message.
        return {}
    dumped: dict[str, Any] = built.model_dump()
    return dumped


def _args(arguments: str) -> dict[str, Any]:
    try:
        value = json.loads(arguments)
    except ValueError:
        return {"raw": arguments}
    return value if isinstance(value, dict) else {"raw": value}


def messages_to_memweave(messages: Sequence[BaseMessage]) -> list[ChatMessage]:
    """Convert LangChain messages to memweave messages, losing nothing that is JSON.

    Human, AI, system and tool messages map onto memweave roles; text and `image_url` content
    blocks, names, tool calls, tool call ids and message ids onto memweave fields. Whatever
    else the message holds (other content blocks, `additional_kwargs`, `response_metadata`,
    `usage_metadata`, a tool's `status` and `artifact`, custom roles) is kept under
    `metadata["langchain"]`, so `messages_from_memweave` gives the message back unchanged.
    A message without an `id` gets one, set on the message (as LangGraph's `add_messages`
    does), so adding the same message object twice stores it once.

    Raises:
        InvalidMessage: An item is not a LangChain message, is a `RemoveMessage`, or holds
            data that is not JSON (e.g. a non-JSON tool `artifact`).
    """
    out: list[ChatMessage] = []
    for position, message in enumerate(messages):
        if not isinstance(message, BaseMessage) or message.type == "remove":
            raise InvalidMessage(
                f"expected a LangChain message, got {type(message).__name__}", position=position
            )
        if not message.id:
            message.id = _new_id()
        data = _json(message.model_dump(), position)
        kind = str(data.pop("type"))
        message_id = message.id if _valid_id(message.id) else _stand_in_id(message.id)
        try:
            native = _native(data, kind, message_id)
        except InvalidMessage as exc:
            raise InvalidMessage(exc.reason, field=exc.field, position=position) from None
        natural = _TYPE[native.role]
        base = _rebuilt(native, None if kind == natural else kind)
        base.pop("type", None)
        meta: dict[str, JsonValue] = {}
        if kind != natural:
            meta["type"] = kind
        changed = {k: v for k, v in data.items() if base.get(k, _MISSING) != v}
        missing = [k for k in base if k not in data]
        if changed:
            meta["set"] = changed
        if missing:
            meta["unset"] = list(missing)
        if meta:
            native = native.model_copy(update={"metadata": {METADATA_KEY: meta}})
        out.append(native)
    return out


def messages_from_memweave(messages: Sequence[ChatMessage]) -> list[BaseMessage]:
    """Convert memweave messages to LangChain messages.

    Messages written by `messages_to_memweave` come back unchanged; others map from their
    own fields (role, content, name, tool calls, tool call id, and the message id as `id`).
    """
    out: list[BaseMessage] = []
    for message in messages:
        meta = message.metadata.get(METADATA_KEY)
        meta = meta if isinstance(meta, dict) else {}
        kind = meta.get("type")
        kind = kind if isinstance(kind, str) else _TYPE[message.role]
        data = _rebuilt(message, kind)
        changed = meta.get("set")
        data.update(changed if isinstance(changed, dict) else {})
        unset = meta.get("unset")
        for key in unset if isinstance(unset, list) else ():
            data.pop(str(key), None)
        data.pop("type", None)
        out.append(messages_from_dict([{"type": kind, "data": data}])[0])
    return out


# -- chat history -------------------------------------------------------------------------------


class MemweaveChatMessageHistory(BaseChatMessageHistory):
    """A LangChain chat history for one session, stored in a memweave backend.

    Every method is available sync and async; the sync ones run on memweave's background loop
    and raise `SyncCallInEventLoop` inside a running event loop (see the module docstring).
    Adding is one atomic batch, idempotent by message id; messages are never matched by
    content. Messages round-trip unchanged (see `messages_to_memweave`). The history never
    closes the backend: one backend serves many `MemweaveChatMessageHistory` objects.

    Args:
        history: The memweave backend.
        session_id: The session the messages are stored under.
        reducer: A memweave reducer applied when messages are read; only the window it keeps
            is read, and storage stays whole.

    Raises:
        ConfigurationError: `history` or `reducer` has the wrong type.
        InvalidSessionId: `session_id` cannot be stored.

    Example:
        ```python
        from langchain_core.runnables.history import RunnableWithMessageHistory
        from memweave import from_url

        store = from_url("sqlite+aiosqlite:///chat.db")
        chain = RunnableWithMessageHistory(
            model, lambda session_id: MemweaveChatMessageHistory(store, session_id)
        )
        chain.invoke("Hello!", config={"configurable": {"session_id": "ada-1"}})
        ```
    """

    def __init__(
        self,
        history: ChatHistoryProvider,
        session_id: str,
        *,
        reducer: ChatReducer | None = None,
    ) -> None:
        if not isinstance(history, ChatHistoryProvider):
            raise ConfigurationError(
                f"history must be a memweave ChatHistoryProvider, got {history!r}"
            )
        if reducer is not None and not isinstance(reducer, ChatReducer):
            raise ConfigurationError(f"reducer must be a memweave ChatReducer, got {reducer!r}")
        super().__init__()
        self.history = history
        """The memweave backend."""
        self.session_id = validate_session_id(session_id)
        """The session the messages are stored under."""
        self.reducer = reducer
        """The reducer applied on read, or None."""

    @property
    def messages(self) -> list[BaseMessage]:  # type: ignore[override]
        """The session's messages, oldest first (reduced when a reducer is set).

        Raises:
            SyncCallInEventLoop: Read inside a running event loop; await `aget_messages()`.
        """
        return _run_sync(self.aget_messages(), "messages", "aget_messages()")

    async def aget_messages(self) -> list[BaseMessage]:
        """Return the session's messages, oldest first (reduced when a reducer is set)."""
        stored = await read_window(self.history, self.session_id, self.reducer)
        return messages_from_memweave(stored)

    def add_messages(self, messages: Sequence[BaseMessage]) -> None:
        """Store `messages` at the end of the session, in one atomic batch.

        Raises:
            SyncCallInEventLoop: Called inside a running event loop; await `aadd_messages()`.
            InvalidMessage: A message cannot be stored; nothing was stored.
        """
        _run_sync(self.aadd_messages(messages), "add_messages", "aadd_messages()")

    async def aadd_messages(self, messages: Sequence[BaseMessage]) -> None:
        """Store `messages` at the end of the session, in one atomic batch.

        Raises:
            InvalidMessage: A message cannot be stored; nothing was stored.
        """
        await self.history.add_messages(self.session_id, messages_to_memweave(messages))

    def clear(self) -> None:
        """Delete the session's messages.

        Raises:
            SyncCallInEventLoop: Called inside a running event loop; await `aclear()`.
        """
        _run_sync(self.aclear(), "clear", "aclear()")

    async def aclear(self) -> None:
        """Delete the session's messages."""
        await self.history.clear(self.session_id)


# -- reducers -----------------------------------------------------------------------------------


async def reduce_messages(
    messages: Sequence[BaseMessage], reducer: ChatReducer
) -> list[BaseMessage]:
    """Shrink a LangChain message list with a memweave reducer.

    Unlike `trim_messages`, a memweave reducer keeps every system message and never leaves a
    tool message without the AI message that called it, or the reverse. The messages that are
    kept come back unchanged.

    Args:
        messages: The messages, oldest first; messages without an `id` get one.
        reducer: E.g. `MessageCountReducer(20)` or `TokenBudgetReducer(4000)`.

    Example:
        ```python
        window = await reduce_messages(messages, TokenBudgetReducer(4000))
        ```
    """
    if not isinstance(reducer, ChatReducer):
        raise ConfigurationError(f"reducer must be a memweave ChatReducer, got {reducer!r}")
    converted = messages_to_memweave(messages)
    by_id = {message.id: original for message, original in zip(converted, messages, strict=True)}
    reduced = await reducer.reduce(converted)
    fresh = [message for message in reduced if message.id not in by_id]
    rebuilt = iter(messages_from_memweave(fresh))
    return [by_id[m.id] if m.id in by_id else next(rebuilt) for m in reduced]


def reducer_runnable(reducer: ChatReducer) -> Runnable[Sequence[BaseMessage], list[BaseMessage]]:
    """Return `reduce_messages` with `reducer` as a LangChain `Runnable`, for use in chains.

    `ainvoke` awaits `reduce_messages`; `invoke` runs it on memweave's background loop and
    raises `SyncCallInEventLoop` inside a running event loop.

    Example:
        ```python
        chain = reducer_runnable(MessageCountReducer(20)) | model
        ```
    """
    if not isinstance(reducer, ChatReducer):
        raise ConfigurationError(f"reducer must be a memweave ChatReducer, got {reducer!r}")

    async def areduce(messages: Sequence[BaseMessage]) -> list[BaseMessage]:
        return await reduce_messages(messages, reducer)

    def reduce(messages: Sequence[BaseMessage]) -> list[BaseMessage]:
        return _run_sync(areduce(messages), "invoke", "ainvoke()")

    return RunnableLambda(reduce, areduce, name="memweave_reducer")
