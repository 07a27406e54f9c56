"""`memweave models`: where each model is looked for, whether it is there, and `fetch`.

Offline is real: target folders are empty temporary folders, `--from` folders are the offline
copies in ../shared, and downloads are forbidden (`MEMWEAVE_OFFLINE=1`) or fail as they do
without DNS.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import IO

import pytest
import tiktoken.registry

from memweave import _models
from memweave._onnx_int8 import quantized_model
from memweave.context import ChromaDefaultEmbeddings
from memweave.reducers import TokenCounter
from tests.cli._helpers import Result, run_subprocess
from tests.conftest import SHARED

MODELS = SHARED / "models"
TIKTOKEN = SHARED / "tiktoken"


@pytest.fixture(autouse=True)
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """No model variable set but MEMWEAVE_OFFLINE=1: nothing is downloaded."""
    for name in (
        "MEMWEAVE_EMBEDDING_MODEL_DIR",
        "MEMWEAVE_CACHE_DIR",
        "TIKTOKEN_CACHE_DIR",
        "DATA_GYM_CACHE_DIR",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MEMWEAVE_OFFLINE", "1")


@pytest.fixture
def dirs(tmp_path: Path) -> list[str]:
    """`--model-dir` and `--tiktoken-cache` options naming two empty temporary folders."""
    return ["--model-dir", str(tmp_path / "model"), "--tiktoken-cache", str(tmp_path / "tiktoken")]


def _needs_shared() -> None:
    if not (MODELS.is_dir() and TIKTOKEN.is_dir()):
        pytest.skip(f"the offline model files are not in {SHARED} (see its README.md)")


def _models_of(result: Result) -> dict[str, dict[str, object]]:
    return {model["name"]: model for model in json.loads(result.out)["models"]}


def test_models_list_reports_missing_models(cli: Callable[..., Result], dirs: list[str]) -> None:
    """`memweave models` says each model is missing from empty folders, and exits 1."""
    result = cli("models", *dirs, "--json")
    assert result.code == 1
    found = _models_of(result)
    assert set(found) == {
        "all-MiniLM-L6-v2",
        "all-MiniLM-L6-v2 int8",
        "tiktoken o200k_base",
        "tiktoken cl100k_base",
    }
    assert all(model["present"] is False for model in found.values())
    assert found["all-MiniLM-L6-v2 int8"]["missing"] == [
        "(named by model.onnx of all-MiniLM-L6-v2, itself missing)"
    ]
    assert found["all-MiniLM-L6-v2"]["source"] == "argument"
    assert found["tiktoken o200k_base"]["missing"] == ["o200k_base.tiktoken"]


def test_models_list_names_the_variable_that_chose_a_folder(
    cli: Callable[..., Result], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A folder chosen by an environment variable is reported with that variable."""
    monkeypatch.setenv("MEMWEAVE_EMBEDDING_MODEL_DIR", str(tmp_path / "m"))
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path / "t"))
    found = _models_of(cli("models", "list", "--json"))
    assert found["all-MiniLM-L6-v2"]["path"] == str(tmp_path / "m")
    assert found["all-MiniLM-L6-v2"]["variable"] == "MEMWEAVE_EMBEDDING_MODEL_DIR"
    assert found["tiktoken cl100k_base"]["variable"] == "TIKTOKEN_CACHE_DIR"


def test_models_list_text_says_how_to_fix(cli: Callable[..., Result], dirs: list[str]) -> None:
    """The text listing names the folders, and the fetch command when something is missing."""
    result = cli("models", *dirs)
    assert result.code == 1
    assert "MISSING" in result.out
    assert dirs[1] in result.out
    assert "memweave models fetch --from DIR" in result.out


def test_models_fetch_from_local_folder_then_embedding_loads(
    cli: Callable[..., Result], tmp_path: Path, dirs: list[str]
) -> None:
    """`fetch --from` a copy of Chroma's cache fills the folder the embedder then loads from."""
    _needs_shared()
    result = cli("models", "fetch", "--only", "embedding", "--from", str(MODELS), *dirs)
    assert result.code == 0, result.err
    assert "copied" in result.out
    [vector] = asyncio.run(
        ChromaDefaultEmbeddings(model_dir=tmp_path / "model").embed(["What's my name?"])
    )
    assert len(vector) == 384
    assert cli("models", "--only", "embedding", *dirs).code == 0


