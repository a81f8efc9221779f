"""Tumour-microenvironment archetypes from two scores (the seed paper's Fig. 3, after Bagaev et al., Cancer Cell
2021): a sample is immune-enriched when its immune score is above the median and fibrotic when its fibrosis score
is, which gives four classes. Classes from the predicted scores are set against those from the measured ones.

The medians are taken over the samples scored both ways (the pairs), each source
its own, so neither source's scale or offset decides a class; a slide with no
RNA is classed by the predicted median of the pairs. Agreement is scikit-learn's:
the confusion matrix, accuracy and Cohen's kappa.
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pyarrow as pa

from hquery.errors import InputError
from hquery.evaluation.clinical import SOURCES, latest_scores
from hquery.genesets import GeneSet
from hquery.store import Store, record_id, utcnow

ARCHETYPES = ("immune-enriched, fibrotic", "immune-enriched", "fibrotic", "depleted")


@dataclasses.dataclass
class ArchetypeReport:
    run_id: str | None
    immune_set: str
    fibrosis_set: str
    classes: dict[str, dict[str, str]]
    """Source -> sample -> archetype."""
    n_compared: int
    accuracy: float
    kappa: float
    confusion: dict[str, dict[str, int]]
    """Measured class -> predicted class -> samples."""


def classify(immune: np.ndarray, fibrosis: np.ndarray, immune_cut: float, fibrosis_cut: float) -> np.ndarray:
    """The archetype of each sample from its two scores and the two cut-offs.

    >>> classify(np.array([2.0, 2.0, 0.0, 0.0]), np.array([2.0, 0.0, 2.0, 0.0]), 1.0, 1.0).tolist()
    ['immune-enriched, fibrotic', 'immune-enriched', 'fibrotic', 'depleted']
    """
    index = np.where(immune > immune_cut, 0, 2) + np.where(fibrosis > fibrosis_cut, 0, 1)
    return np.array(ARCHETYPES, dtype=object)[index]


def archetypes(store: Store, immune: GeneSet, fibrosis: GeneSet, *, record: bool = True) -> ArchetypeReport:
    """Archetypes of every scored sample from predicted and from measured scores, and their agreement.

    Parameters
    ----------
    immune, fibrosis
        The two gene sets (e.g. ``HALLMARK_INTERFERON_GAMMA_RESPONSE`` and
        ``HALLMARK_EPITHELIAL_MESENCHYMAL_TRANSITION``); each source's newest recorded
        scores, scored now where there are none.

    Returns
    -------
    ArchetypeReport, also recorded in ``archetype_runs`` / ``archetype_classes``.
    """
    from sklearn.metrics import accuracy_score, cohen_kappa_score, confusion_matrix

    scores = {src: (latest_scores(store, immune, src), latest_scores(store, fibrosis, src)) for src in SOURCES}
    both = sorted(set.intersection(*(set(a) & set(b) for a, b in scores.values())))
    if len(both) < 4:
        raise InputError(f"{len(both)} sample(s) have both predicted and measured scores of {immune.name} and "
                         f"{fibrosis.name}; the medians need paired samples (a slide and its RNA)")
    classes, values = {}, {}
    for src, (imm, fib) in scores.items():
        cut_i, cut_f = np.median([imm[s] for s in both]), np.median([fib[s] for s in both])
        samples = sorted(set(imm) & set(fib))
        x_i, x_f = np.array([imm[s] for s in samples]), np.array([fib[s] for s in samples])
        classes[src] = dict(zip(samples, classify(x_i, x_f, cut_i, cut_f)))
        values[src] = (samples, x_i, x_f)
    measured = [classes["measured"][s] for s in both]
    predicted = [classes["predicted"][s] for s in both]
    matrix = confusion_matrix(measured, predicted, labels=list(ARCHETYPES))
    report = ArchetypeReport(
        None, immune.name, fibrosis.name, classes, len(both), float(accuracy_score(measured, predicted)),
        float(cohen_kappa_score(measured, predicted)),
        {m: {p: int(matrix[i, j]) for j, p in enumerate(ARCHETYPES)} for i, m in enumerate(ARCHETYPES)})
    if record:
        _record(store, report, values)
    return report


def _record(store: Store, report: ArchetypeReport, values: dict) -> None:
    created = utcnow()
    report.run_id = record_id("arch", created)
    rows = [{"run_id": report.run_id, "sample_id": s, "source": src, "immune": float(i), "fibrosis": float(f),
             "archetype": report.classes[src][s]}
            for src, (samples, x_i, x_f) in values.items() for s, i, f in zip(samples, x_i, x_f)]
    with store.transaction() as txn:
        txn.insert("archetype_runs", pa.Table.from_pylist([{
            "run_id": report.run_id, "created_at": created, "immune_set": report.immune_set,
            "fibrosis_set": report.fibrosis_set, "n_compared": report.n_compared, "accuracy": report.accuracy,
            "kappa": report.kappa, "confusion": json.dumps(report.confusion), "params": "{}"}]))
        txn.insert("archetype_classes", pa.Table.from_pylist(rows))
