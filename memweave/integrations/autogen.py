"""AutoGen adapters: a model context stored in a memweave history, and memory on `VectorMemory`.

- `MemweaveChatCompletionContext`: an autogen-core `ChatCompletionContext` whose messages live
  in any memweave `ChatHistoryProvider`, shaped by an optional memweave reducer. Unlike
  AutoGen's buffered and token-limited contexts, a memweave reducer keeps system messages and
  never separates a function call from its results.
- `MemweaveMemory`: an autogen-core `Memory` on a memweave `VectorMemory`: scoped per user or
  session, hybrid retrieval, hits injected as fenced reference text with a score threshold.
- `messages_to_memweave` / `messages_from_memweave`: the message conversion both use.

Works with autogen-core 0.4 and later, and so with autogen-agentchat's `AssistantAgent`
(`model_context=` and `memory=`). Install with `pip install 'memweave[autogen]'`.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import JsonValue

from memweave.context.vector import VectorMemory
from memweave.errors import ConfigurationError, InvalidArgument, InvalidMessage, MissingDependency
from memweave.messages import ChatMessage, ContentPart, ToolCall
from memweave.orchestration._transcript import read_window
from memweave.providers.base import ChatHistoryProvider
from memweave.reducers.base import ChatReducer
from memweave.session import Session, validate_session_id

try:
    from autogen_core import CancellationToken, FunctionCall, Image
    from autogen_core.memory import (
        Memory,
        MemoryContent,
        MemoryMimeType,
        MemoryQueryResult,
        UpdateContextResult,
    )
    from autogen_core.model_context import ChatCompletionContext
    from autogen_core.model_context._chat_completion_context import ChatCompletionContextState
    from autogen_core.models import (
        AssistantMessage,
        FunctionExecutionResult,
        FunctionExecutionResultMessage,
        LLMMessage,
        SystemMessage,
        UserMessage,
    )
except ModuleNotFoundError as exc:  # pragma: no cover - exercised in a subprocess test
    raise MissingDependency("autogen_core", "autogen") from exc

__all__ = [
    "METADATA_KEY",
    "MemweaveChatCompletionContext",
    "MemweaveMemory",
    "messages_from_memweave",
    "messages_to_memweave",
]

METADATA_KEY = "autogen"
"""Key under `ChatMessage.metadata` holding what memweave's own fields cannot."""

_EMPTY_ID = "autogen-empty-"


# -- conversion ---------------------------------------------------------------------------------


def _user_content(content: str | list[str | Image]) -> str | list[ContentPart]:
    if isinstance(content, str):
        return content
    parts: list[ContentPart] = []
    for item in content:
        if isinstance(item, Image):
            parts.append({"type": "image_url", "image_url": {"url": item.data_uri}})
        else:
            parts.append({"type": "text", "text": str(item)})
    return parts


def _call_id(call_id: str, name: str, seen: dict[str, int], meta: dict[str, JsonValue]) -> str:
    if call_id:
        return call_id
    # Some models send no call ids, but memweave pairs a call with its result by id: the n-th
    # call of a function in a message gets the same stand-in id as the n-th result for it.
    meta["empty_call_id"] = True
    seen[name] = seen.get(name, -1) + 1
    return f"{_EMPTY_ID}{name}-{seen[name]}"


def _convert_one(message: LLMMessage) -> list[ChatMessage]:
    meta: dict[str, JsonValue] = {}
    if isinstance(message, SystemMessage):
        return [ChatMessage.system(message.content)]
    if isinstance(message, UserMessage):
        return [ChatMessage.user(_user_content(message.content), name=message.source)]
    if isinstance(message, AssistantMessage):
        if isinstance(message.content, str):
            if message.thought is not None:
                meta["thought"] = message.thought
            text, calls = message.content, []
        else:
            # AutoGen's OpenAI client sends the thought as the content of a tool-call message.
            if message.thought is not None:
                meta["thought_is_content"] = True
            text = message.thought or ""
            seen: dict[str, int] = {}
            calls = [
                ToolCall(id=_call_id(c.id, c.name, seen, meta), name=c.name, arguments=c.arguments)
                for c in message.content
            ]
        out = ChatMessage.assistant(text, tool_calls=calls, name=message.source)
        return [_with_meta(out, meta)]
    if isinstance(message, FunctionExecutionResultMessage):
        batch = uuid.uuid4().hex
        answered: dict[str, int] = {}
        results: list[ChatMessage] = []
        for result in message.content:
            part: dict[str, JsonValue] = {"name": result.name, "batch": batch}
            if result.is_error is not None:
                part["is_error"] = result.is_error
            call_id = _call_id(result.call_id, result.name, answered, part)
            results.append(_with_meta(ChatMessage.tool(call_id, result.content), part))
        return results
    raise InvalidMessage(f"expected an autogen_core LLMMessage, got {type(message).__name__}")


