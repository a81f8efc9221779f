"""The predictability spectrum: how well each gene set of a collection is predicted from H&E alone.

Patient-level cross-validation over the paired slides. In every fold:

1. projection heads are fitted on the training patients' pairs only;
2. the library is every stored RNA profile except the held-out patients' (their
   profiles are removed before anything is indexed, or a slide would retrieve its
   own RNA), projected by the fold's RNA head into a fresh exact index;
3. each held-out slide is scored by Soft-kNN, and the truth is the ssGSEA score
   of its own measured RNA;
4. a linear calibration per gene set (truth ~ prediction) is fitted on the
   training slides, each predicted the same way from the library without its own
   patient, and applied to the held-out predictions;
5. an MLP from the aligned slide embedding to the collection's standardised scores
   (the seed paper's trained-predictor alternative) is fitted on the training slides.

Pooled over folds, each gene set gets Pearson r, R² and R² after calibration. The
dispersion of the Soft-kNN neighbours is checked against the calibrated error in
quintiles: an honest uncertainty grows with the error.
"""

from __future__ import annotations

import dataclasses
import json
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa

from hquery.genesets import resolve_prompts
from hquery.library import Library
from hquery.names import embedding_table, eval_artifact
from hquery.parallel import run_jobs, worker_pool
from hquery.retrieval.index import build_faiss_index
from hquery.retrieval.softknn import (
    SoftKNN,
    most_profiles_per_patient,
    skip_own_patient,
)
from hquery.stats import pearson_r, r_squared
from hquery.store import Store, StoreError, utcnow, vectors
from hquery.training.heads import AlignmentConfig
from hquery.training.pairs import load_pairs
from hquery.training.predictor import fit_mlp, mlp_predict
from hquery.training.splits import patient_folds

METHODS = ("softknn", "mlp")


@dataclasses.dataclass
class Spectrum:
    """Per-gene-set metrics, ``rows`` sorted by Soft-kNN calibrated R², best first."""

    eval_id: str | None
    rows: list[dict]
    """gene_set, method, pearson_r, r2, r2_calibrated, n."""
    calibration: list[dict]
    """Soft-kNN held-out error by dispersion quintile: quintile, dispersion_z (mean), abs_error_z (mean), n."""
    predictions: dict[str, np.ndarray]
    """``truth``, ``softknn``, ``softknn_calibrated``, ``mlp`` and ``dispersion``, each ``[slides, sets]``."""
    gene_sets: list[str]
    n_slides: int
    n_folds: int
    library_leak: bool
    seconds: float
    heldout_in_library: int = 0
    """Library profiles of held-out patients that were searchable (0 unless ``library_leak``)."""
    plot: Path | None = None
    """The recorded spectrum PNG."""

    def metric(self, gene_set: str, method: str = "softknn", name: str = "r2_calibrated") -> float:
        return next(r[name] for r in self.rows if r["gene_set"] == gene_set and r["method"] == method)


