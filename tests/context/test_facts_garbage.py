"""`FactExtractor` replies: malformed ones are retried, then skipped; none corrupts the store."""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from memweave.context import FactExtractor, VectorMemory
from memweave.context.facts import EXTRACTION_PROMPT, UPDATE_PROMPT
from memweave.errors import ConfigurationError, ModelError
from memweave.messages import ChatMessage
from memweave.testing import ScriptedChatClient
from tests.context._facts_scripts import FactModel, Memory
from tests.context.conftest import HashEmbeddings

MakeMemory = Callable[..., VectorMemory]
LOGGER = "memweave.context.facts"


async def test_extract_retries_a_malformed_reply_showing_its_error() -> None:
    """A reply that is not the JSON asked for is retried with the error shown to the model."""
    client = ScriptedChatClient(
        ["Sure! Here are the facts.", '```json\n{"facts": ["Likes tea."]}\n```']
    )
    extraction = await FactExtractor(client).extract([ChatMessage.user("I like tea")])
    assert extraction.facts == ("Likes tea.",)
    assert not extraction.malformed
    retry = client.requests[1].messages
    assert retry[-2].text == "Sure! Here are the facts."
    assert "not valid" in retry[-1].text
    assert "no JSON object" in retry[-1].text


async def test_remember_skips_a_step_malformed_every_time(
    make_memory: MakeMemory, caplog: pytest.LogCaptureFixture
) -> None:
    """After `max_attempts` malformed replies the step is skipped with a warning and the store
    is unchanged."""
    model = FactModel()
    memory = make_memory(extractor=FactExtractor(model.client, max_attempts=2))
    await memory.remember([ChatMessage.user("Likes tea.")], user_id="ada")
    model.decide = lambda existing, facts: [{"event": "UPDATE", "id": "0"}]  # no text
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        result = await memory.remember([ChatMessage.user("Likes coffee.")], user_id="ada")
    assert result.malformed == 1
    assert result.changes == ()
    assert "after 2 attempts" in caplog.text
    assert len(model.client.requests) == 2 + 2 + 1
    [hit] = await memory.search("tea coffee", user_id="ada", kind="fact", k=10)
    assert hit.text == "Likes tea."
    model.extract = lambda lines: "no facts today"
    skipped = await memory.remember([ChatMessage.user("Has a cat.")], user_id="ada")
    assert skipped.malformed == 1
    assert skipped.facts == ()


async def test_decisions_are_read_leniently_where_models_wander(make_memory: MakeMemory) -> None:
    """Lower-case events, numeric ids and extra keys are understood."""
    model = FactModel()
    memory = make_memory(extractor=FactExtractor(model.client))
    await memory.remember([ChatMessage.user("Likes tea.")], user_id="ada")
    model.decide = lambda existing, facts: [
        {"event": "update", "id": 0, "text": "Likes coffee.", "reason": "changed taste"}
    ]
    result = await memory.remember([ChatMessage.user("Now coffee.")], user_id="ada")
    assert [change.event for change in result.changes] == ["UPDATE"]


@pytest.mark.parametrize(
    ("response_format", "expected"),
    [("json_schema", "json_schema"), ("json_object", "json_object"), (None, None)],
)
async def test_extractor_asks_for_json_as_configured(
    response_format: Any, expected: str | None
) -> None:
    """The reply's JSON is asked for with its schema, as any object, or only by the prompt."""
    client = ScriptedChatClient(['{"facts": []}'])
    await FactExtractor(client, response_format=response_format).extract([ChatMessage.user("hi")])
    sent = client.requests[0].options.get("response_format") or {}
    assert sent.get("type") == expected
    if expected == "json_schema":
        assert "facts" in json.dumps(sent["json_schema"]["schema"])


async def test_prompts_are_overridable(make_memory: MakeMemory) -> None:
    """Custom prompts replace the public defaults in the requests."""
    seen: list[str] = []

    def reply(messages: list[ChatMessage], tools: Any, options: Any) -> str:
        seen.append(messages[0].text)
        return '{"facts": ["Likes tea."]}' if len(seen) == 1 else '{"decisions": []}'

    extractor = FactExtractor(
        ScriptedChatClient(reply), extraction_prompt="EXTRACT!", update_prompt="DECIDE!"
    )
    memory = make_memory(extractor=extractor)
    await memory.remember("I like tea", user_id="ada")
    assert seen == ["EXTRACT!", "DECIDE!"]
    assert EXTRACTION_PROMPT != "EXTRACT!"
    assert UPDATE_PROMPT != "DECIDE!"