def _with_meta(message: ChatMessage, meta: dict[str, JsonValue]) -> ChatMessage:
    if not meta:
        return message
    return message.model_copy(update={"metadata": {METADATA_KEY: meta}})


def messages_to_memweave(messages: Sequence[LLMMessage]) -> list[ChatMessage]:
    """Convert AutoGen `LLMMessage`s to memweave messages.

    A `UserMessage` or `AssistantMessage` keeps its `source` as the memweave `name`; a function
    call keeps its id, name and arguments; a `FunctionExecutionResultMessage` becomes one
    memweave tool message per result. Thoughts, result names, `is_error` and empty call ids are
    kept under `metadata["autogen"]`, so `messages_from_memweave` gives the messages back.

    Raises:
        InvalidMessage: An item is not an AutoGen `LLMMessage`; the error names its position.
    """
    out: list[ChatMessage] = []
    for position, message in enumerate(messages):
        try:
            out.extend(_convert_one(message))
        except InvalidMessage as exc:
            raise InvalidMessage(exc.reason, field=exc.field, position=position) from None
    return out


def _meta(message: ChatMessage) -> Mapping[str, Any]:
    meta = message.metadata.get(METADATA_KEY)
    return meta if isinstance(meta, dict) else {}


def _original_id(call_id: str, meta: Mapping[str, Any]) -> str:
    return "" if meta.get("empty_call_id") and call_id.startswith(_EMPTY_ID) else call_id


def _user_items(content: list[ContentPart]) -> list[str | Image]:
    items: list[str | Image] = []
    for part in content:
        if part.get("type") == "text":
            items.append(str(part.get("text", "")))
            continue
        image = part.get("image_url")
        url = image.get("url") if isinstance(image, dict) else None
        if isinstance(url, str) and url.startswith("data:image/"):
            try:
                items.append(Image.from_uri(url))
                continue
            except ValueError:
                pass
        items.append(json.dumps(part))
    return items


def _from_one(message: ChatMessage) -> LLMMessage:
    meta = _meta(message)
    if message.role == "system":
        return SystemMessage(content=message.text)
    if message.role == "user":
        if isinstance(message.content, str):
            return UserMessage(content=message.content, source=message.name or "user")
        return UserMessage(content=_user_items(message.content), source=message.name or "user")
    source = message.name or "assistant"
    if not message.tool_calls:
        thought = meta.get("thought")
        return AssistantMessage(
            content=message.text or message.refusal or "",
            thought=thought if isinstance(thought, str) else None,
            source=source,
        )
    calls = [
        FunctionCall(id=_original_id(c.id, meta), name=c.name, arguments=c.arguments)
        for c in message.tool_calls
    ]
    text = message.text
    thought = text if (meta.get("thought_is_content") or (text and not meta)) else None
    return AssistantMessage(content=calls, thought=thought, source=source)


def _result(message: ChatMessage, names: Mapping[str, str]) -> FunctionExecutionResult:
    meta = _meta(message)
    is_error = meta.get("is_error")
    call_id = str(message.tool_call_id)
    return FunctionExecutionResult(
        content=message.text,
        name=str(meta.get("name", names.get(call_id, ""))),
        call_id=_original_id(call_id, meta),
        is_error=is_error if isinstance(is_error, bool) else None,
    )


def messages_from_memweave(messages: Sequence[ChatMessage]) -> list[LLMMessage]:
    """Convert memweave messages to AutoGen `LLMMessage`s.

    Consecutive tool messages become one `FunctionExecutionResultMessage` (those from one AutoGen
    message are regrouped exactly); image parts with a `data:` URL become `Image`s. A message
    written by another memweave user maps from its own fields: its `name` is the `source`
    (`"user"` or `"assistant"` when it has none), and a tool result takes the function name
    from the call it answers.
    """
    out: list[LLMMessage] = []
    batch: object = None
    names: dict[str, str] = {}
    for message in messages:
        if message.role != "tool":
            out.append(_from_one(message))
            names.update((call.id, call.name) for call in message.tool_calls)
            batch = None
            continue
        this_batch = _meta(message).get("batch")
        last = out[-1] if out else None
        if isinstance(last, FunctionExecutionResultMessage) and (
            this_batch is None or this_batch == batch
        ):
            last.content.append(_result(message, names))
        else:
            out.append(FunctionExecutionResultMessage(content=[_result(message, names)]))
        batch = this_batch
    return out


# -- model context ------------------------------------------------------------------------------


