"""Helpers shared by the orchestrators: input coercion, one model request, provider hooks,
and what a failed turn keeps."""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeAlias

from memweave.context.base import ContextProvider
from memweave.errors import InvalidArgument, InvalidMessage
from memweave.llm import ToolSpec, Usage
from memweave.messages import ChatMessage, ToolCall, validate_messages
from memweave.orchestration.tools import TOOL_ERROR_KEY, Tool
from memweave.providers.base import ChatHistoryProvider
from memweave.session import Session

__all__ = [
    "DENIED_RESULT",
    "AgentInput",
    "Prepared",
    "TurnResult",
    "as_input_messages",
    "as_session",
    "call_maybe_async",
    "completed_rounds",
    "denied_result",
    "final_text",
    "notify_failure",
    "notify_invoked",
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
