"""A turn reads its agent's window, not the session, and the model gets what it got before.

Each orchestrator runs twice on the same stored conversation: on a provider that records its
reads, and on the reference, a provider whose read reducer is the identity, which makes the
orchestrator read the whole session and reduce it in memory, as memweave did before windowed
reads. The model requests of both runs must be the same.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from memweave.errors import ModelError
from memweave.messages import ChatMessage
from memweave.orchestration import (
    Agent,
    ChatSpec,
    HandoffBuilder,
    Sequential,
    UserInputRequest,
    WorkflowEvent,
    WorkflowOutput,
    initiate_chats,
)
from memweave.orchestration._transcript import AgentView, Transcript
from memweave.orchestration._views import agent_view
from memweave.reducers import MessageCountReducer, SummarizingReducer, TokenBudgetReducer
from memweave.reducers.base import ChatReducer
from memweave.testing import ScriptedChatClient
from tests.orchestration._builders import (
    IdentityReducer,
    ReadRecordingHistory,
    RecordingProvider,
    team_conversation,
)

STORED = 1000
"""Messages stored before each run; a window is a few dozen."""

REDUCERS = [
    pytest.param(lambda: MessageCountReducer(40), id="count"),
    pytest.param(lambda: TokenBudgetReducer(800), id="tokens"),
]


def shape(message: ChatMessage) -> tuple[Any, ...]:
    """What a model gets of a message (ids of messages made during a run differ between
    the two runs)."""
    calls = tuple((c.id, c.name, c.arguments) for c in message.tool_calls)
    return (message.role, message.text, message.name, message.tool_call_id, calls)


def sent(*clients: ScriptedChatClient) -> list[list[tuple[Any, ...]]]:
    return [[shape(m) for m in r.messages] for c in clients for r in c.requests]


async def filled(history: ReadRecordingHistory, session_id: str = "s1") -> list[ChatMessage]:
    messages = team_conversation(STORED)
    await history.add_messages(session_id, messages)
    history.forget_reads()
    return messages


def pair() -> tuple[ReadRecordingHistory, ReadRecordingHistory]:
    """The history under test and the whole-read reference."""
    return ReadRecordingHistory(), ReadRecordingHistory(reducer=IdentityReducer())


def assert_windowed(history: ReadRecordingHistory) -> None:
    """Every read was a window or a page of older messages, and far less than the session."""
    assert history.reads, "the session was not read"
    for read in history.reads:
        assert read["reducer"] is not None or read["limit"] is not None, history.reads
    assert history.whole_reads == 0
    assert history.entries_read < STORED // 2


async def collect(events: AsyncIterator[WorkflowEvent]) -> list[WorkflowEvent]:
    return [event async for event in events]


# -- Agent.run ----------------------------------------------------------------------------------


@pytest.mark.parametrize("make_reducer", REDUCERS)
async def test_agent_run_reads_through_list_messages_with_its_reducer(make_reducer: Any) -> None:
    """`Agent.run` reads `list_messages(reducer=agent.reducer)`, never the whole session, and
    sends the reducer's window of the whole history, then the input."""
    history = ReadRecordingHistory()
    stored = await filled(history)
    reducer = make_reducer()
    client = ScriptedChatClient(["ok"])
    agent = Agent("a", client, instructions="Be brief.", history=history, reducer=reducer)
    question = ChatMessage.user("next?")
    await agent.run(question, session="s1")
    assert [read["reducer"] for read in history.reads] == [reducer]
    assert_windowed(history)
    (request,) = client.requests
    assert request.messages[0].text == "Be brief."
    assert list(request.messages[1:]) == [*await make_reducer().reduce(stored), question]


async def test_agent_run_with_a_summarizing_reducer_gets_the_whole_history() -> None:
    """A reducer without `reduce_tail` gets the whole history through the same call, and the
    model gets what reducing it gives."""
    history = ReadRecordingHistory()
    stored = await filled(history)

    def summarizer() -> SummarizingReducer:
        return SummarizingReducer(ScriptedChatClient(["The gist."]), keep_last=6, trigger_at=20)

    reducer = summarizer()
    client = ScriptedChatClient(["ok"])
    agent = Agent("a", client, history=history, reducer=reducer)
    question = ChatMessage.user("next?")
    await agent.run(question, session="s1")
    assert [read["reducer"] for read in history.reads] == [reducer]
    assert list(client.requests[0].messages) == [*await summarizer().reduce(stored), question]


async def test_agent_run_reduces_the_view_of_a_provider_read_reducer() -> None:
    """With a provider read reducer, the agent's reducer still shrinks that view, as before."""
    history = ReadRecordingHistory(reducer=MessageCountReducer(40))
    stored = await filled(history)
    client = ScriptedChatClient(["ok"])
    agent = Agent("a", client, history=history, reducer=TokenBudgetReducer(300))
    question = ChatMessage.user("next?")
    await agent.run(question, session="s1")
    view = await MessageCountReducer(40).reduce(stored)
    expected = [*await TokenBudgetReducer(300).reduce(view), question]
    assert list(client.requests[0].messages) == expected


