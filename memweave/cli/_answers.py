"""The optional answer-quality run of `memweave bench retrieval`: retrieve, answer, score by F1.

Every LoCoMo question of categories 1-4 with a gold answer is answered by a chat model from
the `k` memories retrieved for it, and the reply is scored with LoCoMo's token F1: answers
lower-cased, stripped of punctuation, commas and the words a/an/the/and, Porter-stemmed
(when `nltk` is installed; the result records whether it was), then compared as bags of
tokens. As in LoCoMo's evaluation, a multi-hop (category 1) gold answer is split at commas
and each part scored against the best-matching part of the reply, and an open-domain
(category 3) gold answer is cut at its first `;`. Scores are reported per category, apart
from retrieval recall.
"""

from __future__ import annotations

import asyncio
import json
import re
import string
import tempfile
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from memweave.context import EmbeddingFunction, MemoryHit, VectorMemory
from memweave.llm import ChatClient
from memweave.messages import ChatMessage

__all__ = [
    "SYSTEM_PROMPT",
    "USER_PROMPT",
    "AnswerQuestion",
    "answer_run",
    "memory_line",
    "token_f1",
]

SYSTEM_PROMPT = (
    "You answer questions about a long conversation between {speakers}, using only the "
    "memories retrieved from it. Each memory starts with the date and time it was said. "
    "Answer with a short phrase, a few words at most, not a sentence. Give dates as a day, "
    "month and year (for example 7 May 2023), worked out from the memory's date when it "
    "says 'yesterday' or 'last week'. If the memories do not tell, answer: not mentioned."
)
"""The system message; `{speakers}` becomes `A and B`."""
USER_PROMPT = "Memories, most relevant first:\n{memories}\n\nQuestion: {question}\nShort answer:"
"""The user message; `{memories}` holds one `- <memory>` line per retrieved memory."""
TEMPERATURE = 0.0
CATEGORIES = {1: "multi_hop", 2: "temporal", 3: "open_domain", 4: "single_hop"}

_ARTICLES = re.compile(r"\b(a|an|the|and)\b")
_PUNCTUATION = str.maketrans("", "", string.punctuation)


def memory_line(hit: MemoryHit) -> str:
    """A retrieved memory as the model reads it, with its date (as LoCoMo writes session
    dates) and speaker: `[1:56 pm on 8 May, 2023] Caroline: I went to ...`."""
    when = hit.created_at
    clock = f"{when.hour % 12 or 12}:{when.minute:02d} {'am' if when.hour < 12 else 'pm'}"
    who = f"{hit.speaker}: " if hit.speaker else ""
    return f"[{clock} on {when.day} {when:%B}, {when.year}] {who}{hit.text}"


def _stemmer() -> tuple[Callable[[str], str], str]:
    try:
        from nltk.stem import PorterStemmer  # type: ignore[import-not-found,import-untyped,unused-ignore]
    except ImportError:
        return (lambda word: word), "none (install nltk for LoCoMo's Porter stemming)"
    stem: Callable[[str], str] = PorterStemmer().stem
    return stem, "nltk PorterStemmer"


_STEM, STEMMER = _stemmer()


def _tokens(text: str) -> list[str]:
    text = text.replace(",", "").lower().translate(_PUNCTUATION)
    return [_STEM(word) for word in _ARTICLES.sub(" ", text).split()]


def _f1(prediction: str, gold: str) -> float:
    predicted, expected = _tokens(prediction), _tokens(gold)
    same = sum((Counter(predicted) & Counter(expected)).values())
    if same == 0:
        return 0.0
    precision, recall = same / len(predicted), same / len(expected)
    return 2 * precision * recall / (precision + recall)


def token_f1(prediction: str, gold: str, category: int) -> float:
    """LoCoMo's token F1 of a reply against a gold answer, by question category."""
    if category == 3:
        gold = gold.split(";")[0].strip()
    if category != 1:
        return _f1(prediction, gold)
    parts = [part.strip() for part in prediction.split(",")]
    golds = [part.strip() for part in gold.split(",")]
    return sum(max(_f1(part, g) for part in parts) for g in golds) / len(golds)


@dataclass(frozen=True)
class AnswerQuestion:
    """A LoCoMo question with its gold answer."""

    conversation: str
    text: str
    answer: str
    category: int