def evaluate_prompts(
    store: Store,
    collection: str = "hallmark",
    *,
    folds: int = 5,
    knn: SoftKNN | None = None,
    config: AlignmentConfig = AlignmentConfig(),
    workers: int | None = None,
    library_leak: bool = False,
    record: bool = True,
    on_fold: Callable[[int], None] | None = None,
) -> Spectrum:
    """Cross-validated predictability of every gene set of ``collection`` on the store's paired slides.

    Parameters
    ----------
    folds
        Patient-level folds over the pairs.
    knn
        Soft-kNN neighbours and temperature (default ``SoftKNN()``).
    config
        Alignment training settings for each fold's heads.
    workers
        Processes fitting the folds side by side (default: the CPUs available).
    library_leak
        For tests only: evaluate carelessly, as scoring held-out slides with the
        deployed model and index would: heads fitted on every pair, and held-out
        patients' RNA left in the library and searchable. Shows how much that inflates R².
    record
        Write the results to ``prompt_eval_runs`` / ``prompt_eval_results`` / ``prompt_eval_calibration``,
        and the plot (:func:`plot_spectrum`) to the store's ``artifacts/evals/<eval_id>/spectrum.png``.
    """
    started = time.perf_counter()
    knn = knn or SoftKNN()
    pairs = load_pairs(store, "slide")
    gene_sets = resolve_prompts(store, collection=collection)
    library = Library(store)
    matches = library.match(gene_sets, min_genes=5)
    library_scores, _ = library.scores(gene_sets, matches)
    patient_of = {r.sample_id: r.patient_id for r in store.query("sample_patients")}
    library_patients = np.array([patient_of[s] for s in library.sample_ids])
    library_rna = _library_embeddings(store, pairs.rna_encoder, library.sample_ids)
    pair_rows = np.array([library.row[s] for s in pairs.sample_ids])
    truth = library_scores[pair_rows]

    splits = list(patient_folds(pairs.patients, folds, config.seed))
    with worker_pool(workers) as pool:
        fitted_on = [np.arange(len(pairs)) if library_leak else train for train, _ in splits]
        jobs = [(pairs.image[rows], pairs.rna[rows], pairs.patients[rows], config, library_rna, pairs.image)
                for rows in fitted_on]
        projected = run_jobs(pool, _fit_and_project, jobs)
        n, s = len(pairs), len(gene_sets)
        pred = {m: np.full((n, s), np.nan) for m in ("softknn", "softknn_calibrated", "mlp")}
        dispersion = np.full((n, s), np.nan)
        leaked = 0
        for i, ((train, test), (library_vecs, slide_vecs)) in enumerate(zip(splits, projected)):
            heldout = set(pairs.patients[test])
            searchable = np.ones(len(library), bool) if library_leak else ~np.isin(library_patients, list(heldout))
            leaked += int(np.isin(library_patients[searchable], list(heldout)).sum())
            index = build_faiss_index(library_vecs[searchable], "flat")
            rows_of = np.flatnonzero(searchable)

            def predict(idx):
                exclude = None if library_leak else pairs.patients[idx]
                rows, sims = _search(index, rows_of, library_patients, slide_vecs[idx], exclude, knn.k)
                return knn.predict(library_scores[rows], sims)

            on_train, on_test = predict(train), predict(test)
            pred["softknn"][test], dispersion[test] = on_test.score, on_test.dispersion
            pred["softknn_calibrated"][test] = _calibrate(on_train.score, truth[train], on_test.score)
            pred["mlp"][test] = mlp_predict(fit_mlp(slide_vecs[train], truth[train], config.seed)[0], slide_vecs[test])
            if on_fold:
                on_fold(i)

    rows = _metrics(truth, pred, [gs.name for gs in gene_sets])
    spectrum = Spectrum(None, rows, _dispersion_table(truth, pred["softknn_calibrated"], dispersion),
                        {"truth": truth, **pred, "dispersion": dispersion}, [gs.name for gs in gene_sets],
                        len(pairs), folds, library_leak, 0.0, leaked)
    spectrum.seconds = time.perf_counter() - started
    if record:
        spectrum.eval_id = _record(store, spectrum, collection, knn, config, pairs.snapshot, library.version)
        spectrum.plot = store.artifact_path(f"{eval_artifact(spectrum.eval_id)}/spectrum.png")
    return spectrum


def _fit_and_project(image, rna, patients, config, library_rna, all_image):
    from hquery.training.fit import fit_alignment, project

    model, _ = fit_alignment(image, rna, patients, config)
    return project(model, rna=library_rna), project(model, image=all_image)


def _library_embeddings(store: Store, rna_encoder: str, sample_ids: list[str]) -> np.ndarray:
    table = store.dataset(embedding_table("rna", rna_encoder))
    if table is None:
        raise StoreError(f"no RNA embeddings for encoder {rna_encoder}")
    data = table.to_table(columns=["sample_id", "embedding"])
    row = {s: i for i, s in enumerate(data["sample_id"].to_pylist())}
    missing = [s for s in sample_ids if s not in row]
    if missing:
        raise StoreError(f"profiles {', '.join(missing[:5])} have no {rna_encoder} embedding; re-ingest them")
    return vectors(data["embedding"])[[row[s] for s in sample_ids]]


