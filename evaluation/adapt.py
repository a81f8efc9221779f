"""Data-efficient domain adaptation (the seed paper's Fig. 4B-C): how much of a new site it takes to close the gap.

For each repeat, a fixed share of the new cohort's patients is drawn as the test
set (``1 - max(fractions)`` of them, the same for every fraction, so the points of
a curve differ only in how much was adapted on); the adaptation sets are nested
draws from the rest. At each fraction *f*:

* ``warm``: the base model fine-tuned on *f* of the patients' pairs for a short
  schedule (:func:`~hquery.training.fit.fine_tune_alignment`); at *f* = 0 it is
  the base model itself, the number to beat;
* ``scratch``: heads fitted from random weights on the same pairs;
* ``ridge_type``: the floor, a ridge from the frozen slide embedding and the
  cancer-type one-hot to each gene set's score, fitted on the base model's pairs
  and the adaptation pairs.

The base model is the served one when it never saw the new cohort (its record's
``cohorts``); otherwise heads fitted on the other cohorts' pairs with the same
settings, and the report says so. Retrieval is scored among the test patients'
pairs (recall@K in both directions, with the ridge and chance baselines); gene
sets by calibrated Soft-kNN R² per set, neighbours from every profile but the
test patients', the truth the ssGSEA of each test slide's own RNA, as in
``hquery eval spectrum``.

What adapting costs the sites the base was fitted on is measured too: the warm
model's recall among as many of those cohorts' patients as the test set holds
(drawn once per repeat; metrics ``source:he_to_rna:recall@K``). The base was
trained on these pairs, so the number is retention, not generalisation: at *f* = 0
it is the base's own, and a fall at larger *f* is what a lab's first site loses
when ``hquery train align --adapt-to`` serves the adapted heads.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa

from hquery.errors import InputError, NotReadyError
from hquery.evaluation.spectrum import SpectrumInputs, predict_split
from hquery.names import eval_artifact
from hquery.retrieval.neighbours import NeighbourRule
from hquery.retrieval.softknn import SoftKNN
from hquery.stats import r_squared
from hquery.store import Store, StoreError, record_id, utcnow
from hquery.training.alignment_trainer import ADAPT_EPOCHS, served_alignment
from hquery.training.cv import evaluate_model, ridge_baseline
from hquery.training.fit import fine_tune_alignment, fit_alignment, project
from hquery.training.heads import AlignmentConfig

STARTS = ("warm", "scratch")
RECALL_KS = (1, 5, 10)
SOURCE = "source"
"""Prefix of the metrics scored among the base cohorts' pairs (retention)."""
MIN_PATIENTS = 3
"""Fewer adaptation patients than this fit nothing from scratch (the point is left out)."""


@dataclasses.dataclass
class AdaptationReport:
    adapt_id: str | None
    cohort: str
    base_model: str
    """The served version, or ``fitted:COHORTS`` when the base was fitted on the other cohorts for this run."""
    fractions: list[float]
    repeats: int
    n_patients: int
    n_test_patients: int
    rows: list[dict]
    """One per point: fraction, repeat, start (warm / scratch / ridge / chance / ridge_type), n_adapt_patients,
    n_adapt_pairs, metric (``he_to_rna:recall@10``, ``r2``), gene_set (None for recall), value."""
    notes: list[str]
    seconds: float
    plot: Path | None = None

    def curve(self, start: str, metric: str, gene_sets: Sequence[str] | None = None) -> dict[float, tuple[float, float]]:
        """``{fraction: (mean, sd over repeats)}`` of ``metric`` (for ``r2``, each repeat's mean over the sets)."""
        out = {}
        for f in self.fractions:
            per_repeat = []
            for r in range(self.repeats):
                values = [row["value"] for row in self.rows if row["fraction"] == f and row["repeat"] == r
                          and row["start"] == start and row["metric"] == metric
                          and (gene_sets is None or row["gene_set"] in gene_sets)]
                if values:
                    per_repeat.append(float(np.mean(values)))
            if per_repeat:
                out[f] = (float(np.mean(per_repeat)), float(np.std(per_repeat, ddof=1)) if len(per_repeat) > 1 else 0.0)
        return out


