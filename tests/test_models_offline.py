"""Models offline: where the embedding model and tiktoken's encodings are looked for, in which
order, and what a failed load says.

"Offline" is real here: folders are empty temporary folders, and downloads are either
forbidden with `MEMWEAVE_OFFLINE=1` or fail the way a machine without DNS fails them.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
from pathlib import Path
from typing import IO

import pytest
import tiktoken.registry

from memweave import _models
from memweave.context import ChromaDefaultEmbeddings
from memweave.context._render import default_token_counter
from memweave.errors import ConfigurationError, ModelUnavailable
from memweave.reducers import TokenCounter
from tests.conftest import SHARED

MODEL = SHARED / "models" / "chroma" / "onnx_models" / "all-MiniLM-L6-v2" / "onnx"
TIKTOKEN = SHARED / "tiktoken"


@pytest.fixture(autouse=True)
def no_model_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test starts with none of the model variables set."""
    for name in ("MEMWEAVE_EMBEDDING_MODEL_DIR", "MEMWEAVE_OFFLINE", "DATA_GYM_CACHE_DIR"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Model downloads fail as they do without DNS; yields the URLs that were tried."""
    tried: list[str] = []

    def unreachable(url: str) -> IO[bytes]:
        tried.append(url)
        raise OSError(-2, "Name or service not known")

    monkeypatch.setattr(_models, "_open_url", unreachable)
    return tried


@pytest.fixture
def fresh_tiktoken(monkeypatch: pytest.MonkeyPatch) -> None:
    """tiktoken forgets the encodings this process loaded already (restored afterwards)."""
    monkeypatch.setattr(tiktoken.registry, "ENCODINGS", {})


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty home folder, so Chroma's default cache folder is empty."""
    folder = tmp_path / "home"
    folder.mkdir()
    monkeypatch.setenv("HOME", str(folder))
    return folder


def _needs_shared(path: Path) -> None:
    if not path.exists():
        pytest.skip(f"the offline model files are not at {path} (see ../shared/README.md)")


def _embed(embedder: ChromaDefaultEmbeddings) -> list[list[float]]:
    return asyncio.run(embedder.embed(["My name is Ada."]))


def test_embed_missing_model_names_command_and_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A missing embedding model raises ModelUnavailable naming the command and the variable."""
    monkeypatch.setenv("MEMWEAVE_EMBEDDING_MODEL_DIR", str(tmp_path / "empty"))
    with pytest.raises(ModelUnavailable) as caught:
        _embed(ChromaDefaultEmbeddings())
    message = str(caught.value)
    assert "memweave models fetch" in message
    assert "MEMWEAVE_EMBEDDING_MODEL_DIR" in message
    assert caught.value.location == str(tmp_path / "empty")
    assert isinstance(caught.value, ConfigurationError)


def test_embed_failed_download_names_command_and_variable(
    home: Path, no_network: list[str]
) -> None:
    """Offline, the failed download of the default model names the command and the variable."""
    with pytest.raises(ModelUnavailable) as caught:
        _embed(ChromaDefaultEmbeddings())
    assert no_network == [_models.MINILM_URL]
    assert "Name or service not known" in str(caught.value)
    assert "memweave models" in str(caught.value)
    assert "MEMWEAVE_EMBEDDING_MODEL_DIR" in str(caught.value)


def test_embed_offline_variable_forbids_download(
    home: Path, no_network: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """With MEMWEAVE_OFFLINE=1 a missing default model fails without trying the network."""
    monkeypatch.setenv("MEMWEAVE_OFFLINE", "1")
    with pytest.raises(ModelUnavailable, match="memweave models"):
        _embed(ChromaDefaultEmbeddings())
    assert no_network == []


def test_embed_explicit_folder_is_never_downloaded_into(
    tmp_path: Path, no_network: list[str]
) -> None:
    """A folder passed as model_dir must hold the files; memweave does not download into it."""
    with pytest.raises(ModelUnavailable):
        _embed(ChromaDefaultEmbeddings(model_dir=tmp_path))
    assert no_network == []


def test_embedding_model_dir_prefers_argument_then_environment_then_default(
    tmp_path: Path, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The model folder is the argument, else $MEMWEAVE_EMBEDDING_MODEL_DIR, else Chroma's cache."""
    default = _models.embedding_model_dir()
    assert default.source == "default"
    assert default.path == home / ".cache/chroma/onnx_models/all-MiniLM-L6-v2/onnx"
    monkeypatch.setenv("MEMWEAVE_EMBEDDING_MODEL_DIR", str(tmp_path / "env"))
    from_env = _models.embedding_model_dir()
    assert (from_env.path, from_env.source) == (tmp_path / "env", "environment")
    assert from_env.variable == "MEMWEAVE_EMBEDDING_MODEL_DIR"
    given = _models.embedding_model_dir(tmp_path / "arg")
    assert (given.path, given.source) == (tmp_path / "arg", "argument")


def test_embed_loads_from_argument_over_empty_environment_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_network: list[str]
) -> None:
    """model_dir= wins over the variable: it loads though the variable's folder is empty."""
    _needs_shared(MODEL)
    monkeypatch.setenv("MEMWEAVE_EMBEDDING_MODEL_DIR", str(tmp_path / "empty"))
    [vector] = _embed(ChromaDefaultEmbeddings(model_dir=MODEL))
    assert len(vector) == 384
    with pytest.raises(ModelUnavailable):
        _embed(ChromaDefaultEmbeddings())


