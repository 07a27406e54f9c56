"""`VectorMemory`'s default `min_score`: the reference recall works out of the box, unrelated
questions inject nothing, and the benchmark that chose it.

The scenario is the Agent Framework memory reference's ("Hello, my name is Alice", then in a
new session "What's my name?"), run by an `Agent` with a scripted model on an embedded Chroma
with the default model, so every setting is the default. (Rewordings sharing no telling word
with the memory are checked in `test_paraphrase_recall.py`.)
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from memweave import ChatMessage, Session
from memweave.bench.min_score import choose_threshold, main
from memweave.context import VectorMemory
from memweave.orchestration import Agent
from memweave.testing import ScriptedChatClient


async def _instructions_for(question: str, tmp_path: Path, *, said: list[str]) -> str:
    """What the model is told in a new session of the same user, after `said` in an earlier
    one (each answered "Nice to meet you, Alice! ..."), when it is asked `question`."""
    model = ScriptedChatClient(
        lambda messages, tools, options: "Nice to meet you, Alice! How can I help you today?"
    )
    async with VectorMemory(tmp_path / "memory") as memory:
        agent = Agent("assistant", model, context_providers=[memory])
        for text in said:
            await agent.run(text, session=Session(id="first", user_id="alice"))
        await agent.run(question, session=Session(id="restored", user_id="alice"))
    request = model.requests[-1]
    return "\n".join(m.text for m in request.messages if m.role == "system")


@pytest.mark.parametrize("question", ["What's my name?", "What is my name again?"])
async def test_invoking_recalls_a_name_asked_in_other_words(question: str, tmp_path: Path) -> None:
    """With the default min_score, the reference question (or a rewording) recalls the name."""
    instructions = await _instructions_for(question, tmp_path, said=["Hello, my name is Alice"])
    assert "my name is Alice" in instructions


async def test_invoking_unrelated_question_injects_nothing(tmp_path: Path) -> None:
    """With the default min_score, a question about something never said injects no memory."""
    said = ["Hello, my name is Alice", "I'd like a window seat, please.", "I play the cello."]
    instructions = await _instructions_for("What should I cook tonight?", tmp_path, said=said)
    assert instructions == ""


async def test_search_scores_reference_question_above_the_default(tmp_path: Path) -> None:
    """The reference scenario's question scores at least the default min_score in hybrid mode."""
    async with VectorMemory(tmp_path / "memory") as memory:
        session = Session(id="s", user_id="alice")
        await memory.invoked(
            session,
            [ChatMessage.user("Hello, my name is Alice")],
            [ChatMessage.assistant("Nice to meet you, Alice! How can I help you today?")],
        )
        [best] = await memory.search("What's my name?", user_id="alice", k=1)
        assert best.text == "Hello, my name is Alice"
        assert best.score >= memory.min_score


@given(
    scores=st.lists(st.floats(0.0, 1.0), min_size=1, max_size=200),
    keep=st.floats(0.01, 1.0),
)
def test_choose_threshold_keeps_the_share_asked_for(scores: list[float], keep: float) -> None:
    """The chosen threshold is a multiple of 0.01 that keeps at least `keep` of the scores."""
    threshold = choose_threshold(scores, keep)
    assert math.isclose(threshold * 100, round(threshold * 100), abs_tol=1e-9)
    kept = sum(1 for score in scores if score >= threshold)
    assert kept >= math.ceil(keep * len(scores)) or threshold == 0


def _tiny_locomo(path: Path) -> None:
    def conversation(sample: str, a: str, b: str, lines: list[str]) -> dict[str, Any]:
        turns = [
            {"speaker": (a, b)[i % 2], "dia_id": f"D1:{i + 1}", "text": text}
            for i, text in enumerate(lines)
        ]
        return {
            "speaker_a": a,
            "speaker_b": b,
            "session_1_date_time": "1:56 pm on 8 May, 2023",
            "session_1": turns,
        }

    data = [
        {
            "sample_id": "conv-a",
            "conversation": conversation(
                "conv-a", "Mel", "Caro", ["I adopted a puppy named Rex.", "Lovely!", "We hike."]
            ),
            "qa": [
                {
                    "question": "What is the puppy called?",
                    "answer": "Rex",
                    "evidence": ["D1:1"],
                    "category": 4,
                }
            ],
            "event_summary": {},
        },
        {
            "sample_id": "conv-b",
            "conversation": conversation(
                "conv-b", "Jo", "Sam", ["I bake sourdough bread.", "Teach me!", "Sure."]
            ),
            "qa": [
                {
                    "question": "What does Jo bake?",
                    "answer": "sourdough",
                    "evidence": ["D1:1"],
                    "category": 4,
                }
            ],
            "event_summary": {},
        },
    ]
    path.write_text(json.dumps(data))


def test_min_score_benchmark_reports_its_fields(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`python -m memweave.bench.min_score --json` reports distributions, threshold and fusion."""
    locomo = tmp_path / "locomo.json"
    _tiny_locomo(locomo)
    assert main(["--locomo", str(locomo), "--json", "--mode", "hybrid", "--k", "2"]) == 0
    report = json.loads(capsys.readouterr().out)
    hybrid = report["modes"]["hybrid"]
    assert set(hybrid) == {"min_score", "at_min_score", "shared", "session"}
    for store in ("shared", "session"):
        assert hybrid[store]["relevant"]["n"] >= 1
        assert hybrid[store]["unrelated_top1"]["n"] >= 1
        assert hybrid["at_min_score"][store]["relevant_kept"] is not None
    assert report["chosen"] == {"mode": "hybrid", "min_score": hybrid["min_score"]}
    assert "fusion_py_sha256" in report["fusion"]
    assert {row["question"] for row in report["probes"]} >= {"What's my name?"}
