"""`memweave bench qa`: answer every LoCoMo question with a chat model, from raw turns, from
extracted facts, and from both; score by token F1 and by an LLM judge.

Each conversation is stored in one `VectorMemory` twice over: its turns word for word (`add`,
as `bench retrieval` stores them), and the facts a `FactExtractor` on the same model learns
from it, one `remember` call per LoCoMo session. Every question (adversarial ones included:
their right answer is that the conversation does not say) is then answered three ways, from
the top `k` memories of each kind (`search(kind="turn")`, `kind="fact"`, both), with the
prompts of `memweave.cli._answers`. Each reply is scored with LoCoMo's token F1 and labelled
CORRECT or WRONG by a judge model (`--judge-model`, the answering model by default) with
`JUDGE_PROMPT`. Reported per source and category: F1, judge accuracy, the answer tokens spent
per question; and the ingest time and tokens of turns and of facts.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import statistics
import tempfile
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from memweave.cli import _answers, _report
from memweave.cli._common import (
    CommandError,
    display_url,
    err_console,
    positive_int,
    scrub,
    secrets_in,
    suite_module,
)
from memweave.cli._locomo import describe_dataset, resolve_locomo
from memweave.context import ChromaDefaultEmbeddings, FactExtractor, VectorMemory
from memweave.context.facts import EXTRACTION_PROMPT, UPDATE_PROMPT
from memweave.errors import MemweaveError
from memweave.llm import ChatClient, Usage
from memweave.messages import ChatMessage

__all__ = [
    "JUDGE_PROMPT",
    "JUDGE_USER_PROMPT",
    "SOURCES",
    "QAQuestion",
    "add_parser",
    "load_questions",
    "qa_run",
    "run_qa",
    "section",
]

SOURCES = ("turns", "facts", "both")
"""What each question is answered from: raw turns, extracted facts, or both."""
_KINDS: dict[str, Any] = {"turns": "turn", "facts": "fact", "both": None}
CATEGORIES = {**_answers.CATEGORIES, 5: "adversarial"}
NOT_MENTIONED = "not mentioned"
"""The gold answer of an adversarial question: the conversation does not say."""

JUDGE_PROMPT = (
    "You grade answers to questions about a long conversation. You are given the question, "
    "the gold answer and a generated answer. Label the generated answer CORRECT if it states "
    "the same thing as the gold answer: be generous with wording, extra detail and date "
    "formats, as long as it names the same thing, person, place or time. Otherwise label it "
    "WRONG. If the gold answer is 'not mentioned', the generated answer is CORRECT only if it "
    "also says the conversation does not tell. Reply with a JSON object only: "
    '{"label": "CORRECT"} or {"label": "WRONG"}.'
)
"""The judge's system prompt."""
JUDGE_USER_PROMPT = "Question: {question}\nGold answer: {gold}\nGenerated answer: {answer}"
"""The judge's user message."""
_LABEL = re.compile(r"\b(CORRECT|WRONG)\b")


@dataclass(frozen=True)
class QAQuestion:
    """A LoCoMo question with its gold answer (`NOT_MENTIONED` for an adversarial one)."""

    conversation: str
    text: str
    gold: str
    category: int


def load_questions(path: Path, conversations: Sequence[str] | None) -> list[QAQuestion]:
    """Every question of the chosen conversations (all when None), in file order."""
    out: list[QAQuestion] = []
    for index, sample in enumerate(json.loads(path.read_bytes())):
        conversation = str(sample.get("sample_id", f"conv-{index}"))
        if conversations and conversation not in conversations:
            continue
        for qa in sample.get("qa", []):
            category = int(qa.get("category", 0))
            if category not in CATEGORIES:
                continue
            gold = NOT_MENTIONED if category == 5 else str(qa.get("answer", ""))
            out.append(QAQuestion(conversation, str(qa["question"]), gold, category))
    return out