def test_models_fetch_tiktoken_places_checked_files_the_counter_loads(
    cli: Callable[..., Result],
    tmp_path: Path,
    dirs: list[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`fetch --from` copies tiktoken's files under their cache names; TokenCounter loads them."""
    _needs_shared()
    result = cli("models", "fetch", "--only", "tiktoken", "--from", str(TIKTOKEN), *dirs, "--json")
    assert result.code == 0, result.err
    found = _models_of(result)
    assert found["tiktoken o200k_base"]["checksum"] == "ok"
    monkeypatch.setattr(tiktoken.registry, "ENCODINGS", {})
    assert TokenCounter(cache_dir=tmp_path / "tiktoken").count_text("hello world") == 2


def test_models_fetch_is_a_no_op_when_present(cli: Callable[..., Result], dirs: list[str]) -> None:
    """Fetching what is there already copies nothing and needs no source."""
    _needs_shared()
    assert cli("models", "fetch", "--from", str(MODELS), "--from", str(TIKTOKEN), *dirs).code == 0
    result = cli("models", "fetch", *dirs, "--json")
    assert result.code == 0, result.err
    actions = {item["model"]: item["action"] for item in json.loads(result.out)["fetched"]}
    assert set(actions.values()) == {"present"}


def test_models_fetch_skips_a_tiktoken_file_with_the_wrong_checksum(
    cli: Callable[..., Result], tmp_path: Path, dirs: list[str]
) -> None:
    """A source file whose SHA-256 is not tiktoken's is not copied; the command fails."""
    source = tmp_path / "source"
    source.mkdir()
    (source / "o200k_base.tiktoken").write_text("tampered")
    options = ["--only", "tiktoken", "--encoding", "o200k_base", "--from", str(source)]
    result = cli("models", "fetch", *options, *dirs)
    assert result.code == 1
    assert "no tiktoken o200k_base file" in result.err
    assert not (tmp_path / "tiktoken").exists() or not any((tmp_path / "tiktoken").iterdir())


def test_models_fetch_offline_without_source_names_from(
    cli: Callable[..., Result], dirs: list[str]
) -> None:
    """With MEMWEAVE_OFFLINE=1 and no --from, fetch fails saying to copy with --from."""
    result = cli("models", "fetch", *dirs)
    assert result.code == 1
    assert "MEMWEAVE_OFFLINE" in result.err
    assert "--from DIR" in result.err


def test_models_fetch_failed_download_names_from(
    cli: Callable[..., Result], dirs: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A download that cannot reach its host fails with one line saying how to copy instead."""
    monkeypatch.delenv("MEMWEAVE_OFFLINE")

    def unreachable(url: str) -> IO[bytes]:
        raise OSError(-2, "Name or service not known")

    monkeypatch.setattr(_models, "_open_url", unreachable)
    result = cli("models", "fetch", "--only", "embedding", *dirs)
    assert result.code == 1
    assert "Name or service not known" in result.err
    assert "memweave models fetch --from DIR" in result.err


def test_models_list_rejects_fetch_options(cli: Callable[..., Result]) -> None:
    """--from belongs to `fetch`; with `list` it is a one-line error."""
    result = cli("models", "list", "--from", "somewhere")
    assert result.code == 1
    assert "fetch" in result.err


def test_models_command_is_registered() -> None:
    """`python -m memweave.cli models --help` describes the command."""
    done = run_subprocess("models", "--help")
    assert done.returncode == 0
    assert b"MEMWEAVE_EMBEDDING_MODEL_DIR" in done.stdout


def test_models_list_shows_the_int8_model_as_optional(
    cli: Callable[..., Result], tmp_path: Path, dirs: list[str]
) -> None:
    """The int8 copy is listed with its cache folder and the fp32 file it is built from; not
    built yet, it does not fail the listing."""
    _needs_shared()
    assert cli("models", "fetch", "--only", "embedding", "--from", str(MODELS), *dirs).code == 0
    options = ["--only", "embedding", "--int8-dir", str(tmp_path / "int8"), *dirs]
    result = cli("models", *options, "--json")
    assert result.code == 0, result.err
    int8 = _models_of(result)["all-MiniLM-L6-v2 int8"]
    assert int8["kind"] == "int8"
    assert int8["present"] is False
    assert int8["required"] is False
    assert int8["path"] == str(tmp_path / "int8")
    assert int8["built_from"] == str(tmp_path / "model" / "model.onnx")
    text = cli("models", *options)
    assert "not built" in text.out
    assert "memweave models fetch --quantized" in text.out
    assert cli("models", *options, "--quantized").code == 1


def test_models_list_names_the_file_quantized_model_caches(
    cli: Callable[..., Result], tmp_path: Path, dirs: list[str]
) -> None:
    """The file `memweave models` looks for is the one `quantized_model` caches: with it in
    place, the listing says present and `quantized_model` builds nothing."""
    _needs_shared()
    assert cli("models", "fetch", "--only", "embedding", "--from", str(MODELS), *dirs).code == 0
    options = ["--only", "embedding", "--int8-dir", str(tmp_path / "int8"), *dirs]
    [missing] = _models_of(cli("models", *options, "--json"))["all-MiniLM-L6-v2 int8"]["missing"]
    cached = tmp_path / "int8" / str(missing)
    cached.parent.mkdir()
    cached.write_bytes(b"stand-in")
    assert quantized_model(tmp_path / "model" / "model.onnx", tmp_path / "int8") == cached
    int8 = _models_of(cli("models", *options, "--json"))["all-MiniLM-L6-v2 int8"]
    assert int8["present"] is True


def test_models_list_int8_folder_follows_memweave_cache_dir(
    cli: Callable[..., Result], tmp_path: Path, dirs: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without --int8-dir, the int8 copy is looked for in $MEMWEAVE_CACHE_DIR/onnx."""
    monkeypatch.setenv("MEMWEAVE_CACHE_DIR", str(tmp_path / "cache"))
    int8 = _models_of(cli("models", "--only", "embedding", *dirs, "--json"))[
        "all-MiniLM-L6-v2 int8"
    ]
    assert int8["path"] == str(tmp_path / "cache" / "onnx")
    assert int8["variable"] == "MEMWEAVE_CACHE_DIR"


def test_models_fetch_quantized_builds_the_int8_model_the_embedder_loads(
    cli: Callable[..., Result], tmp_path: Path, dirs: list[str]
) -> None:
    """`fetch --quantized` builds the int8 copy; `quantized=True` then loads it as built."""
    _needs_shared()
    options = ["--only", "embedding", "--int8-dir", str(tmp_path / "int8"), *dirs]
    result = cli("models", "fetch", "--from", str(MODELS), "--quantized", *options, "--json")
    assert result.code == 0, result.err
    actions = {item["model"]: item for item in json.loads(result.out)["fetched"]}
    built = actions["all-MiniLM-L6-v2 int8"]
    assert built["action"] == "built"
    assert _models_of(result)["all-MiniLM-L6-v2 int8"]["present"] is True
    before = Path(built["path"]).stat().st_mtime_ns
    embedder = ChromaDefaultEmbeddings(
        model_dir=tmp_path / "model", quantized=True, cache_dir=tmp_path / "int8"
    )
    [vector] = asyncio.run(embedder.embed(["What's my name?"]))
    assert len(vector) == 384
    assert Path(built["path"]).stat().st_mtime_ns == before
    again = cli("models", "fetch", "--quantized", *options, "--json")
    assert {item["action"] for item in json.loads(again.out)["fetched"]} == {"present"}


def test_models_quantized_rejects_only_tiktoken(cli: Callable[..., Result]) -> None:
    """--quantized is about the embedding model; with --only tiktoken it is a one-line error."""
    result = cli("models", "--quantized", "--only", "tiktoken")
    assert result.code == 1
    assert "--quantized" in result.err
