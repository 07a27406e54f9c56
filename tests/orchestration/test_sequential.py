"""Sequential chats with carryover (`initiate_chats`) and the `Sequential` pipeline."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from memweave.errors import InvalidArgument, ModelError
from memweave.messages import ChatMessage
from memweave.orchestration import Agent, ChatSpec, Sequential, initiate_chats, tool
from memweave.orchestration.sequential import DEFAULT_SUMMARY_PROMPT
from memweave.orchestration.tools import Tool
from memweave.testing import ScriptedChatClient
from tests.orchestration._builders import BatchRecordingHistory, assert_no_orphans, call, calls


def roles_and_texts(messages: Sequence[ChatMessage]) -> list[tuple[str, str]]:
    return [(m.role, m.text) for m in messages]


async def test_agents_alternate_and_see_each_other_as_users(
    history: BatchRecordingHistory,
) -> None:
    """Each side sees its own messages as assistant and the other's as user."""
    sender_client = ScriptedChatClient(["Now 3?"])
    recipient_client = ScriptedChatClient(["2 doubled is 4.", "3 doubled is 6."])
    sender = Agent("user_proxy", sender_client)
    recipient = Agent("doubler", recipient_client, instructions="Double numbers.")
    (result,) = await initiate_chats(
        sender, [ChatSpec(recipient=recipient, message="Double 2.", max_turns=2)], history=history
    )
    assert roles_and_texts(recipient_client.requests[1].messages) == [
        ("system", "Double numbers."),
        ("user", "Double 2."),
        ("assistant", "2 doubled is 4."),
        ("user", "Now 3?"),
    ]
    assert roles_and_texts(sender_client.requests[0].messages) == [
        ("assistant", "Double 2."),
        ("user", "2 doubled is 4."),
    ]
    assert [m.name for m in result.chat_history] == [
        "user_proxy",
        "doubler",
        "user_proxy",
        "doubler",
    ]
    assert result.summary == "3 doubled is 6."


async def test_max_turns_counts_one_message_from_each_side() -> None:
    """`max_turns=N` gives the recipient N replies and the sender N-1 (after its opening)."""
    sender = Agent("a", ScriptedChatClient(lambda m, t, o: "more"))
    recipient = Agent("b", ScriptedChatClient(lambda m, t, o: "ok"))
    (result,) = await initiate_chats(
        sender, [ChatSpec(recipient=recipient, message="go", max_turns=3)]
    )
    assert [m.name for m in result.chat_history] == ["a", "b", "a", "b", "a", "b"]


async def test_terminate_ends_a_chat_and_last_msg_drops_the_keyword() -> None:
    """A message ending with TERMINATE stops the chat; `last_msg` removes the keyword."""
    recipient_client = ScriptedChatClient(["The answer is 42. TERMINATE"])
    sender = Agent("a", ScriptedChatClient([]))
    recipient = Agent("b", recipient_client)
    (result,) = await initiate_chats(sender, [ChatSpec(recipient=recipient, message="Question?")])
    assert len(result.chat_history) == 2
    assert result.summary == "The answer is 42."


async def test_carryover_defaults_to_all_earlier_summaries_in_a_marked_block() -> None:
    """The next chat's first message carries the earlier summaries after the explicit
    carryover, in a marked context block; the carryover used is recorded."""
    first = Agent("numbers", ScriptedChatClient(["Sum: 25. TERMINATE"]))
    second = Agent("ranker", ScriptedChatClient(["Max: 14. TERMINATE"]))
    analyst_client = ScriptedChatClient(["Report. TERMINATE"])
    analyst = Agent("analyst", analyst_client)
    sender = Agent("user", ScriptedChatClient([]))
    results = await initiate_chats(
        sender,
        [
            ChatSpec(recipient=first, message="Sum 14, 3, 8.", max_turns=1),
            ChatSpec(recipient=second, message="Max of 14, 3, 8.", max_turns=1),
            ChatSpec(
                recipient=analyst, message="Analyze.", carryover="Numbers: 14, 3, 8", max_turns=1
            ),
        ],
    )
    assert results[0].carryover == ()
    assert results[1].carryover == ("Sum: 25.",)
    assert results[2].carryover == ("Numbers: 14, 3, 8", "Sum: 25.", "Max: 14.")
    opening = analyst_client.requests[0].messages[-1]
    assert opening.role == "user"
    assert opening.text.startswith("Analyze.\n\nContext carried over from earlier chats")
    assert opening.text.endswith(
        "<carryover>\nNumbers: 14, 3, 8\n\nSum: 25.\n\nMax: 14.\n</carryover>"
    )
    assert results[2].chat_history[0].text == opening.text


