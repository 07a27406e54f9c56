"""Fixtures for the reducer tests: an offline tiktoken cache and a shared token counter."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from memweave.reducers import TokenCounter

_SHARED_TIKTOKEN = Path(__file__).resolve().parents[3] / "shared" / "tiktoken"
if _SHARED_TIKTOKEN.is_dir():
    os.environ.setdefault("TIKTOKEN_CACHE_DIR", str(_SHARED_TIKTOKEN))


@pytest.fixture(scope="session")
def counter() -> TokenCounter:
    """A gpt-4o (o200k_base) counter shared by the tests that only read counts."""
    return TokenCounter("gpt-4o")
