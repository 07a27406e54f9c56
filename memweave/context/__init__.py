"""Long-term memory: `ContextProvider`, `Context`, vector memory on Chroma, and embeddings."""

from memweave.context.base import Context, ContextProvider
from memweave.context.embeddings import (
    ChromaDefaultEmbeddings,
    EmbeddingFunction,
    OpenAIEmbeddings,
)
from memweave.context.vector import MemoryHit, RetrievalMode, VectorMemory

__all__ = [
    "ChromaDefaultEmbeddings",
    "Context",
    "ContextProvider",
    "EmbeddingFunction",
    "MemoryHit",
    "OpenAIEmbeddings",
    "RetrievalMode",
    "VectorMemory",
]