async def test_carryover_from_chooses_earlier_chats() -> None:
    """`carryover_from` names the earlier chats whose summaries are carried over."""
    agents = [Agent(f"r{i}", ScriptedChatClient([f"S{i} TERMINATE"])) for i in range(3)]
    sender = Agent("user", ScriptedChatClient([]))
    results = await initiate_chats(
        sender,
        [
            ChatSpec(recipient=agents[0], message="one"),
            ChatSpec(recipient=agents[1], message="two", carryover_from=[]),
            ChatSpec(recipient=agents[2], message="three", carryover_from=[1]),
        ],
    )
    assert [r.carryover for r in results] == [(), (), ("S1",)]


async def test_bad_carryover_index_fails_before_any_chat() -> None:
    """A `carryover_from` index that is not an earlier chat is rejected up front."""
    client = ScriptedChatClient([])
    sender = Agent("user", client)
    recipient = Agent("r", client)
    with pytest.raises(InvalidArgument, match=r"chats\[1\].carryover_from"):
        await initiate_chats(
            sender,
            [
                ChatSpec(recipient=recipient, message="a"),
                ChatSpec(recipient=recipient, message="b", carryover_from=[1]),
            ],
        )
    assert client.requests == []


async def test_reflection_with_llm_asks_the_sender_after_the_transcript() -> None:
    """The summary prompt goes to the sender's model as a user turn after the transcript."""
    sender_client = ScriptedChatClient(["The result is 6."])
    sender = Agent("user", sender_client)
    recipient = Agent("r", ScriptedChatClient(["6 TERMINATE"]))
    (result,) = await initiate_chats(
        sender,
        [ChatSpec(recipient=recipient, message="3+3?", summary_method="reflection_with_llm")],
    )
    assert result.summary == "The result is 6."
    assert roles_and_texts(sender_client.requests[0].messages) == [
        ("assistant", "3+3?"),
        ("user", "6 TERMINATE"),
        ("user", DEFAULT_SUMMARY_PROMPT),
    ]
    assert len(result.chat_history) == 2


@pytest.mark.parametrize("is_async", [False, True])
async def test_custom_summary_functions(is_async: bool) -> None:
    """A sync or async function of (sender, recipient, transcript) makes the summary."""

    def summarize(sender: Agent, recipient: Agent, transcript: list[ChatMessage]) -> str:
        return f"{sender.name}->{recipient.name}: {len(transcript)} messages"

    async def summarize_async(
        sender: Agent, recipient: Agent, transcript: list[ChatMessage]
    ) -> str:
        return summarize(sender, recipient, transcript)

    sender = Agent("user", ScriptedChatClient([]))
    recipient = Agent("r", ScriptedChatClient(["done TERMINATE"]))
    method: Any = summarize_async if is_async else summarize
    (result,) = await initiate_chats(
        sender, [ChatSpec(recipient=recipient, message="go", summary_method=method)]
    )
    assert result.summary == "user->r: 2 messages"


async def test_each_chat_is_stored_once_under_its_own_session(
    history: BatchRecordingHistory,
) -> None:
    """Every transcript is stored, message by message, under a session of its own."""

    @tool
    def double(n: int) -> int:
        return 2 * n

    recipient = Agent(
        "r",
        ScriptedChatClient([calls(call("double", "c1", n=2)), "4 TERMINATE", "ok TERMINATE"]),
        tools=[double],
    )
    sender = Agent("user", ScriptedChatClient([]))
    results = await initiate_chats(
        sender,
        [
            ChatSpec(recipient=recipient, message="double 2", session_id="chat-a"),
            ChatSpec(recipient=recipient, message="thanks"),
        ],
        history=history,
    )
    assert results[0].session_id == "chat-a"
    assert results[1].session_id != "chat-a"
    for result in results:
        stored = await history.list_messages(result.session_id)
        assert stored == list(result.chat_history)
        assert_no_orphans(stored)
    assert [m.role for m in results[0].chat_history] == [
        "assistant",
        "assistant",
        "tool",
        "assistant",
    ]
    assert sorted(await history.list_sessions()) == sorted(r.session_id for r in results)


async def test_a_stored_transcript_is_continued_by_a_new_chat() -> None:
    """A chat with a new message on an existing `session_id` continues its stored transcript."""
    history = BatchRecordingHistory()
    recipient_client = ScriptedChatClient(["first TERMINATE", "second TERMINATE"])
    recipient = Agent("r", recipient_client)
    sender = Agent("user", ScriptedChatClient([]))
    await initiate_chats(
        sender, [ChatSpec(recipient=recipient, message="one", session_id="s")], history=history
    )
    (again,) = await initiate_chats(
        sender, [ChatSpec(recipient=recipient, message="two", session_id="s")], history=history
    )
    assert [m.text for m in again.chat_history] == [
        "one",
        "first TERMINATE",
        "two",
        "second TERMINATE",
    ]


