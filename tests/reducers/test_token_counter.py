"""TokenCounter: OpenAI's chat counting rule, memweave's documented rules, and the count cache."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator

import pytest
import tiktoken

from memweave.errors import ConfigurationError, InvalidArgument, InvalidMessage, MissingDependency
from memweave.messages import ChatMessage, ContentPart, ToolCall
from memweave.reducers import TokenCounter

# The example conversation of OpenAI's cookbook "How to count tokens with tiktoken", whose
# prompt_tokens the API reported as 124 on gpt-4o / gpt-4o-mini and 129 on gpt-4.
COOKBOOK_MESSAGES = [
    {
        "role": "system",
        "content": "You are a helpful, pattern-following assistant that translates corporate "
        "jargon into plain English.",
    },
    {
        "role": "system",
        "name": "example_user",
        "content": "New synergies will help drive top-line growth.",
    },
    {
        "role": "system",
        "name": "example_assistant",
        "content": "Things working well together will increase revenue.",
    },
    {
        "role": "system",
        "name": "example_user",
        "content": "Let's circle back when we have more bandwidth to touch base on "
        "opportunities for increased leverage.",
    },
    {
        "role": "system",
        "name": "example_assistant",
        "content": "Let's talk later when we're less busy about how to do better.",
    },
    {
        "role": "user",
        "content": "This late pivot means we don't have time to boil the ocean for the client "
        "deliverable.",
    },
]


@pytest.fixture
def encodings() -> Iterator[list[str]]:
    """Records every text tiktoken encodes while the test runs."""
    seen: list[str] = []
    original = tiktoken.Encoding.encode_ordinary

    def spy(self: tiktoken.Encoding, text: str) -> list[int]:
        seen.append(text)
        return original(self, text)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(tiktoken.Encoding, "encode_ordinary", spy)
        yield seen


@pytest.mark.parametrize(
    ("model", "expected"),
    [("gpt-4o", 124), ("gpt-4o-mini", 124), ("gpt-4", 129), ("gpt-3.5-turbo", 129)],
)
def test_count_matches_openai_cookbook(model: str, expected: int) -> None:
    """The cookbook's example messages count exactly as the OpenAI API billed them."""
    messages = [ChatMessage.from_openai(data) for data in COOKBOOK_MESSAGES]
    assert TokenCounter(model).count(messages) == expected


def test_count_of_no_messages_is_the_reply_priming(counter: TokenCounter) -> None:
    """An empty request costs the 3 tokens that prime the reply."""
    assert counter.count([]) == 3


def test_count_message_follows_openai_rule(counter: TokenCounter) -> None:
    """3 per message, plus role and content tokens, plus name tokens and 1 for a name."""
    plain = ChatMessage.user("Hello there, how are you?")
    expected = 3 + counter.count_text("user") + counter.count_text("Hello there, how are you?")
    assert counter.count_message(plain) == expected
    named = ChatMessage.user("Hello there, how are you?", name="ada")
    assert counter.count_message(named) == expected + counter.count_text("ada") + 1


def test_count_is_priming_plus_message_counts(counter: TokenCounter) -> None:
    """count(messages) is 3 plus the sum of count_message."""
    messages = [
        ChatMessage.system("Be brief."),
        ChatMessage.user("hi"),
        ChatMessage.assistant("yo"),
    ]
    assert counter.count(messages) == 3 + sum(counter.count_message(m) for m in messages)


def test_count_message_tool_calls_rule(counter: TokenCounter) -> None:
    """Each tool call costs 3 plus its name and arguments; ids are not counted."""
    call = ToolCall(id="call_123", name="get_weather", arguments='{"city": "Paris"}')
    message = ChatMessage.assistant(tool_calls=[call, call.model_copy(update={"id": "call_9"})])
    per_call = 3 + counter.count_text("get_weather") + counter.count_text('{"city": "Paris"}')
    assert counter.count_message(message) == 3 + counter.count_text("assistant") + 2 * per_call


def test_count_message_tool_result_counts_content_not_call_id(counter: TokenCounter) -> None:
    """A tool result counts like any message; its tool_call_id is not counted."""
    result = ChatMessage.tool("call_with_a_long_identifier_123456", "22 degrees")
    assert counter.count_message(result) == 3 + counter.count_text("tool") + counter.count_text(
        "22 degrees"
    )


