"""Smoke test of `python -m memweave.bench.retrieval`: it runs and emits fields, never numbers."""

from __future__ import annotations

import asyncio
import copy
import json
import statistics
from pathlib import Path
from typing import Any

import pytest

from memweave.bench import retrieval

SAMPLE = [
    {
        "sample_id": "conv-test",
        "conversation": {
            "speaker_a": "Ann",
            "speaker_b": "Bo",
            "session_1_date_time": "1:56 pm on 8 May, 2023",
            "session_1": [
                {"speaker": "Ann", "dia_id": "D1:1", "text": "I adopted a puppy called Rex."},
                {"speaker": "Bo", "dia_id": "D1:2", "text": "Do you play any sport?"},
                {
                    "speaker": "Ann",
                    "dia_id": "D1:3",
                    "text": "Tennis, every Sunday.",
                    "blip_caption": "a photo of a tennis racket",
                },
            ],
            "session_2_date_time": "10:37 am on 27 June, 2023",
            "session_2": [
                {"speaker": "Bo", "dia_id": "D2:1", "text": "I started a pottery class."},
                {"speaker": "Ann", "dia_id": "D2:2", "text": "Rex learned to sit!"},
            ],
            "session_3_date_time": "9:00 am on 1 July, 2023",
        },
        "qa": [
            {"question": "What is Ann's dog called?", "evidence": ["D1:1; D2:02"], "category": 1},
            {"question": "When did Bo start pottery?", "evidence": ["D2:1"], "category": 2},
            {"question": "What sport does Ann play?", "evidence": ["D1:3"], "category": 4},
            {"question": "What is Bo's cat called?", "evidence": [], "category": 5},
            {"question": "Unanswerable?", "evidence": [], "category": 3},
        ],
    }
]


def test_normalise_evidence_reads_the_odd_forms() -> None:
    """Evidence strings with several ids or zero-padded numbers are split and normalised."""
    assert retrieval.normalise_evidence("D8:6; D9:17") == ["D8:6", "D9:17"]
    assert retrieval.normalise_evidence("D30:05") == ["D30:5"]


