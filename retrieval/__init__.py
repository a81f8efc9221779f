"""Retrieval: the FAISS index over the aligned RNA library, and gene-set prompts answered from it.

Answers questions from what ingest wrote and training fitted; it never writes
embeddings itself. A prompt's gene sets are scored on the library by ssGSEA
(:func:`ssgsea`), and each slide's score is the Soft-kNN mean over its RNA
neighbours (:class:`SoftKNN`, :func:`run_prompt`).
"""

from hquery.retrieval.index import IndexReport, build_index
from hquery.retrieval.prompt import PromptRun, run_prompt
from hquery.retrieval.prompts import PromptError, resolve_prompts
from hquery.retrieval.search import RNAIndex
from hquery.retrieval.softknn import SoftKNN, SoftKNNPrediction
from hquery.retrieval.ssgsea import score_gene_sets, ssgsea

__all__ = [
    "IndexReport", "PromptError", "PromptRun", "RNAIndex", "SoftKNN", "SoftKNNPrediction", "build_index",
    "resolve_prompts", "run_prompt", "score_gene_sets", "ssgsea",
]
