"""`Agent`: a model, instructions, tools and memory, run one turn at a time with `Agent.run`."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from types import MappingProxyType
from typing import Any, TypeAlias

from pydantic import BaseModel, ConfigDict

from memweave.context.base import Context, ContextProvider
from memweave.errors import InvalidArgument, ModelError
from memweave.llm import (
    ChatClient,
    ChatResponse,
    SupportsOpenAITool,
    ToolSpec,
    Usage,
    tool_to_openai,
)
from memweave.messages import ChatMessage, ToolCall
from memweave.orchestration._runtime import (
    AgentInput,
    Prepared,
    TurnResult,
    as_input_messages,
    as_session,
    call_maybe_async,
    completed_rounds,
    denied_result,
    final_text,
    notify_failure,
    notify_invoked,
    store_after_failure,
)
from memweave.orchestration._transcript import read_window
from memweave.orchestration._views import tag_messages
from memweave.orchestration.tools import Tool, run_tool_calls, tool
from memweave.providers.base import ChatHistoryProvider
from memweave.providers.memory import InMemoryChatHistoryProvider
from memweave.reducers.base import ChatReducer
from memweave.session import Session

__all__ = ["Agent", "AgentInput", "AgentResponse", "ApprovalCallback"]

logger = logging.getLogger(__name__)

ApprovalCallback: TypeAlias = Callable[[ToolCall], bool | Awaitable[bool]]
"""Decides whether a call to an `approval="always"` tool may run (sync or async)."""

_AGENT_NAME = re.compile(r"^[A-Za-z0-9_-]{1,53}$")


class AgentResponse(BaseModel):
    """What one run of an agent (or an orchestrator) produced."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    messages: tuple[ChatMessage, ...]
    """The new messages, oldest first: assistant replies and tool results, tagged with their
    agent's name."""
    text: str
    """The text of the final assistant message."""
    usage: Usage = Usage()
    """Tokens used by every model call of the run."""
    session_id: str
    """The session the run was stored under; pass it again to continue the conversation."""


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
        options: Model options sent with every call (`temperature`, ...).

    Raises:
        InvalidArgument: A bad name, client, tool, provider or limit; duplicate tool names or
            `source_id`s.

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
        self._tools = _check_tools(tools)
        self._history = history if history is not None else InMemoryChatHistoryProvider()
        self._providers = _check_providers(context_providers)
        self._reducer = reducer
        self._max_tool_rounds = max_tool_rounds
        self._options: Mapping[str, Any] = MappingProxyType(dict(options or {}))

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
        inputs = as_input_messages(message)
        current = as_session(session)
        request: list[ChatMessage] = []
        produced: list[ChatMessage] = []
        try:
            loaded = await read_window(self._history, current.id, self._reducer)
            request = [*loaded, *inputs]
            result = await self._respond(
                current, loaded, inputs, approve=approve, progress=produced, reduced=True
            )
            request = result.request
            await self._history.add_messages(current.id, [*inputs, *result.messages])
        except (Exception, asyncio.CancelledError) as exc:
            kept = [*inputs, *completed_rounds(produced)]
            await store_after_failure(self._history, current.id, kept, exc)
            await notify_failure(self._providers, current, request or inputs, exc)
            raise
        await notify_invoked(self._providers, current, result.request, result.messages, None)
        return AgentResponse(
            messages=tuple(result.messages),
            text=final_text(result.messages),
            usage=result.usage,
            session_id=current.id,
        )

    # -- building blocks for orchestrators ------------------------------------------------------

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
        contexts: list[Context] = list(
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
        runnable: dict[str, Tool[..., Any]] = {}
        specs: list[ToolSpec] = []
        names: set[str] = set()
        offered = [*self._tools.values(), *extra_tools]
        for context in contexts:
            offered.extend(context.tools)  # type: ignore[arg-type]
        for item in offered:
            if not isinstance(item, Mapping | SupportsOpenAITool):
                raise InvalidArgument(
                    "Context.tools", item, "expected a Tool, a dict or an object with to_openai()"
                )
            tool_name = str(tool_to_openai(item)["function"]["name"])
            if tool_name in names:
                # Two definitions under one name would make the request invalid; first wins.
                logger.warning(
                    "agent %r: tool %r is offered twice; keeping the first", self._name, tool_name
                )
                continue
            specs.append(item)
            names.add(tool_name)
            if isinstance(item, Tool):
                runnable[tool_name] = item
        return Prepared(conversation=conversation, messages=sent, specs=specs, tools=runnable)

    async def _call_model(self, prepared: Prepared, *, allow_tools: bool = True) -> ChatResponse:
        """Send a prepared request; with `allow_tools=False` the model must answer in text."""
        options = dict(self._options)
        if prepared.specs and not allow_tools:
            options["tool_choice"] = "none"
        response = await self._client.complete(
            prepared.messages, tools=prepared.specs or None, **options
        )
        if not isinstance(response, ChatResponse):
            raise ModelError(
                f"client of agent {self._name!r} returned {response!r}, not a ChatResponse"
            )
        return response

    async def _run_calls(
        self,
        prepared: Prepared,
        calls: Sequence[ToolCall],
        approve: ApprovalCallback | None,
    ) -> list[ChatMessage]:
        """Run tool calls concurrently (asking `approve` where needed); results in call order."""

        async def one(call: ToolCall) -> ChatMessage:
            selected = prepared.tools.get(call.name)
            if selected is not None and selected.approval == "always":
                allowed = approve is not None and bool(await call_maybe_async(approve, call))
                if not allowed:
                    return denied_result(call, None)
            return (await run_tool_calls([call], prepared.tools))[0]

        results = await asyncio.gather(*(one(call) for call in calls))
        return tag_messages(results, self._name)

    async def _respond(
        self,
        session: Session,
        history: Sequence[ChatMessage],
        new: Sequence[ChatMessage] = (),
        *,
        approve: ApprovalCallback | None = None,
        progress: list[ChatMessage] | None = None,
        reduced: bool = False,
    ) -> TurnResult:
        """Run one turn on a conversation without loading or storing anything.

        Orchestrators call this with their view of a shared conversation. Returns the new
        messages (tagged with the agent's name), the usage, and the conversation that was sent.
        Each new message is also appended to `progress` as it is made, so a caller still has
        the completed tool rounds when a later model call fails (see `completed_rounds`).
        With `reduced=True`, `history` is the reducer's window already (see `_prepare`).
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
            response = await self._call_model(step, allow_tools=allow)
            usage = usage + response.usage
            reply = tag_messages([response.message], self._name)[0]
            produced.append(reply)
            if not reply.tool_calls:
                return TurnResult(
                    messages=list(produced), usage=usage, request=prepared.conversation
                )
            if not allow:
                raise ModelError(
                    f"agent {self._name!r}: the model kept calling tools after "
                    f"max_tool_rounds={self._max_tool_rounds} rounds"
                )
            produced.extend(await self._run_calls(step, reply.tool_calls, approve))
            rounds += 1


def _check_tools(tools: Sequence[Tool[..., Any] | Callable[..., Any]]) -> dict[str, Tool[..., Any]]:
    if isinstance(tools, str | bytes | Mapping) or not isinstance(tools, Sequence):
        raise InvalidArgument("tools", tools, "expected a sequence of tools")
    out: dict[str, Tool[..., Any]] = {}
    for item in tools:
        if isinstance(item, Tool):
            made = item
        elif callable(item):
            made = tool(item)
        else:
            raise InvalidArgument("tools", item, "expected a Tool (from @tool) or a function")
        if made.name in out:
            raise InvalidArgument("tools", made.name, "two tools have this name")
        out[made.name] = made
    return out


def _check_providers(providers: Sequence[ContextProvider]) -> tuple[ContextProvider, ...]:
    if isinstance(providers, ContextProvider) or not isinstance(providers, Sequence):
        raise InvalidArgument(
            "context_providers", providers, "expected a sequence of ContextProvider"
        )
    seen: set[str] = set()
    for provider in providers:
        if not isinstance(provider, ContextProvider):
            raise InvalidArgument("context_providers", provider, "expected a ContextProvider")
        if provider.source_id in seen:
            raise InvalidArgument(
                "context_providers",
                provider.source_id,
                "two context providers share this source_id; give each a unique one",
            )
        seen.add(provider.source_id)
    return tuple(providers)
