"""`Agent.run_stream`: the events of a turn, the same stored history as `run`, and stopping
early or being cancelled mid-stream (on SQLite and Redis)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest

from memweave.errors import InvalidArgument, InvalidMessage
from memweave.llm import ChatChunk, ChatResponse, TextChunk, ToolSpec
from memweave.messages import ChatMessage, ToolCall
from memweave.orchestration import (
    Agent,
    AgentEvent,
    AgentStream,
    ReplyEvent,
    ResponseEvent,
    TextDelta,
    ToolCallDelta,
    ToolCallEvent,
    ToolResultEvent,
    tool,
)
from memweave.providers.memory import InMemoryChatHistoryProvider
from memweave.testing import Reply, ScriptedChatClient, ScriptExhausted
from tests.orchestration._backends import FIXED, MakeHistory, make_history, stored_bytes
from tests.orchestration._builders import assert_no_orphans, call, calls
from tests.test_llm import make_client, sse, text_events

__all__ = ["make_history"]


@tool
def lookup(city: str) -> str:
    """Look up a city's weather."""
    return {"Paris": "sunny, 21C", "Oslo": "cold, 2C"}.get(city, "unknown")


def scripted(message_id: str, text: str = "", *tool_calls: ToolCall) -> ChatMessage:
    """A scripted assistant reply with a fixed id and time, so two runs script the same bytes."""
    return ChatMessage.assistant(text, tool_calls=tool_calls, id=message_id, created_at=FIXED)


QUESTION = ChatMessage.user("Weather in Paris and Oslo?", id="in-1", created_at=FIXED)


def team(history: InMemoryChatHistoryProvider | Any) -> Agent:
    """A lead agent that calls a researcher agent (with its own tool round) and a plain tool in
    one message, then answers; every reply has a fixed id."""
    researcher = Agent(
        "researcher",
        ScriptedChatClient(
            [
                scripted("r-1", "", call("lookup", "r1", city="Paris")),
                scripted("r-2", "Paris: sunny, 21C."),
            ],
            chunk_size=3,
        ),
        tools=[lookup],
    )
    lead = Agent(
        "lead",
        ScriptedChatClient(
            [
                scripted(
                    "l-1",
                    "Let me check.",
                    call("researcher", "l1", task="Weather in Paris"),
                    call("lookup", "l2", city="Oslo"),
                ),
                scripted("l-2", "Paris is sunny and Oslo is cold."),
            ],
            chunk_size=3,
        ),
        tools=[researcher.as_tool(), lookup],
        history=history,
    )
    return lead


async def drain(stream: AgentStream) -> list[AgentEvent]:
    return [event async for event in stream]


async def test_run_stream_stores_what_run_stores(make_history: MakeHistory) -> None:
    """The stored history of run_stream equals run's byte for byte, sub-sessions included."""
    plain, streamed = make_history("plain"), make_history("streamed")
    response = await team(plain).run(QUESTION, session="s1")
    stream = team(streamed).run_stream(QUESTION, session="s1")
    events = await drain(stream)
    assert any(isinstance(event, TextDelta) for event in events)
    expected = await stored_bytes(plain)
    assert len(expected) == 2  # the lead's session and the researcher's sub-session
    assert await stored_bytes(streamed) == expected
    assert stream.response is not None
    fields: Any = {"messages": {"__all__": {"created_at"}}}
    assert stream.response.model_dump(exclude=fields) == response.model_dump(exclude=fields)


async def test_run_stream_yields_deltas_replies_and_the_response_last() -> None:
    """Text deltas add up to each reply; a ReplyEvent closes each model call; the response is
    the last event and is also on the stream."""
    agent = Agent("helper", ScriptedChatClient(["Hello there, Ada."], chunk_size=4))
    stream = agent.run_stream("Hi", session="s1")
    events = await drain(stream)
    deltas = [event for event in events if isinstance(event, TextDelta)]
    assert [event.text for event in deltas] == ["Hell", "o th", "ere,", " Ada", "."]
    assert {(event.agent, event.session_id) for event in events} == {("helper", "s1")}
    reply, last = events[-2], events[-1]
    assert isinstance(reply, ReplyEvent)
    assert reply.message.text == "".join(event.text for event in deltas)
    assert isinstance(last, ResponseEvent)
    assert stream.response == last.response
    assert last.response.messages == (reply.message,)


