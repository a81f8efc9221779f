"""Train the deployable alignment model, with optional patient-level cross-validation."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable

from hquery.names import Pointer
from hquery.parallel import submit, worker_pool
from hquery.store import Store
from hquery.training.cv import CVReport, cross_validate
from hquery.training.fit import fit_alignment
from hquery.training.heads import AlignmentConfig
from hquery.training.loss import clip_loss
from hquery.training.metrics import KS
from hquery.training.pairs import load_pairs
from hquery.training.registry import save_model, version_id


@dataclasses.dataclass
class TrainReport:
    version: str
    level: str
    n_pairs: int
    n_patients: int
    cv: CVReport | None
    epochs: int
    seconds: float


def train_alignment(
    store: Store,
    *,
    folds: int | None = None,
    config: AlignmentConfig = AlignmentConfig(),
    level: str = "slide",
    device: str = "cpu",
    on_fold: Callable[[int], None] | None = None,
    workers: int | None = None,
) -> TrainReport:
    """Fit projection heads on every pair in ``store`` and make them the current model.

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
    pairs = load_pairs(store, level)
    with worker_pool(workers if folds else 1, device) as pool:
        final = submit(pool, fit_alignment, pairs.image, pairs.rna, pairs.patients, config, device, clip_loss,
                       pairs.cancer_types)
        cv = cross_validate(pairs, folds, config, KS, device, on_fold=on_fold, executor=pool) if folds else None
        model, history = final.result()
    version = version_id(f"align_{level}", {"config": dataclasses.asdict(config), "data": pairs.snapshot,
                                            "level": level})
    params = {"config": dataclasses.asdict(config), "level": level, "image_dim": model.image_dim,
              "rna_dim": model.rna_dim, "cancer_types": list(model.cancer_types), "image_encoder": pairs.image_encoder, "rna_encoder": pairs.rna_encoder,
              "n_pairs": len(pairs), "history": {"epochs": history.epochs, "best_epoch": history.best_epoch,
                                                 "best_val_loss": history.best_val_loss}}
    with store.transaction() as txn:
        save_model(txn, "alignment", model, kind=f"clip_heads_{level}", version=version, params=params,
                   snapshot=pairs.snapshot, seed=config.seed, metrics=cv.as_dict() if cv else {},
                   cv_rows=cv.rows() if cv else [], pointer=Pointer.alignment(level))
    return TrainReport(version, level, len(pairs), len(set(pairs.patients)), cv, history.epochs,
                       time.perf_counter() - started)
