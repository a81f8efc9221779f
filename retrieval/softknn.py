"""Soft-kNN: a query's prediction is the similarity-weighted mean over its library neighbours."""

from __future__ import annotations

import dataclasses

import numpy as np


def most_profiles_per_patient(patients: np.ndarray) -> int:
    """How many extra neighbours to fetch so that skipping one patient's profiles still leaves ``k``."""
    return int(np.unique(patients, return_counts=True)[1].max()) if len(patients) else 0


def skip_own_patient(positions: np.ndarray, similarities: np.ndarray, candidate_patients: np.ndarray,
                     query_patients: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The first ``k`` neighbours per query (best first) that are not the query's own patient's profiles.

    ``positions`` index ``candidate_patients``; fetch ``k + most_profiles_per_patient(...)`` of them.
    """
    own = candidate_patients[positions] == query_patients[:, None]
    keep = np.argsort(own, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(positions, keep, 1), np.take_along_axis(similarities, keep, 1)


@dataclasses.dataclass(frozen=True)
class SoftKNNPrediction:
    """Per query (and per gene set where it applies)."""

    score: np.ndarray
    """Weighted mean of the neighbours' values, ``[queries, sets]``."""
    dispersion: np.ndarray
    """Weighted standard deviation of the neighbours' values, ``[queries, sets]``."""
    effective_k: np.ndarray
    """``1 / Σ w²``, the number of neighbours that effectively vote, ``[queries]``."""


@dataclasses.dataclass(frozen=True)
class SoftKNN:
    """``w = softmax(similarity / tau)`` over the top ``k`` neighbours.

    A small ``tau`` trusts the closest neighbours (``effective_k`` near 1); a
    large one approaches the plain mean of all ``k`` (``effective_k`` near ``k``).
    """

    k: int = 32
    tau: float = 0.05

    def __post_init__(self):
        if self.k < 1:
            raise ValueError(f"k must be at least 1, got {self.k}")
        if not self.tau > 0:
            raise ValueError(f"tau must be positive, got {self.tau}")

    def weights(self, similarities: np.ndarray) -> np.ndarray:
        """Softmax weights ``[queries, k]`` summing to 1 per query."""
        z = np.asarray(similarities, dtype=np.float64) / self.tau
        z = np.exp(z - z.max(axis=1, keepdims=True))
        return z / z.sum(axis=1, keepdims=True)

    def predict(self, neighbour_values: np.ndarray, similarities: np.ndarray) -> SoftKNNPrediction:
        """Combine ``neighbour_values [queries, k, sets]`` with weights from ``similarities [queries, k]``."""
        w = self.weights(similarities)
        values = np.asarray(neighbour_values, dtype=np.float64)
        score = np.einsum("qk,qks->qs", w, values)
        spread = np.einsum("qk,qks->qs", w, (values - score[:, None, :]) ** 2)
        return SoftKNNPrediction(score, np.sqrt(np.clip(spread, 0, None)), 1.0 / np.sum(w**2, axis=1))

    def average(self, neighbour_profiles: np.ndarray, similarities: np.ndarray) -> np.ndarray:
        """Weighted mean profile ``[queries, genes]`` of ``neighbour_profiles [queries, k, genes]``."""
        return np.einsum("qk,qkg->qg", self.weights(similarities), neighbour_profiles)