async def test_run_stream_reports_each_tool_call_and_result() -> None:
    """A tool round yields the call deltas, the reply, one ToolCallEvent per call and a
    ToolResultEvent per call holding the stored result."""
    history = InMemoryChatHistoryProvider()
    client = ScriptedChatClient(
        [calls(call("lookup", "c1", city="Paris"), call("lookup", "c2", city="Oslo")), "Done."]
    )
    stream = Agent("helper", client, tools=[lookup], history=history).run_stream("go", session="s")
    events = await drain(stream)
    assert any(isinstance(event, ToolCallDelta) and event.name == "lookup" for event in events)
    started = [event.call.id for event in events if isinstance(event, ToolCallEvent)]
    assert started == ["c1", "c2"]
    results = {e.call_id: e.message for e in events if isinstance(e, ToolResultEvent)}
    stored = await history.list_messages("s")
    assert [m for m in stored if m.role == "tool"] == [results["c1"], results["c2"]]
    replies = [event.message for event in events if isinstance(event, ReplyEvent)]
    assert [m for m in stored if m.role == "assistant"] == replies


async def test_run_stream_closed_early_keeps_input_and_complete_rounds(
    make_history: MakeHistory,
) -> None:
    """aclose() in the middle of the answer stores the input and the complete tool round,
    never the half-written answer."""
    history = make_history("main")
    client = ScriptedChatClient(
        [calls(call("lookup", "c1", city="Paris")), "A long answer about Paris."], chunk_size=2
    )
    stream = Agent("helper", client, tools=[lookup], history=history).run_stream("Hi", session="s1")
    async for event in stream:
        if isinstance(event, TextDelta):
            break
    await stream.aclose()
    stored = await history.list_messages("s1")
    assert [m.role for m in stored] == ["user", "assistant", "tool"]
    assert_no_orphans(stored)
    assert stream.response is None


async def test_run_stream_left_by_break_in_async_with_keeps_only_the_input(
    make_history: MakeHistory,
) -> None:
    """Breaking out of `async with` during the first reply stores the input alone."""
    history = make_history("main")
    agent = Agent("helper", ScriptedChatClient(["Once upon a time"], chunk_size=2), history=history)
    async with agent.run_stream("Tell a story", session="s1") as stream:
        async for event in stream:
            if isinstance(event, TextDelta):
                break
    stored = await history.list_messages("s1")
    assert [(m.role, m.text) for m in stored] == [("user", "Tell a story")]


class StallingClient(ScriptedChatClient):
    """A scripted client whose `stall_on`-th request streams one text chunk and then waits
    until it is cancelled (a model that stops sending)."""

    def __init__(self, replies: Sequence[Reply], *, stall_on: int) -> None:
        super().__init__(replies, chunk_size=2)
        self.stall_on = stall_on
        self.stalled = asyncio.Event()

    async def stream(
        self,
        messages: Sequence[ChatMessage],
        *,
        tools: Sequence[ToolSpec] | None = None,
        **options: Any,
    ) -> AsyncIterator[ChatChunk]:
        async for chunk in super().stream(messages, tools=tools, **options):
            yield chunk
            if len(self.requests) == self.stall_on and isinstance(chunk, TextChunk):
                self.stalled.set()
                await asyncio.Event().wait()


async def test_run_stream_cancelled_mid_stream_keeps_input_and_no_half_message(
    make_history: MakeHistory,
) -> None:
    """Cancelling the consuming task mid-reply stores the input and the complete round only."""
    history = make_history("main")
    client = StallingClient(
        [calls(call("lookup", "c1", city="Oslo")), "It is cold in Oslo."], stall_on=2
    )
    agent = Agent("helper", client, tools=[lookup], history=history)
    seen: list[AgentEvent] = []

    async def consume() -> None:
        async for event in agent.run_stream("Oslo?", session="s1"):
            seen.append(event)

    task = asyncio.create_task(consume())
    await client.stalled.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert any(isinstance(event, TextDelta) for event in seen)
    stored = await history.list_messages("s1")
    assert [m.role for m in stored] == ["user", "assistant", "tool"]
    assert stored[1].tool_calls[0].id == "c1"