def add_parser(commands: argparse._SubParsersAction[Any]) -> None:
    """Register `bench qa` on `bench`'s subcommands."""
    text = "LoCoMo answers from turns, facts and both: token F1 and LLM-judge accuracy"
    parser = commands.add_parser("qa", help=text, description=__doc__)
    parser.add_argument("--out", type=Path, metavar="DIR", help="folder for the results")
    parser.add_argument("--locomo", type=Path, metavar="PATH", help="a LoCoMo JSON file")
    parser.add_argument("--embeddings-dir", type=Path, metavar="DIR", help="all-MiniLM-L6-v2")
    parser.add_argument("--llm-model", required=True, metavar="NAME", help="the chat model")
    parser.add_argument("--llm-base-url", metavar="URL", help="an OpenAI-compatible server")
    parser.add_argument(
        "--llm-api-key-env", default="OPENAI_API_KEY", metavar="VAR", help="the key's variable"
    )
    parser.add_argument("--judge-model", metavar="NAME", help="the judge (default: --llm-model)")
    parser.add_argument("--k", type=positive_int, default=10, help="memories per question")
    parser.add_argument("--limit", type=positive_int, metavar="N", help="only the first N")
    parser.add_argument(
        "--conversation", action="append", metavar="ID", help="only this one (repeatable)"
    )
    parser.add_argument(
        "--concurrency", type=positive_int, default=4, metavar="N", help="calls in flight"
    )
    parser.add_argument(
        "--extract-format",
        choices=("json_schema", "json_object", "none"),
        default="json_schema",
        help="how fact extraction asks for JSON (none: by the prompt only)",
    )
    parser.set_defaults(func=run_qa, suites=["qa"])


def _client(args: argparse.Namespace, model: str) -> ChatClient:
    from memweave.cli._retrieval import make_chat_client

    return make_chat_client(argparse.Namespace(**{**vars(args), "llm_model": model}))


def _judged(reply: str) -> bool | None:
    found = _LABEL.findall(reply.upper())
    return None if not found else bool(found[0] == "CORRECT")


def _f1(reply: str, question: QAQuestion) -> float:
    if question.category != 5:
        return _answers.token_f1(reply, question.gold, question.category)
    # As LoCoMo scores adversarial questions: right when the reply says it is not known.
    said = " ".join(_answers._tokens(reply))
    refusals = (NOT_MENTIONED, "no information")
    return float(any(" ".join(_answers._tokens(phrase)) in said for phrase in refusals))


async def _ingest(
    memory: VectorMemory, conversations: Sequence[Any], extractor: FactExtractor
) -> dict[str, Any]:
    """Store each conversation's turns, then learn its facts session by session."""
    retrieval = suite_module("retrieval")
    started = time.perf_counter()
    for conversation in conversations:
        await retrieval.ingest(memory, conversation)
    turns_s = time.perf_counter() - started
    before = extractor.usage
    started = time.perf_counter()
    facts = 0
    for conversation in conversations:
        sessions: dict[int, list[ChatMessage]] = {}
        for turn in conversation.turns:
            said = turn.text.split(f"{turn.speaker}: ", 1)[-1]  # as said, also if prefixed
            fields = {} if turn.created_at is None else {"created_at": turn.created_at}
            sessions.setdefault(turn.session, []).append(
                ChatMessage.user(said, name=turn.speaker, **fields)
            )
        for number, messages in sessions.items():
            await memory.remember(messages, user_id=conversation.id, session_id=f"session_{number}")
        facts += await memory.count_memories(user_id=conversation.id, kind="fact")
    return {
        "turns": sum(len(c.turns) for c in conversations),
        "turns_s": turns_s,
        "facts": facts,
        "facts_s": time.perf_counter() - started,
        "extraction_tokens": _usage_since(extractor.usage, before),
    }


def _usage_since(now: Usage, before: Usage) -> dict[str, int]:
    return {
        "prompt_tokens": now.prompt_tokens - before.prompt_tokens,
        "completion_tokens": now.completion_tokens - before.completion_tokens,
    }


