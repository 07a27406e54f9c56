"""`memweave bench`: each suite writes results.json, report.md and PNG charts; LoCoMo handling."""

from __future__ import annotations

import hashlib
import http.server
import json
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from memweave.cli import _answers, _locomo, _retrieval, bench
from memweave.cli._common import CommandError
from memweave.messages import ChatMessage
from memweave.testing import ScriptedChatClient
from tests.cli._helpers import Result

Cli = Callable[..., Result]

PNG = b"\x89PNG\r\n\x1a\n"

_TURNS = [
    [
        ("Caroline", "I went to the LGBTQ support group yesterday and it was so powerful."),
        ("Melanie", "That sounds amazing! I painted a sunrise over the lake last week."),
        ("Caroline", "I'm thinking about a career in counseling for trans youth."),
        ("Melanie", "You would be great at that. My kids love camping at the beach."),
    ],
    [
        ("Caroline", "I adopted a dog named Ollie, he is a golden retriever."),
        ("Melanie", "Cute! We went to a pottery workshop with the kids on Saturday."),
        ("Caroline", "My mom gave me a necklace from Sweden, where I grew up."),
    ],
]
_QUESTIONS = [
    ("When did Caroline go to the LGBTQ support group?", "7 May 2023", ["D1:1"], 2),
    ("What did Melanie paint?", "a sunrise", ["D1:2"], 4),
    ("What career is Caroline considering?", "counseling for trans youth", ["D1:3"], 4),
    ("What are Caroline's pet and her mother's gift?", "a dog, a necklace", ["D2:1; D2:3"], 1),
    ("Where did Caroline grow up?", "Sweden; Europe", ["D2:3"], 3),
]


@pytest.fixture
def locomo(tmp_path: Path) -> Path:
    """A tiny file in the public locomo10.json layout: one conversation, two sessions."""
    conversation: dict[str, Any] = {"speaker_a": "Caroline", "speaker_b": "Melanie"}
    for number, (turns, when) in enumerate(
        zip(_TURNS, ["1:56 pm on 8 May, 2023", "7:55 pm on 20 May, 2023"], strict=True), start=1
    ):
        conversation[f"session_{number}_date_time"] = when
        conversation[f"session_{number}"] = [
            {"speaker": speaker, "dia_id": f"D{number}:{index}", "text": text}
            for index, (speaker, text) in enumerate(turns, start=1)
        ]
    qa: list[dict[str, Any]] = [
        {"question": q, "answer": a, "evidence": e, "category": c} for q, a, e, c in _QUESTIONS
    ]
    qa.append(
        {"question": "What did Caroline paint?", "adversarial_answer": "a sunrise",
         "evidence": ["D1:2"], "category": 5}
    )  # fmt: skip
    path = tmp_path / "tiny_locomo.json"
    sample = {"sample_id": "conv-tiny", "conversation": conversation, "qa": qa}
    path.write_text(json.dumps([sample]))
    return path


def _outputs(out: Path) -> tuple[dict[str, Any], str, list[Path]]:
    results = json.loads((out / "results.json").read_text())
    report = (out / "report.md").read_text()
    charts = sorted(out.glob("*.png"))
    for chart in charts:
        assert chart.read_bytes().startswith(PNG)
        assert f"]({chart.name})" in report
    return results, report, charts


def test_bench_history_writes_results_report_and_charts(
    cli: Cli, tmp_path: Path, sqlite_url: str
) -> None:
    """bench history records its backends and writes a table and the two latency charts."""
    out = tmp_path / "out"
    result = cli(
        "bench", "history", "--url", "memory://", "--url", sqlite_url,
        "--sizes", "10", "30", "--quick", "--out", str(out),
    )  # fmt: skip
    assert result.code == 0, result.err
    results, report, charts = _outputs(out)
    assert [c.name for c in charts] == ["history_append.png", "history_read.png"]
    manifest = results["manifest"]
    assert manifest["suites"] == ["history"]
    assert [b["backend"] for b in manifest["backends"]] == ["memory", "sqlite"]
    assert manifest["backends"][1]["server"].startswith("SQLite ")
    assert manifest["machine"]["cpus"] >= 1
    assert manifest["packages"]["memweave"]
    assert manifest["git"] is None or len(manifest["git"]["commit"]) == 40
    rows = results["history"]["results"]
    assert {(r["backend"], r["n"]) for r in rows} == {
        (b, n) for b in ("memory", "sqlite") for n in (10, 30)
    }
    assert "| sqlite | 30 | read_all |" in report
    assert "wrote" in result.err


