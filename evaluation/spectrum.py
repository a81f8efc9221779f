"""The predictability spectrum: how well each gene set of a collection is predicted from H&E alone.

Patient-level cross-validation over the paired slides. In every fold:

1. projection heads are fitted on the training patients' pairs only;
2. the library is every stored RNA profile except the held-out patients' (their
   profiles are removed before anything is indexed, or a slide would retrieve its
   own RNA), projected by the fold's RNA head into a fresh exact index;
3. each held-out slide is scored by Soft-kNN, its neighbours drawn by the
   same :class:`~hquery.retrieval.neighbours.NeighbourRule` as a prompt (its own
   cancer type by default), and the truth is the ssGSEA score of its own measured RNA;
4. a linear calibration per gene set (truth ~ prediction) is fitted on the
   training slides, each predicted the same way from the library without its own
   patient, and applied to the held-out predictions;
5. every other registered route of the spectrum (:mod:`hquery.retrieval.routes`)
   is fitted on the training slides and predicts the held-out ones by its own
   recipe, the one a prompt fits it with: the MLP from the aligned slide embedding
   (the seed paper's trained-predictor alternative), the floor ``ridge_type`` (a
   ridge from the frozen slide embedding plus the cancer-type one-hot; a route that
   cannot beat it has learned nothing a linear map of the features and the
   manifest's type would not), and ``ensemble``, the mean of calibrated Soft-kNN
   and the floor.

``auto`` is what ``hquery prompt`` answers by default: per gene set, the route
with the best held-out R². Choosing on the same slides it is scored on would
flatter it, so its held-out predictions for fold *f* come from the route that
scored best on the other folds; the route a prompt uses (``Spectrum.routes``) is
chosen on all of them.

Pooled over folds, each gene set gets Pearson r, R², R² after calibration and
r within cancer type (each type's mean removed from prediction and truth, so
recognising the tumour type earns nothing). The
dispersion of the Soft-kNN neighbours is checked against the calibrated error in
quintiles: an honest uncertainty grows with the error.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa

from hquery.genesets import resolve_prompts
from hquery.library import Library
from hquery.names import embedding_table, eval_artifact
from hquery.parallel import run_jobs, worker_pool
from hquery.retrieval.index import build_faiss_index
from hquery.retrieval.neighbours import (
    NeighbourRule,
    SampleMetadata,
    nearest_within,
    plan_neighbours,
    search_groups,
)
from hquery.retrieval.routes import (
    Slides,
    best_route,
    plot_label,
    predict_fitted_routes,
    route_names,
    spectrum_route_names,
)
from hquery.retrieval.softknn import SoftKNN, most_profiles_per_patient
from hquery.stats import (
    apply_lines,
    calibration_lines,
    cross_fitted_lines,
    finite_mean,
    pearson_r,
    pearson_within_groups,
    r_squared,
)
from hquery.store import Store, StoreError, Transaction, record_id, utcnow, vectors
from hquery.training.heads import AlignmentConfig
from hquery.training.pairs import load_pairs
from hquery.training.splits import patient_folds
from hquery.training.type_ridge import UNKNOWN



@dataclasses.dataclass
class Spectrum:
    """Per-gene-set metrics, ``rows`` sorted by Soft-kNN calibrated R², best first."""

    eval_id: str | None
    rows: list[dict]
    """gene_set, method, pearson_r, r2, r2_calibrated, r_within_type, n, route (the route ``auto`` chose, else None)."""
    calibration: list[dict]
    """Soft-kNN held-out error by dispersion quintile: quintile, dispersion_z (mean), abs_error_z (mean), n."""
    predictions: dict[str, np.ndarray]
    """``truth``; each route's held-out scores (``softknn``, ``mlp``, ``ridge_type``, ``ensemble``, and any
    added), with ``ROUTE_calibrated`` where a line maps them onto the truth's scale (``softknn``); ``auto`` and
    ``dispersion``. All ``[slides, sets]``."""
    gene_sets: list[str]
    n_slides: int
    n_folds: int
    library_leak: bool
    seconds: float
    heldout_in_library: int = 0
    """Library profiles of held-out patients that were searchable (0 unless ``library_leak``)."""
    plot: Path | None = None
    """The recorded spectrum PNG."""
    neighbours: NeighbourRule = NeighbourRule()
    notes: list[str] = dataclasses.field(default_factory=list)
    """Per fold, which held-out slides fell back to the whole library (see :func:`plan_neighbours`)."""
    routes: dict[str, str] = dataclasses.field(default_factory=dict)
    """Per gene set, the route with the best held-out R² over all folds: what ``auto`` answers with."""
    fold_of: np.ndarray | None = None
    """Each slide's held-out fold."""
    cancer_types: np.ndarray | None = None
    route_params: dict[str, dict] = dataclasses.field(default_factory=dict)
    """What a prompt needs to answer by an added route as it was evaluated, kept with the run (e.g. HistoPrism's
    panel)."""
    lines: dict[str, tuple[np.ndarray, np.ndarray]] = dataclasses.field(default_factory=dict)
    """Per added route, the line (slope, intercept per set) from its raw scores to the truth's scale, fitted on
    every held-out prediction: what a prompt by that route's deployed model applies."""
    record_params: dict = dataclasses.field(default_factory=dict)
    """The settings and data versions the run is recorded with."""

    @property
    def methods(self) -> tuple[str, ...]:
        """The routes scored, then ``auto``."""
        return (*self.route_names, "auto")

    @property
    def route_names(self) -> tuple[str, ...]:
        return tuple(m for m in route_names() if m in self.predictions)

    def metric(self, gene_set: str, method: str = "softknn", name: str = "r2_calibrated") -> float:
        return next(r[name] for r in self.rows if r["gene_set"] == gene_set and r["method"] == method)

    def winner(self, gene_set: str) -> str:
        """The route with the best calibrated R² for ``gene_set``."""
        return best_route({m: self.metric(gene_set, m) for m in self.route_names})

    def means(self, gene_sets=None) -> dict[str, dict[str, float]]:
        """``{method: {metric: mean over gene_sets}}`` (all sets by default)."""
        wanted = set(gene_sets or self.gene_sets)
        return {m: {name: finite_mean(np.array([r[name] for r in self.rows if r["method"] == m
                                                 and r["gene_set"] in wanted], float))
                    for name in ("r2_calibrated", "pearson_r", "r_within_type")} for m in self.methods}

    def calibrated(self, route: str) -> np.ndarray:
        """``route``'s held-out scores on the truth's scale."""
        return self.predictions.get(f"{route}_calibrated", self.predictions[route])

    def add_route(self, route: str, scores: np.ndarray, params: dict | None = None) -> None:
        """Score another route on the same held-out slides; ``auto`` then chooses among it too.

        ``scores`` are raw (``[slides, sets]``, in this spectrum's slide order). Each
        fold's are put on the truth's scale by a line fitted on the other folds'
        held-out scores (:func:`~hquery.stats.cross_fitted_lines`), so the R² is
        held-out twice over; the line on all of them is kept (:attr:`lines`) for
        prompts by the route's deployed model.
        """
        truth = self.predictions["truth"]
        self.predictions[route] = scores
        self.predictions[f"{route}_calibrated"] = cross_fitted_lines(scores, truth, self.fold_of)
        self.lines[route] = calibration_lines(scores, truth)
        self.route_params[route] = params or {}
        self._score()

    def _score(self) -> None:
        """Choose ``auto``'s routes and compute every row from the predictions."""
        truth = self.predictions["truth"]
        self.predictions["auto"], self.routes = choose_routes_by_fold(
            {m: self.calibrated(m) for m in self.route_names}, truth, self.fold_of, self.gene_sets)
        self.rows = _metrics(truth, self.predictions, self.gene_sets, self.cancer_types, self.routes, self.methods)


