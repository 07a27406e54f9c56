"""memweave's per-user data directory, where stores keep what a user gave no location for."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from memweave.errors import ConfigurationError

__all__ = [
    "DEFAULT_CHROMA_FOLDER",
    "DEFAULT_SQLITE_FILE",
    "HOME_ENV",
    "data_dir",
    "default_chroma_path",
    "default_sql_url",
    "default_url",
]

logger = logging.getLogger(__name__)

HOME_ENV = "MEMWEAVE_HOME"
"""The environment variable naming memweave's data directory."""

DEFAULT_SQLITE_FILE = "memweave.db"
"""The SQLite file, in `data_dir()`, of SQL stores given no URL: histories and checkpoints
share it. The name earlier releases used in the working directory, so moving that file here
keeps its data."""

DEFAULT_CHROMA_FOLDER = "chroma"
"""The embedded Chroma folder, in `data_dir()`, of a Chroma history given no URL or client."""


def data_dir() -> Path:
    """memweave's per-user data directory: `$MEMWEAVE_HOME` when set and not empty, else
    `platformdirs.user_data_path("memweave")` (`~/.local/share/memweave` on Linux,
    `~/Library/Application Support/memweave` on macOS, `%LOCALAPPDATA%\\memweave` on
    Windows). Made absolute; not created here."""
    home = os.environ.get(HOME_ENV)
    if home:
        return Path(home).expanduser().absolute()
    import platformdirs

    return Path(platformdirs.user_data_path("memweave", appauthor=False)).absolute()


def _made_data_dir(owner: str) -> Path:
    """`data_dir()`, created if missing (mode 0o700, parents as needed), for a store
    (`owner`) given no location.

    Raises:
        ConfigurationError: The directory cannot be created.
    """
    folder = data_dir()
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigurationError(
            f"{owner} was given no URL, so it stores in memweave's data directory "
            f"{str(folder)!r}, which cannot be created ({exc}); pass a URL, or set "
            f"{HOME_ENV} to a writable directory"
        ) from exc
    return folder


def default_sql_url(owner: str) -> str:
    """The SQLAlchemy URL of `DEFAULT_SQLITE_FILE` in `data_dir()`, for a store (`owner`)
    built with no URL. The directory is created if missing (mode 0o700, parents as needed),
    and where the file is gets logged at INFO.

    Raises:
        ConfigurationError: The directory cannot be created.
    """
    from sqlalchemy.engine import URL

    path = _made_data_dir(owner) / DEFAULT_SQLITE_FILE
    logger.info("%s was given no URL: storing in the SQLite file %s", owner, path)
    return URL.create("sqlite+aiosqlite", database=str(path)).render_as_string()


def default_chroma_path(owner: str) -> Path:
    """The embedded Chroma folder `DEFAULT_CHROMA_FOLDER` in `data_dir()`, for a store
    (`owner`) built with neither URL nor client. The data directory is created if missing
    (mode 0o700, parents as needed; Chroma makes the folder itself), and where the folder is
    gets logged at INFO.

    Raises:
        ConfigurationError: The data directory cannot be created.
    """
    path = _made_data_dir(owner) / DEFAULT_CHROMA_FOLDER
    logger.info("%s was given no URL: storing in the Chroma folder %s", owner, path)
    return path


def default_url() -> str:
    """The URL a SQL store given neither `url` nor `client` uses: the SQLite file
    `memweave.db` in memweave's data directory (`memweave.providers.data_dir()`:
    `$MEMWEAVE_HOME`, else the per-user data directory of `platformdirs`), which is created
    if missing. Public as `memweave.providers.sql.default_url`.

    Raises:
        ConfigurationError: The directory cannot be created.
    """
    return default_sql_url("default_url()")
