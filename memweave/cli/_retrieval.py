"""The retrieval suite of `memweave bench`: its options, their checks, the run, charts, report.

Recall@k per category and mode, query latency and ingest rate come from
`memweave.bench.retrieval`, which ingests the data set once and measures every mode on it. With
`--llm-model`, an answer-quality run follows (see `memweave.cli._answers`), reported apart
from recall. `prepare` checks every option and the data file before any suite starts.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.table import Table

from memweave.bench._cli import add_rounds
from memweave.cli import _answers
from memweave.cli._common import (
    CommandError,
    display_url,
    positive_int,
    progress_bar,
    suite_module,
)
from memweave.cli._locomo import Dataset, describe_dataset, resolve_locomo
from memweave.errors import ConfigurationError, MissingDependency, ModelError
from memweave.llm import ChatClient

if TYPE_CHECKING:
    from memweave.context import ChromaDefaultEmbeddings

__all__ = [
    "Prepared",
    "add_arguments",
    "charts",
    "make_chat_client",
    "prepare",
    "print_summary",
    "run",
    "section",
]

MODES = ("dense", "lexical", "hybrid")
DEFAULT_KS = (5, 10, 25)
_CATEGORY_ORDER = ("single_hop", "multi_hop", "temporal", "open_domain")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the retrieval options to a `bench` subcommand."""
    parser.add_argument(
        "--locomo",
        type=Path,
        metavar="PATH",
        help="a file in the public locomo10.json layout (default: download locomo10.json once "
        "into the user cache, checksum verified)",
    )
    parser.add_argument(
        "--mode", nargs="+", choices=MODES, help="retrieval modes (default: all three)"
    )
    parser.add_argument(
        "--k",
        type=positive_int,
        nargs="+",
        metavar="K",
        help="recall@k cut-offs (default: 5 10 25)",
    )
    parser.add_argument(
        "--embeddings-dir",
        type=Path,
        metavar="DIR",
        help="a folder holding the all-MiniLM-L6-v2 ONNX files (default: Chroma's cache, "
        "~/.cache/chroma/onnx_models/all-MiniLM-L6-v2/onnx, downloaded on first use)",
    )
    parser.add_argument(
        "--quantized",
        action="store_true",
        help="embed with the int8 copy of all-MiniLM-L6-v2 (ChromaDefaultEmbeddings("
        "quantized=True); built from the fp32 model on first use, needs memweave[quantize])",
    )
    add_rounds(parser)
    llm = parser.add_argument_group(
        "answer quality (optional)",
        "Answer each question from the retrieved memories with a chat model and score the "
        "replies with LoCoMo's token F1.",
    )
    llm.add_argument("--llm-model", metavar="NAME", help="the chat model; enables the run")
    llm.add_argument(
        "--llm-base-url",
        metavar="URL",
        help="an OpenAI-compatible server (default: OPENAI_BASE_URL or api.openai.com)",
    )
    llm.add_argument(
        "--llm-api-key-env",
        default="OPENAI_API_KEY",
        metavar="VAR",
        help="environment variable holding the API key (default: OPENAI_API_KEY)",
    )
    llm.add_argument(
        "--llm-mode", choices=MODES, default="hybrid", help="retrieval mode (default: hybrid)"
    )
    llm.add_argument(
        "--llm-k", type=positive_int, default=10, metavar="K", help="memories per question"
    )
    llm.add_argument(
        "--llm-questions", type=positive_int, metavar="N", help="answer only the first N"
    )
    llm.add_argument(
        "--llm-concurrency", type=positive_int, default=4, metavar="N", help="calls in flight"
    )


def make_chat_client(args: argparse.Namespace) -> ChatClient:
    """The chat client of the answer-quality run, from the `--llm-*` options."""
    from memweave.llm import OpenAIChatClient

    # Local servers need no key, but the SDK insists on one.
    key = os.environ.get(args.llm_api_key_env) or ("unused" if args.llm_base_url else None)
    return OpenAIChatClient(args.llm_model, base_url=args.llm_base_url, api_key=key)


