"""`memweave models`: where memweave looks for its model files, and putting them there.

`memweave models` (or `memweave models list`) prints, for the embedding model and each tiktoken
encoding, the folder it is looked for in, what chose that folder (an option, a variable, or
the default), whether the files are there, and whether they match their published checksum.
`memweave models fetch` puts missing files into those folders: copied from local folders
(`--from DIR`, e.g. a copy made on a machine with internet access), or else downloaded from the
URLs Chroma and tiktoken use, with a progress bar, every download checked against its SHA-256.

Folders are chosen exactly as the library chooses them (see `memweave._models`), so what
`fetch` placed is what `ChromaDefaultEmbeddings`, `VectorMemory` and `TokenCounter` load.
Exit status: 0 when every model is present (after `fetch`: was fetched), 1 otherwise.

Example:
    ```console
    $ memweave models
    $ memweave models fetch --from /mnt/usb/models --from /mnt/usb/tiktoken
    $ MEMWEAVE_EMBEDDING_MODEL_DIR=./models/minilm memweave models fetch --only embedding
    ```
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from memweave._models import (
    DEFAULT_ENCODINGS,
    EMBEDDING_MODEL,
    EMBEDDING_MODEL_DIR_ENV,
    MINILM_FILES,
    OFFLINE_ENV,
    TIKTOKEN_CACHE_ENV,
    TIKTOKEN_FILES,
    ModelLocation,
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
from memweave.cli._common import CommandError, err_console, out_console

__all__ = ["ModelStatus", "add_parser", "find_embedding_model", "model_statuses", "run_models"]

MISSING = 1
"""Exit status when a model is missing or fails its checksum."""

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


class ModelStatus(BaseModel):
    """What `memweave models` found for one model."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    """`all-MiniLM-L6-v2`, or `tiktoken <encoding>`."""
    kind: Literal["embedding", "tiktoken"]
    """Which loader reads it."""
    path: str
    """The folder it is looked for in."""
    source: Literal["argument", "environment", "default"]
    """What chose the folder: an option, an environment variable, or the default."""
    variable: str | None
    """The environment variable that chose the folder, if one did."""
    present: bool
    """Whether every file is there."""
    missing: tuple[str, ...]
    """The files that are not there."""
    checksum: Literal["ok", "mismatch", "unpublished", "missing"]
    """`ok` or `mismatch` against the published SHA-256; `unpublished` when none is published
    for the files (the embedding model: Chroma publishes its archive's only); `missing` when
    files are missing."""


def add_parser(commands: argparse._SubParsersAction[Any]) -> None:
    """Register `models` on the top-level parser."""
    parser = commands.add_parser(
        "models",
        help="show where model files are looked for, and copy or download them into place",
        description="Show where memweave looks for the model files it loads (the embedding "
        "model of ChromaDefaultEmbeddings and VectorMemory, tiktoken's encodings) and whether "
        "they are there (`list`, the default), or put them there (`fetch`): copied from "
        "--from folders, or downloaded (checked against their SHA-256). Folders: an option "
        f"here, else ${EMBEDDING_MODEL_DIR_ENV} / ${TIKTOKEN_CACHE_ENV}, else the default "
        f"caches. ${OFFLINE_ENV}=1 forbids downloads. Exit status 1 when a model is missing.",
    )
    parser.add_argument(
        "action",
        nargs="?",
        choices=("list", "fetch"),
        default="list",
        help="list (default) or fetch",
    )
    parser.add_argument(
        "--from",
        dest="sources",
        action="append",
        type=Path,
        default=[],
        metavar="DIR",
        help="fetch: copy from this folder instead of downloading (repeatable); it may hold "
        "the model files, Chroma's onnx.tar.gz, a copy of Chroma's cache, or tiktoken cache "
        "files",
    )
    parser.add_argument(
        "--model-dir",
        type=Path,
        metavar="DIR",
        help=f"the embedding model's folder (default: ${EMBEDDING_MODEL_DIR_ENV}, else "
        "Chroma's cache)",
    )
    parser.add_argument(
        "--tiktoken-cache",
        type=Path,
        metavar="DIR",
        help=f"tiktoken's cache folder (default: ${TIKTOKEN_CACHE_ENV}, else tiktoken's)",
    )
    parser.add_argument(
        "--encoding",
        dest="encodings",
        action="append",
        choices=sorted(TIKTOKEN_FILES),
        metavar="NAME",
        help=f"a tiktoken encoding to manage (repeatable; default: {', '.join(DEFAULT_ENCODINGS)})",
    )
    parser.add_argument(
        "--only",
        choices=("embedding", "tiktoken"),
        help="only the embedding model, or only tiktoken's encodings",
    )
    parser.add_argument(
        "--force", action="store_true", help="fetch: replace files that are present already"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object instead")
    parser.set_defaults(func=run_models)


async def run_models(args: argparse.Namespace) -> int:
    """Run `memweave models [list|fetch]`; return the exit status."""
    if args.action == "list" and (args.sources or args.force):
        raise CommandError("--from and --force go with `memweave models fetch`")
    encodings = tuple(dict.fromkeys(args.encodings or DEFAULT_ENCODINGS))
    fetched: list[dict[str, str]] = []
    if args.action == "fetch":
        if args.only != "tiktoken":
            fetched.append(_fetch_embedding(args))
        if args.only != "embedding":
            fetched.extend(_fetch_tiktoken(args, name) for name in encodings)
    statuses = model_statuses(
        model_dir=args.model_dir,
        tiktoken_cache=args.tiktoken_cache,
        encodings=() if args.only == "embedding" else encodings,
        embedding=args.only != "tiktoken",
    )
    ok = all(status.present and status.checksum != "mismatch" for status in statuses)
    if args.json:
        document: dict[str, Any] = {
            "models": [status.model_dump(mode="json") for status in statuses],
            "downloads_allowed": downloads_allowed(),
            "variables": {
                name: os.environ.get(name)
                for name in (EMBEDDING_MODEL_DIR_ENV, TIKTOKEN_CACHE_ENV, OFFLINE_ENV)
            },
        }
        if args.action == "fetch":
            document["fetched"] = fetched
        sys.stdout.write(json.dumps(document, indent=2, ensure_ascii=False) + "\n")
    else:
        _print(statuses, fetched)
    return 0 if ok else MISSING


def model_statuses(
    *,
    model_dir: Path | None = None,
    tiktoken_cache: Path | None = None,
    encodings: Sequence[str] = DEFAULT_ENCODINGS,
    embedding: bool = True,
) -> list[ModelStatus]:
    """The status of the embedding model (with `embedding`) and of each of `encodings`, in the
    folders the library would load them from, given these options."""
    out: list[ModelStatus] = []
    if embedding:
        location = embedding_model_dir(model_dir)
        missing = tuple(missing_model_files(location.path))
        out.append(
            _status(
                EMBEDDING_MODEL,
                "embedding",
                location,
                missing,
                "missing" if missing else "unpublished",
            )
        )
    cache = tiktoken_cache_dir(tiktoken_cache)
    for name in encodings:
        files = TIKTOKEN_FILES[name]
        absent = tuple(f.plain_name for f in files if not tiktoken_path(cache.path, f).is_file())
        checksum: Literal["ok", "mismatch", "missing"] = "missing"
        if not absent:
            good = all(sha256_of(tiktoken_path(cache.path, f)) == f.sha256 for f in files)
            checksum = "ok" if good else "mismatch"
        out.append(_status(f"tiktoken {name}", "tiktoken", cache, absent, checksum))
    return out


def _status(
    name: str,
    kind: Literal["embedding", "tiktoken"],
    location: ModelLocation,
    missing: tuple[str, ...],
    checksum: Literal["ok", "mismatch", "unpublished", "missing"],
) -> ModelStatus:
    return ModelStatus(
        name=name,
        kind=kind,
        path=str(location.path),
        source=location.source,
        variable=location.variable,
        present=not missing,
        missing=missing,
        checksum=checksum,
    )


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


def _fetch_embedding(args: argparse.Namespace) -> dict[str, str]:
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


def _fetch_tiktoken(args: argparse.Namespace, name: str) -> dict[str, str]:
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


_STYLES = {"ok": "green", "unpublished": "green", "mismatch": "bold red", "missing": "bold red"}


def _print(statuses: Sequence[ModelStatus], fetched: Sequence[dict[str, str]]) -> None:
    console = out_console()
    for item in fetched:
        origin = f" from {item['from']}" if "from" in item else ""
        console.print(f"{item['model']}: {item['action']}{origin} -> {item['path']}")
    for status in statuses:
        origin = f"${status.variable}" if status.variable else status.source
        if status.present:
            state = {
                "ok": "present, checksum ok",
                "mismatch": "present, CHECKSUM MISMATCH",
                "unpublished": "present (no checksum published for the files)",
            }.get(status.checksum, "present")
        else:
            state = f"MISSING {list(status.missing)}"
        console.print(f"{status.name}: {state}", style=_STYLES[status.checksum])
        console.print(f"  looked for in {status.path} ({origin})")
    if not all(s.present and s.checksum != "mismatch" for s in statuses):
        console.print(
            "fix: `memweave models fetch` (downloads), or `memweave models fetch --from DIR` "
            f"(copies); or point ${EMBEDDING_MODEL_DIR_ENV} / ${TIKTOKEN_CACHE_ENV} at folders "
            "holding the files"
        )