async def test_run_stream_cancelled_during_tools_stores_no_orphan_call(
    make_history: MakeHistory,
) -> None:
    """Cancelled while a tool runs: the input is stored, the unanswered call is not."""
    history = make_history("main")
    running = asyncio.Event()

    @tool
    async def slow(city: str) -> str:
        """Take forever."""
        running.set()
        await asyncio.Event().wait()
        return city

    client = ScriptedChatClient([calls(call("slow", "c1", city="Oslo")), "never"])
    agent = Agent("helper", client, tools=[slow], history=history)
    task = asyncio.create_task(drain(agent.run_stream("Oslo?", session="s1")))
    await running.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    stored = await history.list_messages("s1")
    assert [(m.role, m.text) for m in stored] == [("user", "Oslo?")]


async def test_run_stream_failure_reaches_the_consumer_after_storing() -> None:
    """An error mid-turn comes out of the iteration, after the input and complete rounds were
    stored, as from run."""
    history = InMemoryChatHistoryProvider()
    client = ScriptedChatClient([calls(call("lookup", "c1", city="Paris"))])
    agent = Agent("helper", client, tools=[lookup], history=history)
    with pytest.raises(ScriptExhausted):
        await drain(agent.run_stream("Paris?", session="s1"))
    assert [m.role for m in await history.list_messages("s1")] == ["user", "assistant", "tool"]


class CompleteOnly:
    """A user's ChatClient written before streaming existed: only complete()."""

    async def complete(
        self, messages: Sequence[ChatMessage], *, tools: Any = None, **options: Any
    ) -> ChatResponse:
        return ChatResponse(message=ChatMessage.assistant("All at once."))


async def test_run_stream_works_with_a_client_without_stream() -> None:
    """A client with only complete() streams its whole reply as one delta."""
    agent = Agent("helper", CompleteOnly())
    events = await drain(agent.run_stream("Hi"))
    assert [type(event) for event in events] == [TextDelta, ReplyEvent, ResponseEvent]
    assert isinstance(events[0], TextDelta)
    assert events[0].text == "All at once."


async def test_run_stream_over_the_openai_wire_format() -> None:
    """With OpenAIChatClient, server deltas become TextDeltas and the stored reply is their
    sum, with the usage the server reported."""
    client, server = make_client(sse(text_events("Bon", "jour", "!")))
    history = InMemoryChatHistoryProvider()
    stream = Agent("helper", client, history=history).run_stream("Salut", session="s1")
    events = await drain(stream)
    assert [e.text for e in events if isinstance(e, TextDelta)] == ["Bon", "jour", "!"]
    assert server.body["stream"] is True
    stored = await history.list_messages("s1")
    assert [(m.role, m.text) for m in stored] == [("user", "Salut"), ("assistant", "Bonjour!")]
    assert stream.response is not None
    assert stream.response.usage.total_tokens == 12


def test_run_stream_checks_the_input_at_once() -> None:
    """A bad input raises when run_stream is called, before any iteration."""
    agent = Agent("helper", ScriptedChatClient([]))
    with pytest.raises(InvalidMessage):
        agent.run_stream([])


def test_agent_refuses_stream_as_a_model_option() -> None:
    """`stream` in an agent's options is refused, pointing to run_stream."""
    with pytest.raises(InvalidArgument, match="run_stream"):
        Agent("helper", ScriptedChatClient([]), options={"stream": True})


def test_blocking_run_stream_yields_the_events_and_stores_the_turn() -> None:
    """memweave.sync's Agent.run_stream yields the same events as a plain iterator."""
    from memweave import sync

    agent = sync.Agent("helper", ScriptedChatClient(["Hi Ada."], chunk_size=3))
    events = list(agent.run_stream("Hi", session="s1"))
    assert "".join(e.text for e in events if isinstance(e, TextDelta)) == "Hi Ada."
    last = events[-1]
    assert isinstance(last, ResponseEvent)
    assert [m.text for m in agent.history.list_messages("s1")] == ["Hi", "Hi Ada."]
