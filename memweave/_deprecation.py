"""Old names kept for one release: every deprecated alias warns and resolves the same way."""

from __future__ import annotations

import sys
import warnings
from pathlib import Path
from typing import TypeVar

from memweave.errors import ConfigurationError

__all__ = ["REMOVED_IN", "renamed_argument", "warn_renamed"]

_T = TypeVar("_T")

REMOVED_IN = "0.3"
"""The release in which the deprecated names go."""

_PACKAGE_DIR = str(Path(__file__).resolve().parent)


def _outside_memweave() -> int:
    """The `stacklevel` of the first caller outside the memweave package, so the warning names
    the user's line even when it passed through `from_url` or another memweave function."""
    frame = sys._getframe(2)  # the caller of warn_renamed
    level = 2
    while frame is not None and frame.f_code.co_filename.startswith(_PACKAGE_DIR):
        frame = frame.f_back  # type: ignore[assignment]
        level += 1
    return level


def warn_renamed(old: str, new: str, *, stacklevel: int | None = None) -> None:
    """Warn that `old` is a deprecated name of `new`: a `DeprecationWarning` attributed to the
    first caller outside memweave, unless `stacklevel` says otherwise."""
    warnings.warn(
        f"{old} is deprecated and goes in memweave {REMOVED_IN}; use {new}",
        DeprecationWarning,
        stacklevel=_outside_memweave() if stacklevel is None else stacklevel,
    )


def renamed_argument(
    owner: str, old_name: str, old_value: _T | None, new_name: str, new_value: _T | None
) -> _T | None:
    """The value passed as `new_name`, or as the deprecated `old_name` (with a warning).

    The warning points at the first line outside memweave that led here.

    Raises:
        ConfigurationError: Both names were passed.
    """
    if old_value is None:
        return new_value
    if new_value is not None:
        raise ConfigurationError(
            f"{owner}: pass {new_name}= only; {old_name}= is its deprecated name"
        )
    warn_renamed(f"{owner}({old_name}=...)", f"{new_name}=")
    return old_value
