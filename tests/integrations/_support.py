"""Helpers shared by the integration tests and the subprocesses they start."""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Sequence

__all__ = ["HashedWordEmbeddings"]

_WORD = re.compile(r"[a-z0-9]+")


class HashedWordEmbeddings:
    """A fast, deterministic bag-of-words embedder, so memory tests need no model.

    Each lower-cased word adds 1 to a hashed dimension; vectors are L2-normalised.
    """

    __test__ = False

    def __init__(self, dimensions: int = 64) -> None:
        self._dimensions = dimensions

    @property
    def name(self) -> str:
        """The embedder's name, recorded with the collection."""
        return f"test-hashed-words-{self._dimensions}"

    @property
    def dimensions(self) -> int:
        """Length of every vector."""
        return self._dimensions

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """Return one normalised vector per text."""
        out: list[list[float]] = []
        for text in texts:
            vector = [0.0] * self._dimensions
            for word in _WORD.findall(text.lower()):
                digest = hashlib.blake2b(word.encode(), digest_size=4).digest()
                vector[int.from_bytes(digest, "big") % self._dimensions] += 1.0
            norm = math.sqrt(sum(v * v for v in vector))
            out.append(
                [v / norm for v in vector] if norm else [1.0] + [0.0] * (self._dimensions - 1)
            )
        return out
