"""`memweave models`: where memweave looks for its model files, and putting them there.

`memweave models` (or `memweave models list`) prints, for the embedding model and each tiktoken
encoding, the folder it is looked for in, what chose that folder (an option, a variable, or
the default), whether the files are there, and whether they match their published checksum.
It also shows the opt-in int8 copy of the embedding model that `quantized=True` runs: where it
is cached and whether it is built yet (it is built from the fp32 model on first use; its
absence is no error). `memweave models fetch` puts missing files into those folders: copied
from local folders (`--from DIR`, e.g. a copy made on a machine with internet access), or else
downloaded from the URLs Chroma and tiktoken use, with a progress bar, every download checked
against its SHA-256; `--quantized` also builds the int8 copy now.

Folders are chosen exactly as the library chooses them (see `memweave._models`), so what
`fetch` placed is what `ChromaDefaultEmbeddings`, `VectorMemory` and `TokenCounter` load.
Exit status: 0 when every model is present (after `fetch`: was fetched), 1 otherwise; the
int8 copy counts only when `--quantized` asks for it.

Example:
    ```console
    $ memweave models
    $ memweave models fetch --from /mnt/usb/models --from /mnt/usb/tiktoken
    $ MEMWEAVE_EMBEDDING_MODEL_DIR=./models/minilm memweave models fetch --only embedding
    $ memweave models fetch --quantized
    ```
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from memweave._models import (
    CACHE_DIR_ENV,
    DEFAULT_ENCODINGS,
    EMBEDDING_MODEL,
    EMBEDDING_MODEL_DIR_ENV,
    OFFLINE_ENV,
    TIKTOKEN_CACHE_ENV,
    TIKTOKEN_FILES,
    ModelLocation,
    downloads_allowed,
    embedding_model_dir,
    missing_model_files,
    sha256_of,
    tiktoken_cache_dir,
    tiktoken_path,
)
from memweave.cli._common import CommandError, out_console
from memweave.cli._fetch_models import fetch_embedding, fetch_tiktoken, find_embedding_model
from memweave.cli._int8 import INT8_NAME, build_int8, int8_status

__all__ = ["ModelStatus", "add_parser", "find_embedding_model", "model_statuses", "run_models"]

MISSING = 1
"""Exit status when a model is missing or fails its checksum."""


class ModelStatus(BaseModel):
    """What `memweave models` found for one model."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    """`all-MiniLM-L6-v2`, `all-MiniLM-L6-v2 int8` or `tiktoken <encoding>`."""
    kind: Literal["embedding", "int8", "tiktoken"]
    """Which loader reads it (`int8`: the embedder with `quantized=True`)."""
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
    required: bool = True
    """False for the opt-in int8 copy: its absence does not fail the command."""
    built_from: str | None = None
    """The fp32 model file the int8 copy is built from (`int8` only)."""


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
        "--int8-dir",
        type=Path,
        metavar="DIR",
        help="the folder of the int8 copy of the embedding model (quantized=True; default: "
        f"${CACHE_DIR_ENV}/onnx, else ~/.cache/memweave/onnx)",
    )
    parser.add_argument(
        "--quantized",
        action="store_true",
        help="fetch: also build the int8 copy of the embedding model that quantized=True runs "
        "(else built on its first use; needs memweave[quantize]); list: count it as required",
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
    if args.quantized and args.only == "tiktoken":
        raise CommandError("--quantized is about the embedding model; not with --only tiktoken")
    encodings = tuple(dict.fromkeys(args.encodings or DEFAULT_ENCODINGS))
    fetched: list[dict[str, str]] = []
    if args.action == "fetch":
        if args.only != "tiktoken":
            fetched.append(fetch_embedding(args))
            if args.quantized:
                fetched.append(build_int8(args.model_dir, args.int8_dir, force=args.force))
        if args.only != "embedding":
            fetched.extend(fetch_tiktoken(args, name) for name in encodings)
    statuses = model_statuses(
        model_dir=args.model_dir,
        tiktoken_cache=args.tiktoken_cache,
        encodings=() if args.only == "embedding" else encodings,
        embedding=args.only != "tiktoken",
        int8_dir=args.int8_dir,
        int8_required=args.quantized,
    )
    ok = all(
        status.present and status.checksum != "mismatch" for status in statuses if status.required
    )
    if args.json:
        document: dict[str, Any] = {
            "models": [status.model_dump(mode="json") for status in statuses],
            "downloads_allowed": downloads_allowed(),
            "variables": {
                name: os.environ.get(name)
                for name in (
                    EMBEDDING_MODEL_DIR_ENV,
                    CACHE_DIR_ENV,
                    TIKTOKEN_CACHE_ENV,
                    OFFLINE_ENV,
                )
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
    int8_dir: Path | None = None,
    int8_required: bool = False,
) -> list[ModelStatus]:
    """The status of the embedding model and its int8 copy (with `embedding`) and of each of
    `encodings`, in the folders the library would load them from, given these options. The
    int8 copy is required only with `int8_required`."""
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
        folder, fp32, absent = int8_status(model_dir, int8_dir)
        status = _status(INT8_NAME, "int8", folder, absent, "missing" if absent else "unpublished")
        out.append(status.model_copy(update={"required": int8_required, "built_from": str(fp32)}))
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
    kind: Literal["embedding", "int8", "tiktoken"],
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


_STYLES = {"ok": "green", "unpublished": "green", "mismatch": "bold red", "missing": "bold red"}


def _print(statuses: Sequence[ModelStatus], fetched: Sequence[dict[str, str]]) -> None:
    console = out_console()
    for item in fetched:
        origin = f" from {item['from']}" if "from" in item else ""
        console.print(f"{item['model']}: {item['action']}{origin} -> {item['path']}")
    for status in statuses:
        origin = f"${status.variable}" if status.variable else status.source
        if status.kind == "int8":
            _print_int8(status, origin)
            continue
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
    if not all(s.present and s.checksum != "mismatch" for s in statuses if s.required):
        console.print(
            "fix: `memweave models fetch` (downloads), or `memweave models fetch --from DIR` "
            f"(copies); or point ${EMBEDDING_MODEL_DIR_ENV} / ${TIKTOKEN_CACHE_ENV} at folders "
            "holding the files"
        )


def _print_int8(status: ModelStatus, origin: str) -> None:
    console = out_console()
    if status.present:
        console.print(f"{status.name}: present (built from {status.built_from})", style="green")
    else:
        style = "bold red" if status.required else "yellow"
        console.print(
            f"{status.name}: not built (opt-in, for quantized=True: built from "
            f"{status.built_from} on first use, or now by `memweave models fetch --quantized`)",
            style=style,
        )
    console.print(f"  cached in {status.path} ({origin})")