def test_bench_history_reports_peers_beside_memweave(
    cli: Cli, tmp_path: Path, sqlite_url: str
) -> None:
    """With the peers installed, report.md has a peer table and results.json their statuses."""
    out = tmp_path / "out"
    result = cli(
        "bench", "history", "--url", sqlite_url, "--sizes", "10", "20", "--quick",
        "--out", str(out),
    )  # fmt: skip
    assert result.code == 0, result.err
    results, report, _ = _outputs(out)
    history = results["history"]
    assert [(p["backend"], p["peer"], p["status"]) for p in history["peers"]] == [
        ("sqlite", "LangChain SQLChatMessageHistory", "measured")
    ]
    assert all(len(row["peers"]) == 1 for row in history["results"])
    assert "### Peers" in report
    assert "| sqlite | 20 | read_last_20 | LangChain SQLChatMessageHistory |" in report
    assert "no limit in its API: reads all |" in report


def test_bench_history_no_peers_says_they_were_skipped(
    cli: Cli, tmp_path: Path, sqlite_url: str
) -> None:
    """--no-peers times memweave alone, and report.md says which peers it skipped."""
    out = tmp_path / "out"
    result = cli(
        "bench", "history", "--url", sqlite_url, "--sizes", "10", "--quick", "--no-peers",
        "--out", str(out),
    )  # fmt: skip
    assert result.code == 0, result.err
    results, report, _ = _outputs(out)
    assert all(row["peers"] == [] for row in results["history"]["results"])
    assert "- skipped LangChain SQLChatMessageHistory (langchain-community" in report
    assert "sqlite: --no-peers" in report


def test_bench_reducers_writes_results_report_and_chart(cli: Cli, tmp_path: Path) -> None:
    """bench reducers records its parameters and writes a table and one chart."""
    out = tmp_path / "out"
    result = cli(
        "bench", "reducers", "--messages", "300", "--max-tokens", "2000", "--turns", "3",
        "--quick", "--no-peers", "--out", str(out),
    )  # fmt: skip
    assert result.code == 0, result.err
    results, report, charts = _outputs(out)
    assert [c.name for c in charts] == ["reducers.png"]
    assert results["manifest"]["reducers"]["messages"] == 300
    assert "| TokenBudgetReducer, per turn |" in report


def test_bench_retrieval_records_dataset_and_settings(
    cli: Cli, tmp_path: Path, locomo: Path
) -> None:
    """bench retrieval records the file's hash and conversations, the embedder, k and modes."""
    out = tmp_path / "out"
    result = cli(
        "bench", "retrieval", "--locomo", str(locomo), "--mode", "lexical", "hybrid",
        "--k", "5", "10", "--out", str(out),
    )  # fmt: skip
    assert result.code == 0, result.err
    results, report, charts = _outputs(out)
    assert [c.name for c in charts] == ["retrieval_latency.png", "retrieval_recall.png"]
    manifest = results["manifest"]
    assert manifest["dataset"]["sha256"] == hashlib.sha256(locomo.read_bytes()).hexdigest()
    assert manifest["dataset"]["conversations"] == ["conv-tiny"]
    assert manifest["dataset"]["origin"] == "given"
    assert manifest["retrieval"]["embedding_model"] == "chroma/all-MiniLM-L6-v2"
    assert manifest["retrieval"]["quantized"] is False
    assert manifest["retrieval"]["dimensions"] == 384
    assert manifest["retrieval"]["k"] == [5, 10]
    assert manifest["retrieval"]["modes"] == ["lexical", "hybrid"]
    recall = results["retrieval"]["recall"]
    assert set(recall) == {"lexical", "hybrid"}
    assert set(recall["hybrid"]) == {"5", "10"}
    assert all(0 <= value <= 1 for value in recall["hybrid"]["5"].values())
    assert "## Retrieval (LoCoMo)" in report
    assert "| hybrid | 5 |" in report