def evaluate_adaptation(store: Store, cohort: str, fractions: Sequence[float] = (0, 0.05, 0.1, 0.25, 0.5), *,
                        repeats: int = 3, collection: str = "hallmark", epochs: int = ADAPT_EPOCHS,
                        knn: SoftKNN | None = None, neighbours: NeighbourRule | None = None, seed: int = 0,
                        record: bool = True, on_point: Callable[[], None] | None = None) -> AdaptationReport:
    """Warm start against training from scratch on growing fractions of a new cohort's patients.

    Parameters
    ----------
    cohort
        The new site's cohort (``cohorts`` in the catalog); it needs slide/RNA pairs.
    fractions
        Shares of the cohort's patients adapted on, each in [0, 1); the test set is ``1 - max(fractions)`` of them.
    repeats
        Patient draws per fraction (the curves' spread).
    epochs
        The warm start's short schedule; training from scratch uses the base model's settings.
    record
        Write the points to ``adaptation_runs`` / ``adaptation_results`` and the PNG to ``artifacts/evals/ADAPT_ID/``.
    on_point
        Called after each (fraction, repeat) is scored.

    Returns
    -------
    AdaptationReport
    """
    started = time.perf_counter()
    fractions = sorted({float(f) for f in fractions})
    if not fractions or fractions[0] < 0 or fractions[-1] >= 1:
        raise InputError(f"fractions must lie in [0, 1); got {', '.join(map(str, fractions)) or 'none'}")
    if repeats < 1:
        raise InputError(f"repeats must be 1 or more; got {repeats}")
    knn, neighbours = knn or SoftKNN(), neighbours or NeighbourRule()
    inputs = SpectrumInputs.load(store, collection, neighbours)
    pairs = inputs.pairs
    cohort_of = {r.sample_id: r.cohort for r in store.query("sample_metadata")}
    known = sorted(set(cohort_of.values()))
    if cohort not in known:
        raise InputError(f"no cohort {cohort!r}; cohorts: {', '.join(known)}")
    in_cohort = np.array([cohort_of[s] == cohort for s in pairs.sample_ids])
    patients = np.array(sorted(set(pairs.patients[in_cohort])))
    n_test = int(np.floor(len(patients) * (1 - fractions[-1])))
    if n_test < 10 or (~in_cohort).sum() < 10:
        raise InputError(f"cohort {cohort!r} has {len(patients)} patients with pairs and the others "
                         f"{int((~in_cohort).sum())} pairs; adaptation needs 10 or more pairs outside it and "
                         f"10 or more test patients after the largest fraction ({fractions[-1]})")
    notes: list[str] = []
    base, base_name, config = _base_model(store, pairs, cohort_of, cohort, in_cohort, notes)
    source = np.flatnonzero(~in_cohort)
    tune = dataclasses.replace(config, max_epochs=epochs)
    names = [gs.name for gs in inputs.gene_sets]
    library_rna_base = project(base, rna=inputs.library_rna)
    slide_base = project(base, image=pairs.image, cancer_types=pairs.cancer_types)
    rows: list[dict] = []
    for repeat in range(repeats):
        order = np.random.default_rng([seed, repeat]).permutation(patients)
        test_patients, pool = order[:n_test], order[n_test:]
        test = np.flatnonzero(np.isin(pairs.patients, test_patients))
        searchable = inputs.allowed & ~np.isin(inputs.library_patients, test_patients)
        tested = pairs.subset(test)
        source_patients = np.unique(pairs.patients[source])
        retained = pairs.subset(source[np.isin(pairs.patients[source], np.random.default_rng([seed, repeat, 1])
                                               .permutation(source_patients)[:n_test])])
        for fraction in fractions:
            chosen = pool[: int(round(fraction * len(patients)))]
            adapt = np.flatnonzero(np.isin(pairs.patients, chosen))
            point = {"fraction": fraction, "repeat": repeat, "n_adapt_patients": len(chosen),
                     "n_adapt_pairs": len(adapt)}
            train = np.concatenate([source, adapt])
            models = {"warm": base if len(adapt) == 0 else fine_tune_alignment(
                base, pairs.image[adapt], pairs.rna[adapt], pairs.patients[adapt], tune,
                cancer_types=pairs.cancer_types[adapt])[0]}
            if len(chosen) >= MIN_PATIENTS:
                models["scratch"] = fit_alignment(pairs.image[adapt], pairs.rna[adapt], pairs.patients[adapt],
                                                  dataclasses.replace(config, seed=config.seed + repeat),
                                                  cancer_types=pairs.cancer_types[adapt])[0]
            for start, model in models.items():
                metrics = evaluate_model(model, tested, RECALL_KS)
                rows += _recall_rows(point, start, metrics)
                library_vecs, slide_vecs = (library_rna_base, slide_base) if model is base else (
                    project(model, rna=inputs.library_rna),
                    project(model, image=pairs.image, cancer_types=pairs.cancer_types))
                predicted = predict_split(pairs, train, test, library_vecs, slide_vecs, searchable,
                                          inputs.library_scores, inputs.library_patients, inputs.library_values,
                                          inputs.metadata, neighbours, knn, inputs.truth, inputs.types, config.seed,
                                          routes=("ridge_type",) if start == "warm" else ())
                notes += [f"{start} at {fraction}: {n}" for n in predicted["notes"]]
                rows += _r2_rows(point, start, predicted["softknn_calibrated"], inputs.truth[test], names)
                if start == "warm":
                    rows += _recall_rows(point, start, evaluate_model(model, retained, RECALL_KS), SOURCE)
                    rows += _r2_rows(point, "ridge_type", predicted["ridge_type"], inputs.truth[test], names)
                    rows += _recall_rows(point, "ridge", ridge_baseline(pairs.subset(train), tested, RECALL_KS,
                                                                        model.cancer_types))
                    rows += _recall_rows(point, "chance", {d: {k.replace("chance@", "recall@"): v
                                                               for k, v in m.items() if k.startswith("chance@")}
                                                           for d, m in metrics.items()})
            if on_point:
                on_point()
    report = AdaptationReport(None, cohort, base_name, fractions, repeats, len(patients), n_test, rows,
                              list(dict.fromkeys(notes)), time.perf_counter() - started)
    if record:
        record_adaptation(store, report, {"collection": collection, "epochs": epochs, "k": knn.k, "tau": knn.tau,
                                          "seed": seed, "neighbours": neighbours.as_json()})
    return report