class MemweaveChatCompletionContext(ChatCompletionContext):
    """An AutoGen model context whose messages are stored in a memweave history.

    Each `add_message` appends to the session in the backend, so the conversation survives
    restarts and can be shared by processes (with a SQL or Redis backend). `get_messages`
    returns the stored messages shaped by `reducer`, e.g. `MessageCountReducer(20)` or
    `TokenBudgetReducer(8000)`: system messages are kept and a function call is never
    separated from its results, which AutoGen's own buffered contexts do not guarantee.

    Memory from `MemweaveMemory` is shown with the current turn only (see
    `set_turn_context`) and never stored.

    `save_state()` returns `{"session_id": ...}` (the messages are already stored);
    `load_state()` accepts that, or AutoGen's own `{"messages": [...]}`, which replaces the
    session's stored messages. This context is not a serializable AutoGen component.

    Args:
        history: The memweave backend; it is not closed by this context.
        session_id: The session the conversation is stored under.
        reducer: A memweave reducer applied on read; only the window it keeps is read, and
            storage is left whole.
        initial_messages: Messages stored first when the session is empty.

    Raises:
        ConfigurationError: `history` or `reducer` has the wrong type.
        InvalidSessionId: `session_id` cannot be stored.

    Example:
        ```python
        from autogen_agentchat.agents import AssistantAgent
        from memweave import from_url
        from memweave.reducers import MessageCountReducer

        context = MemweaveChatCompletionContext(
            from_url("redis://localhost:6379"), "chat-42", reducer=MessageCountReducer(20)
        )
        agent = AssistantAgent("helper", model_client=client, model_context=context)
        ```
    """

    def __init__(
        self,
        history: ChatHistoryProvider,
        session_id: str,
        *,
        reducer: ChatReducer | None = None,
        initial_messages: list[LLMMessage] | None = None,
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
        """The session the conversation is stored under."""
        self.reducer = reducer
        """The reducer applied on read, or None."""
        self._initial = messages_to_memweave(initial_messages or [])
        self._turn: list[ChatMessage] = []
        self._turn_after: str | None = None

    async def _store_initial(self) -> None:
        if self._initial:
            initial, self._initial = self._initial, []
            if await self.history.count_messages(self.session_id) == 0:
                await self.history.add_messages(self.session_id, initial)

    async def add_message(self, message: LLMMessage) -> None:
        """Store `message` at the end of the session; a `UserMessage` starts a new turn."""
        await self._store_initial()
        if isinstance(message, UserMessage):
            self._turn, self._turn_after = [], None
        await self.history.add_messages(self.session_id, messages_to_memweave([message]))

    async def get_messages(self) -> list[LLMMessage]:
        """Return the stored messages, reduced, with this turn's context after the newest one
        stored when it was set."""
        return messages_from_memweave(await self.memweave_messages())

    async def memweave_messages(self) -> list[ChatMessage]:
        """Return what `get_messages` returns, as memweave messages."""
        await self._store_initial()
        stored = await read_window(self.history, self.session_id, self.reducer)
        if not self._turn:
            return stored
        ids = [message.id for message in stored]
        at = ids.index(self._turn_after) + 1 if self._turn_after in ids else len(stored)
        return [*stored[:at], *self._turn, *stored[at:]]

    async def set_turn_context(self, messages: Sequence[LLMMessage]) -> None:
        """Show `messages` after the newest stored message until the next `UserMessage` is
        added, without storing them. `MemweaveMemory` puts its memories here."""
        newest = await self.history.list_messages(self.session_id, limit=1)
        self._turn = messages_to_memweave(messages)
        self._turn_after = newest[0].id if newest else None

    async def clear(self) -> None:
        """Delete the session's stored messages."""
        self._turn, self._turn_after, self._initial = [], None, []
        await self.history.clear(self.session_id)

    async def save_state(self) -> Mapping[str, Any]:
        """Return `{"session_id": ...}`; the messages themselves are in the backend."""
        return {"session_id": self.session_id}

    async def load_state(self, state: Mapping[str, Any]) -> None:
        """Point at `state["session_id"]`; AutoGen's `{"messages": [...]}` replaces the stored
        messages of the session instead."""
        if "session_id" in state:
            self.session_id = validate_session_id(state["session_id"])
            self._turn, self._turn_after, self._initial = [], None, []
        if "messages" in state:
            messages = ChatCompletionContextState.model_validate(state).messages
            await self.clear()
            await self.history.add_messages(self.session_id, messages_to_memweave(messages))


# -- memory -------------------------------------------------------------------------------------


class MemweaveMemory(Memory):
    """An AutoGen `Memory` on a memweave `VectorMemory`, scoped to one user or session.

    `update_context` searches with the newest user message and adds the hits (at or above the
    memory's `min_score`, within its `max_memory_tokens`) as one fenced system message marked
    as reference data, not instructions. With a `MemweaveChatCompletionContext` it is shown for
    the current turn only and never stored; other contexts get it via `add_message`, as
    AutoGen's `ListMemory` does. `add`, `query` and `clear` work on the same scope.

    Args:
        memory: The vector memory; it is not closed by `close()`.
        user_id: Read and write this user's memories.
        session_id: Without `user_id`, read and write the memories of this session only.
        name: The memory's name, as AutoGen components have.

    Raises:
        ConfigurationError: `memory` is not a `VectorMemory`, or neither `user_id` nor
            `session_id` is given (a memory never spans every user).

    Example:
        ```python
        memory = MemweaveMemory(VectorMemory("./memory"), user_id="ada")
        await memory.add(MemoryContent(content="Ada likes tea.", mime_type=MemoryMimeType.TEXT))
        agent = AssistantAgent("helper", model_client=client, memory=[memory])
        ```
    """

    def __init__(
        self,
        memory: VectorMemory,
        *,
        user_id: str | None = None,
        session_id: str | None = None,
        name: str = "memweave",
    ) -> None:
        if not isinstance(memory, VectorMemory):
            raise ConfigurationError(f"memory must be a memweave VectorMemory, got {memory!r}")
        if user_id is None and session_id is None:
            raise ConfigurationError(
                "MemweaveMemory needs user_id or session_id: a memory never spans every user"
            )
        self.memory = memory
        """The vector memory."""
        self.user_id = user_id
        """The user whose memories are read and written, or None."""
        self.session_id = session_id
        """The session scope when there is no user, or None."""
        self.name = name
        """The memory's name."""

    async def update_context(self, model_context: ChatCompletionContext) -> UpdateContextResult:
        """Add the memories relevant to the newest user message to `model_context`.

        Returns:
            The added text as one `MemoryContent` (Markdown), or no results when nothing
            relevant was found.
        """
        if isinstance(model_context, MemweaveChatCompletionContext):
            messages = await model_context.memweave_messages()
        else:
            messages = messages_to_memweave(await model_context.get_messages())
        session = Session(id=self.session_id or "autogen", user_id=self.user_id)
        added = await self.memory.invoking(session, messages)
        if not added.instructions:
            return UpdateContextResult(memories=MemoryQueryResult(results=[]))
        note = SystemMessage(content=added.instructions)
        if isinstance(model_context, MemweaveChatCompletionContext):
            await model_context.set_turn_context([note])
        else:
            await model_context.add_message(note)
        found = MemoryContent(
            content=added.instructions,
            mime_type=MemoryMimeType.MARKDOWN,
            metadata={"source": "memweave"},
        )
        return UpdateContextResult(memories=MemoryQueryResult(results=[found]))

    async def query(
        self,
        query: str | MemoryContent,
        cancellation_token: CancellationToken | None = None,
        **kwargs: Any,
    ) -> MemoryQueryResult:
        """Return the scope's memories most similar to `query`, best first.

        Keyword arguments `k`, `mode` and `min_score` go to `VectorMemory.search`. Each result
        carries the memory's metadata plus `id`, `score`, `created_at`, `speaker` and
        `session_id`.
        """
        text = query if isinstance(query, str) else str(query.content)
        hits = await self.memory.search(
            text, user_id=self.user_id, session_id=self.session_id, **kwargs
        )
        return MemoryQueryResult(
            results=[
                MemoryContent(
                    content=hit.text,
                    mime_type=MemoryMimeType.TEXT,
                    metadata={
                        **hit.metadata,
                        "id": hit.id,
                        "score": hit.score,
                        "created_at": hit.created_at.isoformat(),
                        "speaker": hit.speaker,
                        "session_id": hit.session_id,
                    },
                )
                for hit in hits
            ]
        )

    async def add(
        self, content: MemoryContent, cancellation_token: CancellationToken | None = None
    ) -> None:
        """Remember a text (plain or Markdown) or a JSON object; its metadata is kept with it.

        Raises:
            InvalidArgument: The content is bytes or an image.
        """
        value = content.content
        if isinstance(value, dict):
            text = json.dumps(value, sort_keys=True)
        elif isinstance(value, str):
            text = value
        else:
            raise InvalidArgument(
                "content", type(value).__name__, "MemweaveMemory stores text and JSON only"
            )
        mime = content.mime_type
        metadata: dict[str, JsonValue] = {
            **(content.metadata or {}),
            "mime_type": mime.value if isinstance(mime, MemoryMimeType) else str(mime),
        }
        await self.memory.add(
            text, user_id=self.user_id, session_id=self.session_id, metadata=metadata
        )

    async def clear(self) -> None:
        """Forget every memory of the scope."""
        await self.memory.clear(user_id=self.user_id, session_id=self.session_id)

    async def close(self) -> None:
        """Do nothing: the `VectorMemory` belongs to the caller, who closes it."""