def _questions(path: Path) -> tuple[list[AnswerQuestion], dict[str, str]]:
    samples = json.loads(path.read_bytes())
    questions: list[AnswerQuestion] = []
    speakers: dict[str, str] = {}
    for index, sample in enumerate(samples):
        conversation = str(sample.get("sample_id", f"conv-{index}"))
        body = sample.get("conversation", {})
        speakers[conversation] = f"{body.get('speaker_a', 'A')} and {body.get('speaker_b', 'B')}"
        for qa in sample.get("qa", []):
            category = int(qa.get("category", 0))
            if category in CATEGORIES and "answer" in qa:
                questions.append(
                    AnswerQuestion(conversation, str(qa["question"]), str(qa["answer"]), category)
                )
    return questions, speakers


async def answer_run(
    path: Path,
    client: ChatClient,
    *,
    retrieval: Any,
    embedder: EmbeddingFunction,
    mode: str,
    k: int,
    limit: int | None,
    concurrency: int,
    advance: Callable[[int], None],
) -> dict[str, Any]:
    """Ingest the conversations, answer each question from its top `k` memories, score it.

    Args:
        path: The LoCoMo file.
        client: The chat model that answers.
        retrieval: The `memweave.bench.retrieval` module; its `load_locomo` turns the file into
            the same memory texts the recall benchmark stores.
        embedder: The embedding function of the memory.
        mode: The retrieval mode used to find memories.
        k: How many memories each question is answered from.
        limit: Answer only the first `limit` questions, or all when None.
        concurrency: Model calls in flight at once.
        advance: Called with 1 after each answered question.

    Returns:
        Mean F1 overall and per category, counts, token usage and every answer.
    """
    questions, speakers = _questions(path)
    if limit is not None:
        questions = questions[:limit]
    conversations = [c for c in retrieval.load_locomo(path) if c.turns]
    items: list[dict[str, Any]] = []
    prompt_tokens = completion_tokens = 0
    with tempfile.TemporaryDirectory(prefix="memweave-answers-") as folder:
        async with VectorMemory(folder, embedder=embedder, mode=mode) as memory:  # type: ignore[arg-type]
            for conversation in conversations:
                await asyncio.gather(
                    *(
                        memory.add(
                            turn.text,
                            user_id=conversation.id,
                            session_id=f"session_{turn.session}",
                            id=turn.id,
                            speaker=turn.speaker,
                            created_at=turn.created_at,
                        )
                        for turn in conversation.turns
                    )
                )
            gate = asyncio.Semaphore(concurrency)

            async def answer(question: AnswerQuestion) -> dict[str, Any]:
                nonlocal prompt_tokens, completion_tokens
                hits = await memory.search(
                    question.text,
                    user_id=question.conversation,
                    k=k,
                    mode=mode,  # type: ignore[arg-type]
                    min_score=0.0,
                )
                memories = "\n".join(f"- {memory_line(hit)}" for hit in hits) or "- (none)"
                messages = [
                    ChatMessage.system(
                        SYSTEM_PROMPT.format(
                            speakers=speakers.get(question.conversation, "two people")
                        )
                    ),
                    ChatMessage.user(USER_PROMPT.format(memories=memories, question=question.text)),
                ]
                async with gate:
                    response = await client.complete(messages, temperature=TEMPERATURE)
                prompt_tokens += response.usage.prompt_tokens
                completion_tokens += response.usage.completion_tokens
                reply = response.message.text.strip()
                advance(1)
                return {
                    "conversation": question.conversation,
                    "category": question.category,
                    "question": question.text,
                    "gold": question.answer,
                    "answer": reply,
                    "f1": token_f1(reply, question.answer, question.category),
                }

            items = list(await asyncio.gather(*(answer(q) for q in questions)))
    return {
        "questions": len(items),
        "f1": _means(items),
        "per_category": dict(Counter(CATEGORIES[item["category"]] for item in items)),
        "mode": mode,
        "k": k,
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens},
        "items": items,
    }


def _means(items: Sequence[dict[str, Any]]) -> dict[str, float]:
    groups: dict[str, list[float]] = {}
    for item in items:
        groups.setdefault("overall", []).append(item["f1"])
        groups.setdefault(CATEGORIES[item["category"]], []).append(item["f1"])
    return {name: sum(values) / len(values) for name, values in groups.items()}
