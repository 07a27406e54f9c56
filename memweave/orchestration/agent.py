"""`Agent`: a model, instructions, tools and memory, run one turn at a time with `Agent.run`."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping, Sequence
from types import MappingProxyType
from typing import Any, TypeAlias

from memweave.context.base import Context, ContextProvider
from memweave.errors import InvalidArgument, ModelError
from memweave.llm import (
    ChatClient,
    ChatResponse,
    TextChunk,
    Usage,
    stream_chat,
)
from memweave.messages import ChatMessage, ToolCall
from memweave.orchestration._agent_tool import agent_tool, tool_round_events
from memweave.orchestration._runtime import (
    AgentInput,
    AgentResponse,
    Prepared,
    TurnResult,
    as_input_messages,
    as_session,
    check_providers,
    check_tools,
    completed_rounds,
    final_text,
    notify_failure,
    notify_invoked,
    offered_tools,
    store_after_failure,
)
from memweave.orchestration._streaming import (
    AgentEvent,
    AgentStream,
    ReplyEvent,
    ResponseEvent,
    TextDelta,
    ToolCallDelta,
)
from memweave.orchestration._transcript import read_window
from memweave.orchestration._views import tag_messages
from memweave.orchestration.tools import Tool
from memweave.providers.base import ChatHistoryProvider
from memweave.providers.memory import InMemoryChatHistoryProvider
from memweave.reducers.base import ChatReducer
from memweave.session import Session

__all__ = ["Agent", "AgentInput", "AgentResponse", "AgentStream", "ApprovalCallback"]

logger = logging.getLogger(__name__)

ApprovalCallback: TypeAlias = Callable[[ToolCall], bool | Awaitable[bool]]
"""Decides whether a call to an `approval="always"` tool may run (sync or async)."""

_AGENT_NAME = re.compile(r"^[A-Za-z0-9_-]{1,53}$")


class Agent:
    """A model with instructions, tools and memory; `run` answers one turn of a conversation.

    A run loads the session's history (with a `reducer`, only the window it keeps: the
    newest messages it needs and the system messages, so a turn costs the window, not the
    whole session), asks every context
    provider for context, calls the model, runs the tool calls it asks for (in parallel) and
    calls the model again, until it answers without tool calls or `max_tool_rounds` rounds
    have run. The input and every new message are then stored in one `add_messages` batch and
    the context providers' `invoked` hooks see the result. When anything fails, the input is
    still stored, together with every completed tool round (a tool-call message and all its
    results) in the same one batch, so a retry does not run those tools again; the providers'
    `invoked` get the error, and the error reaches the caller unchanged. A run never changes
    the agent, so one agent serves many sessions at once.

    `run_stream` runs the same turn and yields its events (text deltas, tool calls, tool
    results) as they happen; it stores exactly what `run` stores. `as_tool` makes the agent a
    tool of another agent.

    Args:
        name: The agent's name: 1-53 letters, digits, `_` or `-` (so `handoff_to_<name>` is a
            valid tool name). Every message it writes carries it.
        client: The `ChatClient` that answers.
        instructions: The system instructions.
        description: What the agent does, for other agents (handoff tools describe targets
            with it).
        tools: `Tool`s from `@tool`, or plain functions (wrapped with `tool`).
        history: Where conversations are stored; by default an in-memory provider of this
            agent's own. Orchestrators ignore it and store their conversation once, themselves.
        context_providers: Long-term memory and other context, each with a unique `source_id`.
        reducer: Shrinks the loaded history before it is sent (storage is not changed); a
            run reads only the part of the session it keeps.
        max_tool_rounds: How many rounds of tool calls one turn may run; the model is then
            asked to answer without tools.
        options: Model options sent with every call (`temperature`, ...). `stream` is not one:
            call `run_stream` to stream.

    Raises:
        InvalidArgument: A bad name, client, tool, provider, limit or option; duplicate tool
            names or `source_id`s.

    Example:
        ```python
        agent = Agent("helper", client, instructions="Be brief.", tools=[get_weather])
        reply = await agent.run("Weather in Paris?", session="user-42")
        print(reply.text)
        ```
    """

    def __init__(
        self,
        name: str,
        client: ChatClient,
        *,
        instructions: str = "",
        description: str = "",
        tools: Sequence[Tool[..., Any] | Callable[..., Any]] = (),
        history: ChatHistoryProvider | None = None,
        context_providers: Sequence[ContextProvider] = (),
        reducer: ChatReducer | None = None,
        max_tool_rounds: int = 8,
        options: Mapping[str, Any] | None = None,
    ) -> None:
        if not isinstance(name, str) or not _AGENT_NAME.match(name):
            raise InvalidArgument("name", name, "an agent name is 1-53 letters, digits, '_' or '-'")
        if not callable(getattr(client, "complete", None)):
            raise InvalidArgument("client", client, "expected a ChatClient with complete()")
        for label, text in (("instructions", instructions), ("description", description)):
            if not isinstance(text, str):
                raise InvalidArgument(label, text, "must be a str")
        if history is not None and not isinstance(history, ChatHistoryProvider):
            raise InvalidArgument("history", history, "expected a ChatHistoryProvider or None")
        if reducer is not None and not isinstance(reducer, ChatReducer):
            raise InvalidArgument("reducer", reducer, "expected a ChatReducer or None")
        if (
            isinstance(max_tool_rounds, bool)
            or not isinstance(max_tool_rounds, int)
            or max_tool_rounds < 0
        ):
            raise InvalidArgument("max_tool_rounds", max_tool_rounds, "must be an int >= 0")
        self._name = name
        self._client = client
        self._instructions = instructions
        self._description = description
        self._tools = check_tools(tools)
        self._history = history if history is not None else InMemoryChatHistoryProvider()
        self._providers = check_providers(context_providers)
        self._reducer = reducer
        self._max_tool_rounds = max_tool_rounds
        self._options: Mapping[str, Any] = MappingProxyType(dict(options or {}))
        for reserved in ("stream", "stream_options"):
            if reserved in self._options:
                raise InvalidArgument(
                    "options",
                    reserved,
                    "streaming is not a model option here: call run_stream() to stream a turn",
                )

    # Read-only views: a run must not be able to change the agent, and neither should callers.

    @property
    def name(self) -> str:
        """The agent's name."""
        return self._name

    @property
    def client(self) -> ChatClient:
        """The model client."""
        return self._client

    @property
    def instructions(self) -> str:
        """The system instructions."""
        return self._instructions

    @property
    def description(self) -> str:
        """What the agent does, as other agents read it."""
        return self._description

    @property
    def tools(self) -> tuple[Tool[..., Any], ...]:
        """The agent's tools."""
        return tuple(self._tools.values())

    @property
    def history(self) -> ChatHistoryProvider:
        """Where `run` stores conversations."""
        return self._history

    @property
    def context_providers(self) -> tuple[ContextProvider, ...]:
        """The context providers, in order."""
        return self._providers

    @property
    def reducer(self) -> ChatReducer | None:
        """The reducer applied to loaded history, if any."""
        return self._reducer

    @property
    def max_tool_rounds(self) -> int:
        """How many rounds of tool calls one turn may run."""
        return self._max_tool_rounds

    @property
    def options(self) -> Mapping[str, Any]:
        """Model options sent with every call (read-only)."""
        return self._options

    def __repr__(self) -> str:
        return f"Agent(name={self._name!r}, tools={list(self._tools)!r})"

    # -- public API -----------------------------------------------------------------------------

    async def run(
        self,
        message: AgentInput,
        *,
        session: Session | str | None = None,
        approve: ApprovalCallback | None = None,
    ) -> AgentResponse:
        """Answer `message` in the conversation of `session`, storing input and output.

        Args:
            message: A user text, a message, or several messages.
            session: The conversation: a `Session`, a session id, or None for a new one.
                Context providers keep their state in `session.state`.
            approve: Decides each call of an `approval="always"` tool. Without it such calls
                are not run, and the model is told they were not approved.

        Returns:
            The new messages, the final text, the usage and the session id.

        Raises:
            InvalidMessage: The input is empty or not made of messages.
            ModelError: The model call failed, or the model kept calling tools after
                `max_tool_rounds`. Any error from the client, a context provider or the
                history provider reaches the caller unchanged, after the input and the
                completed tool rounds were stored (a round whose calls are not all answered
                is left out).
        """
        events = self._run_events(
            as_input_messages(message), as_session(session), approve, stream=False
        )
        async with contextlib.aclosing(events):
            async for event in events:
                if isinstance(event, ResponseEvent):
                    return event.response
        raise AssertionError("unreachable: a turn always ends with its response")

    def run_stream(
        self,
        message: AgentInput,
        *,
        session: Session | str | None = None,
        approve: ApprovalCallback | None = None,
    ) -> AgentStream:
        """Run the turn `run` runs, yielding its events as they happen.

        The model is called through its `stream` method when the client has one (a client
        with only `complete` sends each reply as one fragment). The stored messages are
        exactly those `run` stores, and the last event is a `ResponseEvent` carrying the
        `AgentResponse` `run` returns (also on `AgentStream.response` afterwards). Stopping
        early (`aclose()`, leaving `async with`, cancelling) stores the input and the complete
        tool rounds, never a half message, as a failed `run` does. Nothing runs until the
        stream is iterated; the input is checked at once.

        Args:
            message: A user text, a message, or several messages.
            session: The conversation: a `Session`, a session id, or None for a new one.
            approve: As for `run`.

        Returns:
            An `AgentStream`: `async for event in agent.run_stream(...)`.

        Raises:
            InvalidMessage: The input is empty or not made of messages (raised here).
            ModelError: While iterating, as for `run`; every error of `run` arrives from the
                iteration, after the same storing.

        Example:
            ```python
            async with agent.run_stream("Weather in Paris?", session="s1") as stream:
                async for event in stream:
                    if isinstance(event, TextDelta):
                        print(event.text, end="", flush=True)
            print(stream.response.usage)
            ```
        """
        inputs = as_input_messages(message)
        return AgentStream(self._run_events(inputs, as_session(session), approve, stream=True))

    def as_tool(self, name: str | None = None, description: str | None = None) -> Tool[..., Any]:
        """Return a tool that runs this agent, so another agent can call it.

        The tool takes one argument, `task` (the request, in words), runs one turn of this
        agent on it and returns the agent's final text. Several calls in one reply run
        concurrently. Each call's turn is stored once, in a sub-session of the caller's
        history whose id `sub_session_id(caller_session_id, tool_name, call_id)` derives from
        the caller's session and the call, so it is read with the normal history API:
        `await history.list_messages(result.metadata[SUB_SESSION_KEY])`. The tool result
        carries that id under `SUB_SESSION_KEY`; the sub-session's first message carries its
        caller under `PARENT_KEY`. A retried call (same session, same call id) returns the
        answer already stored, or finishes the interrupted turn, instead of running it again.
        Agents called as tools may call agents as tools, to any depth; when the caller
        streams, their events stream into its stream. The caller's `approve` decides their
        calls too. When the agent fails, the call gets an error result (see
        `TOOL_ERROR_KEY`) and the caller goes on; called outside an agent turn, the tool runs
        in a new session of this agent's own history.

        Args:
            name: The tool's name; defaults to the agent's name.
            description: What the model reads about the tool; defaults to the agent's
                `description`.

        Raises:
            ConfigurationError: `name` is not a valid tool name.

        Example:
            ```python
            researcher = Agent("researcher", client, description="Finds facts.")
            lead = Agent("lead", client, tools=[researcher.as_tool()])
            ```
        """
        return agent_tool(self, name, description)

    # -- building blocks for orchestrators ------------------------------------------------------

    async def _run_events(
        self,
        inputs: Sequence[ChatMessage],
        current: Session,
        approve: ApprovalCallback | None,
        *,
        stream: bool,
        history: ChatHistoryProvider | None = None,
    ) -> AsyncGenerator[AgentEvent, None]:
        """One stored turn (what `run` and `run_stream` do), as events ending with a
        `ResponseEvent`. `inputs` may be empty only to finish a turn whose input is stored.
        `history` replaces the agent's own (an agent run as a tool stores with its caller)."""
        store = history if history is not None else self._history
        request: list[ChatMessage] = []
        produced: list[ChatMessage] = []
        result: TurnResult | None = None
        try:
            loaded = await read_window(store, current.id, self._reducer)
            request = [*loaded, *inputs]
            turn = self._respond_events(
                current,
                loaded,
                inputs,
                approve=approve,
                progress=produced,
                reduced=True,
                stream=stream,
                history_provider=store,
            )
            async with contextlib.aclosing(turn):
                async for item in turn:
                    if isinstance(item, TurnResult):
                        result = item
                    else:
                        yield item
            if result is None:  # pragma: no cover - _respond_events always ends with it
                raise AssertionError("the turn ended without its result")
            request = result.request
            await store.add_messages(current.id, [*inputs, *result.messages])
        except (Exception, asyncio.CancelledError, GeneratorExit) as exc:
            # GeneratorExit: the consumer of run_stream stopped early; keep what a failure keeps.
            kept = [*inputs, *completed_rounds(produced)]
            await store_after_failure(store, current.id, kept, exc)
            await notify_failure(self._providers, current, request or inputs, exc)
            raise
        await notify_invoked(self._providers, current, result.request, result.messages, None)
        response = AgentResponse(
            messages=tuple(result.messages),
            text=final_text(result.messages),
            usage=result.usage,
            session_id=current.id,
        )
        yield ResponseEvent(agent=self._name, session_id=current.id, response=response)

    async def _prepare(
        self,
        session: Session,
        history: Sequence[ChatMessage],
        new: Sequence[ChatMessage] = (),
        *,
        extra_tools: Sequence[Tool[..., Any]] = (),
        reduced: bool = False,
    ) -> Prepared:
        """Build the next model request: reduce `history`, add `new`, gather context.

        With `reduced=True`, `history` is already the reducer's window (read with
        `read_window` or `Transcript.window`) and is sent as it is.

        Every context provider's `invoking` is called (concurrently); their instructions are
        joined after the agent's own, their messages go before the conversation, and their
        tools are offered next to the agent's and `extra_tools`.
        """
        kept = list(history)
        if self._reducer is not None and kept and not reduced:
            kept = await self._reducer.reduce(kept)
        conversation = [*kept, *new]
        contexts: list[Context] = []
        if self._providers:
            contexts = list(
                await asyncio.gather(
                    *(provider.invoking(session, conversation) for provider in self._providers)
                )
            )
        parts = [self._instructions] if self._instructions else []
        parts.extend(c.instructions for c in contexts if c.instructions)
        sent: list[ChatMessage] = [ChatMessage.system("\n\n".join(parts))] if parts else []
        for context in contexts:
            sent.extend(context.messages)
        sent.extend(conversation)
        offered: list[object] = [*self._tools.values(), *extra_tools]
        for context in contexts:
            offered.extend(context.tools)
        specs, runnable = offered_tools(offered, self._name)
        return Prepared(conversation=conversation, messages=sent, specs=specs, tools=runnable)

    def _model_options(self, prepared: Prepared, allow_tools: bool) -> dict[str, Any]:
        options = dict(self._options)
        if prepared.specs and not allow_tools:
            options["tool_choice"] = "none"
        return options

    async def _call_model(self, prepared: Prepared, *, allow_tools: bool = True) -> ChatResponse:
        """Send a prepared request; with `allow_tools=False` the model must answer in text."""
        response = await self._client.complete(
            prepared.messages,
            tools=prepared.specs or None,
            **self._model_options(prepared, allow_tools),
        )
        if not isinstance(response, ChatResponse):
            raise ModelError(
                f"client of agent {self._name!r} returned {response!r}, not a ChatResponse"
            )
        return response

    async def _stream_model(
        self, prepared: Prepared, *, allow_tools: bool = True, session_id: str
    ) -> AsyncGenerator[TextDelta | ToolCallDelta | ChatResponse, None]:
        """Send a prepared request as `_call_model` does, streaming: yields `TextDelta` and
        `ToolCallDelta` events (for `session_id`) as the reply arrives, and last the whole
        `ChatResponse` (the same `_call_model` returns). Closing it early closes the model's
        stream."""
        chunks = stream_chat(
            self._client,
            prepared.messages,
            tools=prepared.specs or None,
            **self._model_options(prepared, allow_tools),
        )
        async with contextlib.aclosing(chunks):
            async for chunk in chunks:
                if isinstance(chunk, TextChunk):
                    # The hot path of a stream: the fields are already validated (a checked
                    # agent name and session, a TextChunk's str), so skip a second validation.
                    yield TextDelta.model_construct(
                        agent=self._name, session_id=session_id, text=chunk.text
                    )
                elif chunk.kind == "tool_call":
                    yield ToolCallDelta(
                        agent=self._name,
                        session_id=session_id,
                        index=chunk.index,
                        call_id=chunk.id,
                        name=chunk.name,
                        arguments=chunk.arguments,
                    )
                else:
                    yield chunk.response

    async def _respond_events(
        self,
        session: Session,
        history: Sequence[ChatMessage],
        new: Sequence[ChatMessage] = (),
        *,
        approve: ApprovalCallback | None = None,
        progress: list[ChatMessage] | None = None,
        reduced: bool = False,
        stream: bool = False,
        history_provider: ChatHistoryProvider | None = None,
    ) -> AsyncGenerator[AgentEvent | TurnResult, None]:
        """Run one turn on a conversation without loading or storing it, as events.

        Yields (with `stream=True`, the model streams) `TextDelta`/`ToolCallDelta` events,
        a `ReplyEvent` per model call, `ToolCallEvent`s, `ToolResultEvent`s (with
        `stream=True`), and last the `TurnResult`. Each new message is also appended to
        `progress` as it is made (see `_respond`). `history_provider` is where the calling
        orchestrator stores the conversation: an agent tool stores its sub-session there.
        """
        prepared = await self._prepare(session, history, new, reduced=reduced)
        produced: list[ChatMessage] = progress if progress is not None else []
        usage = Usage()
        rounds = 0
        while True:
            allow = rounds < self._max_tool_rounds
            step = Prepared(
                conversation=prepared.conversation,
                messages=[*prepared.messages, *produced],
                specs=prepared.specs,
                tools=prepared.tools,
            )
            if stream:
                response: ChatResponse | None = None
                model = self._stream_model(step, allow_tools=allow, session_id=session.id)
                async with contextlib.aclosing(model):
                    async for part in model:
                        if isinstance(part, ChatResponse):
                            response = part
                        else:
                            yield part
                if response is None:  # pragma: no cover - stream_chat guarantees one
                    raise ModelError(f"agent {self._name!r}: the model stream had no reply")
            else:
                response = await self._call_model(step, allow_tools=allow)
            usage = usage + response.usage
            reply = tag_messages([response.message], self._name)[0]
            produced.append(reply)
            yield ReplyEvent(
                agent=self._name, session_id=session.id, message=reply, usage=response.usage
            )
            if not reply.tool_calls:
                yield TurnResult(
                    messages=list(produced), usage=usage, request=prepared.conversation
                )
                return
            if not allow:
                raise ModelError(
                    f"agent {self._name!r}: the model kept calling tools after "
                    f"max_tool_rounds={self._max_tool_rounds} rounds"
                )
            tools = tool_round_events(
                self._name,
                step.tools,
                reply,
                approve,
                session_id=session.id,
                history=history_provider,
                stream=stream,
            )
            async with contextlib.aclosing(tools):
                async for item in tools:
                    if isinstance(item, list):
                        produced.extend(item)
                    else:
                        yield item
            rounds += 1

    async def _respond(
        self,
        session: Session,
        history: Sequence[ChatMessage],
        new: Sequence[ChatMessage] = (),
        *,
        approve: ApprovalCallback | None = None,
        progress: list[ChatMessage] | None = None,
        reduced: bool = False,
        history_provider: ChatHistoryProvider | None = None,
    ) -> TurnResult:
        """Run one turn on a conversation without loading or storing anything.

        Orchestrators call this with their view of a shared conversation. Returns the new
        messages (tagged with the agent's name), the usage, and the conversation that was sent.
        Each new message is also appended to `progress` as it is made, so a caller still has
        the completed tool rounds when a later model call fails (see `completed_rounds`).
        With `reduced=True`, `history` is the reducer's window already (see `_prepare`).
        `history_provider` is where the orchestrator stores the conversation (agent tools
        store their sub-sessions there). `_respond_events` is the same turn, streamed.
        """
        turn = self._respond_events(
            session,
            history,
            new,
            approve=approve,
            progress=progress,
            reduced=reduced,
            history_provider=history_provider,
        )
        async with contextlib.aclosing(turn):
            async for item in turn:
                if isinstance(item, TurnResult):
                    return item
        raise AssertionError("unreachable: a turn always ends with its result")