def evaluate_prompts(
    store: Store,
    collection: str = "hallmark",
    *,
    folds: int = 5,
    knn: SoftKNN | None = None,
    neighbours: NeighbourRule | None = None,
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
    neighbours
        Which library profiles a held-out slide may draw from (default
        ``NeighbourRule()``, as for a prompt: its own cancer type where the fold's
        library holds ``k`` of them).
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
    neighbours = neighbours or NeighbourRule()
    inputs = SpectrumInputs.load(store, collection, neighbours)
    pairs, gene_sets, library, library_scores = inputs.pairs, inputs.gene_sets, inputs.library, inputs.library_scores
    metadata, library_patients, library_values = inputs.metadata, inputs.library_patients, inputs.library_values
    allowed, library_rna, truth, types = inputs.allowed, inputs.library_rna, inputs.truth, inputs.types

    splits = list(patient_folds(pairs.patients, folds, config.seed))
    with worker_pool(workers) as pool:
        fitted_on = [np.arange(len(pairs)) if library_leak else train for train, _ in splits]
        jobs = [(pairs.image[rows], pairs.rna[rows], pairs.patients[rows], pairs.cancer_types[rows], config,
                 library_rna, pairs.image, pairs.cancer_types) for rows in fitted_on]
        projected = run_jobs(pool, _fit_and_project, jobs)
        n, s = len(pairs), len(gene_sets)
        pred: dict[str, np.ndarray] = {}
        fold_of = np.zeros(n, np.int64)
        dispersion = np.full((n, s), np.nan)
        leaked, notes = 0, []
        for i, ((train, test), (library_vecs, slide_vecs)) in enumerate(zip(splits, projected)):
            heldout = set(pairs.patients[test])
            searchable = allowed & (True if library_leak else ~np.isin(library_patients, list(heldout)))
            leaked += int(np.isin(library_patients[searchable], list(heldout)).sum())
            fold = predict_split(pairs, train, test, library_vecs, slide_vecs, searchable, library_scores,
                                 library_patients, library_values, metadata, neighbours, knn, truth, types,
                                 config.seed, exclude_own_patient=not library_leak)
            notes += [f"fold {i + 1}: {note}" for note in fold.pop("notes")]
            fold_of[test] = i
            dispersion[test] = fold.pop("dispersion")
            for route, values in fold.items():
                pred.setdefault(route, np.full((n, s), np.nan))[test] = values
            if on_fold:
                on_fold(i)

    spectrum = Spectrum(None, [], _dispersion_table(truth, pred["softknn_calibrated"], dispersion),
                        {"truth": truth, **pred, "dispersion": dispersion}, [gs.name for gs in gene_sets],
                        len(pairs), folds, library_leak, 0.0, leaked, neighbours=neighbours, notes=notes,
                        fold_of=fold_of, cancer_types=types,
                        record_params={"collection": collection, "k": knn.k, "tau": knn.tau,
                                       "config": dataclasses.asdict(config), "data": pairs.snapshot,
                                       "library_version": library.version})
    spectrum._score()
    spectrum.seconds = time.perf_counter() - started
    if record:
        record_spectrum(store, spectrum)
    return spectrum


@dataclasses.dataclass
class SpectrumInputs:
    """What a held-out evaluation of a collection reads from the store: the pairs, the library, its scores."""

    pairs: object
    gene_sets: list
    library: Library
    library_scores: np.ndarray
    metadata: SampleMetadata
    library_patients: np.ndarray
    library_values: list[tuple]
    allowed: np.ndarray
    """Library profiles the neighbour rule's ``where`` lets a query draw from."""
    library_rna: np.ndarray
    truth: np.ndarray
    """ssGSEA of each pair's own measured RNA ``[pairs, sets]``."""
    types: np.ndarray

    @classmethod
    def load(cls, store: Store, collection: str, neighbours: NeighbourRule) -> SpectrumInputs:
        pairs = load_pairs(store, "slide")
        gene_sets = resolve_prompts(store, collection=collection)
        library = Library(store)
        library_scores, _ = library.scores(gene_sets, library.match(gene_sets, min_genes=5))
        metadata = SampleMetadata.load(store, neighbours.match)
        allowed = np.ones(len(library), bool)
        if neighbours.where:
            keep = set(store.samples_where(neighbours.where, library=True))
            allowed = np.array([s in keep for s in library.sample_ids], bool)
        return cls(pairs, gene_sets, library, library_scores, metadata,
                   np.array([metadata.patient[s] for s in library.sample_ids]),
                   [metadata.values[s] for s in library.sample_ids], allowed,
                   _library_embeddings(store, pairs.rna_encoder, library.sample_ids),
                   library_scores[np.array([library.row[s] for s in pairs.sample_ids])],
                   np.array([t or UNKNOWN for t in pairs.cancer_types]))


def predict_split(pairs, train: np.ndarray, test: np.ndarray, library_vecs: np.ndarray, slide_vecs: np.ndarray,
                  searchable: np.ndarray, library_scores: np.ndarray, library_patients: np.ndarray,
                  library_values: list[tuple], metadata: SampleMetadata, neighbours: NeighbourRule, knn: SoftKNN,
                  truth: np.ndarray, types: np.ndarray, seed: int, *, exclude_own_patient: bool = True,
                  routes: tuple[str, ...] | None = None) -> dict:
    """Held-out predictions of the ``test`` pairs by heads fitted on the ``train`` pairs (their projections are
    ``library_vecs`` and ``slide_vecs``), searching the ``searchable`` library profiles.

    Returns ``softknn``, ``softknn_calibrated`` (a line fitted on the training slides, each predicted from the
    library without its own patient), ``dispersion``, the neighbour plan's ``notes``, and the scores of every
    registered spectrum route fitted on the training slides (``mlp``, ``ridge_type``, ``ensemble``, ...;
    :func:`~hquery.retrieval.routes.predict_fitted_routes`), or of those of ``routes`` only. Shared by the
    cross-validated spectrum, ``hquery eval transfer`` and ``hquery eval adapt``.
    """
    rows_of = np.flatnonzero(searchable)
    search = _FoldSearch(library_vecs[rows_of], library_patients[rows_of], [library_values[r] for r in rows_of],
                         neighbours, knn.k)

    def predict(idx):
        values = [metadata.values[pairs.sample_ids[j]] for j in idx]
        exclude = pairs.patients[idx] if exclude_own_patient else np.full(len(idx), None, object)
        positions, sims, plan_notes = search(slide_vecs[idx], exclude, values)
        return knn.predict(library_scores[rows_of[positions]], sims), plan_notes

    (on_train, _), (on_test, notes) = predict(train), predict(test)
    out = {"softknn": on_test.score, "dispersion": on_test.dispersion, "notes": notes,
           "softknn_calibrated": apply_lines(on_test.score, *calibration_lines(on_train.score, truth[train]))}
    names = spectrum_route_names() if routes is None else routes
    slides = lambda rows: Slides(pairs.image[rows], slide_vecs[rows], types[rows])  # noqa: E731
    out.update(predict_fitted_routes(slides(train), truth[train], slides(test), seed,
                                     {"softknn": out["softknn_calibrated"]}, names))
    return out


class _FoldSearch:
    """One fold's searchable library: the exact index over all of it, and the neighbour rule's groups."""

    def __init__(self, vectors: np.ndarray, patients: np.ndarray, values: list[tuple], rule: NeighbourRule, k: int):
        self.vectors, self.patients, self.values, self.rule = vectors, patients, values, rule
        self.k = min(k, len(vectors) - most_profiles_per_patient(patients))
        if self.k < 1:
            raise StoreError("a fold's library has no profiles from other patients to retrieve")
        self.index = build_faiss_index(vectors, "flat")

    def __call__(self, queries: np.ndarray, query_patients: np.ndarray, query_values: list[tuple]):
        """Positions into this fold's library, similarities and the plan's notes for each query."""
        plan = plan_neighbours(query_values, self.values, self.patients, self.k, columns=self.rule.match)
        queries = np.ascontiguousarray(queries, dtype=np.float32)

        def search(group, at, n):
            if group == 0:
                sims, positions = self.index.search(queries[at], n)
                return positions, sims
            return nearest_within(self.vectors, plan.groups[group], queries[at], n)

        positions, sims = search_groups(plan, query_patients, self.patients, self.k, search)
        return positions, sims, plan.notes


def _fit_and_project(image, rna, patients, types, config, library_rna, all_image, all_types):
    from hquery.training.fit import fit_alignment, project

    model, _ = fit_alignment(image, rna, patients, config, cancer_types=types)
    return project(model, rna=library_rna), project(model, image=all_image, cancer_types=all_types)


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


def choose_routes_by_fold(predictions: dict[str, np.ndarray], truth: np.ndarray, fold_of: np.ndarray,
                          names: list[str]) -> tuple[np.ndarray, dict[str, str]]:
    """Held-out ``auto`` predictions, and each set's route chosen on every fold.

    Fold *f*'s predictions for a set come from the route of ``predictions`` with
    the best R² on the slides of the other folds, so no slide's truth picks its own route.
    """
    auto = np.full(truth.shape, np.nan)
    routes = {}
    for j, name in enumerate(names):
        for f in np.unique(fold_of):
            other, here = fold_of != f, fold_of == f
            chosen = best_route({m: r_squared(p[other, j], truth[other, j]) for m, p in predictions.items()})
            auto[here, j] = predictions[chosen][here, j]
        routes[name] = best_route({m: r_squared(p[:, j], truth[:, j]) for m, p in predictions.items()})
    return auto, routes


def _metrics(truth: np.ndarray, pred: dict[str, np.ndarray], names: list[str], types: np.ndarray,
             routes: dict[str, str], methods: tuple[str, ...]) -> list[dict]:
    rows = []
    for j, name in enumerate(names):
        y = truth[:, j]
        for method in methods:
            raw = pred[method]
            calibrated = pred.get(f"{method}_calibrated", raw)
            rows.append({"gene_set": name, "method": method, "pearson_r": pearson_r(raw[:, j], y),
                         "r2": r_squared(raw[:, j], y), "r2_calibrated": r_squared(calibrated[:, j], y),
                         "r_within_type": pearson_within_groups(raw[:, j], y, types), "n": len(y),
                         "route": routes[name] if method == "auto" else None})
    best = {r["gene_set"]: r["r2_calibrated"] for r in rows if r["method"] == methods[0]}
    return sorted(rows, key=lambda r: (-best[r["gene_set"]], r["gene_set"], methods.index(r["method"])))


def _dispersion_table(truth: np.ndarray, calibrated: np.ndarray, dispersion: np.ndarray, bins: int = 5) -> list[dict]:
    """Held-out error by quintile of dispersion, both in units of each gene set's truth SD, pooled over sets."""
    sd = truth.std(axis=0, keepdims=True)
    error = (np.abs(calibrated - truth) / sd).reshape(-1)
    spread = (dispersion / sd).reshape(-1)
    edges = np.quantile(spread, np.linspace(0, 1, bins + 1))
    which = np.clip(np.searchsorted(edges, spread, side="right") - 1, 0, bins - 1)
    return [{"quintile": q + 1, "dispersion_z": float(spread[which == q].mean()),
             "abs_error_z": float(error[which == q].mean()), "n": int((which == q).sum())} for q in range(bins)]


def record_spectrum(store: Store, spectrum: Spectrum, write: Callable[[Transaction, str], None] | None = None) -> str:
    """Write ``spectrum`` to ``prompt_eval_runs`` / ``prompt_eval_results`` / ``prompt_eval_calibration`` and its
    plot to ``artifacts/evals/<eval_id>/spectrum.png``, in one transaction with ``write(txn, eval_id)`` if given.

    Sets :attr:`Spectrum.eval_id` and :attr:`Spectrum.plot`; returns the eval id.
    """
    created = utcnow()
    eval_id = record_id("eval", created)
    settings = dict(spectrum.record_params)
    collection, k, tau = settings.pop("collection"), settings.pop("k"), settings.pop("tau")
    params = {**settings, "library_leak": spectrum.library_leak, "neighbours": spectrum.neighbours.as_json(),
              "notes": spectrum.notes, "plot": f"{eval_artifact(eval_id)}/spectrum.png",
              "routes": spectrum.route_params}
    lines = {(m, name): (float(slope[j]), float(intercept[j])) for m, (slope, intercept) in spectrum.lines.items()
             for j, name in enumerate(spectrum.gene_sets)}
    with store.transaction() as txn:
        plot_spectrum(spectrum, txn.stage_artifact(eval_artifact(eval_id)) / "spectrum.png")
        txn.insert("prompt_eval_runs", pa.Table.from_pylist([{
            "eval_id": eval_id, "created_at": created, "collection": collection, "folds": spectrum.n_folds,
            "k": k, "tau": tau, "n_slides": spectrum.n_slides, "seconds": spectrum.seconds,
            "params": json.dumps(params),
        }]))
        txn.insert("prompt_eval_results", pa.Table.from_pylist([
            {"eval_id": eval_id, **r, **dict(zip(("line_slope", "line_intercept"),
                                                 lines.get((r["method"], r["gene_set"]), (None, None))))}
            for r in spectrum.rows]))
        txn.insert("prompt_eval_calibration",
                   pa.Table.from_pylist([{"eval_id": eval_id, **r} for r in spectrum.calibration]))
        if write:
            write(txn, eval_id)
    spectrum.eval_id = eval_id
    spectrum.plot = store.artifact_path(f"{eval_artifact(eval_id)}/spectrum.png")
    return eval_id


def plot_spectrum(spectrum: Spectrum, path: str | Path) -> Path:
    """A PNG: calibrated R² per gene set for every method, and predicted vs true (Soft-kNN) for the best and worst set."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(dict.fromkeys(r["gene_set"] for r in spectrum.rows))
    short = [n.removeprefix("HALLMARK_") for n in names]
    methods = spectrum.methods
    values = {m: [spectrum.metric(n, m) for n in names] for m in methods}
    fig = plt.figure(figsize=(14, 9), constrained_layout=True)
    grid = fig.add_gridspec(2, 2, height_ratios=[1.3, 1])
    bars = fig.add_subplot(grid[0, :])
    x = np.arange(len(names))
    width = 0.85 / len(methods)
    for i, method in enumerate(methods):
        label = plot_label(method)
        bars.bar(x + (i - (len(methods) - 1) / 2) * width, values[method], width, label=label)
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