def _base_model(store: Store, pairs, cohort_of: dict[str, str], cohort: str, in_cohort: np.ndarray,
                notes: list[str]):
    """``(model, name, config)``: the served model if it never saw ``cohort``, else one fitted without it."""
    try:
        model, record = served_alignment(store, "slide", pairs)
    except (InputError, NotReadyError, StoreError) as error:  # none yet, or on other encoders: fit one here
        model, record, reason = None, None, str(error).split(";")[0]
    else:
        seen = record.params.get("cohorts")
        reason = None if seen is not None and cohort not in seen else (
            f"the current model {record.version} was trained on {cohort}" if seen
            else f"the current model {record.version} does not record its cohorts")
    if model is not None and reason is None:
        return model, record.version, AlignmentConfig(**record.params["config"])
    config = AlignmentConfig(**record.params["config"]) if record else AlignmentConfig()
    others = sorted({cohort_of[s] for s, inside in zip(pairs.sample_ids, in_cohort) if not inside})
    notes.append(f"{reason}: the base was fitted here on {', '.join(others)} with its settings")
    source = np.flatnonzero(~in_cohort)
    fitted, _ = fit_alignment(pairs.image[source], pairs.rna[source], pairs.patients[source], config,
                              cancer_types=pairs.cancer_types[source])
    return fitted, f"fitted:{','.join(others)}", config


