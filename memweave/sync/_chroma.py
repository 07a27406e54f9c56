"""Blocking face of the Chroma history backend: `ChromaChatHistoryProvider`."""

from __future__ import annotations

from typing import Any, overload

from memweave.context.embeddings import EmbeddingFunction
from memweave.providers import chroma as _chroma
from memweave.providers._chroma_args import old_search_call
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
    def namespace(self) -> str:
        """The name this provider's data lives under."""
        return self._async.namespace

    @property
    def embedder(self) -> EmbeddingFunction:
        """The embedding function of the collection."""
        return self._async.embedder

    @overload
    def search(self, query: str, *, session_id: str, k: int = 5) -> list[MessageHit]: ...

    @overload
    def search(self, session_id: str, query: str, k: int = 5, /) -> list[MessageHit]: ...

    def search(
        self, query: str, *old: Any, session_id: str | None = None, k: int = 5
    ) -> list[MessageHit]:
        """Return the `k` messages of `session_id` most similar in meaning to `query`, best
        first. The order of earlier releases, `search(session_id, query, k)`, still works
        with a `DeprecationWarning`; it goes in 0.3."""
        if old:
            query, session_id, k = old_search_call(query, old, session_id, k)
        return self._call(self._async._search, query, session_id, k)
