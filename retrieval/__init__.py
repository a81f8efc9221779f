"""Retrieval: the FAISS index over the aligned RNA library, and search over it.

Answers questions from what ingest wrote and training fitted; it never writes
embeddings itself. Soft-kNN and gene-set prompts build on :class:`RNAIndex`.
"""

from hquery.retrieval.index import IndexReport, build_index
from hquery.retrieval.search import RNAIndex

__all__ = ["IndexReport", "RNAIndex", "build_index"]
