"""Agents as tools: `Agent.as_tool`, sub-sessions, and running tool calls in their caller's scope.

A tool call runs inside a `ToolCallScope` (a context variable set per call by
`scoped_tool_calls`): the history and session of the turn that made the call, the call itself,
and where nested events go. The tool `Agent.as_tool` builds reads it to store the sub-agent's
turn in a sub-session of the caller's history, whose id is derived from the caller's session
id, the tool's name and the call id (`sub_session_id`), so a retried call finds the turn it
already ran instead of running it twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import hashlib
import json
import logging
from collections.abc import AsyncGenerator, Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import JsonValue

from memweave.messages import ChatMessage, ToolCall
from memweave.orchestration._runtime import call_maybe_async, denied_result
from memweave.orchestration._streaming import (
    AgentEvent,
    EventSink,
    ResponseEvent,
    ToolCallEvent,
    ToolResultEvent,
)
from memweave.orchestration._views import tag_messages
from memweave.orchestration.tools import Tool, run_tool_call
from memweave.providers.base import ChatHistoryProvider
from memweave.session import Session

if TYPE_CHECKING:
    from memweave.orchestration.agent import Agent, ApprovalCallback

__all__ = [
    "PARENT_KEY",
    "SUB_SESSION_KEY",
    "ToolCallScope",
    "agent_tool",
    "current_scope",
    "result_id",
    "run_scoped_tool_calls",
    "scoped_tool_calls",
    "sub_session_id",
    "tool_round_events",
]

logger = logging.getLogger(__name__)

SUB_SESSION_KEY = "memweave.sub_session"
"""Metadata key on the tool result of an agent called as a tool: the id of the sub-session its
turn is stored in."""

PARENT_KEY = "memweave.parent"
"""Metadata key on the first message of a sub-session: `{"session_id", "tool_call_id",
"agent"}`, the caller's session, the call that opened it and the calling agent."""

_SCOPE: contextvars.ContextVar[ToolCallScope | None] = contextvars.ContextVar(
    "memweave_tool_call_scope", default=None
)


def _digest(*parts: str) -> str:
    # JSON keeps the parts apart whatever characters they hold, so no two lists collide.
    encoded = json.dumps(parts, ensure_ascii=False).encode("utf-8", "surrogatepass")
    return hashlib.blake2b(encoded, digest_size=16).hexdigest()


def sub_session_id(session_id: str, tool: str, call_id: str) -> str:
    """Return the id of the sub-session where tool `tool`'s call `call_id`, made in session
    `session_id`, stores the called agent's turn.

    The id is `"<tool>~<32 hex digits>"`: the tool's name, then a BLAKE2 digest of the three
    values, so it is the same on every retry, fits every backend whatever the caller's id
    holds, and a model-written call id cannot make two calls share a sub-session.
    """
    return f"{tool}~{_digest('sub-session', session_id, tool, call_id)}"


def result_id(reply_id: str, call_id: str) -> str:
    """Return the id of the result of call `call_id` of the assistant message `reply_id`: the
    same on every run of the same reply, so a stored turn and its replay match exactly."""
    return _digest("tool-result", reply_id, call_id)


@dataclass(frozen=True)
class ToolCallScope:
    """Where a tool call runs: the turn that made it, and where a nested turn reports to."""

    call: ToolCall
    """The call being run."""
    agent: str
    """The agent that made the call."""
    session_id: str
    """The session of the turn that made the call."""
    history: ChatHistoryProvider | None
    """Where that turn is stored; `None` when the caller did not say."""
    approve: ApprovalCallback | None = None
    """The caller's approval callback, which also decides a nested agent's calls."""
    emit: EventSink | None = None
    """Takes a nested turn's events when the caller streams; `None` otherwise."""
    link: dict[str, JsonValue] = field(default_factory=dict)
    """Metadata the tool asks to be added to its result message (filled by the tool)."""


def current_scope() -> ToolCallScope | None:
    """Return the scope of the tool call running in this task, or `None` outside one."""
    return _SCOPE.get()


def _finished(queue: asyncio.Queue[AgentEvent | int], index: int, _: object) -> None:
    queue.put_nowait(index)


async def scoped_tool_calls(
    calls: Sequence[ToolCall],
    run_one: Callable[[ToolCall], Coroutine[Any, Any, ChatMessage]],
    *,
    agent: str,
    session_id: str,
    history: ChatHistoryProvider | None,
    approve: ApprovalCallback | None = None,
    reply_id: str | None = None,
    stream: bool = False,
    tag: bool = False,
) -> AsyncGenerator[AgentEvent | list[ChatMessage], None]:
    """Run `calls` concurrently, each in its own `ToolCallScope`, yielding events as they go.

    Yields a `ToolCallEvent` per call, then (with `stream=True`) the events of nested agent
    turns and a `ToolResultEvent` as each call ends, and last the results in the order of
    `calls`. With `reply_id` each result gets the id `result_id(reply_id, call.id)`; with
    `tag` it is tagged with `agent`. If the iteration stops early or fails, the calls still
    running are cancelled and awaited before the error goes on.
    """
    if not calls:
        yield []
        return
    queue: asyncio.Queue[AgentEvent | int] = asyncio.Queue()
    sink = queue.put_nowait if stream else None
    scopes = [ToolCallScope(call, agent, session_id, history, approve, sink) for call in calls]
    tasks: list[asyncio.Task[ChatMessage]] = []
    for index, scope in enumerate(scopes):
        context = contextvars.copy_context()
        context.run(_SCOPE.set, scope)
        task = asyncio.create_task(run_one(scope.call), context=context)
        task.add_done_callback(functools.partial(_finished, queue, index))
        tasks.append(task)
    results: list[ChatMessage | None] = [None] * len(calls)
    try:
        for call in calls:
            yield ToolCallEvent(agent=agent, session_id=session_id, call=call)
        remaining = len(calls)
        while remaining:
            item = await queue.get()
            if not isinstance(item, int):
                yield item
                continue
            remaining -= 1
            result, scope = tasks[item].result(), scopes[item]
            update: dict[str, Any] = {}
            if reply_id is not None:
                update["id"] = result_id(reply_id, scope.call.id)
            if scope.link:
                update["metadata"] = {**result.metadata, **scope.link}
            if update:
                result = result.model_copy(update=update)
            if tag:
                result = tag_messages([result], agent)[0]
            results[item] = result
            if stream:
                yield ToolResultEvent(
                    agent=agent, session_id=session_id, call_id=scope.call.id, message=result
                )
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    yield [result for result in results if result is not None]