async def test_rerunning_chats_rebuilds_finished_ones_and_continues_the_failed_one(
    history: BatchRecordingHistory,
) -> None:
    """Re-run with the same session ids after chat 2 failed, chat 1 is not run again (its
    result is rebuilt from its transcript) and chat 2's stored opening is not added again."""
    numbers_client = ScriptedChatClient(["Sum: 25. TERMINATE"])
    down = [True]

    def analyst_model(messages: Any, tools: Any, options: Any) -> str:
        if down[0]:
            raise ModelError("down")
        return "Report. TERMINATE"

    sender = Agent("user", ScriptedChatClient([]))
    chats = [
        ChatSpec(Agent("numbers", numbers_client), "Sum 14, 3, 8.", session_id="c1"),
        ChatSpec(Agent("analyst", ScriptedChatClient(analyst_model)), "Analyze.", session_id="c2"),
    ]
    with pytest.raises(ModelError):
        await initiate_chats(sender, chats, history=history)
    down[0] = False
    first, second = await initiate_chats(sender, chats, history=history)
    assert len(numbers_client.requests) == 1
    assert [m.text for m in first.chat_history] == ["Sum 14, 3, 8.", "Sum: 25. TERMINATE"]
    assert await history.list_messages("c1") == list(first.chat_history)
    assert first.summary == "Sum: 25."
    assert [m.name for m in await history.list_messages("c2")] == ["user", "analyst"]
    assert second.carryover == ("Sum: 25.",)
    assert second.summary == "Report."


async def test_rerunning_an_unfinished_chat_continues_where_it_stopped(
    history: BatchRecordingHistory,
) -> None:
    """A chat that stopped mid-way goes on from its stored transcript: the speaker that
    failed speaks next, and `max_turns` counts the turns already stored."""
    down = [True]

    def sender_model(messages: Any, tools: Any, options: Any) -> str:
        if down[0]:
            raise ModelError("down")
        return "Now 3?"

    recipient_client = ScriptedChatClient(["4.", "6."])
    sender = Agent("user", ScriptedChatClient(sender_model))
    spec = ChatSpec(Agent("doubler", recipient_client), "Double 2.", max_turns=2, session_id="c")
    with pytest.raises(ModelError):
        await initiate_chats(sender, [spec], history=history)
    down[0] = False
    (result,) = await initiate_chats(sender, [spec], history=history)
    assert [(m.name, m.text) for m in result.chat_history] == [
        ("user", "Double 2."),
        ("doubler", "4."),
        ("user", "Now 3?"),
        ("doubler", "6."),
    ]
    assert len(recipient_client.requests) == 2
    (again,) = await initiate_chats(sender, [spec], history=history)
    assert again.chat_history == result.chat_history
    assert again.summary == "6."
    assert len(recipient_client.requests) == 2


def failing_after_a_tool_round(boom: Exception) -> tuple[ScriptedChatClient, Tool[..., Any]]:
    """A client that calls `double` once, then fails; and the tool."""

    @tool
    def double(n: int) -> int:
        return 2 * n

    def model(messages: Any, tools: Any, options: Any) -> ChatMessage:
        if messages[-1].role == "tool":
            raise boom
        return calls(call("double", "d1", n=2))

    return ScriptedChatClient(model), double


async def test_a_failed_chat_keeps_its_completed_tool_rounds(
    history: BatchRecordingHistory,
) -> None:
    """A recipient failing after its tool ran keeps the completed round in the transcript;
    the error reaches the caller unchanged."""
    boom = ModelError("down")
    client, double = failing_after_a_tool_round(boom)
    sender = Agent("user", ScriptedChatClient([]))
    spec = ChatSpec(Agent("r", client, tools=[double]), "double 2", session_id="c")
    with pytest.raises(ModelError) as caught:
        await initiate_chats(sender, [spec], history=history)
    assert caught.value is boom
    stored = await history.list_messages("c")
    assert [(m.role, m.name) for m in stored] == [
        ("assistant", "user"),
        ("assistant", "r"),
        ("tool", None),
    ]
    assert_no_orphans(stored)


def test_chat_spec_validation_errors_are_memweave_errors() -> None:
    """A bad `ChatSpec` field raises `InvalidArgument`, not a pydantic error."""
    with pytest.raises(InvalidArgument, match="recipient"):
        ChatSpec(recipient="nobody", message="hi")  # type: ignore[arg-type]