def _search(index, rows_of: np.ndarray, library_patients: np.ndarray, queries: np.ndarray,
            exclude_patients: np.ndarray | None, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` library rows per query, skipping ``exclude_patients[i]``'s own profiles."""
    extra = 0 if exclude_patients is None else most_profiles_per_patient(library_patients[rows_of])
    sims, positions = index.search(np.ascontiguousarray(queries, dtype=np.float32), min(k + extra, len(rows_of)))
    rows = rows_of[positions]
    if exclude_patients is not None:
        rows, sims = skip_own_patient(rows, sims, library_patients, exclude_patients, k)
    return rows, sims


def _calibrate(train_pred: np.ndarray, train_truth: np.ndarray, test_pred: np.ndarray) -> np.ndarray:
    """Per column, the least-squares line truth ~ prediction from training slides, applied to test predictions."""
    out = np.empty_like(test_pred)
    for j in range(train_pred.shape[1]):
        slope, intercept = np.polyfit(train_pred[:, j], train_truth[:, j], 1)
        out[:, j] = intercept + slope * test_pred[:, j]
    return out


def _metrics(truth: np.ndarray, pred: dict[str, np.ndarray], names: list[str]) -> list[dict]:
    rows = []
    for j, name in enumerate(names):
        y = truth[:, j]
        for method, raw, calibrated in (("softknn", pred["softknn"], pred["softknn_calibrated"]),
                                        ("mlp", pred["mlp"], pred["mlp"])):
            rows.append({"gene_set": name, "method": method, "pearson_r": pearson_r(raw[:, j], y),
                         "r2": r_squared(raw[:, j], y), "r2_calibrated": r_squared(calibrated[:, j], y), "n": len(y)})
    best = {r["gene_set"]: r["r2_calibrated"] for r in rows if r["method"] == "softknn"}
    return sorted(rows, key=lambda r: (-best[r["gene_set"]], r["gene_set"], r["method"]))


def _dispersion_table(truth: np.ndarray, calibrated: np.ndarray, dispersion: np.ndarray, bins: int = 5) -> list[dict]:
    """Held-out error by quintile of dispersion, both in units of each gene set's truth SD, pooled over sets."""
    sd = truth.std(axis=0, keepdims=True)
    error = (np.abs(calibrated - truth) / sd).reshape(-1)
    spread = (dispersion / sd).reshape(-1)
    edges = np.quantile(spread, np.linspace(0, 1, bins + 1))
    which = np.clip(np.searchsorted(edges, spread, side="right") - 1, 0, bins - 1)
    return [{"quintile": q + 1, "dispersion_z": float(spread[which == q].mean()),
             "abs_error_z": float(error[which == q].mean()), "n": int((which == q).sum())} for q in range(bins)]


def _record(store: Store, spectrum: Spectrum, collection: str, knn: SoftKNN, config: AlignmentConfig,
            snapshot: dict, library_version: int) -> str:
    created = utcnow()
    eval_id = f"eval_{created:%Y%m%d_%H%M%S}_{uuid.uuid4().hex[:6]}"
    params = {"config": dataclasses.asdict(config), "data": snapshot, "library_version": library_version,
              "library_leak": spectrum.library_leak, "plot": f"{eval_artifact(eval_id)}/spectrum.png"}
    with store.transaction() as txn:
        plot_spectrum(spectrum, txn.stage_artifact(eval_artifact(eval_id)) / "spectrum.png")
        txn.insert("prompt_eval_runs", pa.Table.from_pylist([{
            "eval_id": eval_id, "created_at": created, "collection": collection, "folds": spectrum.n_folds,
            "k": knn.k, "tau": knn.tau, "n_slides": spectrum.n_slides, "seconds": spectrum.seconds,
            "params": json.dumps(params),
        }]))
        txn.insert("prompt_eval_results", pa.Table.from_pylist([{"eval_id": eval_id, **r} for r in spectrum.rows]))
        txn.insert("prompt_eval_calibration",
                   pa.Table.from_pylist([{"eval_id": eval_id, **r} for r in spectrum.calibration]))
    return eval_id


def plot_spectrum(spectrum: Spectrum, path: str | Path) -> Path:
    """A PNG: calibrated R² per gene set (Soft-kNN and MLP), and predicted vs true for the best and worst set."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(dict.fromkeys(r["gene_set"] for r in spectrum.rows))
    short = [n.removeprefix("HALLMARK_") for n in names]
    values = {m: [spectrum.metric(n, m) for n in names] for m in METHODS}
    fig = plt.figure(figsize=(14, 9), constrained_layout=True)
    grid = fig.add_gridspec(2, 2, height_ratios=[1.3, 1])
    bars = fig.add_subplot(grid[0, :])
    x = np.arange(len(names))
    bars.bar(x - 0.2, values["softknn"], 0.4, label="Soft-kNN (calibrated)")
    bars.bar(x + 0.2, values["mlp"], 0.4, label="MLP")
    bars.axhline(0, color="black", linewidth=0.6)
    bars.set_xticks(x, short, rotation=75, ha="right", fontsize=7)
    bars.set_ylabel("held-out R²")
    bars.set_title(f"Predictability spectrum: {spectrum.n_slides} slides, {spectrum.n_folds} patient-level folds")
    bars.legend()
    truth, calibrated = spectrum.predictions["truth"], spectrum.predictions["softknn_calibrated"]
    for col, name in ((0, names[0]), (1, names[-1])):
        ax = fig.add_subplot(grid[1, col])
        j = spectrum.gene_sets.index(name)
        ax.scatter(truth[:, j], calibrated[:, j], s=6, alpha=0.5)
        lo, hi = truth[:, j].min(), truth[:, j].max()
        ax.plot([lo, hi], [lo, hi], color="grey", linewidth=0.8)
        ax.set_xlabel("ssGSEA of measured RNA")
        ax.set_ylabel("predicted from H&E (calibrated)")
        ax.set_title(f"{short[names.index(name)]}: R² {spectrum.metric(name):.2f}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