async def qa_run(
    path: Path,
    client: ChatClient,
    judge: ChatClient,
    *,
    embedder: ChromaDefaultEmbeddings,
    k: int,
    limit: int | None,
    conversations: Sequence[str] | None,
    concurrency: int,
    extract_format: str,
) -> dict[str, Any]:
    """Ingest, answer every question from each source, judge and score (see the module).

    Raises:
        CommandError: No question was chosen.
        MemweaveError: A model call or the store failed.
    """
    questions = load_questions(path, conversations)[:limit]
    if not questions:
        raise CommandError("no LoCoMo question matches --conversation/--limit")
    wanted = {q.conversation for q in questions}
    retrieval = suite_module("retrieval")
    chosen = [c for c in retrieval.load_locomo(path) if c.id in wanted and c.turns]
    speakers = _answers._questions(path)[1]
    extractor = FactExtractor(
        client,
        response_format=None if extract_format == "none" else extract_format,  # type: ignore[arg-type]
        model_options={"temperature": _answers.TEMPERATURE},
    )
    gate = asyncio.Semaphore(concurrency)
    with tempfile.TemporaryDirectory(prefix="memweave-qa-") as folder:
        async with VectorMemory(folder, embedder=embedder, extractor=extractor) as memory:
            ingest = await _ingest(memory, chosen, extractor)

            async def answer(question: QAQuestion, source: str) -> dict[str, Any]:
                hits = await memory.search(
                    question.text,
                    user_id=question.conversation,
                    k=k,
                    min_score=0.0,
                    kind=_KINDS[source],
                )
                lines = [f"- {_answers.memory_line(hit)}" for hit in hits]
                memories = "\n".join(lines) or "- (none)"
                system = _answers.SYSTEM_PROMPT.format(
                    speakers=speakers.get(question.conversation, "two people")
                )
                prompt = _answers.USER_PROMPT.format(memories=memories, question=question.text)
                async with gate:
                    reply = await client.complete(
                        [ChatMessage.system(system), ChatMessage.user(prompt)],
                        temperature=_answers.TEMPERATURE,
                    )
                    text = reply.message.text.strip()
                    grading = JUDGE_USER_PROMPT.format(
                        question=question.text, gold=question.gold, answer=text
                    )
                    verdict = await judge.complete(
                        [ChatMessage.system(JUDGE_PROMPT), ChatMessage.user(grading)],
                        temperature=0.0,
                    )
                return {
                    "conversation": question.conversation,
                    "category": CATEGORIES[question.category],
                    "source": source,
                    "question": question.text,
                    "gold": question.gold,
                    "answer": text,
                    "f1": _f1(text, question),
                    "judge": _judged(verdict.message.text),
                    "tokens": reply.usage.prompt_tokens + reply.usage.completion_tokens,
                    "judge_tokens": verdict.usage.prompt_tokens + verdict.usage.completion_tokens,
                }

            items = list(await asyncio.gather(*(answer(q, s) for s in SOURCES for q in questions)))
    return {
        "questions": len(questions),
        "per_category": dict(Counter(CATEGORIES[q.category] for q in questions)),
        "k": k,
        "ingest": ingest,
        "sources": {s: _scores([i for i in items if i["source"] == s]) for s in SOURCES},
        "items": items,
    }


def _scores(items: Sequence[dict[str, Any]]) -> dict[str, Any]:
    groups: dict[str, list[dict[str, Any]]] = {"overall": list(items)}
    for item in items:
        groups.setdefault(item["category"], []).append(item)
    return {
        "f1": {name: statistics.fmean(i["f1"] for i in group) for name, group in groups.items()},
        "judge_accuracy": {
            name: statistics.fmean(bool(i["judge"]) for i in group)
            for name, group in groups.items()
        },
        "judge_unparsed": sum(i["judge"] is None for i in items),
        "tokens_per_question": statistics.fmean(i["tokens"] for i in items),
        "judge_tokens_per_question": statistics.fmean(i["judge_tokens"] for i in items),
    }


