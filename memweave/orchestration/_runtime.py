"""Helpers shared by the orchestrators: input coercion, one model request, a run's response,
provider hooks, and what a failed turn keeps."""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeAlias

from pydantic import BaseModel, ConfigDict

from memweave.context.base import ContextProvider
from memweave.errors import InvalidArgument, InvalidMessage
from memweave.llm import SupportsOpenAITool, ToolSpec, Usage, tool_to_openai
from memweave.messages import ChatMessage, ToolCall, validate_messages
from memweave.orchestration.tools import TOOL_ERROR_KEY, Tool, tool
from memweave.providers.base import ChatHistoryProvider
from memweave.session import Session

__all__ = [
    "DENIED_RESULT",
    "AgentInput",
    "AgentResponse",
    "Prepared",
    "TurnResult",
    "as_input_messages",
    "as_session",
    "call_maybe_async",
    "check_providers",
    "check_tools",
    "completed_rounds",
    "denied_result",
    "final_text",
    "notify_failure",
    "notify_invoked",
    "offered_tools",
    "store_after_failure",
]

logger = logging.getLogger(__name__)

AgentInput: TypeAlias = str | ChatMessage | Sequence[ChatMessage]
"""What an agent is asked: a user text, one message, or several messages."""

DENIED_RESULT = "The call was not run: a person had to approve it and did not."
"""The tool result a model gets for a call that was not approved."""


def as_input_messages(message: AgentInput) -> list[ChatMessage]:
    """Return an agent input as a non-empty list of messages; text becomes a user message.

    Raises:
        InvalidMessage: The input is empty or holds something that is not a `ChatMessage`.
    """
    if isinstance(message, str):
        return [ChatMessage.user(message)]
    if isinstance(message, ChatMessage):
        return [message]
    batch = validate_messages(message)
    if not batch:
        raise InvalidMessage("an agent needs at least one input message")
    return batch


def as_session(session: Session | str | None) -> Session:
    """Return `session` as a `Session`; a str is a session id and None makes a new session."""
    if session is None:
        return Session()
    if isinstance(session, Session):
        return session
    if isinstance(session, str):
        return Session(id=session)
    raise InvalidArgument("session", session, "expected a Session, a session id or None")


async def call_maybe_async(function: Callable[..., Any], *args: Any) -> Any:
    """Call a sync or async function and return its (awaited) result."""
    result = function(*args)
    if inspect.isawaitable(result):
        result = await result
    return result


@dataclass(frozen=True)
class Prepared:
    """One model request, ready to send: the messages, and the tools offered and runnable."""

    conversation: list[ChatMessage]
    """The conversation part of the request (reduced history and new input)."""
    messages: list[ChatMessage]
    """Everything sent: instructions, context messages, then the conversation."""
    specs: list[ToolSpec]
    """Every tool definition offered to the model."""
    tools: dict[str, Tool[..., Any]] = field(default_factory=dict)
    """The tools the agent can run, by name."""


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


@dataclass
class TurnResult:
    """What one agent turn produced."""

    messages: list[ChatMessage]
    """The new messages, tagged with the agent's name."""
    usage: Usage
    """Tokens used by the turn's model calls."""
    request: list[ChatMessage]
    """The conversation part of the first request (for `invoked`)."""


def denied_result(call: ToolCall, reason: str | None) -> ChatMessage:
    """The tool result telling the model a call needing approval was refused."""
    text = DENIED_RESULT if not reason else f"{DENIED_RESULT} Reason: {reason}"
    return ChatMessage.tool(call.id, text, metadata={TOOL_ERROR_KEY: "denied"})


def final_text(messages: Sequence[ChatMessage]) -> str:
    """The text of the last assistant message in `messages`, or `""`."""
    for message in reversed(messages):
        if message.role == "assistant":
            return message.text
    return ""