def test_bench_retrieval_answers_are_scored_by_token_f1(
    cli: Cli, tmp_path: Path, locomo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With --llm-model, each question is answered from its memories and scored apart."""
    gold = {question: answer for question, answer, _, _ in _QUESTIONS}

    def reply(messages: list[ChatMessage], tools: object, options: dict[str, Any]) -> str:
        question = messages[-1].text.split("Question: ")[1].split("\n")[0]
        return "not mentioned" if "grow up" in question else gold[question]

    client = ScriptedChatClient(reply, model="scripted")
    monkeypatch.setattr(_retrieval, "make_chat_client", lambda args: client)
    out = tmp_path / "out"
    result = cli(
        "bench", "retrieval", "--locomo", str(locomo), "--mode", "lexical",
        "--llm-model", "scripted", "--llm-base-url", "http://user:pw@127.0.0.1:9/v1",
        "--llm-mode", "lexical", "--llm-k", "3", "--out", str(out),
    )  # fmt: skip
    assert result.code == 0, result.err
    results, report, charts = _outputs(out)
    assert "answers_f1.png" in [c.name for c in charts]
    answers = results["retrieval"]["answers"]
    assert answers["questions"] == 5
    assert answers["f1"]["single_hop"] == 1.0
    assert answers["f1"]["multi_hop"] == 1.0
    assert answers["f1"]["open_domain"] == 0.0
    assert answers["f1"]["overall"] == pytest.approx(0.8)
    llm = results["manifest"]["llm"]
    assert llm["model"] == "scripted"
    assert llm["base_url"] == "http://user:***@127.0.0.1:9/v1"
    assert llm["system_prompt"] == _answers.SYSTEM_PROMPT
    assert llm["k"] == 3
    request = client.requests[0]
    assert request.options == {"temperature": 0.0}
    assert "Caroline and Melanie" in request.messages[0].text
    assert request.messages[1].text.count("\n- ") <= 3
    assert "## Answer quality (LoCoMo token F1)" in report


def test_bench_scale_writes_results_report_and_chart(cli: Cli, tmp_path: Path) -> None:
    """bench scale records its parameters, each figure beside its floor, and one chart."""
    out = tmp_path / "out"
    result = cli(
        "bench", "scale", "--backends", "memory", "sqlite", "--parts", "turn", "sessions",
        "export", "--sizes", "30", "60", "--export-messages", "200", "--out", str(out),
    )  # fmt: skip
    assert result.code == 0, result.err
    results, report, charts = _outputs(out)
    assert [c.name for c in charts] == ["scale.png"]
    manifest = results["manifest"]
    assert manifest["suites"] == ["scale"]
    assert manifest["scale"]["turn_sizes"] == [30, 60]
    assert manifest["scale"]["session_sizes"] == [30, 60]
    scale = results["scale"]
    assert {(r["backend"], r["n"]) for r in scale["turn"]} == {
        (b, n) for b in ("memory", "sqlite") for n in (30, 60)
    }
    assert all(row["floor"]["p50_ms"] >= 0 for row in scale["turn"])
    assert all(row["list_floor"]["p50_ms"] >= 0 for row in scale["sessions"])
    assert [row["messages"] for row in scale["export"]] == [200, 200]
    assert "## Service scale" in report
    assert "| sqlite | 60 |" in report
    assert "### Targets (issue 11)" in report
    assert "- sqlite, export of 200 messages: peak growth" in report


def test_bench_all_writes_every_suite_into_one_report(
    cli: Cli, tmp_path: Path, locomo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """bench all runs every suite into one results.json, one report and every chart."""
    from memweave.bench import scale

    tiny = {"turn_sizes": (20,), "session_sizes": (20,), "export_messages": 50, "turns": 2}

    def quick(cls: type[scale.Options], **overrides: object) -> scale.Options:
        return cls(backends=("memory",), parts=("turn", "sessions", "export"), **tiny)

    monkeypatch.setattr(scale.Options, "quick", classmethod(quick))
    out = tmp_path / "out"
    result = cli(
        "bench", "all", "--url", "memory://", "--sizes", "10", "--quick", "--messages", "200",
        "--turns", "2", "--no-peers", "--locomo", str(locomo), "--mode", "lexical",
        "--out", str(out),
    )  # fmt: skip
    assert result.code == 0, result.err
    results, report, charts = _outputs(out)
    assert {"history", "reducers", "retrieval", "scale"} <= set(results)
    assert results["manifest"]["suites"] == ["history", "reducers", "retrieval", "scale"]
    assert results["scale"]["parameters"]["turn_sizes"] == [20]
    assert len(charts) == 6
    for heading in (
        "## History backends",
        "## Reducers",
        "## Retrieval (LoCoMo)",
        "## Service scale",
    ):
        assert heading in report


def test_bench_retrieval_measures_any_k(cli: Cli, tmp_path: Path, locomo: Path) -> None:
    """--k takes any positive cut-offs, not only 5, 10 and 25."""
    out = tmp_path / "out"
    result = cli(
        "bench", "retrieval", "--locomo", str(locomo), "--mode", "lexical", "--k", "7", "3",
        "--out", str(out),
    )  # fmt: skip
    assert result.code == 0, result.err
    results, report, _ = _outputs(out)
    assert list(results["retrieval"]["recall"]["lexical"]) == ["3", "7"]
    assert results["manifest"]["retrieval"]["k"] == [3, 7]
    assert "| lexical | 3 |" in report


def _layout_without(locomo: Path, tmp_path: Path, *path: str | int) -> str:
    data = json.loads(locomo.read_text())
    parent: Any = data
    for key in path[:-1]:
        parent = parent[key]
    del parent[path[-1]]
    broken = tmp_path / f"without-{len(path)}.json"
    broken.write_text(json.dumps(data))
    return str(broken)


@pytest.fixture
def suites_ran(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The names of the history and reducers suites as they start (they then fail)."""
    ran: list[str] = []

    async def history(*args: object) -> dict[str, Any]:
        ran.append("history")
        raise AssertionError("the history suite ran")

    async def reducers(*args: object) -> dict[str, Any]:
        ran.append("reducers")
        raise AssertionError("the reducers suite ran")

    monkeypatch.setattr(bench, "_history", history)
    monkeypatch.setattr(bench, "_reducers", reducers)
    return ran


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("no-conversation", "sample 0 ('conv-tiny'): no 'conversation'"),
        ("no-text", "sample 0 ('conv-tiny'), session_2, turn 1: no 'text'"),
        ("missing-file", "no LoCoMo file at"),
        ("base-url-alone", "--llm-base-url needs --llm-model"),
        ("questions-alone", "--llm-questions needs --llm-model"),
        ("llm-k", "--llm-k 5000: a search returns at most 1000 memories"),
        ("llm-url", "--llm-base-url must be an http:// or https:// URL"),
        ("embeddings-dir", "--embeddings-dir"),
    ],
)
def test_bench_all_checks_options_and_data_before_any_suite(
    cli: Cli, tmp_path: Path, locomo: Path, suites_ran: list[str], case: str, expected: str
) -> None:
    """A bad option or data file fails in one line before history or reducers run, and
    leaves no output folder."""
    extra = {
        "no-conversation": ["--locomo", _layout_without(locomo, tmp_path, 0, "conversation")],
        "no-text": [
            "--locomo",
            _layout_without(locomo, tmp_path, 0, "conversation", "session_2", 1, "text"),
        ],
        "missing-file": ["--locomo", str(tmp_path / "nope.json")],
        "base-url-alone": ["--locomo", str(locomo), "--llm-base-url", "http://127.0.0.1:9/v1"],
        "questions-alone": ["--locomo", str(locomo), "--llm-questions", "3"],
        "llm-k": ["--locomo", str(locomo), "--llm-model", "m", "--llm-k", "5000"],
        "llm-url": ["--locomo", str(locomo), "--llm-model", "m", "--llm-base-url", "ftp://h/"],
        "embeddings-dir": ["--locomo", str(locomo), "--embeddings-dir", str(tmp_path / "none")],
    }[case]
    out = tmp_path / "results" / "run"
    result = cli("bench", "all", "--quick", "--k", "3", "--out", str(out), *extra)
    assert result.code == 1
    assert suites_ran == []
    lines = result.err.splitlines()
    assert len(lines) == 1, result.err
    assert lines[0].startswith("memweave: error: ")
    assert expected in lines[0]
    assert "unexpected" not in lines[0]
    assert not (tmp_path / "results").exists()


