"""Paraphrase recall in a tiny store: the Agent Framework memory reference's "what's my name"
scenario with every `VectorMemory` default (hybrid mode, fusion, `min_score`, the default model
on an embedded Chroma).

The user gives their name in one session and, in a later one, asks for it in other words. A
store this small holds too few memories for BM25 to tell them apart, so a question sharing no
telling word with the memory rests on the dense similarity; the fusion's calibration
(`memweave.context._fusion.lexical_share`) keeps that score near the similarity instead of
dividing it by weights of signals that did not fire, which would leave it under `min_score`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from memweave import ChatMessage, Session
from memweave.context import VectorMemory

_TURNS = (
    (
        "I'm planning a trip to Japan next spring.",
        "Japan in spring is lovely; the cherry blossoms peak in early April.",
    ),
    ("Hello, my name is Alice", "Nice to meet you, Alice! How can I help you today?"),
    ("My favourite food is ramen.", "Ramen is a great choice; tonkotsu is a classic."),
)
"""The seed scenario's turn between two unrelated ones, all in the user's first session."""
_NAME = "Hello, my name is Alice"


@pytest.fixture
async def memory(tmp_path: Path) -> AsyncIterator[VectorMemory]:
    """A default `VectorMemory` holding `_TURNS`, said by user "alice" in session "first"."""
    async with VectorMemory(tmp_path / "memory") as memory:
        first = Session(id="first", user_id="alice")
        for said, reply in _TURNS:
            await memory.invoked(first, [ChatMessage.user(said)], [ChatMessage.assistant(reply)])
        yield memory


async def _injected(memory: VectorMemory, question: str) -> str:
    """The instructions `invoking` adds when `question` opens a new session of the user."""
    later = Session(id="later", user_id="alice")
    context = await memory.invoking(later, [ChatMessage.user(question)])
    return context.instructions or ""


@pytest.mark.parametrize(
    "question",
    [
        "What's my name?",
        "What is my name?",
        "Do you know my name?",
        "Can you remind me of my name?",
    ],
)
async def test_name_is_injected_for_a_paraphrase(memory: VectorMemory, question: str) -> None:
    """With the defaults, the name memory is injected however the question is worded."""
    assert _NAME in await _injected(memory, question)


async def test_unrelated_question_injects_nothing(memory: VectorMemory) -> None:
    """With the defaults, a question about nothing the user said injects no memory."""
    assert await _injected(memory, "What's the weather in Paris?") == ""
