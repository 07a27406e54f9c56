"""Smoke test of `python -m benchmarks.retrieval`: it runs and emits its fields, never numbers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks import retrieval

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