def section(result: dict[str, Any], manifest: dict[str, Any]) -> list[str]:
    """The `report.md` section of a qa run."""
    names = ["single_hop", "multi_hop", "temporal", "open_domain", "adversarial", "overall"]
    rows = []
    for source, scores in result["sources"].items():
        for metric, label in (("f1", "token F1"), ("judge_accuracy", "judge accuracy")):
            cells = [f"{scores[metric][n]:.3f}" if n in scores[metric] else "-" for n in names]
            rows.append([source, label, *cells, f"{scores['tokens_per_question']:,.0f}"])
    ingest = result["ingest"]
    qa = manifest["qa"]
    return [
        "## Answer quality from turns, facts and both (LoCoMo)",
        "",
        f"`{qa['model']}` answered {result['questions']:,} questions from the top "
        f"{result['k']} memories of each source; `{qa['judge_model']}` judged (prompt in "
        f"`results.json`). Ingest: {ingest['turns']:,} turns in {ingest['turns_s']:.1f} s; "
        f"{ingest['facts']:,} facts extracted in {ingest['facts_s']:.1f} s "
        f"({sum(ingest['extraction_tokens'].values()):,} tokens).",
        "",
        *_report.markdown_table(
            ["source", "metric", *(n.replace("_", "-") for n in names), "tokens/question"],
            rows,
            right=set(range(2, len(names) + 3)),
        ),
    ]


def _write(out: Path, results: dict[str, Any], secrets: Iterable[str]) -> None:
    """Write `results.json` and `report.md` into `out` (made when missing)."""
    hidden = set(secrets)
    out.mkdir(parents=True, exist_ok=True)
    _report.write_results(out, results, hidden)
    report = _report.markdown_report(results, [section(results["qa"], results["manifest"])])
    (out / "report.md").write_text(scrub(report, hidden), encoding="utf-8")


def _manifest_entry(args: argparse.Namespace, judge_model: str, embedder: str) -> dict[str, Any]:
    return {
        "model": args.llm_model,
        "base_url": display_url(args.llm_base_url) if args.llm_base_url else None,
        "judge_model": judge_model,
        "judge_prompt": JUDGE_PROMPT,
        "judge_user_prompt": JUDGE_USER_PROMPT,
        "answer_system_prompt": _answers.SYSTEM_PROMPT,
        "answer_user_prompt": _answers.USER_PROMPT,
        "extraction_prompt": EXTRACTION_PROMPT,
        "update_prompt": UPDATE_PROMPT,
        "temperature": _answers.TEMPERATURE,
        "k": args.k,
        "embedding_model": embedder,
        "metric": "LoCoMo token F1; LLM-judge accuracy (share labelled CORRECT)",
    }


async def run_qa(args: argparse.Namespace) -> int:
    """`memweave bench qa`: check the options, run, write `results.json` and `report.md`."""
    console = err_console()
    if args.llm_base_url and not args.llm_base_url.lower().startswith(("http://", "https://")):
        raise CommandError(
            f"--llm-base-url must be an http:// or https:// URL, got "
            f"{display_url(args.llm_base_url)!r}"
        )
    dataset = resolve_locomo(args.locomo, console.print)
    embedder = ChromaDefaultEmbeddings(model_dir=args.embeddings_dir)
    judge_model = args.judge_model or args.llm_model
    client, judge = _client(args, args.llm_model), _client(args, judge_model)
    argv: list[str] = getattr(args, "argv", [])
    manifest = _report.base_manifest(argv, ["qa"])
    manifest["dataset"] = describe_dataset(dataset)
    manifest["qa"] = _manifest_entry(args, judge_model, embedder.name)
    try:
        with console.status("qa: ingesting, extracting facts, answering"):
            result = await qa_run(
                dataset.path,
                client,
                judge,
                embedder=embedder,
                k=args.k,
                limit=args.limit,
                conversations=args.conversation,
                concurrency=args.concurrency,
                extract_format=args.extract_format,
            )
    except CommandError:
        raise
    except MemweaveError as exc:
        raise CommandError(f"qa run failed: {exc}") from exc
    finally:
        for each in {id(client): client, id(judge): judge}.values():
            close = getattr(each, "aclose", None)
            if close is not None:
                await close()
    out: Path = args.out or Path("bench-results") / time.strftime("%Y%m%d-%H%M%S-qa")
    _write(out, {"manifest": manifest, "qa": result}, secrets_in(argv))
    for source, scores in result["sources"].items():
        console.print(
            f"{source:5}: F1 {scores['f1']['overall']:.3f}, judge accuracy "
            f"{scores['judge_accuracy']['overall']:.3f}, "
            f"{scores['tokens_per_question']:,.0f} tokens/question"
        )
    console.print(f"wrote {out / 'results.json'} and {out / 'report.md'}")
    return 0
