"""Train the deployable alignment model, with optional patient-level cross-validation."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable

from hquery.store import Store
from hquery.training.cv import CVReport, cross_validate
from hquery.training.fit import fit_alignment, fit_pool
from hquery.training.heads import AlignmentConfig
from hquery.training.metrics import KS
from hquery.training.pairs import load_pairs
from hquery.training.registry import model_version, record_model

SETTING = {"slide": "alignment_model", "tile": "alignment_model_tile"}


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
    """
    started = time.perf_counter()
    pairs = load_pairs(store, level)
    with fit_pool(workers if folds else 1, device) as pool:
        final = (pool.submit(fit_alignment, pairs.image, pairs.rna, pairs.patients, config, device)
                 if pool else None)
        cv = cross_validate(pairs, folds, config, KS, device, on_fold=on_fold, executor=pool) if folds else None
        model, history = (final.result() if final else
                          fit_alignment(pairs.image, pairs.rna, pairs.patients, config, device=device))
    version = model_version(config, pairs.snapshot, level)
    with store.transaction() as txn:
        record_model(
            txn, model, config, version=version, level=level, image_encoder=pairs.image_encoder,
            rna_encoder=pairs.rna_encoder, snapshot=pairs.snapshot, metrics=cv.as_dict() if cv else {},
            cv_rows=cv.rows() if cv else [], n_pairs=len(pairs),
            history={"epochs": history.epochs, "best_epoch": history.best_epoch, "best_val_loss": history.best_val_loss},
        )
        txn.put_setting(SETTING[level], version)
    return TrainReport(version, level, len(pairs), len(set(pairs.patients)), cv, history.epochs,
                       time.perf_counter() - started)
