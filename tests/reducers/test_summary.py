"""SummarizingReducer: a running summary replaces what falls out, extended and never redone."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from memweave.errors import ConfigurationError, InvalidMessage, ModelError, ModelHTTPError
from memweave.messages import ChatMessage
from memweave.providers import from_url
from memweave.reducers import ChatReducer, SummarizingReducer
from memweave.reducers.summary import (
    DEFAULT_SUMMARY_PROMPT,
    SUMMARY_METADATA_KEY,
    SUMMARY_PREFIX,
    SummaryCoverage,
    is_summary,
    summary_coverage,
)
from memweave.testing import ScriptedChatClient

from ._histories import assistant, system, tool_group, user


def chat(turns: int, start: int = 0) -> list[ChatMessage]:
    out: list[ChatMessage] = []
    for turn in range(start, start + turns):
        out += [user(f"question {turn}"), assistant(f"answer {turn}")]
    return out


def coverage_of(messages: list[ChatMessage]) -> SummaryCoverage:
    """The coverage of a summary replacing exactly `messages`."""
    return SummaryCoverage(first=messages[0].id, last=messages[-1].id, count=len(messages))


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
    assert summary_coverage(summary) == coverage_of(history[1:-2])
    assert summary.metadata[SUMMARY_METADATA_KEY] == {
        "first": history[1].id,
        "last": history[-3].id,
        "count": 6,
    }


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
    assert summary_coverage(result[0]) == coverage_of(history[:6])


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
    assert summary_coverage(extended[0]) == coverage_of(history[:8])
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
    assert summary_coverage(stored[1]).count == 6
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


async def test_summary_marker_stays_bounded_as_coverage_grows() -> None:
    """The summary's marker holds the first and last covered ids and a count, not every id,
    so its size does not grow with the history."""
    reducer = SummarizingReducer(ScriptedChatClient(lambda *_: "s"), keep_last=2, trigger_at=4)
    stored = await reducer.reduce(chat(3))
    for turn in range(3, 500):
        stored = await reducer.reduce([*stored, *chat(1, start=turn)])
    summary = stored[0]
    assert summary_coverage(summary).count == 2 * 500 - 2
    assert len(json.dumps(summary.metadata)) < 200


async def test_old_marker_listing_every_id_is_read_and_extended() -> None:
    """A summary stored with the old marker (`{"covers": [ids]}`) is read and extended; the
    extended summary gets the bounded marker."""
    covered = chat(3)
    old = ChatMessage.user(
        SUMMARY_PREFIX + "old summary",
        metadata={SUMMARY_METADATA_KEY: {"covers": [m.id for m in covered]}},
    )
    assert summary_coverage(old) == coverage_of(covered)
    client = ScriptedChatClient(["new summary"])
    reducer = SummarizingReducer(client, keep_last=2, trigger_at=4)
    newer = chat(2, start=3)
    stored = await reducer.reduce([old, *newer])
    assert client.requests[0].messages[0] is old
    assert summary_coverage(stored[0]) == SummaryCoverage(covered[0].id, newer[1].id, 8)
    assert stored[1:] == newer[2:]


async def test_summary_in_input_skips_the_messages_it_covers() -> None:
    """A summary stored after the messages it covers (say, appended by the application) is
    reused: the covered messages are dropped and the model is not asked again."""
    client = ScriptedChatClient(["first summary"])
    reducer = SummarizingReducer(client, keep_last=2, trigger_at=5)
    history = chat(3)
    (summary, *_) = await reducer.reduce(history)
    fresh = SummarizingReducer(client, keep_last=2, trigger_at=5)
    later = [*history, summary, *chat(1, start=3)]
    assert await fresh.reduce(later) == [summary, *history[-2:], *later[-2:]]
    assert len(client.requests) == 1


@pytest.mark.parametrize("marker", [{"covers": []}, {"first": "a", "last": "b"}, {"count": 1}])
def test_malformed_marker_is_invalid_message(marker: dict[str, object]) -> None:
    """A summary marker that names no coverage raises `InvalidMessage`."""
    message = ChatMessage.user("x", metadata={SUMMARY_METADATA_KEY: marker})
    with pytest.raises(InvalidMessage):
        summary_coverage(message)


async def test_read_mode_summary_is_remembered_for_cache_size_histories() -> None:
    """Given full histories, the reducer remembers the summaries of the `cache_size` most
    recently reduced histories; a history it forgot is summarized again from scratch."""
    client = ScriptedChatClient(lambda *_: "summary")
    reducer = SummarizingReducer(client, keep_last=2, trigger_at=4, cache_size=2)
    one, two, three = chat(3), chat(3), chat(3)
    for history in (one, two, one, two):
        await reducer.reduce(history)
    assert len(client.requests) == 2
    await reducer.reduce(three)
    await reducer.reduce(two)
    assert len(client.requests) == 3
    await reducer.reduce(one)
    assert len(client.requests) == 4


async def test_read_mode_remembered_summary_needs_the_same_covered_messages() -> None:
    """A remembered summary is reused only for a history starting with exactly the messages
    it covers."""
    client = ScriptedChatClient(lambda *_: "summary")
    reducer = SummarizingReducer(client, keep_last=2, trigger_at=4)
    history = chat(3)
    await reducer.reduce(history)
    changed = [history[0], user("a different question"), *history[2:]]
    await reducer.reduce(changed)
    assert len(client.requests) == 2


async def test_cache_size_zero_remembers_nothing() -> None:
    """With `cache_size=0`, each reduce of a full history past `trigger_at` asks the model."""
    client = ScriptedChatClient(lambda *_: "summary")
    reducer = SummarizingReducer(client, keep_last=2, trigger_at=4, cache_size=0)
    history = chat(3)
    await reducer.reduce(history)
    await reducer.reduce(history)
    assert len(client.requests) == 2


@pytest.mark.parametrize("cache_size", [-1, True, 1.5, "64"])
def test_bad_cache_size_is_configuration_error(cache_size: object) -> None:
    """`cache_size` must be a non-negative int."""
    with pytest.raises(ConfigurationError, match="cache_size"):
        SummarizingReducer(
            ScriptedChatClient([]),
            keep_last=1,
            trigger_at=2,
            cache_size=cache_size,  # type: ignore[arg-type]
        )


async def test_write_mode_stores_summary_so_another_reducer_extends_it(tmp_path: Path) -> None:
    """With `reduce_on="write"` the summary is stored, so a new reducer (another process, a
    restart) extends it instead of summarizing the whole history again."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'history.db'}"
    client = ScriptedChatClient(["first summary", "second summary"])
    for turns, start in [(3, 0), (1, 3)]:
        reducer = SummarizingReducer(client, keep_last=2, trigger_at=4)
        async with from_url(url, reducer=reducer, reduce_on="write") as history:
            await history.add_messages("s", chat(turns, start=start))
            stored = await history.list_messages("s")
    request = client.requests[1].messages
    assert request[0].text == SUMMARY_PREFIX + "first summary"
    assert [m.text for m in request[1:-1]] == ["question 2", "answer 2"]
    assert stored[0].text == SUMMARY_PREFIX + "second summary"
    assert summary_coverage(stored[0]).count == 6
    assert [m.text for m in stored[1:]] == ["question 3", "answer 3"]
