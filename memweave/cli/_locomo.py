"""The LoCoMo data file for `memweave bench retrieval`: a given path, or one download, verified.

Without `--locomo`, the public `locomo10.json` (snap-research/locomo, CC BY-NC 4.0) is fetched
once from a pinned commit into the user cache and checked against its SHA-256 before use; a
cached copy is checked again on every run.
"""

from __future__ import annotations

import hashlib
import json
import os
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from memweave.cli._common import CommandError

__all__ = [
    "LOCOMO_SHA256",
    "LOCOMO_URL",
    "Dataset",
    "cache_dir",
    "describe_dataset",
    "resolve_locomo",
]

LOCOMO_COMMIT = "3eb6f2c585f5e1699204e3c3bdf7adc5c28cb376"
LOCOMO_URL = (
    f"https://raw.githubusercontent.com/snap-research/locomo/{LOCOMO_COMMIT}/data/locomo10.json"
)
"""Where the public file is downloaded from: a pinned commit, so the bytes never change."""
LOCOMO_SHA256 = "79fa87e90f04081343b8c8debecb80a9a6842b76a7aa537dc9fdf651ea698ff4"
"""SHA-256 of `locomo10.json` at `LOCOMO_COMMIT`."""
_FILE_NAME = "locomo10.json"
_TIMEOUT_S = 60.0
_HOW_TO_GIVE_FILE = (
    "pass a local copy with --locomo PATH (for make bench: make bench LOCOMO=PATH); "
    "the file is data/locomo10.json of https://github.com/snap-research/locomo"
)


@dataclass(frozen=True)
class Dataset:
    """A LoCoMo file ready to use, and how it was found."""

    path: Path
    """The file."""
    sha256: str
    """Its SHA-256, hex."""
    origin: str
    """`"given"` (`--locomo`), `"cache"` (downloaded before) or `"download"` (just now)."""


def cache_dir() -> Path:
    """memweave's folder in the user cache (`$XDG_CACHE_HOME/memweave`, or `~/.cache/memweave`)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "memweave"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _download(target: Path, say: Callable[[str], object]) -> None:
    partial = target.with_suffix(".part")
    try:
        with urllib.request.urlopen(LOCOMO_URL, timeout=_TIMEOUT_S) as response:
            # Said once the server answered: offline, the error below is the only line.
            say(f"downloading the public LoCoMo data set (CC BY-NC 4.0) once, into {target} ...")
            target.parent.mkdir(parents=True, exist_ok=True)
            partial.write_bytes(response.read())
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        partial.unlink(missing_ok=True)
        reason = getattr(exc, "reason", None) or exc
        raise CommandError(
            f"cannot download the LoCoMo data set ({reason}); {_HOW_TO_GIVE_FILE}"
        ) from None
    found = _sha256(partial)
    if found != LOCOMO_SHA256:
        partial.unlink(missing_ok=True)
        raise CommandError(
            f"the downloaded LoCoMo file has SHA-256 {found}, expected {LOCOMO_SHA256}; "
            f"nothing was kept. {_HOW_TO_GIVE_FILE}"
        )
    partial.replace(target)


def resolve_locomo(given: Path | None, say: Callable[[str], object]) -> Dataset:
    """Return the LoCoMo file to use, downloading it into the cache when none was given.

    Args:
        given: The `--locomo` path, or None to use (or fill) the cache.
        say: Called with one line of text when a cached copy is used, when a download has
            connected, and when it is done (never before a download that cannot connect).

    Raises:
        CommandError: The given file does not exist, or the download failed or did not match
            its checksum; the message tells how to pass the file.
    """
    if given is not None:
        if not given.is_file():
            raise CommandError(f"no LoCoMo file at {str(given)!r}")
        return Dataset(given, _sha256(given), "given")
    target = cache_dir() / _FILE_NAME
    if target.is_file() and _sha256(target) == LOCOMO_SHA256:
        say(f"using the LoCoMo data set cached at {target} (SHA-256 verified)")
        return Dataset(target, LOCOMO_SHA256, "cache")
    _download(target, say)
    say(f"downloaded {target.stat().st_size:,} bytes; SHA-256 {LOCOMO_SHA256} verified")
    return Dataset(target, LOCOMO_SHA256, "download")


def describe_dataset(dataset: Dataset) -> dict[str, Any]:
    """The manifest entry of a dataset: file, hash, size, conversation ids, question count.

    Raises:
        CommandError: The file is not JSON in the `locomo10.json` layout.
    """
    try:
        samples = json.loads(dataset.path.read_bytes())
        conversations = [
            str(sample.get("sample_id", f"conv-{index}")) for index, sample in enumerate(samples)
        ]
        questions = sum(len(sample.get("qa", ())) for sample in samples)
    except (json.JSONDecodeError, UnicodeDecodeError, TypeError, AttributeError) as exc:
        raise CommandError(
            f"{str(dataset.path)!r} is not a LoCoMo file (a JSON list of samples with "
            f"'sample_id', 'conversation' and 'qa'): {type(exc).__name__}: {exc}"
        ) from None
    return {
        "path": str(dataset.path),
        "origin": dataset.origin,
        "sha256": dataset.sha256,
        "bytes": dataset.path.stat().st_size,
        "conversations": conversations,
        "questions": questions,
        "source_url": LOCOMO_URL if dataset.origin != "given" else None,
    }
