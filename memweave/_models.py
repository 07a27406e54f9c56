"""Where memweave finds the local model files it loads, and how they get there.

memweave loads two kinds of model files, and looks for each in one folder chosen so, the first
that applies winning:

- the embedding model (Chroma's ONNX export of all-MiniLM-L6-v2, six files), for
  `ChromaDefaultEmbeddings` and so for `VectorMemory` and the Chroma history backend:
  the `model_dir=` argument, else `$MEMWEAVE_EMBEDDING_MODEL_DIR`, else Chroma's own cache
  `~/.cache/chroma/onnx_models/all-MiniLM-L6-v2/onnx`;
- tiktoken encodings (one file each), for `TokenCounter` and so for `TokenBudgetReducer` and
  `VectorMemory`'s token budget: the `cache_dir=` argument, else `$TIKTOKEN_CACHE_DIR`, else
  `$DATA_GYM_CACHE_DIR`, else tiktoken's default `$TMPDIR/data-gym-cache`.

The opt-in int8 copy of the embedding model (`quantized=True`) is not downloaded: it is built
from the fp32 `model.onnx` on first use (`memweave._onnx_int8`) and cached in the `onnx` folder
of memweave's user cache (`int8_model_dir`), or the `cache_dir=` argument's folder.

Only the default folders are filled on first use, from the URLs Chroma and tiktoken download
from (each download checked against its published SHA-256), and never when
`$MEMWEAVE_OFFLINE` is set. A folder named by an argument or a variable must hold the files
already. `memweave models` shows each folder and what it holds; `memweave models fetch` copies
the files from a local folder, or downloads them, into place (and with `--quantized` builds
the int8 copy). Every "could not load" error
names both, and the variables.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tarfile
import tempfile
import threading
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict

from memweave.errors import ModelUnavailable

if TYPE_CHECKING:
    import tiktoken

__all__ = [
    "CACHE_DIR_ENV",
    "DEFAULT_ENCODINGS",
    "EMBEDDING_MODEL",
    "EMBEDDING_MODEL_DIR_ENV",
    "MINILM_ARCHIVE_SHA256",
    "MINILM_FILES",
    "MINILM_URL",
    "OFFLINE_ENV",
    "TIKTOKEN_CACHE_ENV",
    "TIKTOKEN_FILES",
    "ModelLocation",
    "Progress",
    "TiktokenFile",
    "chroma_model_dir",
    "download_embedding_model",
    "download_tiktoken",
    "downloads_allowed",
    "embedding_model_dir",
    "ensure_embedding_model",
    "extract_embedding_model",
    "int8_model_dir",
    "load_tiktoken",
    "memweave_cache_dir",
    "missing_model_files",
    "model_hint",
    "sha256_of",
    "tiktoken_cache_dir",
    "tiktoken_path",
]

EMBEDDING_MODEL = "all-MiniLM-L6-v2"
"""The embedding model memweave loads by default (`ChromaDefaultEmbeddings`)."""
EMBEDDING_MODEL_DIR_ENV = "MEMWEAVE_EMBEDDING_MODEL_DIR"
"""Names the folder holding the embedding model's files, instead of Chroma's cache."""
TIKTOKEN_CACHE_ENV = "TIKTOKEN_CACHE_DIR"
"""tiktoken's own variable naming the folder of its encoding files."""
OFFLINE_ENV = "MEMWEAVE_OFFLINE"
"""Set to `1` (or `true`, `yes`) and memweave never downloads a model; missing files fail."""
CACHE_DIR_ENV = "MEMWEAVE_CACHE_DIR"
"""Names the folder of files memweave derives itself (default `~/.cache/memweave`)."""