def test_count_message_content_parts_rule(counter: TokenCounter) -> None:
    """Text parts count their text; images 85 (low detail) or 765; audio and files 256."""
    base = 3 + counter.count_text("user")
    parts = ChatMessage.user([{"type": "text", "text": "Look at this"}])
    assert counter.count_message(parts) == base + counter.count_text("Look at this")
    low: ContentPart = {
        "type": "image_url",
        "image_url": {"url": "https://x/a.png", "detail": "low"},
    }
    high: ContentPart = {"type": "image_url", "image_url": {"url": "https://x/a.png"}}
    audio: ContentPart = {"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}}
    assert counter.count_message(ChatMessage.user([low])) == base + 85
    assert counter.count_message(ChatMessage.user([high])) == base + 765
    assert counter.count_message(ChatMessage.user([audio])) == base + 256


def test_count_message_refusal_counts_as_text(counter: TokenCounter) -> None:
    """An assistant refusal counts its text."""
    message = ChatMessage.assistant(refusal="I can't help with that.")
    expected = 3 + counter.count_text("assistant") + counter.count_text("I can't help with that.")
    assert counter.count_message(message) == expected


def test_count_text_has_no_message_overhead(counter: TokenCounter) -> None:
    """count_text counts plain text, and special-token strings count as ordinary text."""
    assert counter.count_text("") == 0
    assert counter.count_text("hello world") == 2
    assert counter.count_text("<|endoftext|>") > 1


def test_count_text_rejects_non_str(counter: TokenCounter) -> None:
    """A non-str text raises InvalidArgument naming the value."""
    with pytest.raises(InvalidArgument, match="b'bytes'"):
        counter.count_text(b"bytes")  # type: ignore[arg-type]


def test_count_rejects_non_messages(counter: TokenCounter) -> None:
    """A non-message item raises InvalidMessage with its position."""
    with pytest.raises(InvalidMessage) as caught:
        counter.count([ChatMessage.user("hi"), {"role": "user"}])  # type: ignore[list-item]
    assert caught.value.position == 1


def test_model_picks_its_encoding() -> None:
    """gpt-4 counts with cl100k_base, gpt-4o with o200k_base, no model with o200k_base."""
    assert TokenCounter("gpt-4").encoding_name == "cl100k_base"
    assert TokenCounter("gpt-4o").encoding_name == "o200k_base"
    assert TokenCounter().encoding_name == "o200k_base"


def test_encoding_wins_over_model() -> None:
    """An explicit encoding is used whatever the model."""
    assert TokenCounter("gpt-4o", encoding="cl100k_base").encoding_name == "cl100k_base"


def test_unknown_model_falls_back_to_o200k_with_warning(caplog: pytest.LogCaptureFixture) -> None:
    """An unknown model counts with o200k_base and logs a warning naming it."""
    with caplog.at_level(logging.WARNING, logger="memweave.reducers.tokens"):
        counter = TokenCounter("llama-3-70b")
    assert counter.encoding_name == "o200k_base"
    assert "llama-3-70b" in caplog.text


def test_unknown_encoding_is_configuration_error() -> None:
    """An encoding tiktoken does not know raises ConfigurationError naming it."""
    with pytest.raises(ConfigurationError, match="'nope_base'"):
        TokenCounter(encoding="nope_base")


def test_load_failure_tells_how_to_seed_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    """When tiktoken cannot fetch an encoding, the error says how to pre-seed its cache."""

    def offline(name: str) -> tiktoken.Encoding:
        raise ConnectionError(f"cannot download {name}")

    monkeypatch.setattr(tiktoken, "get_encoding", offline)
    with pytest.raises(ConfigurationError, match="TIKTOKEN_CACHE_DIR") as caught:
        TokenCounter("gpt-4o")
    assert "o200k_base" in str(caught.value)


def test_missing_tiktoken_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without tiktoken, TokenCounter raises MissingDependency naming memweave[tokens]."""
    monkeypatch.setitem(sys.modules, "tiktoken", None)
    with pytest.raises(MissingDependency, match=r"memweave\[tokens\]"):
        TokenCounter()


@pytest.mark.parametrize(
    "options",
    [{"model": ""}, {"encoding": 5}, {"cache_size": -1}, {"cache_size": True}],
)
def test_bad_options_are_configuration_errors(options: dict[str, object]) -> None:
    """Bad constructor options raise ConfigurationError."""
    with pytest.raises(ConfigurationError):
        TokenCounter(**options)  # type: ignore[arg-type]


def test_count_message_encodes_a_message_once(encodings: list[str]) -> None:
    """A message is encoded once however often it is counted."""
    counter = TokenCounter("gpt-4o")
    message = ChatMessage.user("a message counted on every turn")
    for _ in range(5):
        counter.count([message])
    assert encodings.count("a message counted on every turn") == 1


def test_count_message_recounts_changed_content_under_same_id(counter: TokenCounter) -> None:
    """A message whose content changed under the same id is not served a stale count."""
    short = ChatMessage.user("short", id="same-id")
    long = short.model_copy(update={"content": "a much longer text than before, really"})
    assert counter.count_message(short) != counter.count_message(long)
    assert counter.count_message(long) == 3 + counter.count_text("user") + counter.count_text(
        long.text
    )


def test_cache_is_bounded(encodings: list[str]) -> None:
    """The cache keeps at most cache_size counts, evicting the least recently used."""
    counter = TokenCounter("gpt-4o", cache_size=2)
    first, second, third = (ChatMessage.user(f"text number {i}") for i in range(3))
    for message in (first, second, first, third, first, second):
        counter.count_message(message)
    # second was least recently used when third arrived, so only it was encoded twice.
    assert [encodings.count(m.text) for m in (first, second, third)] == [1, 2, 1]


def test_clear_cache_forgets_counts(encodings: list[str]) -> None:
    """After clear_cache a message is encoded again."""
    counter = TokenCounter("gpt-4o")
    message = ChatMessage.user("count me twice")
    counter.count_message(message)
    counter.clear_cache()
    counter.count_message(message)
    assert encodings.count("count me twice") == 2