async def notify_invoked(
    providers: Sequence[ContextProvider],
    session: Session,
    request: Sequence[ChatMessage],
    response: Sequence[ChatMessage],
    error: BaseException | None,
) -> None:
    """Call every provider's `invoked`; all are called, then the first failure is raised."""
    if not providers:
        return
    outcomes = await asyncio.gather(
        *(p.invoked(session, list(request), list(response), error) for p in providers),
        return_exceptions=True,
    )
    for outcome in outcomes:
        if isinstance(outcome, BaseException):
            raise outcome


def completed_rounds(produced: Sequence[ChatMessage]) -> list[ChatMessage]:
    """The complete tool rounds at the start of a turn's messages.

    A round is an assistant message with tool calls followed by a result for every call.
    Reading stops at the first round missing a result, or at an answer without tool calls, so
    what is returned can be stored without leaving a call unanswered.
    """
    kept: list[ChatMessage] = []
    index = 0
    while index < len(produced):
        reply = produced[index]
        if reply.role != "assistant" or not reply.tool_calls:
            break
        end = index + 1
        while end < len(produced) and produced[end].role == "tool":
            end += 1
        results = produced[index + 1 : end]
        answered = [result.tool_call_id or "" for result in results]
        if sorted(answered) != sorted(call.id for call in reply.tool_calls):
            break
        kept.extend(produced[index:end])
        index = end
    return kept


async def store_after_failure(
    history: ChatHistoryProvider,
    session_id: str,
    batch: Sequence[ChatMessage],
    error: BaseException,
) -> None:
    """Store what a failed turn keeps (its input, its completed tool rounds) in one batch.

    Never raises: a storage failure is logged and added to `error` as a note, so the caller
    can re-raise `error` unchanged.
    """
    if not batch:
        return
    try:
        await history.add_messages(session_id, list(batch))
    except Exception as store_error:
        logger.error("could not store what a failed run kept", exc_info=True)
        error.add_note(f"memweave: what the failed run kept was not stored: {store_error!r}")


async def notify_failure(
    providers: Sequence[ContextProvider],
    session: Session,
    request: Sequence[ChatMessage],
    error: BaseException,
) -> None:
    """Tell every provider's `invoked` about a failed call.

    Never raises: a hook's own failure is logged and added to `error` as a note.
    """
    try:
        await notify_invoked(providers, session, request, [], error)
    except Exception as hook_error:
        logger.error("a context provider failed in invoked() after a failed run", exc_info=True)
        error.add_note(f"memweave: a context provider's invoked() failed: {hook_error!r}")


def offered_tools(
    offered: Sequence[object], agent: str
) -> tuple[list[ToolSpec], dict[str, Tool[..., Any]]]:
    """Return the tool definitions to send, and the runnable `Tool`s by name, from what an
    agent offers (its tools, then extra and context tools); a repeated name keeps the first.

    Raises:
        InvalidArgument: An item is not a `Tool`, a tool dict or an object with `to_openai()`.
    """
    runnable: dict[str, Tool[..., Any]] = {}
    specs: list[ToolSpec] = []
    names: set[str] = set()
    for item in offered:
        if not isinstance(item, Mapping | SupportsOpenAITool):
            raise InvalidArgument(
                "Context.tools", item, "expected a Tool, a dict or an object with to_openai()"
            )
        name = str(tool_to_openai(item)["function"]["name"])
        if name in names:
            # Two definitions under one name would make the request invalid; first wins.
            logger.warning("agent %r: tool %r is offered twice; keeping the first", agent, name)
            continue
        specs.append(item)
        names.add(name)
        if isinstance(item, Tool):
            runnable[name] = item
    return specs, runnable


def check_tools(tools: Sequence[Tool[..., Any] | Callable[..., Any]]) -> dict[str, Tool[..., Any]]:
    """Return an agent's tools by name, wrapping plain functions with `tool`.

    Raises:
        InvalidArgument: Not a sequence of tools or functions, or two tools share a name.
    """
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


def check_providers(providers: Sequence[ContextProvider]) -> tuple[ContextProvider, ...]:
    """Return an agent's context providers as a tuple.

    Raises:
        InvalidArgument: Not a sequence of `ContextProvider`, or two share a `source_id`.
    """
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