MINILM_FILES = (
    "config.json",
    "model.onnx",
    "special_tokens_map.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "vocab.txt",
)
"""The files Chroma's download leaves in the model folder; all six mean "present"."""
MINILM_URL = "https://chroma-onnx-models.s3.amazonaws.com/all-MiniLM-L6-v2/onnx.tar.gz"
"""Where Chroma downloads the model from (an archive holding `onnx/<file>` for each file)."""
MINILM_ARCHIVE_SHA256 = "913d7300ceae3b2dbc2c50d1de4baacab4be7b9380491c27fab7418616a16ec3"
"""The archive's SHA-256, as chromadb checks it (Chroma publishes none for the six files)."""

_CHUNK = 1 << 20
_TRUE = frozenset({"1", "true", "yes", "on"})
_TIMEOUT = 60.0

Progress = Callable[[int, int | None], None]
"""Called as a download goes, with the bytes received so far and the total (None: unknown)."""


class TiktokenFile(BaseModel):
    """One file a tiktoken encoding is built from."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    url: str
    """Where tiktoken downloads it from; its cache file is named by the URL's SHA-1."""
    sha256: str
    """The SHA-256 tiktoken checks it against."""

    @property
    def cache_name(self) -> str:
        """The file's name in a tiktoken cache folder."""
        # tiktoken names cache files so; a name, not a security check.
        return hashlib.sha1(self.url.encode(), usedforsecurity=False).hexdigest()

    @property
    def plain_name(self) -> str:
        """The file's name at its URL (`o200k_base.tiktoken`), also accepted as a source."""
        return self.url.rsplit("/", 1)[-1]


_BLOB = "https://openaipublic.blob.core.windows.net"


def _encoding(name: str, sha256: str) -> tuple[TiktokenFile, ...]:
    return (TiktokenFile(url=f"{_BLOB}/encodings/{name}.tiktoken", sha256=sha256),)


TIKTOKEN_FILES: dict[str, tuple[TiktokenFile, ...]] = {
    "o200k_base": _encoding(
        "o200k_base", "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d"
    ),
    "cl100k_base": _encoding(
        "cl100k_base", "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7"
    ),
    "p50k_base": _encoding(
        "p50k_base", "94b5ca7dff4d00767bc256fdd1b27e5b17361d7b8a5f968547f9f23eb70d2069"
    ),
    "r50k_base": _encoding(
        "r50k_base", "306cd27f03c1a714eca7108e03d66b7dc042abe8c258b44c199a7ed9838dd930"
    ),
    "gpt2": (
        TiktokenFile(
            url=f"{_BLOB}/gpt-2/encodings/main/vocab.bpe",
            sha256="1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5",
        ),
        TiktokenFile(
            url=f"{_BLOB}/gpt-2/encodings/main/encoder.json",
            sha256="196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783",
        ),
    ),
}
"""The files of tiktoken's encodings, with tiktoken's own URLs and checksums (tiktoken 0.7+)."""
TIKTOKEN_FILES["p50k_edit"] = TIKTOKEN_FILES["p50k_base"]
TIKTOKEN_FILES["o200k_harmony"] = TIKTOKEN_FILES["o200k_base"]

DEFAULT_ENCODINGS = ("o200k_base", "cl100k_base")
"""The encodings `memweave models` manages unless told others: GPT-4o's (memweave's default)
and GPT-4's."""


