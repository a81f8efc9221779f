"""Patient-level cross-validation of the alignment, with baselines from the same folds.

Each fold trains on the other folds' pairs only and retrieves among the held-out
fold's RNA profiles (the targets). Baselines on the same folds:

* ``ridge``: no alignment; a ridge map from image embedding to RNA embedding,
  retrieval by cosine in RNA space. It reads what the image head reads: with
  type-conditioned heads, the embedding beside the cancer-type one-hot;
* ``chance``: the recall of a random ranking, ``k / n_heldout``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from concurrent.futures import Executor

import numpy as np

from hquery.parallel import run_jobs
from hquery.stats import one_hot, ridge_regression
from hquery.training.fit import fit_alignment, project
from hquery.training.heads import AlignmentConfig
from hquery.training.metrics import KS, bidirectional_metrics
from hquery.training.pairs import Pairs
from hquery.training.splits import patient_folds

DIRECTIONS = ("he_to_rna", "rna_to_he")


@dataclasses.dataclass
class CVReport:
    """Per-fold metrics: ``folds[i][method][direction][metric]``."""

    folds: list[dict[str, dict[str, dict[str, float]]]]

    def rows(self) -> list[dict]:
        """Long format: one row per (method, direction, metric, fold)."""
        return [
            {"method": m, "direction": d, "metric": k, "fold": i, "value": v}
            for i, fold in enumerate(self.folds)
            for m, by_dir in fold.items()
            for d, metrics in by_dir.items()
            for k, v in metrics.items()
        ]

    def summary(self, method: str, direction: str, metric: str) -> tuple[float, float]:
        values = np.array([f[method][direction][metric] for f in self.folds])
        return float(values.mean()), float(values.std(ddof=1)) if len(values) > 1 else 0.0

    def as_dict(self) -> dict:
        out: dict = {}
        for method in self.folds[0]:
            for direction in DIRECTIONS:
                for metric in self.folds[0][method][direction]:
                    mean, sd = self.summary(method, direction, metric)
                    out.setdefault(method, {}).setdefault(direction, {})[metric] = {"mean": mean, "sd": sd}
        return out


def ridge_baseline(train: Pairs, test: Pairs, ks=KS, cancer_types: tuple[str, ...] = ()) -> dict[str, dict[str, float]]:
    """Retrieval without alignment: ridge image->RNA embedding, cosine in RNA space.

    With ``cancer_types`` (those a conditioned image head reads), the ridge reads their one-hot too.
    """
    def inputs(pairs: Pairs) -> np.ndarray:
        return np.hstack([pairs.image, one_hot(pairs.cancer_types, cancer_types)]) if cancer_types else pairs.image

    model = ridge_regression().fit(inputs(train), train.rna)
    predicted = _unit(model.predict(inputs(test)))
    return bidirectional_metrics(predicted, _unit(test.rna), ks)


def evaluate_model(model, pairs: Pairs, ks=KS) -> dict[str, dict[str, float]]:
    return bidirectional_metrics(project(model, image=pairs.image, cancer_types=pairs.cancer_types),
                                 project(model, rna=pairs.rna), ks)


def cross_validate(
    pairs: Pairs,
    n_folds: int = 5,
    config: AlignmentConfig = AlignmentConfig(),
    ks=KS,
    device: str = "cpu",
    fit: Callable = fit_alignment,
    on_fold: Callable[[int], None] | None = None,
    executor: Executor | None = None,
) -> CVReport:
    """Train and evaluate on ``n_folds`` patient-level folds; baselines on the same folds.

    With an ``executor`` (e.g. from :func:`~hquery.parallel.worker_pool`) the folds
    are fitted side by side; each fold is seeded on its own, so the metrics are the
    same either way. ``on_fold(i)`` is called as each fold's metrics arrive, in order.
    """
    jobs = [(pairs.subset(train_idx), pairs.subset(test_idx), config, ks, device, fit)
            for train_idx, test_idx in patient_folds(pairs.patients, n_folds, config.seed)]
    folds = []
    for i, fold in enumerate(run_jobs(executor, evaluate_fold, jobs)):
        folds.append(fold)
        if on_fold:
            on_fold(i)
    return CVReport(folds)


def evaluate_fold(train: Pairs, test: Pairs, config: AlignmentConfig, ks, device: str, fit: Callable) -> dict:
    """Fit on ``train``; metrics of the aligned model, the ridge baseline and chance on ``test``."""
    model, _ = fit(train.image, train.rna, train.patients, config, device=device, cancer_types=train.cancer_types)
    aligned = evaluate_model(model, test, ks)
    chance = {d: {k.replace("chance@", "recall@"): v for k, v in aligned[d].items() if k.startswith("chance@")}
              for d in DIRECTIONS}
    return {"aligned": aligned, "ridge": ridge_baseline(train, test, ks, model.cancer_types), "chance": chance}


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True).clip(1e-12)