def _model_hint(given: Path | None) -> str:
    if given is not None:
        return f"check the model files in {str(given)!r}"
    return (
        "without internet access, copy the all-MiniLM-L6-v2 ONNX files into "
        "~/.cache/chroma/onnx_models/all-MiniLM-L6-v2/onnx or pass --embeddings-dir DIR"
    )


@dataclass
class Prepared:
    """A retrieval run whose options and data were checked: everything `run` needs."""

    module: ModuleType
    """`memweave.bench.retrieval`."""
    dataset: Dataset
    """The LoCoMo file."""
    dataset_entry: dict[str, Any]
    """The manifest entry of the file."""
    plan: Any
    """The file read and checked: a `memweave.bench.retrieval.Plan` (conversations, modes, ks)."""
    embedder: ChromaDefaultEmbeddings
    """The embedding function, its model loaded."""
    client: ChatClient | None = None
    """The chat model of the answer-quality run, when `--llm-model` asked for one."""

    async def aclose(self) -> None:
        """Close the chat client, if one was built. Idempotent."""
        client, self.client = self.client, None
        close: Callable[[], Any] | None = getattr(client, "aclose", None)
        if close is not None:
            await close()


def _check_llm_options(args: argparse.Namespace, search_limit: int) -> None:
    if not args.llm_model:
        given = [
            option
            for option, value in (
                ("--llm-base-url", args.llm_base_url),
                ("--llm-questions", args.llm_questions),
            )
            if value
        ]
        if given:
            raise CommandError(f"{given[0]} needs --llm-model (the model that answers)")
        return
    if args.llm_base_url and args.llm_base_url.split("://", 1)[0].lower() not in (
        "http",
        "https",
    ):
        raise CommandError(
            f"--llm-base-url must be an http:// or https:// URL, got "
            f"{display_url(args.llm_base_url)!r}"
        )
    if args.llm_k > search_limit:
        raise CommandError(
            f"--llm-k {args.llm_k}: a search returns at most {search_limit} memories"
        )


async def prepare(args: argparse.Namespace, say: Callable[[str], object]) -> Prepared:
    """Check the retrieval options, the data file and the models, before any suite runs.

    The LoCoMo file is found (or downloaded), read and checked against the `locomo10.json`
    layout; `--mode` and `--k` are checked against it; the embedding model is loaded; with
    `--llm-model`, the chat client is built (nothing is sent yet).

    Args:
        args: The parsed `bench retrieval` or `bench all` options.
        say: Called with one line of text about the data file (cached, downloaded).

    Raises:
        CommandError: An option, the file or a model is unusable; the message says which.
    """
    module = suite_module("retrieval")
    _check_llm_options(args, module.SEARCH_LIMIT)
    if args.embeddings_dir is not None and not args.embeddings_dir.is_dir():
        raise CommandError(f"--embeddings-dir {str(args.embeddings_dir)!r} is not a folder")
    dataset = resolve_locomo(args.locomo, say)
    try:
        plan = module.prepare(dataset.path, modes=args.mode or MODES, ks=args.k or DEFAULT_KS)
    except module.LocomoFormatError as exc:
        raise CommandError(str(exc)) from None
    except ValueError as exc:
        raise CommandError(f"--mode/--k: {exc}") from None
    entry = describe_dataset(dataset)
    from memweave.context import ChromaDefaultEmbeddings

    embedder = ChromaDefaultEmbeddings(model_dir=args.embeddings_dir, quantized=args.quantized)
    try:
        await embedder.embed(["load the model"])
    except MissingDependency:
        raise
    except (ModelError, ConfigurationError) as exc:
        raise CommandError(f"{exc}; {_model_hint(args.embeddings_dir)}") from exc
    prepared = Prepared(module, dataset, entry, plan, embedder)
    if args.llm_model:
        prepared.client = make_chat_client(args)
    return prepared


