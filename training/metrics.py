"""Retrieval metrics over a whole held-out set.

Ranks follow one rule everywhere: the rank of a query's target is the number of
candidates with a *strictly higher* similarity (0 is best). A tie with the target
therefore never hurts it, and the rule is the same for hquery, its baselines and
the refresh gate.
"""

from __future__ import annotations

import numpy as np

KS = (1, 5, 10, 50)


def target_ranks(similarity: np.ndarray, targets: np.ndarray | None = None) -> np.ndarray:
    """Rank of each query's target among all candidates.

    Parameters
    ----------
    similarity
        ``[n_queries, n_candidates]`` scores, higher is more similar.
    targets
        Index of each query's paired candidate; defaults to the diagonal.

    Returns
    -------
    int array ``[n_queries]``: how many candidates score strictly higher than the target.
    """
    similarity = np.asarray(similarity)
    n = similarity.shape[0]
    targets = np.arange(n) if targets is None else np.asarray(targets)
    target_scores = similarity[np.arange(n), targets][:, None]
    return (similarity > target_scores).sum(axis=1)


def recall_at_k(ranks: np.ndarray, k: int) -> float:
    """Fraction of queries whose target is within the top ``k`` (rank < k)."""
    return float(np.mean(np.asarray(ranks) < k))


def chance_recall_at_k(n_candidates: int, k: int) -> float:
    """Recall@k of a random ranking: ``min(k, n) / n``."""
    return min(k, n_candidates) / n_candidates


def retrieval_metrics(similarity: np.ndarray, ks=KS) -> dict[str, float]:
    """Recall@k, chance, mean/median rank (1-based) and MRR for one direction.

    The pair of query ``i`` is candidate ``i`` (diagonal of ``similarity``).
    """
    ranks = target_ranks(similarity)
    n = similarity.shape[1]
    out: dict[str, float] = {"n_queries": float(len(ranks)), "n_candidates": float(n)}
    for k in ks:
        out[f"recall@{k}"] = recall_at_k(ranks, k)
        out[f"chance@{k}"] = chance_recall_at_k(n, k)
    out["mean_rank"] = float(ranks.mean() + 1)
    out["median_rank"] = float(np.median(ranks) + 1)
    out["mrr"] = float(np.mean(1.0 / (ranks + 1)))
    return out


def bidirectional_metrics(image: np.ndarray, rna: np.ndarray, ks=KS) -> dict[str, dict[str, float]]:
    """Metrics H&E->RNA and RNA->H&E for row-aligned, L2-normalised embeddings."""
    similarity = image @ rna.T
    return {"he_to_rna": retrieval_metrics(similarity, ks), "rna_to_he": retrieval_metrics(similarity.T, ks)}
