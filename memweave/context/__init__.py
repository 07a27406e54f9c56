"""Long-term memory: `ContextProvider`, `Context`, vector memory on Chroma, fact extraction, and
embeddings."""

from memweave.context.base import Context, ContextProvider
from memweave.context.embeddings import (
    ChromaDefaultEmbeddings,
    EmbeddingFunction,
    OpenAIEmbeddings,
)
from memweave.context.facts import (
    ExtractionStats,
    FactExtractor,
    MemoryKind,
    MemoryVersion,
    RememberResult,
)
from memweave.context.vector import FusionWeights, MemoryHit, RetrievalMode, VectorMemory

__all__ = [
    "ChromaDefaultEmbeddings",
    "Context",
    "ContextProvider",
    "EmbeddingFunction",
    "ExtractionStats",
    "FactExtractor",
    "FusionWeights",
    "MemoryHit",
    "MemoryKind",
    "MemoryVersion",
    "OpenAIEmbeddings",
    "RememberResult",
    "RetrievalMode",
    "VectorMemory",
]