async def run(
    args: argparse.Namespace, prepared: Prepared, console: Console, manifest: dict[str, Any]
) -> dict[str, Any]:
    """Run the retrieval benchmark (and the answer run when asked); return its results."""
    embedder, plan = prepared.embedder, prepared.plan
    settings: dict[str, Any] = {
        "embedding_model": embedder.name,
        "dimensions": embedder.dimensions,
        "embeddings_dir": str(args.embeddings_dir) if args.embeddings_dir else None,
        "quantized": embedder.quantized,
        "k": list(plan.ks),
        "modes": list(plan.modes),
        "ingest_rounds": args.rounds,
    }
    manifest["retrieval"] = settings
    with progress_bar(console, "steps") as progress:
        task = progress.add_task("retrieval", total=None)

        def moved(done: int, total: int, what: str) -> None:
            progress.update(task, completed=done, total=total, description=f"retrieval: {what}")

        try:
            result: dict[str, Any] = await prepared.module.run(
                prepared.dataset.path,
                modes=plan.modes,
                ks=plan.ks,
                embedder=embedder,
                rounds=args.rounds,
                progress=moved,
            )
        except ModelError as exc:
            raise CommandError(f"{exc}; {_model_hint(args.embeddings_dir)}") from exc
    settings["ingest"] = result.get("ingest")
    settings["questions_with_evidence"] = result.get("questions")
    if prepared.client is not None:
        result["answers"] = await _answer(args, prepared, prepared.client, console, manifest)
    return result


async def _answer(
    args: argparse.Namespace,
    prepared: Prepared,
    client: ChatClient,
    console: Console,
    manifest: dict[str, Any],
) -> dict[str, Any]:
    manifest["llm"] = {
        "model": args.llm_model,
        "base_url": display_url(args.llm_base_url) if args.llm_base_url else None,
        "temperature": _answers.TEMPERATURE,
        "retrieval_mode": args.llm_mode,
        "k": args.llm_k,
        "system_prompt": _answers.SYSTEM_PROMPT,
        "user_prompt": _answers.USER_PROMPT,
        "metric": "LoCoMo token F1",
        "stemmer": _answers.STEMMER,
    }
    path = prepared.dataset.path
    total = len(_answers._questions(path)[0])
    if args.llm_questions:
        total = min(total, args.llm_questions)
    with progress_bar(console, "questions") as progress:
        task = progress.add_task(f"answers: {args.llm_model}", total=total)
        return await _answers.answer_run(
            path,
            client,
            retrieval=prepared.module,
            embedder=prepared.embedder,
            mode=args.llm_mode,
            k=args.llm_k,
            limit=args.llm_questions,
            concurrency=args.llm_concurrency,
            advance=lambda n: progress.advance(task, n),
        )


# -- presentation -------------------------------------------------------------------------------


def _categories(recall: dict[str, Any]) -> list[str]:
    found = {name for by_k in recall.values() for groups in by_k.values() for name in groups}
    ordered = [name for name in _CATEGORY_ORDER if name in found]
    ordered += sorted(found - set(ordered) - {"overall"})
    return [*ordered, "overall"] if "overall" in found else ordered


def label(name: str) -> str:
    """A category's display name: `multi_hop` -> `multi-hop`."""
    return name.replace("_", "-")


def charts(result: dict[str, Any], manifest: dict[str, Any], out: Path) -> list[Path]:
    """Recall@k per category and mode, query latency per mode, and F1 when answers ran."""
    from memweave.cli import _charts

    dataset = Path(manifest["dataset"]["path"]).name
    embedder = manifest["retrieval"]["embedding_model"]
    paths = [
        _charts.recall_chart(
            result["recall"],
            _categories(result["recall"]),
            out,
            title=f"LoCoMo evidence recall@k on {dataset} ({result.get('questions', '?')} "
            f"questions; embeddings {embedder})",
            label=label,
        ),
        _charts.latency_chart(
            result["query_ms"],
            out,
            title=f"memweave VectorMemory query latency on {dataset} (search incl. query "
            "embedding)",
        ),
    ]
    answers = result.get("answers")
    if answers:
        paths.append(
            _charts.f1_chart(
                answers["f1"],
                [c for c in _CATEGORY_ORDER if c in answers["f1"]] + ["overall"],
                out,
                title=f"Answer quality: {manifest['llm']['model']} from the top "
                f"{answers['k']} {answers['mode']} memories ({answers['questions']} questions)",
                label=label,
            )
        )
    return paths


