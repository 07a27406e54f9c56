"""SummarizingReducer: a running summary replaces what falls out, extended and never redone."""

from __future__ import annotations

import logging

import pytest

from memweave.errors import ConfigurationError, ModelError, ModelHTTPError
from memweave.messages import ChatMessage
from memweave.reducers import ChatReducer, SummarizingReducer
from memweave.reducers.summary import (
    DEFAULT_SUMMARY_PROMPT,
    SUMMARY_METADATA_KEY,
    SUMMARY_PREFIX,
    is_summary,
    summary_covers,
)
from memweave.testing import ScriptedChatClient

from ._histories import assistant, system, tool_group, user


def chat(turns: int, start: int = 0) -> list[ChatMessage]:
    out: list[ChatMessage] = []
    for turn in range(start, start + turns):
        out += [user(f"question {turn}"), assistant(f"answer {turn}")]
    return out


def test_reducer_is_a_chat_reducer() -> None:
    """SummarizingReducer implements ChatReducer."""
    reducer = SummarizingReducer(ScriptedChatClient([]), keep_last=2, trigger_at=4)
    assert isinstance(reducer, ChatReducer)


async def test_reduce_below_trigger_returns_history_without_model_call() -> None:
    """Up to trigger_at messages the history comes back as given and the model is not asked."""
    client = ScriptedChatClient([])
    history = [system("rules"), *chat(3)]
    result = await SummarizingReducer(client, keep_last=2, trigger_at=6).reduce(history)
    assert result == history
    assert client.requests == []


async def test_reduce_replaces_older_messages_with_one_summary() -> None:
    """Past trigger_at, all but the newest keep_last become one marked summary message."""
    client = ScriptedChatClient(["They asked four questions."])
    history = [system("rules"), *chat(4)]
    result = await SummarizingReducer(client, keep_last=2, trigger_at=6).reduce(history)
    summary = result[1]
    assert result[0] is history[0]
    assert result[2:] == history[-2:]
    assert summary.role == "user"
    assert summary.text == SUMMARY_PREFIX + "They asked four questions."
    assert is_summary(summary)
    assert summary_covers(summary) == tuple(m.id for m in history[1:-2])
    assert summary.metadata[SUMMARY_METADATA_KEY] == {"covers": [m.id for m in history[1:-2]]}


async def test_summary_request_is_transcript_then_user_turn() -> None:
    """The model gets the dropped messages as they are, then the prompt as a user turn."""
    client = ScriptedChatClient(["summary"])
    history = [system("rules"), *chat(4)]
    await SummarizingReducer(client, keep_last=2, trigger_at=6).reduce(history)
    (request,) = client.requests
    assert list(request.messages[:-1]) == history[1:-2]
    assert request.messages[-1].role == "user"
    assert request.messages[-1].text == DEFAULT_SUMMARY_PROMPT
    assert request.tools is None


async def test_custom_prompt_is_sent() -> None:
    """A prompt given to the reducer is the final user turn of the request."""
    client = ScriptedChatClient(["summary"])
    reducer = SummarizingReducer(client, keep_last=1, trigger_at=2, prompt="Sum it up in French.")
    await reducer.reduce(chat(2))
    assert client.requests[0].messages[-1].text == "Sum it up in French."


async def test_reduce_keeps_tool_group_together() -> None:
    """When keep_last falls inside a tool group, the kept part grows to its start."""
    client = ScriptedChatClient(["summary"])
    group = tool_group(3)
    history = [*chat(3), *group]
    result = await SummarizingReducer(client, keep_last=2, trigger_at=5).reduce(history)
    assert result[1:] == group
    assert summary_covers(result[0]) == tuple(m.id for m in history[:6])


async def test_summary_is_reused_until_trigger_then_extended_on_read() -> None:
    """Given the full history each turn, the summary is reused, then extended with only the
    newly dropped messages."""
    client = ScriptedChatClient(["first summary", "second summary"])
    reducer = SummarizingReducer(client, keep_last=2, trigger_at=5)
    history = chat(3)
    first = await reducer.reduce(history)
    assert len(client.requests) == 1
    history += chat(1, start=3)
    again = await reducer.reduce(history)
    assert again[0] is first[0]
    assert again[1:] == history[-4:]
    assert len(client.requests) == 1
    history += chat(1, start=4)
    extended = await reducer.reduce(history)
    assert len(client.requests) == 2
    request = client.requests[1].messages
    assert request[0] is first[0]
    assert list(request[1:-1]) == history[4:8]
    assert extended[0].text == SUMMARY_PREFIX + "second summary"
    assert summary_covers(extended[0]) == tuple(m.id for m in history[:8])
    assert extended[1:] == history[8:]