async def test_a_failed_run_tells_providers_the_window_it_sent() -> None:
    """When the model call fails, `invoked` gets the window and the input, as it gets the
    conversation sent after a successful call."""
    history = ReadRecordingHistory()
    stored = await filled(history)
    provider = RecordingProvider()

    def down(messages: Any, tools: Any, options: Any) -> str:
        raise ModelError("down")

    agent = Agent(
        "a",
        ScriptedChatClient(down),
        history=history,
        reducer=MessageCountReducer(10),
        context_providers=[provider],
    )
    question = ChatMessage.user("next?")
    with pytest.raises(ModelError):
        await agent.run(question, session="s1")
    ((request, response, error),) = provider.invoked_calls
    assert request == [*await MessageCountReducer(10).reduce(stored), question]
    assert response == []
    assert isinstance(error, ModelError)


# -- Sequential and initiate_chats --------------------------------------------------------------


@pytest.mark.parametrize("chain_only", [False, True])
@pytest.mark.parametrize("make_reducer", REDUCERS)
async def test_sequential_reads_windows_and_sends_what_a_whole_read_does(
    make_reducer: Any, chain_only: bool
) -> None:
    """Each agent of a `Sequential` gets the window of its view, read from the session's end."""
    question = ChatMessage.user("go")
    requests = []
    for history in pair():
        await filled(history)
        clients = [ScriptedChatClient([f"{name} says"]) for name in "abc"]
        team = [
            Agent(name, client, reducer=make_reducer() if name != "c" else MessageCountReducer(4))
            for name, client in zip("abc", clients, strict=True)
        ]
        await Sequential(team, chain_only_agent_responses=chain_only, history=history).run(
            question, session="s1"
        )
        requests.append(sent(*clients))
        if history.reducer is None:
            assert_windowed(history)
    assert requests[0] == requests[1]


async def test_sequential_agent_without_reducer_is_sent_its_whole_view() -> None:
    """An agent without a reducer is sent its view of the whole conversation."""
    history = ReadRecordingHistory()
    stored = await filled(history)
    client = ScriptedChatClient(["ok"])
    question = ChatMessage.user("go")
    await Sequential([Agent("a", client)], history=history).run(question, session="s1")
    whole = agent_view([*stored, question], "a", others_as="user")
    assert [shape(m) for m in client.requests[0].messages] == [shape(m) for m in whole]


@pytest.mark.parametrize("make_reducer", REDUCERS)
async def test_initiate_chats_turns_read_windows_and_send_what_a_whole_read_does(
    make_reducer: Any,
) -> None:
    """Turns of chats on a long session read their agents' windows; the rest of the session
    is read once, at the end of each chat, for `ChatResult.chat_history`."""
    requests, reads = [], []
    for history in pair():
        stored = await filled(history)
        clients = []
        for opening, turns, replies in [("Hi.", 1, ["One."]), ("Go on.", 2, ["Two.", "Three."])]:
            sender_client = ScriptedChatClient(["And then?"])
            recipient_client = ScriptedChatClient(replies)
            sender = Agent("user", sender_client, reducer=make_reducer())
            recipient = Agent("r", recipient_client, reducer=make_reducer())
            spec = ChatSpec(recipient, opening, max_turns=turns, session_id="s1")
            history.forget_reads()
            (result,) = await initiate_chats(sender, [spec], history=history)
            reads.append((list(history.reads), history.whole_reads))
            clients += [sender_client, recipient_client]
        assert result.chat_history == tuple(await history.list_messages("s1"))
        assert len(result.chat_history) == len(stored) + 2 + 4
        requests.append(sent(*clients))
    assert requests[0] == requests[1]
    for chat_reads, whole_reads in reads[:2]:
        assert whole_reads == 0
        *turns, rest = chat_reads
        assert all(read["reducer"] is not None for read in turns)
        assert rest["before"] is not None
        assert rest["limit"] is None


# -- handoff ------------------------------------------------------------------------------------


@pytest.mark.parametrize("make_reducer", REDUCERS)
async def test_handoff_steps_read_windows_and_send_what_a_whole_read_does(
    make_reducer: Any,
) -> None:
    """A handoff step reads the window of the agent's view; a handoff, the user's answer and
    the next step read no more than that."""
    requests = []
    for history in pair():
        await filled(history)
        a = Agent(
            "a",
            ScriptedChatClient([_handoff("b"), "Done here."]),
            reducer=make_reducer(),
        )
        b = Agent("b", ScriptedChatClient(["I am b.", "Still b."]), reducer=make_reducer())
        workflow = HandoffBuilder("w", [a, b], history=history).build()
        events = await collect(workflow.run("help", session="s1"))
        assert isinstance(events[-1], UserInputRequest)
        events = await collect(
            workflow.run(responses={events[-1].request_id: "more"}, session="s1")
        )
        assert isinstance(events[-1], UserInputRequest)
        requests.append(sent(a.client, b.client))  # type: ignore[arg-type]
        if history.reducer is None:
            assert_windowed(history)
    assert requests[0] == requests[1]