def _recall_rows(result: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    names = _categories(result["recall"])
    rows = []
    for mode, by_k in result["recall"].items():
        for k, groups in by_k.items():
            rows.append([mode, k, *(f"{groups[n]:.3f}" if n in groups else "-" for n in names)])
    return [label(n) for n in names], rows


def section(result: dict[str, Any], manifest: dict[str, Any]) -> list[str]:
    """The retrieval section of `report.md`."""
    from memweave.cli._report import markdown_table

    names, rows = _recall_rows(result)
    latency = [
        [
            mode,
            *(f"{result['query_ms'][mode].get(p, float('nan')):.2f}" for p in ("p50", "p95")),
            f"{result['ingest_turns_per_s'][mode]:,.0f}",
        ]
        for mode in result["query_ms"]
    ]
    lines = [
        "## Retrieval (LoCoMo)",
        "",
        f"{result.get('conversations')} conversations, {result.get('turns'):,} turns, "
        f"{result.get('questions'):,} questions with evidence (adversarial category left out); "
        f"embeddings {manifest['retrieval']['embedding_model']} "
        f"({manifest['retrieval']['dimensions']} dimensions"
        + (
            "; the int8 model, `--quantized`"
            if manifest["retrieval"].get("quantized")
            else "; the fp32 model"
        )
        + "). Recall@k is the share of a "
        "question's evidence turns among the top k memories. Every mode searches the same "
        "store, ingested once, so the ingest rate is one figure"
        + (
            f"; the embedder alone ran {result['embedder_turns_per_s']:,.0f} turns/s on the "
            f"same texts (ingest at {result['ingest_vs_embedder']:.0%} of it)."
            if "embedder_turns_per_s" in result
            else "."
        ),
        "",
        *markdown_table(["mode", "k", *names], rows, right=set(range(1, len(names) + 2))),
        "",
        "![recall@k](retrieval_recall.png)",
        "",
        *markdown_table(
            ["mode", "query p50 ms", "query p95 ms", "ingest turns/s"], latency, right={1, 2, 3}
        ),
        "",
        "![query latency](retrieval_latency.png)",
    ]
    answers = result.get("answers")
    if answers:
        llm = manifest["llm"]
        counts = {**answers.get("per_category", {}), "overall": answers["questions"]}
        order = [c for c in _CATEGORY_ORDER if c in answers["f1"]] + ["overall"]
        f1_rows = [[label(n), str(counts.get(n, "-")), f"{answers['f1'][n]:.3f}"] for n in order]
        lines += [
            "",
            "## Answer quality (LoCoMo token F1)",
            "",
            f"`{llm['model']}` answered {answers['questions']:,} questions from the top "
            f"{answers['k']} {answers['mode']} memories each (temperature {llm['temperature']}; "
            f"stemming: {llm['stemmer']}). Prompts are in `results.json`.",
            "",
            *markdown_table(["category", "questions", "mean F1"], f1_rows, right={1, 2}),
            "",
            "![answer F1](answers_f1.png)",
        ]
    return lines


def print_summary(console: Console, result: dict[str, Any]) -> None:
    """Print the recall and latency tables."""
    names, rows = _recall_rows(result)
    table = Table(title="retrieval: evidence recall@k")
    for column in ("mode", "k", *names):
        table.add_column(column, justify="left" if column == "mode" else "right")
    for row in rows:
        table.add_row(*row)
    console.print(table)
    latency = Table(title="retrieval: query latency (ms) and ingest rate")
    for column in ("mode", "p50", "p95", "turns/s"):
        latency.add_column(column, justify="left" if column == "mode" else "right")
    for mode, values in result["query_ms"].items():
        latency.add_row(
            mode,
            f"{values['p50']:.2f}",
            f"{values['p95']:.2f}",
            f"{result['ingest_turns_per_s'][mode]:,.0f}",
        )
    console.print(latency)
    answers = result.get("answers")
    if answers:
        f1 = Table(title=f"answers: mean token F1 ({answers['questions']} questions)")
        f1.add_column("category")
        f1.add_column("F1", justify="right")
        for name in [c for c in _CATEGORY_ORDER if c in answers["f1"]] + ["overall"]:
            f1.add_row(label(name), f"{answers['f1'][name]:.3f}")
        console.print(f1)