async def test_a_model_call_over_its_timeout_fails_as_a_model_error() -> None:
    """A model that does not answer within `timeout` raises `ModelError`."""
    model = FactModel()
    model.gate = asyncio.Event()
    with pytest.raises(ModelError, match="did not answer"):
        await FactExtractor(model.client, timeout=0.01).extract([ChatMessage.user("hi")])


@pytest.mark.parametrize(
    "options",
    [
        {"max_attempts": 0},
        {"top_k": True},
        {"duplicate_threshold": 1.5},
        {"timeout": -1},
        {"response_format": "xml"},
        {"extraction_prompt": " "},
        {"retry_wait": float("nan")},
    ],
)
def test_extractor_refuses_bad_options(options: dict[str, Any]) -> None:
    """Bad options raise `ConfigurationError` naming the option."""
    with pytest.raises(ConfigurationError, match=next(iter(options))):
        FactExtractor(ScriptedChatClient([]), **options)


# -- any reply at all ------------------------------------------------------------------------

_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)
_ID = st.sampled_from(["0", "1", "2", "5", "-1", "", " 0", "00", "abc"]) | st.integers(-1, 4)
_TEXT = st.sampled_from(["Likes tea.", "likes TEA", "Has a cat.", "Drinks coffee."]) | st.text(
    max_size=20
)
_SHAPED = st.one_of(
    st.builds(lambda text: {"event": "ADD", "text": text}, _TEXT),
    st.builds(lambda i, text: {"event": "UPDATE", "id": i, "text": text}, _ID, _TEXT),
    st.builds(lambda i: {"event": "DELETE", "id": i}, _ID),
    st.builds(lambda i: {"event": "NONE", "id": i}, _ID),
)
_GARBLED = st.fixed_dictionaries(
    {"event": st.sampled_from(["ADD", "UPDATE", "DELETE", "NONE", "delete", "MERGE", 3])},
    optional={"id": _ID, "text": st.none() | _TEXT},
)
_SHAPED_REPLY = st.lists(_SHAPED, max_size=4).map(lambda items: json.dumps({"decisions": items}))
_REPLY = st.one_of(
    st.text(max_size=60),
    _JSON.map(json.dumps),
    _SHAPED_REPLY,
    _SHAPED_REPLY,  # twice: half the replies are well-formed, so changes get applied
    st.lists(_SHAPED | _GARBLED, max_size=4).map(lambda items: json.dumps({"decisions": items})),
)
_STORED = ["Likes tea.", "Has a cat.", "Lives in Lyon."]


async def _fact_texts(memory: VectorMemory, user: str) -> dict[str, str]:
    hits = await memory.search("x", user_id=user, kind="fact", k=100, mode="dense", min_score=0.0)
    return {hit.id: hit.text for hit in hits}


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(replies=st.lists(_REPLY, min_size=3, max_size=3))
def test_no_reply_corrupts_the_store(
    tmp_path: Path, hash_embedder: HashEmbeddings, replies: list[str]
) -> None:
    """Whatever the model answers, every stored fact's history ends with its text, the facts
    are the stored ones changed only by recorded changes, and another user's are untouched."""
    script = iter(replies)

    def decide(existing: list[Memory], facts: list[str]) -> str:
        return next(script, "{}")

    model = FactModel(decide=decide)
    memory = VectorMemory(
        tmp_path / "store",
        embedder=hash_embedder,
        extractor=FactExtractor(model.client, max_attempts=3),
    )
    user, other = f"u-{uuid.uuid4().hex}", f"o-{uuid.uuid4().hex}"

    async def check() -> None:
        model.decide = lambda existing, facts: [{"event": "ADD", "text": f} for f in facts]
        for name in (user, other):
            await memory.remember([ChatMessage.user(text) for text in _STORED], user_id=name)
        before = await _fact_texts(memory, user)
        bystander = await _fact_texts(memory, other)
        model.decide = decide
        result = await memory.remember(
            [ChatMessage.user("Drinks coffee."), ChatMessage.user("Moved to Paris.")], user_id=user
        )
        event(f"changes: {sorted(change.event for change in result.changes)}")
        after = await _fact_texts(memory, user)
        expected = dict(before)
        for change in result.changes:
            if change.event == "DELETE":
                assert expected.pop(change.memory_id) == change.old_text
            else:
                assert expected.get(change.memory_id) == change.old_text
                expected[change.memory_id] = change.new_text or ""
        assert after == expected
        for memory_id, text in after.items():
            history = await memory.history(memory_id, user_id=user)
            assert history[-1].new_text == text
            assert history[-1].event != "DELETE"
            assert [entry.version for entry in history] == list(range(1, len(history) + 1))
        assert await _fact_texts(memory, other) == bystander

    async def run() -> None:
        try:
            await check()
        finally:
            await memory.aclose()

    asyncio.run(run())