def test_bench_failing_before_any_result_leaves_no_out_folder(cli: Cli, tmp_path: Path) -> None:
    """A suite failing before anything was written removes the folders the run made."""
    out = tmp_path / "results" / "run"
    result = cli(
        "bench", "history", "--url", "foo://h/db", "--sizes", "10", "--quick", "--out", str(out)
    )
    assert result.code == 1
    assert "unsupported URL scheme 'foo'" in result.err
    assert not (tmp_path / "results").exists()


def test_bench_keeps_an_out_folder_it_did_not_make(cli: Cli, tmp_path: Path) -> None:
    """An --out folder that existed before the run is left in place."""
    out = tmp_path / "mine"
    out.mkdir()
    result = cli(
        "bench", "history", "--url", "foo://h/db", "--sizes", "10", "--quick", "--out", str(out)
    )
    assert result.code == 1
    assert out.is_dir()


def test_bench_results_never_hold_secret_query_values(
    cli: Cli, tmp_path: Path, locomo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A key passed as `?api_key=` reaches neither the output, results.json nor report.md."""
    secret = "sk-query-s3cret"
    client = ScriptedChatClient(lambda *args: "not mentioned", model="scripted")
    monkeypatch.setattr(_retrieval, "make_chat_client", lambda args: client)
    out = tmp_path / "out"
    result = cli(
        "bench", "retrieval", "--locomo", str(locomo), "--mode", "lexical", "--k", "5",
        "--llm-model", "scripted", f"--llm-base-url=http://127.0.0.1:9/v1?api_key={secret}",
        "--llm-questions", "1", "--out", str(out),
    )  # fmt: skip
    assert result.code == 0, result.err
    for text in (result.out, result.err, *(path.read_text() for path in out.glob("*.*[dn]"))):
        assert secret not in text
    manifest = json.loads((out / "results.json").read_text())["manifest"]
    assert manifest["llm"]["base_url"] == "http://127.0.0.1:9/v1?api_key=***"


# -- token F1 -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("prediction", "gold", "category", "expected"),
    [
        ("7 May 2023", "7 May 2023", 2, 1.0),
        ("The sunrise.", "a sunrise", 4, 1.0),
        ("painting sunrises", "painted a sunrise", 4, 1.0 if _answers.STEMMER != "none" else 0.0),
        ("Sweden", "Sweden; Europe", 3, 1.0),
        ("a dog", "a dog, a necklace", 1, 0.5),
        ("necklace, dog", "a dog, a necklace", 1, 1.0),
        ("nothing", "a sunrise", 4, 0.0),
        ("sunrise over lake", "sunrise", 4, 0.5),
    ],
)
def test_token_f1_follows_locomo(
    prediction: str, gold: str, category: int, expected: float
) -> None:
    """LoCoMo's F1: normalised bags of tokens; commas split multi-hop answers; `;` cuts
    open-domain ones."""
    if "painting" in prediction and not _answers.STEMMER.startswith("nltk"):
        pytest.skip("needs nltk's Porter stemmer")
    assert _answers.token_f1(prediction, gold, category) == pytest.approx(expected)


# -- the LoCoMo download ------------------------------------------------------------------------


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, bytes]]:
    """A local HTTP server standing in for GitHub, serving one LoCoMo-layout file."""
    body = json.dumps([{"sample_id": "conv-x", "conversation": {}, "qa": []}]).encode()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/locomo10.json", body
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_locomo_is_downloaded_once_and_verified(
    server: tuple[str, bytes], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without --locomo the file is fetched into the user cache, checked, then reused."""
    url, body = server
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(_locomo, "LOCOMO_URL", url)
    monkeypatch.setattr(_locomo, "LOCOMO_SHA256", hashlib.sha256(body).hexdigest())
    said: list[str] = []
    first = _locomo.resolve_locomo(None, said.append)
    assert first.origin == "download"
    assert first.path == tmp_path / "cache" / "memweave" / "locomo10.json"
    assert first.path.read_bytes() == body
    assert "downloading the public LoCoMo data set" in said[0]
    assert "verified" in said[1]
    monkeypatch.setattr(_locomo, "LOCOMO_URL", "http://127.0.0.1:9/unreachable")
    again = _locomo.resolve_locomo(None, said.append)
    assert again.origin == "cache"
    assert "SHA-256 verified" in said[-1]


def test_locomo_download_with_a_wrong_checksum_is_discarded(
    server: tuple[str, bytes], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A download whose SHA-256 differs from the pinned one is deleted and reported."""
    url, _ = server
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(_locomo, "LOCOMO_URL", url)
    with pytest.raises(CommandError, match="expected 79fa87e9"):
        _locomo.resolve_locomo(None, lambda text: None)
    assert list((tmp_path / "cache" / "memweave").iterdir()) == []


def test_bench_retrieval_offline_says_how_to_pass_the_file(
    cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Offline and without --locomo, bench stops with one line telling how to pass the file,
    and nothing else."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(_locomo, "LOCOMO_URL", "http://127.0.0.1:9/locomo10.json")
    out = tmp_path / "out"
    result = cli("bench", "retrieval", "--out", str(out))
    assert result.code == 1
    lines = result.err.splitlines()
    assert len(lines) == 1, result.err  # nothing said about downloading: it never connected
    last = lines[0]
    assert last.startswith("memweave: error: cannot download the LoCoMo data set")
    assert "--locomo PATH" in last
    assert "LOCOMO=PATH" in last
    assert not out.exists()


def _png_size(path: Path) -> tuple[int, int]:
    header = path.read_bytes()[16:24]
    return int.from_bytes(header[:4], "big"), int.from_bytes(header[4:], "big")


def test_recall_chart_puts_many_cut_offs_in_rows_of_three(tmp_path: Path) -> None:
    """Any number of k values stays legible: panels wrap three to a row instead of widening."""
    from memweave.cli import _charts

    groups = {"single_hop": 0.5, "overall": 0.6}
    sizes: dict[int, tuple[int, int]] = {}
    for count in (3, 7):
        recall = {
            mode: {str(k): groups for k in range(1, count + 1)} for mode in ("dense", "hybrid")
        }
        out = tmp_path / str(count)
        out.mkdir()
        sizes[count] = _png_size(
            _charts.recall_chart(recall, ["single_hop", "overall"], out, title="recall")
        )
    assert sizes[7][0] == sizes[3][0]
    assert sizes[7][1] > 2 * sizes[3][1]


def test_bench_retrieval_quantized_records_the_int8_model(
    cli: Cli, tmp_path: Path, locomo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`bench retrieval --quantized` embeds with the int8 model and says so in results.json
    and report.md."""
    monkeypatch.setenv("MEMWEAVE_CACHE_DIR", str(tmp_path / "cache"))
    out = tmp_path / "out"
    result = cli(
        "bench", "retrieval", "--locomo", str(locomo), "--mode", "dense", "--k", "5",
        "--quantized", "--out", str(out),
    )  # fmt: skip
    assert result.code == 0, result.err
    results, report, _ = _outputs(out)
    settings = results["manifest"]["retrieval"]
    assert settings["quantized"] is True
    assert settings["embedding_model"] == "chroma/all-MiniLM-L6-v2@int8"
    assert "the int8 model, `--quantized`" in report
    assert list((tmp_path / "cache" / "onnx").glob("*.onnx"))
