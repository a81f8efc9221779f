"""Train the deployable alignment model, with optional patient-level cross-validation."""

from __future__ import annotations

import dataclasses
import functools
import time
from collections.abc import Callable

import numpy as np

from hquery.errors import InputError
from hquery.names import Pointer
from hquery.parallel import submit, worker_pool
from hquery.store import Store
from hquery.training.cv import CVReport, cross_validate
from hquery.training.fit import fine_tune_alignment, fit_alignment
from hquery.training.heads import AlignmentConfig, AlignmentModel
from hquery.training.loss import clip_loss
from hquery.training.metrics import KS
from hquery.training.pairs import Pairs, check_one_resolution, load_pairs
from hquery.training.registry import load_model, save_model, version_id

ADAPT_EPOCHS = 30
"""The short schedule of a warm start on a new site's pairs (``train align --adapt-to``, ``eval adapt``)."""


@dataclasses.dataclass
class TrainReport:
    version: str
    level: str
    n_pairs: int
    n_patients: int
    cv: CVReport | None
    epochs: int
    seconds: float
    adapted_from: str | None = None
    """With ``adapt_to``: the model version the warm start began from."""


def train_alignment(
    store: Store,
    *,
    folds: int | None = None,
    config: AlignmentConfig = AlignmentConfig(),
    level: str = "slide",
    device: str = "cpu",
    on_fold: Callable[[int], None] | None = None,
    workers: int | None = None,
    adapt_to: str | None = None,
    mixed_resolution: bool = False,
) -> TrainReport:
    """Fit projection heads on every pair in ``store`` and make them the current model.

    With ``adapt_to`` (a cohort), adapt the current model to that cohort instead:
    warm-started from its heads, train on the cohort's pairs only for a short
    schedule (``config.max_epochs``, e.g. :data:`ADAPT_EPOCHS`, with the current
    model's architecture), as a lab does with a few pairs from a new site
    (:func:`~hquery.training.fit.fine_tune_alignment`). With ``folds``, the
    cross-validation adapts within the cohort's patients the same way.

    Parameters
    ----------
    folds
        If given, first run ``folds``-fold patient-level cross-validation (with the
        ridge and chance baselines) and record its metrics with the model.
    config
        Head and optimiser settings; ``config.seed`` makes training deterministic on CPU.
    level
        ``slide`` (slide <-> bulk RNA) or ``tile`` (tile <-> spot).
    workers
        Processes that fit the folds and the final model side by side (default:
        the CPUs available; 1 fits in-process). The results do not depend on it.
    mixed_resolution
        Train on slides tiled at different µm per pixel (refused by default, see
        :func:`~hquery.training.pairs.check_one_resolution`).

    Returns
    -------
    TrainReport with the new model version and the cross-validation metrics.

    Examples
    --------
    >>> from hquery.training import AlignmentConfig
    >>> report = train_alignment(store, folds=2, config=AlignmentConfig(max_epochs=3), workers=1)
    >>> report.version.startswith("align_slide_"), report.n_pairs, len(report.cv.folds)
    (True, 30, 2)
    """
    started = time.perf_counter()
    check_one_resolution(store, mixed_resolution)
    pairs = load_pairs(store, level)
    cohort_of = {r.sample_id: r.cohort for r in store.query("sample_metadata")}
    # a tile pair's id is SAMPLE#TILE
    pair_cohorts = np.array([cohort_of[s.rpartition("#")[0] if level == "tile" else s] for s in pairs.sample_ids])
    cohorts = sorted(set(pair_cohorts.tolist()))
    fit, base = fit_alignment, None
    if adapt_to is not None:
        base, record = served_alignment(store, level, pairs)
        config = dataclasses.replace(AlignmentConfig(**record.params["config"]), max_epochs=config.max_epochs,
                                     lr=config.lr, patience=config.patience, seed=config.seed)
        pairs = cohort_pairs(pairs, pair_cohorts, adapt_to)
        fit = functools.partial(_adapt, base)
        cohorts = sorted({*record.params.get("cohorts", ()), adapt_to})
    with worker_pool(workers if folds else 1, device) as pool:
        final = submit(pool, fit, pairs.image, pairs.rna, pairs.patients, config, device, clip_loss,
                       pairs.cancer_types)
        cv = cross_validate(pairs, folds, config, KS, device, fit=fit, on_fold=on_fold, executor=pool) \
            if folds else None
        model, history = final.result()
    adapted = {"adapted_from": record.version, "adapt_to": adapt_to} if base is not None else {}
    version = version_id(f"align_{level}", {"config": dataclasses.asdict(config), "data": pairs.snapshot,
                                            "level": level, **adapted})
    params = {"config": dataclasses.asdict(config), "level": level, "image_dim": model.image_dim,
              "rna_dim": model.rna_dim, "cancer_types": list(model.cancer_types),
              "image_encoder": pairs.image_encoder, "rna_encoder": pairs.rna_encoder, "cohorts": cohorts,
              "n_pairs": len(pairs), "history": {"epochs": history.epochs, "best_epoch": history.best_epoch,
                                                 "best_val_loss": history.best_val_loss}, **adapted}
    with store.transaction() as txn:
        save_model(txn, "alignment", model, kind=f"clip_heads_{level}", version=version, params=params,
                   snapshot=pairs.snapshot, seed=config.seed, metrics=cv.as_dict() if cv else {},
                   cv_rows=cv.rows() if cv else [], pointer=Pointer.alignment(level))
    return TrainReport(version, level, len(pairs), len(set(pairs.patients)), cv, history.epochs,
                       time.perf_counter() - started, adapted.get("adapted_from"))


def served_alignment(store: Store, level: str, pairs: Pairs):
    """``(model, record)``: the current ``level`` alignment model, which must read the pairs' encoders."""
    model, record = load_model(store, "alignment", pointer=Pointer.alignment(level))
    encoders = (record.params.get("image_encoder"), record.params.get("rna_encoder"))
    if encoders != (pairs.image_encoder, pairs.rna_encoder):
        raise InputError(f"the current model {record.version} reads {encoders[0]} and {encoders[1]}; the store's "
                         f"pairs are now {pairs.image_encoder} and {pairs.rna_encoder}: train align first")
    return model, record


def cohort_pairs(pairs: Pairs, pair_cohorts: np.ndarray, cohort: str) -> Pairs:
    """The pairs of one cohort (``pair_cohorts``: each pair's); an error naming the cohorts there are when it holds
    too few."""
    rows = np.flatnonzero(pair_cohorts == cohort)
    if len(rows) < 4:
        known = ", ".join(sorted(set(pair_cohorts.tolist())))
        raise InputError(f"cohort {cohort!r} holds {len(rows)} slide/RNA pairs; adapting needs 4 or more "
                         f"(cohorts with pairs: {known})")
    return pairs.subset(rows)


def _adapt(base: AlignmentModel, image, rna, patients, config, device="cpu", loss_fn=clip_loss, cancer_types=None):
    """:func:`fine_tune_alignment` from ``base``, with :func:`fit_alignment`'s signature (for the CV and workers)."""
    return fine_tune_alignment(base, image, rna, patients, config, device, loss_fn, cancer_types)