def test_chat_spec_takes_recipient_and_message_positionally() -> None:
    """`ChatSpec(recipient, message, ...)` reads as in AutoGen."""
    agent = Agent("r", ScriptedChatClient([]))
    spec = ChatSpec(agent, "hello", max_turns=2)
    assert (spec.recipient, spec.message, spec.max_turns) == (agent, "hello", 2)


async def test_sequential_passes_the_conversation_along(history: BatchRecordingHistory) -> None:
    """Each agent sees the conversation so far, the others' text as user messages."""
    writer_client = ScriptedChatClient(["A haiku."])
    reviewer_client = ScriptedChatClient(["Looks good."])
    pipeline = Sequential(
        [
            Agent("writer", writer_client),
            Agent("reviewer", reviewer_client, instructions="Review."),
        ],
        history=history,
    )
    result = await pipeline.run("Write a haiku.", session="s1")
    assert result.text == "Looks good."
    assert [m.name for m in result.messages] == ["writer", "reviewer"]
    assert roles_and_texts(reviewer_client.requests[0].messages) == [
        ("system", "Review."),
        ("user", "Write a haiku."),
        ("user", "A haiku."),
    ]
    assert reviewer_client.requests[0].messages[-1].name == "writer"


async def test_sequential_can_chain_only_agent_responses() -> None:
    """With `chain_only_agent_responses`, later agents see only the previous reply."""
    clients = [ScriptedChatClient([f"reply {i}"]) for i in range(3)]
    pipeline = Sequential(
        [Agent(f"a{i}", c) for i, c in enumerate(clients)], chain_only_agent_responses=True
    )
    await pipeline.run("start")
    assert roles_and_texts(clients[0].requests[0].messages) == [("user", "start")]
    assert roles_and_texts(clients[2].requests[0].messages) == [("user", "reply 1")]


async def test_sequential_stores_one_conversation_once_across_runs(
    history: BatchRecordingHistory,
) -> None:
    """Repeated runs on one session append each message once; nothing is duplicated."""

    def echo(name: str) -> ScriptedChatClient:
        return ScriptedChatClient(lambda m, t, o: f"{name} saw {len(m)}")

    pipeline = Sequential([Agent("a", echo("a")), Agent("b", echo("b"))], history=history)
    for turn in range(3):
        await pipeline.run(f"turn {turn}", session="s1")
    stored = await history.list_messages("s1")
    assert len(stored) == 9
    assert len({m.id for m in stored}) == 9
    assert [m.name for m in stored[:3]] == [None, "a", "b"]
    assert stored[-1].text == "b saw 8"


async def test_sequential_failure_keeps_what_was_done(history: BatchRecordingHistory) -> None:
    """When an agent fails, the input and earlier replies stay stored; the error propagates."""
    boom = ModelError("down")

    def fail(messages: Any, tools: Any, options: Any) -> str:
        raise boom

    pipeline = Sequential(
        [Agent("a", ScriptedChatClient(["fine"])), Agent("b", ScriptedChatClient(fail))],
        history=history,
    )
    with pytest.raises(ModelError) as caught:
        await pipeline.run("go", session="s1")
    assert caught.value is boom
    assert [m.text for m in await history.list_messages("s1")] == ["go", "fine"]


async def test_sequential_first_agent_failure_still_stores_the_input(
    history: BatchRecordingHistory,
) -> None:
    """The user's input is stored even when the first agent fails."""

    def fail(messages: Any, tools: Any, options: Any) -> str:
        raise ModelError("down")

    pipeline = Sequential(
        [Agent("a", ScriptedChatClient(fail)), Agent("b", ScriptedChatClient([]))], history=history
    )
    with pytest.raises(ModelError):
        await pipeline.run("go", session="s1")
    assert [m.text for m in await history.list_messages("s1")] == ["go"]


async def test_sequential_failure_keeps_completed_tool_rounds_with_the_input(
    history: BatchRecordingHistory,
) -> None:
    """An agent failing after its tool ran stores the input and the completed round in one
    batch; the error reaches the caller unchanged."""
    boom = ModelError("down")
    client, double = failing_after_a_tool_round(boom)
    pipeline = Sequential(
        [Agent("a", client, tools=[double]), Agent("b", ScriptedChatClient([]))], history=history
    )
    with pytest.raises(ModelError) as caught:
        await pipeline.run("go", session="s1")
    assert caught.value is boom
    ((_, batch),) = history.batches
    assert [(m.role, m.text) for m in batch] == [("user", "go"), ("assistant", ""), ("tool", "4")]


def test_sequential_rejects_duplicate_names() -> None:
    """Two agents with one name cannot share a pipeline."""
    client = ScriptedChatClient([])
    with pytest.raises(InvalidArgument, match="'a'"):
        Sequential([Agent("a", client), Agent("a", client)])
