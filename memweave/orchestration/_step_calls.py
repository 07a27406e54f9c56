"""Running the tool calls of one handoff step: the shared state, agent tools, streamed deltas.

The calls run concurrently in a task of their own, in which a `_state.ToolBatch` is current
(so tools get the shared state and their `Command`s are kept) and each call has the
`ToolCallScope` of the step (so an `Agent.as_tool()` tool stores its turn in a sub-session of
the workflow's history). With `stream`, the text and tool-call deltas of agents called as
tools are yielded while the calls run.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

from pydantic import JsonValue

from memweave.messages import ChatMessage, ToolCall
from memweave.orchestration._agent_tool import run_scoped_tool_calls
from memweave.orchestration._state import StateSpec, ToolBatch, running
from memweave.orchestration._streaming import AgentEvent, TextDelta, ToolCallDelta
from memweave.orchestration.tools import Tool
from memweave.providers.base import ChatHistoryProvider

__all__ = ["step_calls"]


async def step_calls(
    calls: Sequence[ToolCall],
    tools: Mapping[str, Tool[..., Any]],
    *,
    agent: str,
    session_id: str,
    history: ChatHistoryProvider,
    spec: StateSpec | None,
    state: Mapping[str, JsonValue] | None,
    stream: bool = False,
) -> AsyncIterator[TextDelta | ToolCallDelta | list[ChatMessage]]:
    """Run `calls`; yield nested deltas (with `stream`) and last the results in call order,
    each carrying its checked state update and route (see `ToolBatch.finish`)."""
    if not calls:
        yield []
        return
    queue: asyncio.Queue[AgentEvent] = asyncio.Queue()
    batch = ToolBatch(calls, tools, spec, state)

    async def work() -> list[ChatMessage]:
        with running(batch):
            results = await run_scoped_tool_calls(
                calls,
                dict(tools),
                agent=agent,
                session_id=session_id,
                history=history,
                emit=queue.put_nowait if stream else None,
            )
        return batch.finish(calls, results)

    task = asyncio.create_task(work())
    try:
        while True:
            getter = asyncio.ensure_future(queue.get())
            done, _ = await asyncio.wait({task, getter}, return_when=asyncio.FIRST_COMPLETED)
            if getter not in done:
                getter.cancel()
                break
            event = getter.result()
            if isinstance(event, TextDelta | ToolCallDelta):
                yield event
        while not queue.empty():
            event = queue.get_nowait()
            if isinstance(event, TextDelta | ToolCallDelta):
                yield event
        yield task.result()
    finally:
        if not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