def _recall_rows(point: dict, start: str, metrics: dict, population: str | None = None) -> list[dict]:
    prefix = f"{population}:" if population else ""
    return [{**point, "start": start, "metric": f"{prefix}{direction}:recall@{k}", "gene_set": None,
             "value": float(metrics[direction][f"recall@{k}"])}
            for direction in ("he_to_rna", "rna_to_he") for k in RECALL_KS]


def _r2_rows(point: dict, start: str, predicted: np.ndarray, truth: np.ndarray, names: list[str]) -> list[dict]:
    return [{**point, "start": start, "metric": "r2", "gene_set": name,
             "value": r_squared(predicted[:, j], truth[:, j])} for j, name in enumerate(names)]


def record_adaptation(store: Store, report: AdaptationReport, params: dict) -> str:
    """Write the report to ``adaptation_runs`` / ``adaptation_results`` and its PNG, in one transaction."""
    created = utcnow()
    report.adapt_id = record_id("adapt", created)
    with store.transaction() as txn:
        txn.insert("adaptation_runs", pa.Table.from_pylist([{
            "adapt_id": report.adapt_id, "created_at": created, "cohort": report.cohort,
            "base_model": report.base_model, "fractions": json.dumps(report.fractions), "repeats": report.repeats,
            "n_patients": report.n_patients, "n_test_patients": report.n_test_patients, "seconds": report.seconds,
            "params": json.dumps({**params, "notes": report.notes})}]))
        txn.insert("adaptation_results", pa.Table.from_pylist(
            [{"adapt_id": report.adapt_id, **row} for row in report.rows],
            schema=pa.schema([("adapt_id", pa.string()), ("fraction", pa.float64()), ("repeat", pa.int64()),
                              ("n_adapt_patients", pa.int64()), ("n_adapt_pairs", pa.int64()),
                              ("start", pa.string()), ("metric", pa.string()), ("gene_set", pa.string()),
                              ("value", pa.float64())])))
        plot_adaptation(report, txn.stage_artifact(eval_artifact(report.adapt_id)) / "adaptation.png")
    report.plot = store.artifact_path(eval_artifact(report.adapt_id)) / "adaptation.png"
    return report.adapt_id


STYLE = {"warm": ("warm start", "C0", "-"), "scratch": ("from scratch", "C1", "--"),
         "ridge": ("ridge", "0.4", ":"), "ridge_type": ("ridge+type floor", "0.4", ":"), "chance": ("chance", "0.7", ":")}


def plot_adaptation(report: AdaptationReport, path: Path) -> Path:
    """Two panels against the adapted fraction: H&E->RNA recall@10 and mean calibrated R², mean ± sd over repeats."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4), constrained_layout=True)
    panels = ((axes[0], "he_to_rna:recall@10", ("warm", "scratch", "ridge", "chance"), "H&E -> RNA recall@10"),
              (axes[1], "r2", ("warm", "scratch", "ridge_type"), "held-out R², mean over the sets"))
    for ax, metric, starts, label in panels:
        for start in starts:
            curve = report.curve(start, metric)
            if not curve:
                continue
            name, colour, line = STYLE[start]
            x = np.array(list(curve))
            mean, sd = np.array([curve[f] for f in x]).T
            ax.errorbar(x * 100, mean, yerr=sd, label=name, color=colour, linestyle=line, marker="o", capsize=3)
        retained = report.curve("warm", f"{SOURCE}:{metric}") if metric != "r2" else {}
        if retained:
            x = np.array(list(retained))
            mean, sd = np.array([retained[f] for f in x]).T
            ax.errorbar(x * 100, mean, yerr=sd, label="warm start, on the base cohorts' pairs", color="C0",
                        linestyle=":", marker="s", capsize=3)
        ax.set_xlabel(f"% of {report.cohort}'s patients adapted on")
        ax.set_ylabel(label)
        ax.legend(fontsize=8)
    fig.suptitle(f"adapting {report.base_model} to {report.cohort}: {report.n_test_patients} test patients, "
                 f"{report.repeats} draws", fontsize=9)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
