"""Retrieval: the FAISS index over the aligned RNA library, and gene-set prompts answered from it.

Answers questions from what ingest wrote and training fitted; it never writes
embeddings itself. A prompt's gene sets are scored on the library by ssGSEA
(:func:`hquery.scoring.ssgsea`), and each slide's score is the Soft-kNN mean
over its RNA neighbours (:class:`SoftKNN`, :func:`run_prompt`).
:func:`build_index` (which needs torch) loads on first use.
"""

from __future__ import annotations

import importlib

from hquery.retrieval.index import RNAIndex
from hquery.retrieval.prompt import PromptRun, run_prompt, score_measured
from hquery.retrieval.softknn import SoftKNN, SoftKNNPrediction

_LAZY = {"IndexReport": "index_builder", "build_index": "index_builder"}

__all__ = ["IndexReport", "PromptRun", "RNAIndex", "SoftKNN", "SoftKNNPrediction", "build_index", "run_prompt",
           "score_measured"]


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
