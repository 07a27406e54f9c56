"""Embedding functions for long-term memory (implemented in `memweave.embeddings`)."""

from memweave.embeddings import ChromaDefaultEmbeddings, EmbeddingFunction, OpenAIEmbeddings

__all__ = ["ChromaDefaultEmbeddings", "EmbeddingFunction", "OpenAIEmbeddings"]