async def test_summary_is_extended_when_output_is_fed_back_on_write() -> None:
    """Given its own previous output, the reducer extends the summary found in it."""
    client = ScriptedChatClient(["first summary", "second summary"])
    reducer = SummarizingReducer(client, keep_last=2, trigger_at=4)
    stored = await reducer.reduce([system("rules"), *chat(3)])
    assert [m.role for m in stored] == ["system", "user", "user", "assistant"]
    stored = await SummarizingReducer(client, keep_last=2, trigger_at=4).reduce(
        [*stored, *chat(1, start=3)]
    )
    request = client.requests[1].messages
    assert request[0].text == SUMMARY_PREFIX + "first summary"
    assert [m.text for m in request[1:-1]] == ["question 2", "answer 2"]
    assert stored[1].text == SUMMARY_PREFIX + "second summary"
    assert len(summary_covers(stored[1])) == 6
    assert [m.text for m in stored[2:]] == ["question 3", "answer 3"]


async def test_failing_model_leaves_history_unreduced_with_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A ModelError from the client gives back the history unreduced and logs a warning."""

    def broken(messages: object, tools: object, options: object) -> str:
        raise ModelHTTPError(503, model="scripted", body={"error": "overloaded"})

    history = [system("rules"), *chat(4)]
    reducer = SummarizingReducer(ScriptedChatClient(broken), keep_last=2, trigger_at=6)
    with caplog.at_level(logging.WARNING, logger="memweave.reducers.summary"):
        result = await reducer.reduce(history)
    assert result == history
    assert "unreduced" in caplog.text


async def test_failing_extension_keeps_previous_summary(caplog: pytest.LogCaptureFixture) -> None:
    """When extending fails, the previous summary and everything after it are returned."""
    replies = iter(["first summary"])

    def flaky(messages: object, tools: object, options: object) -> str:
        for reply in replies:
            return reply
        raise ModelError("connection reset")

    reducer = SummarizingReducer(ScriptedChatClient(flaky), keep_last=2, trigger_at=4)
    history = chat(3)
    first = await reducer.reduce(history)
    history += chat(1, start=3)
    with caplog.at_level(logging.WARNING, logger="memweave.reducers.summary"):
        result = await reducer.reduce(history)
    assert result == [first[0], *history[4:]]
    assert "connection reset" in caplog.text


async def test_empty_summary_leaves_history_unreduced(caplog: pytest.LogCaptureFixture) -> None:
    """A reply with no text is treated as a failure."""
    history = chat(3)
    reducer = SummarizingReducer(ScriptedChatClient(["   "]), keep_last=2, trigger_at=4)
    with caplog.at_level(logging.WARNING, logger="memweave.reducers.summary"):
        assert await reducer.reduce(history) == history
    assert "no text" in caplog.text


async def test_reduce_is_deterministic() -> None:
    """Two reducers with the same script give equal results, summary id included."""
    history = chat(5)
    one = await SummarizingReducer(ScriptedChatClient(["s"]), keep_last=2, trigger_at=4).reduce(
        history
    )
    two = await SummarizingReducer(ScriptedChatClient(["s"]), keep_last=2, trigger_at=4).reduce(
        history
    )
    assert one == two


async def test_reduce_does_not_mutate_input() -> None:
    """reduce leaves its input list as it was."""
    history = chat(5)
    before = list(history)
    await SummarizingReducer(ScriptedChatClient(["s"]), keep_last=2, trigger_at=4).reduce(history)
    assert history == before


@pytest.mark.parametrize(
    "options",
    [
        {"keep_last": 0, "trigger_at": 3},
        {"keep_last": 3, "trigger_at": 3},
        {"keep_last": 2, "trigger_at": True},
        {"keep_last": 2, "trigger_at": 5, "prompt": " "},
    ],
)
def test_bad_options_are_configuration_errors(options: dict[str, object]) -> None:
    """Bad constructor options raise ConfigurationError."""
    with pytest.raises(ConfigurationError):
        SummarizingReducer(ScriptedChatClient([]), **options)  # type: ignore[arg-type]


def test_client_without_complete_is_configuration_error() -> None:
    """A client lacking complete() is rejected."""
    with pytest.raises(ConfigurationError, match="ChatClient"):
        SummarizingReducer(object(), keep_last=1, trigger_at=2)  # type: ignore[arg-type]