async def test_handoff_termination_condition_gets_the_whole_conversation() -> None:
    """A termination condition is called with the whole conversation, so it is read whole,
    and the run's `WorkflowOutput` holds all of it."""
    history = ReadRecordingHistory()
    stored = await filled(history)
    seen: list[int] = []

    def stop(conversation: list[ChatMessage]) -> bool:
        seen.append(len(conversation))
        return conversation[-1].role == "assistant"

    a = Agent("a", ScriptedChatClient(["Bye."]), reducer=MessageCountReducer(12))
    b = Agent("b", ScriptedChatClient([]))
    workflow = HandoffBuilder("w", [a, b], history=history, termination_condition=stop).build()
    events = await collect(workflow.run("help", session="s1"))
    output = events[-1]
    assert isinstance(output, WorkflowOutput)
    assert seen == [len(stored) + 1, len(stored) + 2]
    assert output.conversation == tuple(await history.list_messages("s1"))


def _handoff(target: str) -> ChatMessage:
    from tests.orchestration._builders import call, calls

    return calls(call(f"handoff_to_{target}", reason="b knows", task="answer"))


# -- Transcript ---------------------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    size=st.integers(1, 160),
    newest=st.integers(1, 160),
    budget=st.integers(1, 30),
    agent=st.sampled_from(["a", "b", "c"]),
    others_as=st.sampled_from(["assistant", "user"]),
)
async def test_window_of_a_view_from_the_newest_part_is_the_window_of_the_whole_view(
    seed: int, size: int, newest: int, budget: int, agent: str, others_as: Any
) -> None:
    """Reducing an agent's view from the newest messages and the older system messages
    gives what reducing the view of the whole conversation gives, or asks for more."""
    conversation = team_conversation(size, ("a", "b", "c"), seed=seed, strays=0.03, late=0.1)
    cut = max(0, len(conversation) - newest)
    older_system = [m for m in conversation[:cut] if m.role == "system"]
    view = AgentView(agent, others_as)
    reducer = MessageCountReducer(budget)
    window = await reducer.reduce_tail(*view.split(older_system, conversation[cut:]))
    if window is not None:
        whole = await reducer.reduce(view.of(conversation))
        assert [(m.id, *shape(m)) for m in window] == [(m.id, *shape(m)) for m in whole]


async def test_transcript_whole_is_the_stored_conversation_then_what_was_added() -> None:
    """After a window and added messages, `whole()` is the stored conversation, then those."""
    history = ReadRecordingHistory()
    stored = await filled(history)
    transcript = Transcript(history, "s1")
    await transcript.window(MessageCountReducer(5))
    assert not transcript.complete
    added = [ChatMessage.user("later")]
    transcript.extend(added)
    assert await transcript.whole() == [*stored, *added]
    assert transcript.complete


async def test_transcript_reads_again_when_its_oldest_message_was_deleted() -> None:
    """When the oldest held message is gone, reading older ones starts again from storage."""
    history = ReadRecordingHistory()
    stored = await filled(history)
    transcript = Transcript(history, "s1")
    await transcript.window(MessageCountReducer(5))
    oldest = transcript.messages[0]
    at = stored.index(oldest)
    owner = next(m for m in reversed(stored[: at + 1]) if m.role != "tool")
    await history.delete_messages("s1", [owner.id])
    whole = await transcript.whole()
    assert whole == await history.list_messages("s1")
    assert oldest not in whole


async def test_transcript_window_with_extra_and_drop() -> None:
    """`window(extra=..., drop=n)` reduces the conversation without its newest n messages,
    followed by `extra`."""
    history = ReadRecordingHistory()
    stored = await filled(history)
    extra = [ChatMessage.user("not stored")]
    reducer = MessageCountReducer(9)
    window = await Transcript(history, "s1").window(reducer, extra=extra, drop=3)
    assert window == await reducer.reduce([*stored[:-3], *extra])


class _FirstUserOnly(ChatReducer):
    """Keeps the oldest user message only: it needs the whole history (no `reduce_tail`)."""

    async def reduce(self, messages: Sequence[ChatMessage]) -> list[ChatMessage]:
        return [next(m for m in messages if m.role == "user")]


async def test_transcript_window_of_a_whole_history_reducer_reads_everything() -> None:
    """A reducer that needs the whole history gets it, through `list_messages(reducer=)`."""
    history = ReadRecordingHistory()
    stored = await filled(history)
    window = await Transcript(history, "s1").window(_FirstUserOnly())
    assert window == [next(m for m in stored if m.role == "user")]