def test_embed_loads_from_environment_folder_over_empty_default(
    home: Path, monkeypatch: pytest.MonkeyPatch, no_network: list[str]
) -> None:
    """$MEMWEAVE_EMBEDDING_MODEL_DIR wins over Chroma's (empty) cache folder."""
    _needs_shared(MODEL)
    monkeypatch.setenv("MEMWEAVE_EMBEDDING_MODEL_DIR", str(MODEL))
    [vector] = _embed(ChromaDefaultEmbeddings())
    assert len(vector) == 384
    assert no_network == []


def test_embed_unreadable_model_file_names_command(tmp_path: Path) -> None:
    """Model files that are present but unreadable raise ModelUnavailable naming the command."""
    _needs_shared(MODEL)
    for name in _models.MINILM_FILES:
        (tmp_path / name).symlink_to(MODEL / name)
    (tmp_path / "model.onnx").unlink()
    (tmp_path / "model.onnx").write_bytes(b"not an onnx model")
    with pytest.raises(ModelUnavailable, match="memweave models"):
        _embed(ChromaDefaultEmbeddings(model_dir=tmp_path))


def test_extract_embedding_model_rejects_an_archive_with_another_checksum(tmp_path: Path) -> None:
    """An archive whose SHA-256 is not Chroma's is refused before anything is written."""
    archive = tmp_path / "onnx.tar.gz"
    archive.write_bytes(b"\x1f\x8b not the model")
    with pytest.raises(ValueError, match="SHA-256"):
        _models.extract_embedding_model(archive, tmp_path / "model")
    assert not (tmp_path / "model" / "model.onnx").exists()


def test_token_counter_offline_names_command_and_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fresh_tiktoken: None
) -> None:
    """A missing tiktoken encoding offline raises ModelUnavailable naming command and variable."""
    monkeypatch.setenv("MEMWEAVE_OFFLINE", "1")
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path))
    with pytest.raises(ModelUnavailable) as caught:
        TokenCounter()
    message = str(caught.value)
    assert "memweave models fetch" in message
    assert "TIKTOKEN_CACHE_DIR" in message
    assert "o200k_base.tiktoken" in message


def test_token_counter_cache_dir_argument_wins_over_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fresh_tiktoken: None
) -> None:
    """cache_dir= wins over $TIKTOKEN_CACHE_DIR, and the variable is left as it was."""
    _needs_shared(TIKTOKEN)
    monkeypatch.setenv("MEMWEAVE_OFFLINE", "1")
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path))
    counter = TokenCounter("gpt-4", cache_dir=TIKTOKEN)
    assert counter.count_text("hello world") == 2
    assert counter.encoding_name == "cl100k_base"
    assert os.environ["TIKTOKEN_CACHE_DIR"] == str(tmp_path)


def test_token_counter_environment_wins_over_default_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fresh_tiktoken: None
) -> None:
    """$TIKTOKEN_CACHE_DIR wins over tiktoken's default cache folder."""
    _needs_shared(TIKTOKEN)
    monkeypatch.setenv("MEMWEAVE_OFFLINE", "1")
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(TIKTOKEN))
    assert TokenCounter().count_text("hello world") == 2


def test_token_counter_default_cache_is_tiktokens_own(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fresh_tiktoken: None
) -> None:
    """Without argument or variable the encoding is looked for in tiktoken's default folder."""
    monkeypatch.setenv("MEMWEAVE_OFFLINE", "1")
    monkeypatch.delenv("TIKTOKEN_CACHE_DIR", raising=False)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    with pytest.raises(ModelUnavailable) as caught:
        TokenCounter()
    assert caught.value.location == str(tmp_path / "data-gym-cache")


def test_memory_budget_without_encoding_falls_back_to_an_estimate(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fresh_tiktoken: None
) -> None:
    """VectorMemory's token budget uses ~4 characters per token when the encoding is unavailable."""
    monkeypatch.setenv("MEMWEAVE_OFFLINE", "1")
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path))
    counter = default_token_counter()
    assert not isinstance(counter, TokenCounter)
    assert counter.count_text("x" * 40) == 10
