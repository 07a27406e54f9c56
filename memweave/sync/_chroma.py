"""Blocking face of the Chroma history backend: `ChromaChatHistoryProvider`."""

from __future__ import annotations

from typing import Any

from memweave.context.embeddings import EmbeddingFunction
from memweave.providers import chroma as _chroma
from memweave.providers.chroma import MessageHit
from memweave.sync._history import ChatHistoryProvider
from memweave.sync._wrap import mirrors

__all__ = ["ChromaChatHistoryProvider"]


class ChromaChatHistoryProvider(ChatHistoryProvider):
    """Blocking face of `memweave.providers.ChromaChatHistoryProvider`, with its `search`.
    Takes the same arguments."""

    _wraps = _chroma.ChromaChatHistoryProvider
    _async: _chroma.ChromaChatHistoryProvider

    @mirrors(_chroma.ChromaChatHistoryProvider)
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._build(_chroma.ChromaChatHistoryProvider, args, kwargs)

    @property
    def embedder(self) -> EmbeddingFunction:
        """The embedding function of the collection."""
        return self._async.embedder

    def search(self, session_id: str, query: str, k: int = 5) -> list[MessageHit]:
        """Return the session's `k` messages most similar in meaning to `query`, best first."""
        return self._call(self._async.search, session_id, query, k)