class ModelLocation(BaseModel):
    """The folder a model's files are looked for in, and what chose it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    path: Path
    """The folder."""
    source: Literal["argument", "environment", "default"]
    """`argument` (passed in code or on the command line), `environment` (a variable) or
    `default` (the library's own cache folder, filled on first use when online)."""
    variable: str | None = None
    """The environment variable that named it, for `source="environment"`."""

    @property
    def origin(self) -> str:
        """What chose the folder, for messages: `an argument`, `$VARIABLE` or `the default`."""
        if self.source == "environment" and self.variable:
            return f"${self.variable}"
        return "an argument" if self.source == "argument" else "the default"


def downloads_allowed() -> bool:
    """Whether memweave may download a missing model (False when `$MEMWEAVE_OFFLINE` is set)."""
    return os.environ.get(OFFLINE_ENV, "").strip().lower() not in _TRUE


def chroma_model_dir() -> Path:
    """Chroma's cache folder of its default model:
    `~/.cache/chroma/onnx_models/all-MiniLM-L6-v2/onnx`."""
    return Path.home() / ".cache" / "chroma" / "onnx_models" / EMBEDDING_MODEL / "onnx"


def memweave_cache_dir() -> Path:
    """The folder for files memweave derives itself (not created here): `$MEMWEAVE_CACHE_DIR`,
    else `$XDG_CACHE_HOME/memweave`, else `~/.cache/memweave`."""
    named = os.environ.get(CACHE_DIR_ENV)
    if named:
        return Path(named).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "memweave"


def embedding_model_dir(model_dir: str | os.PathLike[str] | None = None) -> ModelLocation:
    """The folder of the embedding model: `model_dir`, else `$MEMWEAVE_EMBEDDING_MODEL_DIR`,
    else Chroma's cache folder."""
    if model_dir is not None:
        return ModelLocation(path=Path(model_dir).expanduser(), source="argument")
    named = os.environ.get(EMBEDDING_MODEL_DIR_ENV)
    if named:
        return ModelLocation(
            path=Path(named).expanduser(), source="environment", variable=EMBEDDING_MODEL_DIR_ENV
        )
    return ModelLocation(path=chroma_model_dir(), source="default")


def int8_model_dir(cache_dir: str | os.PathLike[str] | None = None) -> ModelLocation:
    """The folder of the int8 copy of the embedding model: `cache_dir`, else the `onnx` folder
    of memweave's user cache (`memweave_cache_dir`: `$MEMWEAVE_CACHE_DIR`, else
    `$XDG_CACHE_HOME/memweave`, else `~/.cache/memweave`)."""
    if cache_dir is not None:
        return ModelLocation(path=Path(cache_dir).expanduser(), source="argument")
    for variable in (CACHE_DIR_ENV, "XDG_CACHE_HOME"):
        if os.environ.get(variable):
            return ModelLocation(
                path=memweave_cache_dir() / "onnx", source="environment", variable=variable
            )
    return ModelLocation(path=memweave_cache_dir() / "onnx", source="default")


def tiktoken_cache_dir(cache_dir: str | os.PathLike[str] | None = None) -> ModelLocation:
    """The folder of tiktoken's encoding files: `cache_dir`, else `$TIKTOKEN_CACHE_DIR`, else
    `$DATA_GYM_CACHE_DIR`, else tiktoken's default `$TMPDIR/data-gym-cache`."""
    if cache_dir is not None:
        return ModelLocation(path=Path(cache_dir).expanduser(), source="argument")
    for variable in (TIKTOKEN_CACHE_ENV, "DATA_GYM_CACHE_DIR"):
        named = os.environ.get(variable)
        if named:
            return ModelLocation(
                path=Path(named).expanduser(), source="environment", variable=variable
            )
    return ModelLocation(path=Path(tempfile.gettempdir()) / "data-gym-cache", source="default")


def model_hint(kind: Literal["embedding", "tiktoken"]) -> str:
    """What to do about a model that could not be loaded: the command and the variables."""
    if kind == "embedding":
        where = (
            f"pass model_dir= (ChromaDefaultEmbeddings) or set ${EMBEDDING_MODEL_DIR_ENV} to a "
            "folder holding the six files"
        )
    else:
        where = f"pass cache_dir= (TokenCounter) or set ${TIKTOKEN_CACHE_ENV} to a folder of them"
    return (
        "run `memweave models` to see where each model is looked for, and `memweave models "
        f"fetch` (or `memweave models fetch --from DIR` offline) to put it there; or {where}"
        f" (${OFFLINE_ENV}=1 forbids downloads)"
    )


def missing_model_files(folder: Path) -> list[str]:
    """The embedding model files `folder` lacks (all six when it does not exist)."""
    return [name for name in MINILM_FILES if not (folder / name).is_file()]


def sha256_of(path: Path) -> str:
    """The SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while chunk := file.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def ensure_embedding_model(location: ModelLocation, *, download: bool = True) -> None:
    """Make sure the embedding model's six files are in `location`.

    Chroma's cache folder (`source="default"`) is filled by a download when files are missing,
    as Chroma itself would do, unless `download` is False or `$MEMWEAVE_OFFLINE` is set.

    Raises:
        ModelUnavailable: Files are missing and were not (or could not be) downloaded; the
            message says which, and how to put them there.
    """
    missing = missing_model_files(location.path)
    if not missing:
        return
    if location.source == "default" and download and downloads_allowed():
        try:
            download_embedding_model(location.path)
        except (OSError, ValueError, tarfile.TarError) as exc:
            raise ModelUnavailable(
                EMBEDDING_MODEL,
                str(location.path),
                f"the download from {MINILM_URL} failed ({exc}); {model_hint('embedding')}",
            ) from exc
        return
    why = "missing" if len(missing) == len(MINILM_FILES) else "incomplete, missing"
    raise ModelUnavailable(
        EMBEDDING_MODEL,
        str(location.path),
        f"the model files are {why} {missing} (folder set by {location.origin}); "
        f"{model_hint('embedding')}",
    )


def _open_url(url: str) -> IO[bytes]:
    """Open `url` for reading (the one place memweave goes to the network for a model)."""
    response: IO[bytes] = urllib.request.urlopen(url, timeout=_TIMEOUT)  # noqa: S310 - https only
    return response


def _download(url: str, target: IO[bytes], sha256: str, progress: Progress | None) -> None:
    """Stream `url` into `target`, checking its SHA-256.

    Raises:
        OSError: The download failed.
        ValueError: The bytes do not match `sha256`.
    """
    if not url.startswith("https://"):
        raise ValueError(f"refusing to download from {url!r}: not https")
    digest = hashlib.sha256()
    with _open_url(url) as response:
        length = getattr(response, "headers", {}).get("Content-Length")
        total = int(length) if length and str(length).isdigit() else None
        done = 0
        while chunk := response.read(_CHUNK):
            digest.update(chunk)
            target.write(chunk)
            done += len(chunk)
            if progress is not None:
                progress(done, total)
    if digest.hexdigest() != sha256:
        raise ValueError(f"the file from {url} does not have the expected SHA-256 {sha256}")


@contextmanager
def _staging(folder: Path) -> Iterator[Path]:
    """A temporary folder beside `folder` (same file system, so a rename moves files in)."""
    folder.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".memweave-", dir=folder))
    try:
        yield staging
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def extract_embedding_model(archive: Path, target: Path) -> None:
    """Put the six model files of Chroma's archive (checked against its SHA-256) into `target`.

    Only the six `onnx/<file>` members are read; nothing else in the archive is written.

    Raises:
        ValueError: The archive's checksum is wrong, or it lacks a file.
        tarfile.TarError: The archive cannot be read.
    """
    if sha256_of(archive) != MINILM_ARCHIVE_SHA256:
        raise ValueError(f"{str(archive)!r} is not Chroma's all-MiniLM-L6-v2 archive (SHA-256)")
    with _staging(target) as staging, tarfile.open(archive, mode="r:gz") as tar:
        for name in MINILM_FILES:
            member = tar.getmember(f"onnx/{name}")
            source = tar.extractfile(member) if member.isfile() else None
            if source is None:
                raise ValueError(f"{str(archive)!r} holds no file onnx/{name}")
            with source, (staging / name).open("wb") as out:
                shutil.copyfileobj(source, out, _CHUNK)
        for name in MINILM_FILES:
            os.replace(staging / name, target / name)


def download_embedding_model(target: Path, *, progress: Progress | None = None) -> None:
    """Download Chroma's all-MiniLM-L6-v2 archive, check it, and put its six files in `target`.

    Raises:
        OSError: The download failed (offline: the host cannot be resolved).
        ValueError: The download's checksum is wrong.
    """
    with _staging(target) as staging:
        archive = staging / "onnx.tar.gz"
        with archive.open("wb") as file:
            _download(MINILM_URL, file, MINILM_ARCHIVE_SHA256, progress)
        extract_embedding_model(archive, target)


def tiktoken_path(folder: Path, file: TiktokenFile) -> Path:
    """Where tiktoken looks for `file` in the cache `folder`."""
    return folder / file.cache_name


def download_tiktoken(
    encoding: str, target: Path, *, progress: Progress | None = None
) -> list[Path]:
    """Download the files of `encoding` into the tiktoken cache `target`, checked; returns them.

    Raises:
        KeyError: memweave does not know the encoding's files.
        OSError: The download failed.
        ValueError: A download's checksum is wrong.
    """
    written: list[Path] = []
    with _staging(target) as staging:
        for file in TIKTOKEN_FILES[encoding]:
            part = staging / file.cache_name
            with part.open("wb") as out:
                _download(file.url, out, file.sha256, progress)
            os.replace(part, tiktoken_path(target, file))
            written.append(tiktoken_path(target, file))
    return written


_TIKTOKEN_LOCK = threading.Lock()


@contextmanager
def _tiktoken_cache(location: ModelLocation) -> Iterator[None]:
    """Point tiktoken at `location` while it loads, when an argument chose the folder.

    tiktoken reads its cache folder from `$TIKTOKEN_CACHE_DIR` only, at load time, so an
    explicit folder is passed that way for the duration of the load (under a lock), then the
    variable is restored. Loaded encodings are kept by tiktoken, so this happens once each.
    """
    if location.source != "argument":
        yield
        return
    with _TIKTOKEN_LOCK:
        before = os.environ.get(TIKTOKEN_CACHE_ENV)
        os.environ[TIKTOKEN_CACHE_ENV] = str(location.path)
        try:
            yield
        finally:
            if before is None:
                del os.environ[TIKTOKEN_CACHE_ENV]
            else:
                os.environ[TIKTOKEN_CACHE_ENV] = before


def load_tiktoken(name: str, cache_dir: str | os.PathLike[str] | None = None) -> tiktoken.Encoding:
    """Load the tiktoken encoding `name` from the cache folder `tiktoken_cache_dir` resolves.

    An encoding tiktoken has loaded already is returned as is. With `$MEMWEAVE_OFFLINE` set, a
    missing file fails here, without trying the network.

    Raises:
        ModelUnavailable: The encoding's files are missing and could not be downloaded, or are
            corrupt; the message says how to put them in place.
    """
    import tiktoken
    import tiktoken.registry

    location = tiktoken_cache_dir(cache_dir)
    files = () if name in tiktoken.registry.ENCODINGS else TIKTOKEN_FILES.get(name, ())
    missing = [f.plain_name for f in files if not tiktoken_path(location.path, f).is_file()]
    if missing and not downloads_allowed():
        raise ModelUnavailable(
            f"tiktoken {name}",
            str(location.path),
            f"{missing} not in the cache (folder set by {location.origin}) and "
            f"${OFFLINE_ENV} forbids downloads; {model_hint('tiktoken')}",
        )
    try:
        with _tiktoken_cache(location):
            return tiktoken.get_encoding(name)
    except (OSError, ValueError) as exc:
        # Offline, tiktoken's download fails with requests' ConnectionError (an OSError).
        why = f"{missing} not in the cache, and the download failed: " if missing else ""
        raise ModelUnavailable(
            f"tiktoken {name}",
            str(location.path),
            f"{why}{exc} (folder set by {location.origin}); {model_hint('tiktoken')}",
        ) from exc
