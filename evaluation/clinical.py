"""What the clinical analyses share: a manifest column's values per sample, and a gene set's newest scores."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Sequence

import numpy as np
import pyarrow as pa

from hquery.errors import InputError
from hquery.genesets import GeneSet
from hquery.retrieval.prompt import run_prompt, score_measured
from hquery.store import Store, record_id, utcnow

SOURCES = ("predicted", "measured")
"""Scores predicted from the slides, or computed on the samples' measured RNA (``hquery score``)."""
SAMPLE_COLUMNS = ("cohort", "cancer_type")


def score_sources(source: str) -> tuple[str, ...]:
    """``predicted``, ``measured`` or ``both`` as the sources to use."""
    sources = SOURCES if source == "both" else (source,)
    if any(s not in SOURCES for s in sources):
        raise InputError(f"source must be predicted, measured or both, not {source!r}")
    return sources


def sample_column(store: Store, column: str) -> dict[str, str]:
    """Each sample's value of a ``samples`` or clinical column, as text; samples without one are left out."""
    out, seen = {}, set()
    for r in store.query("sample_metadata"):
        clinical = json.loads(r.clinical) if r.clinical else {}
        seen.update(clinical)
        value = getattr(r, column) if column in SAMPLE_COLUMNS else clinical.get(column)
        if value is not None and str(value).strip() != "":
            out[r.sample_id] = str(value).strip()
    if not out:
        raise InputError(f"no sample has a value for column {column!r}; columns: "
                         f"{', '.join(SAMPLE_COLUMNS + tuple(sorted(seen)))}")
    return out


def number(text: str) -> float | None:
    """``text`` as a finite number, or ``None``."""
    try:
        value = float(text)
    except ValueError:
        return None
    return value if np.isfinite(value) else None


def latest_scores(store: Store, gene_set: GeneSet, source: str) -> dict[str, float]:
    """The newest recorded slide-level scores of ``gene_set`` from ``source``, by sample; a set never scored from
    that source is scored now and recorded (``hquery prompt`` / ``hquery score``)."""
    rows = store.query("latest_scores", [gene_set.name, source, gene_set.name])
    if not rows:
        (run_prompt if source == "predicted" else score_measured)(store, [gene_set])
        rows = store.query("latest_scores", [gene_set.name, source, gene_set.name])
    return {r.sample_id: r.score for r in rows if r.score is not None and np.isfinite(r.score)}


def patients_of(store: Store) -> dict[str, str]:
    """Each sample's patient."""
    return {r.sample_id: r.patient_id for r in store.query("sample_metadata")}


def record_analysis(store: Store, report, *, prefix: str, runs: str, run_row: dict, results: str,
                    artifact: Callable[[str], str], draw: Callable | None, frames: dict,
                    sources: Sequence[str]) -> None:
    """Record a clinical analysis in one transaction: its row in ``runs``, each of ``report.results`` in
    ``results`` (groups as JSON) and, with ``draw(report, gene_set, frames, path)``, one PNG per gene set.

    Sets ``report.run_id`` and ``report.plots`` (where the PNGs are once committed).
    """
    created = utcnow()
    report.run_id = record_id(prefix, created)
    with store.transaction() as txn:
        txn.insert(runs, pa.Table.from_pylist([{"run_id": report.run_id, "created_at": created, **run_row}]))
        txn.insert(results, pa.Table.from_pylist([
            {**dataclasses.asdict(r), "groups": json.dumps(r.groups), "run_id": report.run_id}
            for r in report.results]))
        if draw:
            folder = txn.stage_artifact(artifact(report.run_id))
            for name in dict.fromkeys(r.gene_set for r in report.results):
                path = folder / f"{name.replace(':', '_').replace(',', '_')}.png"
                draw(report, name, {s: frames[name, s] for s in sources if (name, s) in frames}, path)
                report.plots[name] = path
    final = store.artifact_path(artifact(report.run_id))
    report.plots = {name: final / path.name for name, path in report.plots.items()}
