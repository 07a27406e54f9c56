"""`memweave bench qa` against a scripted OpenAI-compatible server: the mechanics, not quality."""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from memweave.cli import _qa
from memweave.context.facts import EXTRACTION_PROMPT, UPDATE_PROMPT
from tests.cli._helpers import Result

Cli = Callable[..., Result]

_SESSIONS = [
    [
        ("Caroline", "I went to the LGBTQ support group yesterday and it was so powerful."),
        ("Melanie", "That sounds amazing! I painted a sunrise over the lake last week."),
    ],
    [
        ("Caroline", "I adopted a dog named Ollie, he is a golden retriever."),
        ("Melanie", "Cute! We went to a pottery workshop with the kids on Saturday."),
    ],
]
_QA = [
    {"question": "What did Melanie paint?", "answer": "a sunrise", "evidence": ["D1:2"],
     "category": 4},
    {"question": "What is Caroline's dog called?", "answer": "Ollie", "evidence": ["D2:1"],
     "category": 1},
    {"question": "What did Caroline paint?", "adversarial_answer": "a sunrise",
     "evidence": ["D1:2"], "category": 5},
    {"question": "Where did Melanie go on Saturday?", "answer": "a pottery workshop",
     "evidence": ["D2:2"], "category": 4},
]  # fmt: skip


@pytest.fixture
def locomo(tmp_path: Path) -> Path:
    """A tiny file in the locomo10.json layout: one conversation of two sessions."""
    conversation: dict[str, Any] = {"speaker_a": "Caroline", "speaker_b": "Melanie"}
    for number, turns in enumerate(_SESSIONS, start=1):
        conversation[f"session_{number}_date_time"] = f"1:56 pm on {number} May, 2023"
        conversation[f"session_{number}"] = [
            {"speaker": speaker, "dia_id": f"D{number}:{index}", "text": text}
            for index, (speaker, text) in enumerate(turns, start=1)
        ]
    path = tmp_path / "tiny_locomo.json"
    path.write_text(json.dumps([{"sample_id": "conv-qa", "conversation": conversation, "qa": _QA}]))
    return path


def _reply(body: dict[str, Any]) -> str:
    """The scripted model: facts for extraction, ADD for each new fact, a fixed answer, a
    verdict from the judge."""
    system = body["messages"][0]["content"]
    user = body["messages"][-1]["content"]
    if system == EXTRACTION_PROMPT:
        lines = [line.split(": ", 1)[-1] for line in user.splitlines()[1:] if line.strip()]
        return json.dumps({"facts": lines})
    if system == UPDATE_PROMPT:
        facts = json.loads(user.split("New facts:\n", 1)[1])
        return json.dumps({"decisions": [{"event": "ADD", "text": fact} for fact in facts]})
    if system == _qa.JUDGE_PROMPT:
        gold, generated = user.split("Gold answer: ", 1)[1].split("\nGenerated answer: ")
        return json.dumps({"label": "CORRECT" if gold in generated else "WRONG"})
    return "a sunrise"


@pytest.fixture
def chat_server() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """A local OpenAI-compatible chat server on a free loopback port; yields its base URL and
    the request bodies it received."""
    received: list[dict[str, Any]] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            received.append(body)
            payload = json.dumps(
                {
                    "id": f"chatcmpl-{len(received)}",
                    "object": "chat.completion",
                    "created": 0,
                    "model": body["model"],
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": _reply(body)},
                            "finish_reason": "stop",
                        }
                    ],
                    "usage": {"prompt_tokens": 10, "completion_tokens": 2, "total_tokens": 12},
                }
            ).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args: object) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/v1", received
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=10)


def test_bench_qa_reports_f1_judge_tokens_and_ingest_per_source(
    cli: Cli,
    tmp_path: Path,
    locomo: Path,
    chat_server: tuple[str, list[dict[str, Any]]],
) -> None:
    """bench qa answers from turns, facts and both, and records F1, judge accuracy, tokens
    and ingest per source, with the judge's model and prompt in the manifest."""
    url, received = chat_server
    out = tmp_path / "out"
    result = cli(
        "bench", "qa", "--locomo", str(locomo), "--llm-base-url", url,
        "--llm-model", "scripted", "--judge-model", "judge", "--limit", "3",
        "--k", "2", "--out", str(out),
    )  # fmt: skip
    assert result.code == 0, result.err
    results = json.loads((out / "results.json").read_text())
    qa = results["qa"]
    assert qa["questions"] == 3
    assert qa["per_category"] == {"single_hop": 1, "multi_hop": 1, "adversarial": 1}
    assert set(qa["sources"]) == {"turns", "facts", "both"}
    for scores in qa["sources"].values():
        assert scores["f1"]["single_hop"] == 1.0  # "a sunrise" is the gold answer
        assert scores["f1"]["multi_hop"] == 0.0
        assert scores["judge_accuracy"] == {
            "overall": pytest.approx(1 / 3), "single_hop": 1.0, "multi_hop": 0.0,
            "adversarial": 0.0,
        }  # fmt: skip
        assert scores["f1"]["adversarial"] == 0.0  # it did not say "not mentioned"
        assert scores["tokens_per_question"] == 12
        assert scores["judge_unparsed"] == 0
    ingest = qa["ingest"]
    assert ingest["turns"] == 4
    assert ingest["facts"] == 4  # one per turn, each ADDed
    assert ingest["extraction_tokens"]["prompt_tokens"] > 0
    assert ingest["turns_s"] > 0
    assert ingest["facts_s"] > 0
    assert len(qa["items"]) == 9
    manifest = results["manifest"]["qa"]
    assert manifest["judge_model"] == "judge"
    assert manifest["judge_prompt"] == _qa.JUDGE_PROMPT
    assert manifest["model"] == "scripted"
    judged = [body for body in received if body["messages"][0]["content"] == _qa.JUDGE_PROMPT]
    assert len(judged) == 9
    assert {body["model"] for body in judged} == {"judge"}
    report = (out / "report.md").read_text()
    assert "## Answer quality from turns, facts and both (LoCoMo)" in report


def test_bench_qa_answers_facts_only_from_facts(
    cli: Cli,
    tmp_path: Path,
    locomo: Path,
    chat_server: tuple[str, list[dict[str, Any]]],
) -> None:
    """The facts source shows the model extracted facts, never the stored turns."""
    url, received = chat_server
    out = tmp_path / "out"
    result = cli(
        "bench", "qa", "--locomo", str(locomo), "--llm-base-url", url,
        "--llm-model", "scripted", "--limit", "1", "--out", str(out),
    )  # fmt: skip
    assert result.code == 0, result.err
    items = json.loads((out / "results.json").read_text())["qa"]["items"]
    assert {item["source"] for item in items} == {"turns", "facts", "both"}
    answers = [
        body["messages"][-1]["content"]
        for body in received
        if "Short answer:" in body["messages"][-1]["content"]
    ]
    assert len(answers) == 3
    # Every memory is shown with its date; turns with their speaker, facts without one.
    assert all("- [1:56 pm on " in prompt for prompt in answers)
    assert sum("Melanie: " in prompt or "Caroline: " in prompt for prompt in answers) == 2


def test_bench_qa_rejects_a_non_http_base_url(cli: Cli, locomo: Path) -> None:
    """A base URL that is not http(s) fails before anything is stored or sent."""
    result = cli(
        "bench", "qa", "--locomo", str(locomo), "--llm-base-url", "ftp://x", "--llm-model", "m"
    )
    assert result.code != 0
    assert "--llm-base-url" in result.err
