"""Putting model files in place for `memweave models fetch`: copied from local folders, or
downloaded with a progress bar and checked against their SHA-256.

Each function returns what `fetch` reports of one model: `{"model", "action", "path"}` with
`action` one of `present`, `copied` (and `from`) or `downloaded`.
"""

from __future__ import annotations

import argparse
import os
import shutil
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from memweave._models import (
    EMBEDDING_MODEL,
    MINILM_FILES,
    OFFLINE_ENV,
    TIKTOKEN_FILES,
    TiktokenFile,
    download_embedding_model,
    download_tiktoken,
    downloads_allowed,
    embedding_model_dir,
    extract_embedding_model,
    missing_model_files,
    sha256_of,
    tiktoken_cache_dir,
    tiktoken_path,
)
from memweave.cli._common import CommandError, err_console

__all__ = ["fetch_embedding", "fetch_tiktoken", "find_embedding_model"]

# Where a folder given to --from may hold the embedding model: the model folder itself, or a
# copy of Chroma's cache (or of its parents, as in a `models/` folder shipped beside a project).
_MODEL_LAYOUTS = (
    ".",
    "onnx",
    f"{EMBEDDING_MODEL}/onnx",
    f"onnx_models/{EMBEDDING_MODEL}/onnx",
    f"chroma/onnx_models/{EMBEDDING_MODEL}/onnx",
)
_ARCHIVE = "onnx.tar.gz"


def find_embedding_model(source: Path) -> tuple[Literal["folder", "archive"], Path] | None:
    """Where under `source` the embedding model is: a folder of its six files, or Chroma's
    archive (`onnx.tar.gz`); None when it holds neither."""
    for layout in _MODEL_LAYOUTS:
        folder = (source / layout).resolve()
        if not missing_model_files(folder):
            return "folder", folder
    for layout in _MODEL_LAYOUTS:
        archive = (source / layout).parent / _ARCHIVE if layout != "." else source / _ARCHIVE
        if archive.is_file():
            return "archive", archive
    return None


def fetch_embedding(args: argparse.Namespace) -> dict[str, str]:
    """Put the embedding model in the folder `--model-dir` (or the library) chooses, unless it
    is there (or `--force`): from the first `--from` folder holding it, else downloaded.

    Raises:
        CommandError: No `--from` folder holds it, or downloads are off or failed.
    """
    location = embedding_model_dir(args.model_dir)
    target = location.path
    if not missing_model_files(target) and not args.force:
        return {"model": EMBEDDING_MODEL, "action": "present", "path": str(target)}
    for source in args.sources:
        found = find_embedding_model(source)
        if found is None:
            continue
        kind, path = found
        if kind == "archive":
            try:
                extract_embedding_model(path, target)
            except ValueError as exc:
                raise CommandError(str(exc)) from exc
        elif path != target.resolve():
            _copy_files(path, target, MINILM_FILES)
        return {
            "model": EMBEDDING_MODEL,
            "action": "copied",
            "from": str(path),
            "path": str(target),
        }
    if args.sources:
        raise CommandError(
            f"no {EMBEDDING_MODEL} model in {[str(s) for s in args.sources]}: looked for the six "
            f"files {list(MINILM_FILES)} in the folder, in onnx/, in a copy of Chroma's cache "
            f"(chroma/onnx_models/{EMBEDDING_MODEL}/onnx), and for Chroma's {_ARCHIVE}"
        )
    _check_downloads()
    with _download_bar(f"{EMBEDDING_MODEL} (Chroma's archive)") as progress:
        try:
            download_embedding_model(target, progress=progress)
        except (OSError, ValueError) as exc:
            raise CommandError(_download_failed(EMBEDDING_MODEL, exc)) from exc
    return {"model": EMBEDDING_MODEL, "action": "downloaded", "path": str(target)}


def fetch_tiktoken(args: argparse.Namespace, name: str) -> dict[str, str]:
    """Put the files of tiktoken's encoding `name` in the cache folder, as `fetch_embedding`
    does the model; only files with tiktoken's SHA-256 are copied.

    Raises:
        CommandError: No `--from` folder holds them, or downloads are off or failed.
    """
    target = tiktoken_cache_dir(args.tiktoken_cache).path
    files = TIKTOKEN_FILES[name]
    model = f"tiktoken {name}"
    todo = [f for f in files if args.force or not _good(tiktoken_path(target, f), f)]
    if not todo:
        return {"model": model, "action": "present", "path": str(target)}
    copied_from: list[str] = []
    for file in list(todo):
        source = next(
            (path for folder in args.sources for path in _candidates(folder, file)),
            None,
        )
        if source is not None:
            _copy_file(source, tiktoken_path(target, file))
            copied_from.append(str(source))
            todo.remove(file)
    if not todo:
        return {
            "model": model,
            "action": "copied",
            "from": ", ".join(copied_from),
            "path": str(target),
        }
    if args.sources:
        raise CommandError(
            f"no {model} file in {[str(s) for s in args.sources]}: looked for "
            f"{[f.cache_name for f in todo]} (tiktoken's cache names) and "
            f"{[f.plain_name for f in todo]}, in each folder and its tiktoken/ folder, with "
            "tiktoken's SHA-256"
        )
    _check_downloads()
    with _download_bar(model) as progress:
        try:
            download_tiktoken(name, target, progress=progress)
        except (OSError, ValueError) as exc:
            raise CommandError(_download_failed(model, exc)) from exc
    return {"model": model, "action": "downloaded", "path": str(target)}


def _good(path: Path, file: TiktokenFile) -> bool:
    return path.is_file() and sha256_of(path) == file.sha256


def _candidates(folder: Path, file: TiktokenFile) -> Iterator[Path]:
    """The files under `folder` that are `file` (right name and SHA-256)."""
    for sub in (folder, folder / "tiktoken"):
        for name in (file.cache_name, file.plain_name):
            if _good(sub / name, file):
                yield sub / name


def _copy_file(source: Path, target: Path) -> None:
    """Copy `source` to `target` through a temporary name, so a reader never sees half."""
    target.parent.mkdir(parents=True, exist_ok=True)
    if source.resolve() == target.resolve():
        return
    part = target.with_name(f".{target.name}.part")
    shutil.copyfile(source, part)
    os.replace(part, target)


def _copy_files(source: Path, target: Path, names: Sequence[str]) -> None:
    for name in names:
        _copy_file(source / name, target / name)


def _check_downloads() -> None:
    if not downloads_allowed():
        raise CommandError(
            f"${OFFLINE_ENV} is set, so nothing is downloaded: copy the files from a local "
            "folder with `memweave models fetch --from DIR`"
        )


def _download_failed(model: str, exc: Exception) -> str:
    return (
        f"downloading {model} failed: {exc}. Offline, copy the files from a folder made on a "
        "machine with internet access: `memweave models fetch --from DIR`"
    )


@contextmanager
def _download_bar(label: str) -> Iterator[Any]:
    """A download progress bar on standard error (silent unless it is a terminal); yields the
    callback a download reports to."""
    console = err_console()
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=console,
        disable=not console.is_terminal,
    ) as bar:
        task = bar.add_task(f"downloading {label}", total=None)

        def report(done: int, total: int | None) -> None:
            bar.update(task, completed=done, total=total)

        yield report