def test_retrieval_benchmark_emits_its_fields(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--json` prints recall per mode, k and category, query latency, ingest rate and counts."""
    path = tmp_path / "locomo.json"
    path.write_text(json.dumps(SAMPLE))
    assert retrieval.main(["--locomo", str(path), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["questions"] == 3
    for mode in ("dense", "lexical", "hybrid"):
        for k in ("5", "10", "25"):
            groups = report["recall"][mode][k]
            assert {"overall", "multi_hop", "temporal", "single_hop"} <= set(groups)
            assert all(0.0 <= value <= 1.0 for value in groups.values())
        assert set(report["query_ms"][mode]) == {"p50", "p95"}
        assert report["ingest_turns_per_s"][mode] > 0
    assert report["store_open_s"] > 0  # timed apart from the ingest
    assert report["versions"]["chromadb"]
    assert report["machine"]["cpus"]


def test_retrieval_benchmark_prints_a_table(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without `--json` it prints a table for the modes asked for."""
    path = tmp_path / "locomo.json"
    path.write_text(json.dumps(SAMPLE))
    assert retrieval.main(["--locomo", str(path), "--mode", "lexical", "--sequential"]) == 0
    out = capsys.readouterr().out
    assert "lexical" in out
    assert "hybrid" not in out
    assert "turns/s" in out


def _write(tmp_path: Path, data: object) -> Path:
    path = tmp_path / "locomo.json"
    path.write_text(json.dumps(data))
    return path


def test_run_ingests_each_turn_once_for_every_mode(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The mode is a search setting only: all three modes are measured on one ingest (with
    `rounds=1`, the only one)."""
    added: list[str | None] = []
    add = retrieval.VectorMemory.add

    async def counting_add(self: retrieval.VectorMemory, text: str, **kwargs: Any) -> str:
        added.append(kwargs.get("id"))
        return await add(self, text, **kwargs)

    monkeypatch.setattr(retrieval.VectorMemory, "add", counting_add)
    report = asyncio.run(retrieval.run(_write(tmp_path, SAMPLE), rounds=1))
    assert sorted(added) == ["D1:1", "D1:2", "D1:3", "D2:1", "D2:2"]
    assert set(report["recall"]) == {"dense", "lexical", "hybrid"}
    rates = set(report["ingest_turns_per_s"].values())
    assert len(rates) == 1
    assert rates.pop() > 0


def test_run_measures_any_positive_k(tmp_path: Path) -> None:
    """`ks=` takes any positive cut-offs, deduplicated and reported in increasing order."""
    report = asyncio.run(retrieval.run(_write(tmp_path, SAMPLE), modes=["lexical"], ks=[3, 1, 3]))
    assert list(report["recall"]["lexical"]) == ["1", "3"]
    assert report["ks"] == [1, 3]
    # Past the conversation's length, recall@k is recall over every turn.
    deep = asyncio.run(retrieval.run(_write(tmp_path, SAMPLE), modes=["dense"], ks=[7, 5000]))
    assert deep["recall"]["dense"]["5000"]["overall"] == 1.0


@pytest.mark.parametrize(("ks", "modes"), [((0,), ("dense",)), ((), ("dense",)), ((5,), ("x",))])
def test_prepare_rejects_bad_ks_and_modes(
    tmp_path: Path, ks: tuple[int, ...], modes: tuple[str, ...]
) -> None:
    """A cut-off that is not a positive int, or an unknown mode, fails before anything runs."""
    with pytest.raises(ValueError, match=r"ks must be positive ints|modes must be among"):
        retrieval.prepare(_write(tmp_path, SAMPLE), modes=modes, ks=ks)


def _without(path: tuple[str | int, ...]) -> list[dict[str, Any]]:
    data = copy.deepcopy(SAMPLE)
    parent: Any = data
    for key in path[:-1]:
        parent = parent[key]
    del parent[path[-1]]
    return data


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ((0, "conversation"), "sample 0 ('conv-test'): no 'conversation'"),
        ((0, "conversation", "session_2", 1, "text"), "session_2, turn 1: no 'text'"),
        ((0, "conversation", "session_1", 0, "speaker"), "session_1, turn 0: no 'speaker'"),
        ((0, "qa", 2, "question"), "sample 0 ('conv-test'), qa 2: no 'question'"),
    ],
)
def test_load_locomo_names_the_missing_field(
    tmp_path: Path, path: tuple[str | int, ...], expected: str
) -> None:
    """A file missing a field of the layout fails with one line naming the field and where."""
    with pytest.raises(retrieval.LocomoFormatError) as caught:
        retrieval.load_locomo(_write(tmp_path, _without(path)))
    message = str(caught.value)
    assert expected in message
    assert "is not in the locomo10.json layout" in message
    assert "\n" not in message


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"sample_id": "x"}, "expected a list of samples, got dict"),
        ([{"conversation": {"session_1": "hi"}}], "session_1: expected a list of turns, got str"),
        (
            [{"conversation": {}, "qa": [{"question": "q", "category": "two"}]}],
            "qa 0: 'category' is 'two', expected a number",
        ),
    ],
)
def test_load_locomo_names_a_malformed_part(tmp_path: Path, data: object, expected: str) -> None:
    """A part of the wrong type is named too."""
    with pytest.raises(retrieval.LocomoFormatError, match=expected):
        retrieval.load_locomo(_write(tmp_path, data))


def test_main_reports_a_bad_file_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`python -m memweave.bench.retrieval` on a bad file prints one error line, no traceback."""
    path = _write(tmp_path, _without((0, "conversation", "session_1", 0, "text")))
    with pytest.raises(SystemExit) as caught:
        retrieval.main(["--locomo", str(path), "--k", "3"])
    assert caught.value.code == 1
    err = capsys.readouterr().err
    assert err.splitlines() == [
        f"python -m memweave.bench.retrieval: error: {str(path)!r} is not in the locomo10.json "
        "layout: sample 0 ('conv-test'), session_1, turn 0: no 'text'"
    ]


def test_main_k_option_sets_the_cut_offs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--k` chooses the cut-offs of the report."""
    path = _write(tmp_path, SAMPLE)
    assert retrieval.main(["--locomo", str(path), "--mode", "lexical", "--k", "2", "--json"]) == 0
    assert list(json.loads(capsys.readouterr().out)["recall"]["lexical"]) == ["2"]


def test_retrieval_benchmark_reports_the_embedder_beside_the_ingest(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The report holds the embedder's own rate on the same texts beside the ingest rate:
    with `--rounds 3`, three timed ingests, each between two runs of the embedder alone, and
    the medians of the three."""
    path = _write(tmp_path, SAMPLE)
    args = ["--locomo", str(path), "--mode", "lexical", "--json", "--rounds", "3"]
    assert retrieval.main(args) == 0
    report = json.loads(capsys.readouterr().out)
    alone = report["embedder_runs_turns_per_s"]
    assert len(alone) == 4  # before, between and after the ingests
    assert min(alone) > 0
    assert report["embedder_turns_per_s"] == pytest.approx(statistics.median(alone))
    rounds = report["ingest_rounds"]
    assert len(rounds) == 3
    for n, measured in enumerate(rounds):
        assert measured["embedder"] == pytest.approx((alone[n] + alone[n + 1]) / 2)
    ratios = [measured["ingest"] / measured["embedder"] for measured in rounds]
    assert report["ingest_vs_embedder"] == pytest.approx(statistics.median(ratios))
    rate = report["ingest_turns_per_s"]["lexical"]
    assert rate == pytest.approx(statistics.median(m["ingest"] for m in rounds))
    assert report["fusion"]["method"] in ("weighted", "rrf")


def test_run_refuses_rounds_that_are_not_a_positive_int(tmp_path: Path) -> None:
    """`rounds=0` raises ValueError before anything is stored."""
    with pytest.raises(ValueError, match="rounds"):
        asyncio.run(retrieval.run(_write(tmp_path, SAMPLE), rounds=0))


def _two_conversations() -> list[dict[str, Any]]:
    second = copy.deepcopy(SAMPLE[0])
    second["sample_id"] = "conv-other"
    return [SAMPLE[0], second]


def test_ablation_cross_validates_every_row(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The ablation prints, per row, held-out recall per k and category, and each fold's
    choice tuned on the other conversation."""
    from memweave.bench import retrieval_ablation

    path = _write(tmp_path, _two_conversations())
    assert retrieval_ablation.main(["--locomo", str(path), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["conversations"] == ["conv-test", "conv-other"]
    assert report["questions"] == 6
    names = [row["name"] for row in report["ablation"]]
    assert names == [name for name, _ in retrieval_ablation.ABLATIONS]
    for row in report["ablation"]:
        assert set(row["recall"]) == {"5", "10", "25"}
        assert 0.0 <= row["recall"]["10"]["overall"] <= 1.0
        assert [c["held_out"] for c in row["choices"]] == ["conv-test", "conv-other"]
    assert set(report["cache_agreement"]) == {"dense", "lexical", "hybrid"}
    assert report["cache_agreement"]["hybrid"] == 1.0  # re-fused = what search returns


def test_ablation_needs_two_conversations(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Cross-validation across conversations refuses a file with only one."""
    from memweave.bench import retrieval_ablation

    with pytest.raises(SystemExit):
        retrieval_ablation.main(["--locomo", str(_write(tmp_path, SAMPLE))])
    assert "at least two conversations" in capsys.readouterr().err
