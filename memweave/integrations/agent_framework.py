"""Microsoft Agent Framework adapters: memweave histories and long-term memory in an AF `Agent`.

- `MemweaveHistoryProvider`: an Agent Framework `HistoryProvider` over any memweave
  `ChatHistoryProvider` (SQL, Redis, Chroma, in-memory), with an optional memweave reducer.
- `MemweaveContextProvider`: an Agent Framework `ContextProvider` around a memweave
  `ContextProvider` such as `VectorMemory`.
- `messages_to_memweave` / `messages_from_memweave`: the message conversion both use.
- `MemweaveCheckpointStorage`: Agent Framework's `CheckpointStorage` on memweave's SQL and
  Redis backends (JSON only, no pickle), for AF's own workflows (`HandoffBuilder`, ...).

Conversion is lossless for Agent Framework messages. Text, author names, function calls and
results, images in user messages and message ids map onto memweave's own fields, so memweave
reducers and other memweave readers understand the stored history. Everything else (reasoning,
usage, hosted files, content and message `additional_properties`, custom roles, ...) is kept
under `metadata["agent_framework"]` and restored on the way back. What Agent Framework's own
`Message.to_dict()` leaves out (`raw_representation`, values it cannot serialize) is not
stored either. An AF tool message holding several function results is stored as one memweave
tool message per result (ids `<id>`, `<id>#1`, ...) and merged again on load.

Install with `pip install 'memweave[agent-framework]'`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from memweave.context.base import ContextProvider
from memweave.errors import ConfigurationError, InvalidSessionId, MissingDependency
from memweave.integrations._af_messages import (
    METADATA_KEY,
    messages_from_memweave,
    messages_to_memweave,
)
from memweave.llm import SupportsOpenAITool, tool_to_openai
from memweave.orchestration._transcript import read_window
from memweave.providers.base import ChatHistoryProvider
from memweave.reducers.base import ChatReducer
from memweave.session import Session

try:
    from agent_framework import AgentSession, HistoryProvider, Message, SessionContext
    from agent_framework import ContextProvider as AFContextProvider
    from agent_framework import SupportsAgentRun as _SupportsAgentRun
except ModuleNotFoundError as exc:  # pragma: no cover - exercised in a subprocess test
    raise MissingDependency("agent_framework", "agent-framework") from exc

from memweave.integrations._af_checkpoints import (
    CheckpointNotFound,
    CorruptWorkflowCheckpoint,
    MemweaveCheckpointStorage,
    UnstorableCheckpoint,
)

__all__ = [
    "METADATA_KEY",
    "CheckpointNotFound",
    "CorruptWorkflowCheckpoint",
    "MemweaveCheckpointStorage",
    "MemweaveContextProvider",
    "MemweaveHistoryProvider",
    "UnstorableCheckpoint",
    "messages_from_memweave",
    "messages_to_memweave",
]

# -- providers ----------------------------------------------------------------------------------


def _session_id(session_id: str | None) -> str:
    if session_id is None:
        raise InvalidSessionId(
            None, "Agent Framework passed no session id; run the agent with a session"
        )
    return session_id


class MemweaveHistoryProvider(HistoryProvider):
    """An Agent Framework `HistoryProvider` that stores conversations in a memweave backend.

    Each AF session is one memweave session, under the same id, so any memweave backend works:
    `SQLChatHistoryProvider` (SQLite, PostgreSQL, MariaDB), `RedisChatHistoryProvider`, Chroma
    or in-memory. Saving is an append of the new messages only; saving the same messages twice
    stores them once (by message id; a message without an id gets one, set on the message).
    Messages round-trip exactly (see `messages_to_memweave`). The provider never closes the
    backend: close it yourself (`async with history:`).

    Args:
        history: The memweave backend.
        source_id: This provider's id in the agent's pipeline.
        reducer: A memweave reducer applied to the stored history on load (e.g.
            `TokenBudgetReducer`); only the window it keeps is read, and storage is left
            whole.
        load_messages: Load the history before each run.
        store_inputs: Store the run's input messages.
        store_context_messages: Also store messages other context providers added.
        store_context_from: With `store_context_messages`, only those of these source ids.
        store_outputs: Store the run's response messages.

    Raises:
        ConfigurationError: `history` is not a memweave `ChatHistoryProvider`, or `reducer`
            is not a `ChatReducer`.

    Example:
        ```python
        from agent_framework import Agent
        from memweave import from_url
        from memweave.integrations.agent_framework import MemweaveHistoryProvider

        history = from_url("sqlite+aiosqlite:///chat.db")
        agent = Agent(client, "Be brief.", context_providers=[MemweaveHistoryProvider(history)])
        session = agent.create_session()
        await agent.run("Hello!", session=session)
        ```
    """

    DEFAULT_SOURCE_ID: ClassVar[str] = "memweave"

    def __init__(
        self,
        history: ChatHistoryProvider,
        *,
        source_id: str = DEFAULT_SOURCE_ID,
        reducer: ChatReducer | None = None,
        load_messages: bool = True,
        store_inputs: bool = True,
        store_context_messages: bool = False,
        store_context_from: set[str] | None = None,
        store_outputs: bool = True,
    ) -> None:
        if not isinstance(history, ChatHistoryProvider):
            raise ConfigurationError(
                f"history must be a memweave ChatHistoryProvider, got {history!r}"
            )
        if reducer is not None and not isinstance(reducer, ChatReducer):
            raise ConfigurationError(f"reducer must be a memweave ChatReducer, got {reducer!r}")
        super().__init__(
            source_id,
            load_messages=load_messages,
            store_inputs=store_inputs,
            store_context_messages=store_context_messages,
            store_context_from=store_context_from,
            store_outputs=store_outputs,
        )
        self.history = history
        """The memweave backend the conversation is stored in."""
        self.reducer = reducer
        """The reducer applied on load, or None."""

    async def get_messages(
        self, session_id: str | None, *, state: dict[str, Any] | None = None, **kwargs: Any
    ) -> list[Message]:
        """Return the session's stored messages, reduced when a reducer is set.

        An unknown session reads as empty.

        Raises:
            InvalidSessionId: `session_id` is None or cannot be stored.
            CorruptRecord: A stored entry could not be decoded.
            BackendUnavailable: The backend could not be reached.
        """
        stored = await read_window(self.history, _session_id(session_id), self.reducer)
        return messages_from_memweave(stored)

    async def save_messages(
        self,
        session_id: str | None,
        messages: Sequence[Message],
        *,
        state: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        """Append the messages the session does not hold yet, in one atomic batch.

        Raises:
            InvalidSessionId: `session_id` is None or cannot be stored.
            InvalidMessage: A message holds data that cannot be stored as JSON.
            BackendUnavailable: The backend could not be reached.
        """
        await self.history.add_messages(_session_id(session_id), messages_to_memweave(messages))


def _af_tool(tool: object) -> object:
    if isinstance(tool, Mapping):
        return dict(tool)
    if not callable(tool) and isinstance(tool, SupportsOpenAITool):
        return tool_to_openai(tool)
    return tool


class MemweaveContextProvider(AFContextProvider):
    """An Agent Framework `ContextProvider` that runs a memweave `ContextProvider` in an AF agent.

    Before each run the memweave provider's `invoking` sees the messages about to be sent, and
    its instructions, messages and tools are added to the run. After the run its `invoked`
    gets the run's messages (less what this provider injected) and the response. The memweave
    `Session` is built from the AF session: same id, the user bound with `bind_user` (or the
    `user_id` given here), and the memweave provider's state, kept in the AF session state so
    it persists with `AgentSession.to_dict()`.

    Args:
        provider: The memweave context provider, e.g. `VectorMemory`.
        source_id: This provider's id in the agent's pipeline; defaults to the memweave
            provider's `source_id`.
        user_id: The user for sessions that have none bound; memory scoped by user needs one.

    Example:
        ```python
        memory = MemweaveContextProvider(VectorMemory(...))
        agent = Agent(client, context_providers=[MemweaveHistoryProvider(history), memory])
        session = agent.create_session()
        memory.bind_user(session, "ada")
        ```
    """

    def __init__(
        self,
        provider: ContextProvider,
        *,
        source_id: str | None = None,
        user_id: str | None = None,
    ) -> None:
        if not isinstance(provider, ContextProvider):
            raise ConfigurationError(
                f"provider must be a memweave ContextProvider, got {provider!r}"
            )
        super().__init__(source_id or provider.source_id)
        self.provider = provider
        """The memweave context provider."""
        self.user_id = user_id
        """The user of sessions that have none bound."""

    def bind_user(self, session: AgentSession, user_id: str | None) -> None:
        """Make `user_id` the memweave user of `session` (kept in its state, so it persists)."""
        session.state.setdefault(self.source_id, {})["user_id"] = user_id

    def _session(self, session: AgentSession, state: dict[str, Any]) -> Session:
        saved = state.get("state")
        return Session(
            id=session.session_id,
            user_id=state.get("user_id", self.user_id),
            state=saved if isinstance(saved, dict) else {},
        )

    async def before_run(
        self,
        *,
        agent: _SupportsAgentRun,
        session: AgentSession,
        context: SessionContext,
        state: dict[str, Any],
    ) -> None:
        """Add the memweave provider's instructions, messages and tools to the run."""
        memweave_session = self._session(session, state)
        sending = messages_to_memweave(context.get_messages(include_input=True))
        added = await self.provider.invoking(memweave_session, sending)
        state["state"] = memweave_session.state
        if added.instructions:
            context.extend_instructions(self.source_id, added.instructions)
        if added.messages:
            context.extend_messages(self, messages_from_memweave(added.messages))
        if added.tools:
            context.extend_tools(self.source_id, [_af_tool(tool) for tool in added.tools])

    async def after_run(
        self,
        *,
        agent: _SupportsAgentRun,
        session: AgentSession,
        context: SessionContext,
        state: dict[str, Any],
    ) -> None:
        """Hand the run's messages and its response to the memweave provider's `invoked`."""
        memweave_session = self._session(session, state)
        sent = context.get_messages(exclude_sources={self.source_id}, include_input=True)
        response = context.response.messages if context.response is not None else []
        await self.provider.invoked(
            memweave_session, messages_to_memweave(sent), messages_to_memweave(response)
        )
        state["state"] = memweave_session.state
