"""The cross-validated retrieval metrics recorded with an alignment model, against its baselines."""

from __future__ import annotations

from hquery.errors import NotReadyError
from hquery.names import Pointer
from hquery.store import Store


def recall_summary(store: Store, version: str | None = None) -> tuple[str, dict]:
    """``(version, {method: {direction: {metric: {mean, sd, n_folds}}}})`` of a model (default: the current one).

    ``method`` is ``aligned``, ``ridge`` or ``chance``, from the same patient-level
    folds; ``direction`` is ``he_to_rna`` or ``rna_to_he``.
    """
    version = version or store.pointer(Pointer.ALIGNMENT_MODEL)
    if not version:
        raise NotReadyError("no alignment model yet; train one with cross-validation first", needs="train align --folds")
    summary: dict = {}
    for row in store.query("model_metrics_summary", [version]):
        summary.setdefault(row.method, {}).setdefault(row.direction, {})[row.metric] = {
            "mean": row.mean, "sd": row.sd or 0.0, "n_folds": row.n_folds}
    if not summary:
        raise NotReadyError(f"model {version} has no cross-validation metrics; train one with cross-validation",
                            needs="train align --folds")
    return version, summary