async def run_scoped_tool_calls(
    calls: Sequence[ToolCall],
    tools: dict[str, Tool[..., Any]],
    *,
    agent: str,
    session_id: str,
    history: ChatHistoryProvider | None,
    emit: EventSink | None = None,
    reply_id: str | None = None,
) -> list[ChatMessage]:
    """Run tool calls as `run_tool_calls` does (concurrently, results in call order, failures
    as error results), each in a `ToolCallScope` of the turn that made them, so an agent tool
    stores its turn in a sub-session of `history` linked to `session_id`.

    Args:
        calls: The calls to run.
        tools: The runnable tools by name.
        agent: The calling agent's name.
        session_id: The session of the calling turn.
        history: Where the calling turn is stored (and the sub-sessions with it).
        emit: Takes events as they happen: a `ToolCallEvent` per call, a `ToolResultEvent`
            as each ends, and the events of nested agent turns (which then stream).
        reply_id: The id of the assistant message holding the calls; gives each result a
            deterministic id (see `result_id`).
    """

    async def run_one(call: ToolCall) -> ChatMessage:
        return await run_tool_call(call, tools)

    results: list[ChatMessage] = []
    events = scoped_tool_calls(
        calls,
        run_one,
        agent=agent,
        session_id=session_id,
        history=history,
        reply_id=reply_id,
        stream=emit is not None,
    )
    async with contextlib.aclosing(events):
        async for item in events:
            if isinstance(item, list):
                results = item
            elif emit is not None:
                emit(item)
    return results


async def tool_round_events(
    agent: str,
    tools: dict[str, Tool[..., Any]],
    reply: ChatMessage,
    approve: ApprovalCallback | None,
    *,
    session_id: str,
    history: ChatHistoryProvider | None,
    stream: bool,
) -> AsyncGenerator[AgentEvent | list[ChatMessage], None]:
    """Run the tool calls of an agent's `reply` (asking `approve` about `approval="always"`
    tools) as `scoped_tool_calls` does: events, then the results tagged with `agent`."""

    async def one(call: ToolCall) -> ChatMessage:
        selected = tools.get(call.name)
        if selected is not None and selected.approval == "always":
            allowed = approve is not None and bool(await call_maybe_async(approve, call))
            if not allowed:
                return denied_result(call, None)
        return await run_tool_call(call, tools)

    events = scoped_tool_calls(
        reply.tool_calls,
        one,
        agent=agent,
        session_id=session_id,
        history=history,
        approve=approve,
        reply_id=reply.id,
        stream=stream,
        tag=True,
    )
    async with contextlib.aclosing(events):
        async for item in events:
            yield item


def agent_tool(target: Agent, name: str | None, description: str | None) -> Tool[..., Any]:
    """Build the tool behind `Agent.as_tool` (see there)."""
    tool_name = name if name is not None else target.name
    text = description if description is not None else target.description
    if not text:
        text = f"Ask the agent {target.name!r} to do a task; it answers with its result."

    async def call_agent(
        task: Annotated[
            str, "The task for the agent, with everything it needs to know to do it alone."
        ],
    ) -> str:
        return await _run_sub_turn(target, tool_name, task)

    return Tool(call_agent, name=tool_name, description=text)


async def _run_sub_turn(target: Agent, tool_name: str, task: str) -> str:
    """Run `target` on `task` in the sub-session of the current call; return its answer."""
    scope = current_scope()
    if scope is None:
        # Called outside an agent turn (tool.invoke(...) by hand): a fresh session of its own.
        session = Session()
        history = target.history
        sent = ChatMessage.user(task)
    else:
        session = Session(id=sub_session_id(scope.session_id, tool_name, scope.call.id))
        history = scope.history if scope.history is not None else target.history
        scope.link[SUB_SESSION_KEY] = session.id
        parent: dict[str, JsonValue] = {
            "session_id": scope.session_id,
            "tool_call_id": scope.call.id,
            "agent": scope.agent,
        }
        sent = ChatMessage.user(
            task,
            name=scope.agent,
            id=_digest("sub-input", session.id, task),
            metadata={PARENT_KEY: parent},
        )
    inputs = [sent]
    if scope is not None:
        stored = await history.list_messages(session.id)
        position = next((i for i, m in enumerate(stored) if m.id == sent.id), None)
        if position is not None:
            after = stored[position + 1 :]
            if after and after[-1].role == "assistant" and not after[-1].tool_calls:
                logger.info("sub-session %r already answered call %r", session.id, scope.call.id)
                return after[-1].text
            # An interrupted turn: its input (and complete tool rounds) are stored; go on.
            inputs = []
    emit = scope.emit if scope is not None else None
    approve = scope.approve if scope is not None else None
    events = target._run_events(inputs, session, approve, stream=emit is not None, history=history)
    text = ""
    async with contextlib.aclosing(events):
        async for event in events:
            if isinstance(event, ResponseEvent):
                text = event.response.text
            elif emit is not None:
                emit(event)
    return text
