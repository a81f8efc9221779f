"""Train HistoPrism on the store's paired slides, cross-validate it against ridge, record it as a version.

Cross-validation is patient-level. In every fold, on the same held-out slides:

* ``histoprism``: the model (:mod:`hquery.training.histoprism`);
* ``no_conditioning``: the same model without the cancer-type cross-attention (the ablation);
* ``ridge``: ridge regression from the frozen slide embedding (the mean of its
  tiles; for spots, the tile's own embedding), alpha chosen by leave-one-out on
  the training fold;
* ``ridge_type``: the same ridge, also given the cancer type one-hot, so it knows
  what the conditioned model knows.

Metrics per fold: Pearson r per gene across held-out slides (``slide``) and across
held-out tiles with spot expression (``spot``), averaged over the 50 most variable
genes of the panel (``pcc_hvg50``, HistoPrism's HVG benchmark) and over the
whole panel (``pcc_all``). From the out-of-fold predictions, GPC
(:mod:`hquery.training.coherence`) per pathway of a collection: within each cancer
type across slides, and within each spot sample across its tiles.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence

import numpy as np

from hquery.errors import InputError
from hquery.genesets import resolve_prompts
from hquery.library import Library
from hquery.names import Pointer
from hquery.parallel import run_jobs, worker_pool
from hquery.scoring import match_gene_sets
from hquery.stats import finite_mean, most_variable, pearson_per_column, ridge_regression
from hquery.store import Store, StoreError
from hquery.training.bags import SlideBags, load_slide_bags
from hquery.training.coherence import gene_pathway_coherence, mean_by, mean_over_groups, mean_over_pathways
from hquery.training.histoprism import FittedHistoPrism, HistoPrismConfig, fit_histoprism, load_histoprism  # noqa: F401
from hquery.training.pairs import check_one_resolution
from hquery.training.registry import save_model, version_id
from hquery.training.splits import patient_folds

METHODS = ("histoprism", "no_conditioning", "ridge", "ridge_type")
N_HVG = 50


@dataclasses.dataclass
class GenePanel:
    """The genes a HistoPrism predicts: positions in the gene universe, most variable first for ``hvg``."""

    spec: str
    positions: np.ndarray
    genes: list[str]
    hvg: np.ndarray
    """Panel columns of its ``N_HVG`` most variable genes."""


def gene_panel(store: Store, spec: str = "hvg:2000") -> GenePanel:
    """Resolve ``hvg:N`` (the N most variable genes over the paired bulk profiles) or ``collection:NAME``.

    Variance is taken over every paired profile, without looking at any image; the
    50 most variable genes of the panel are what ``pcc_hvg50`` averages over.
    """

    kind, _, value = spec.partition(":")
    library = Library(store)
    pairs = [r.sample_id for r in store.query("pairs") if r.sample_id in library.row]
    if len(pairs) < 10:
        raise StoreError(f"only {len(pairs)} paired slides with expression; HistoPrism needs at least 10")
    profiles = library.expression()[[library.row[s] for s in pairs]]
    if kind == "hvg":
        if not value.isdigit() or int(value) < N_HVG:
            raise InputError(f"gene panel {spec!r}: give hvg:N with N >= {N_HVG}, e.g. hvg:2000")
        positions = most_variable(profiles, int(value))
    elif kind == "collection":
        members = {g for gs in resolve_prompts(store, collection=value) for g in gs.members}
        positions = np.array([j for j, g in enumerate(library.universe) if g in members], dtype=np.int64)
        if len(positions) < N_HVG:
            raise InputError(f"gene panel {spec!r}: only {len(positions)} of its genes are in the library")
    else:
        raise InputError(f"gene panel {spec!r}: use hvg:N (e.g. hvg:2000) or collection:NAME "
                         "(e.g. collection:hallmark)")
    return GenePanel(spec, positions, [library.universe[j] for j in positions],
                     most_variable(profiles[:, positions], N_HVG))


@dataclasses.dataclass
class HistoPrismCV:
    """Per-fold metrics ``folds[i][method][level][metric]`` and the out-of-fold predictions."""

    folds: list[dict]
    slide_predictions: dict[str, np.ndarray]
    """Per method, ``[slides, genes]`` log1p, each slide predicted by the fold that held it out."""
    tile_predictions: dict[str, np.ndarray]
    """Per method, ``[tiles, genes]`` (rows of the bags' tiles with spot expression)."""

    def summary(self) -> dict:
        """``{method: {level: {metric: {mean, sd}}}}``."""
        out: dict = {}
        for method, by_level in self.folds[0].items():
            for level, metrics in by_level.items():
                for metric in metrics:
                    values = np.array([f[method][level][metric] for f in self.folds], dtype=float)
                    out.setdefault(method, {}).setdefault(level, {})[metric] = {
                        "mean": float(np.nanmean(values)),
                        "sd": float(np.nanstd(values, ddof=1)) if len(values) > 1 else 0.0}
        return out

    def rows(self) -> list[dict]:
        return [{"method": m, "direction": level, "metric": k, "fold": i, "value": float(v)}
                for i, fold in enumerate(self.folds) for m, by_level in fold.items()
                for level, metrics in by_level.items() for k, v in metrics.items()]


@dataclasses.dataclass
class HistoPrismReport:
    version: str
    panel: str
    n_genes: int
    n_slides: int
    n_patients: int
    n_spot_tiles: int
    cv: HistoPrismCV | None
    coherence: dict
    """``{"slide"|"spot": {method: {cancer_type: mean GPC over pathways}}}`` from the out-of-fold predictions."""
    pathway_coherence: dict
    """``{"slide"|"spot": {method: {pathway: mean GPC over cancer types}}}``."""
    history: dict
    seconds: float


def cross_validate_histoprism(bags: SlideBags, hvg: np.ndarray, config: HistoPrismConfig = HistoPrismConfig(), *,
                              folds: int = 5, workers: int | None = None, final: bool = False,
                              on_fit: Callable[[], None] | None = None
                              ) -> tuple[HistoPrismCV, FittedHistoPrism | None]:
    """Fit HistoPrism, its ablation and the ridge baselines on patient-level folds of ``bags``.

    With ``final``, the deployable model (fitted on every slide) is trained in the
    same pool and returned too. ``on_fit()`` is called as each model finishes.
    """
    vocabulary = sorted({t for t in bags.cancer_types if t})
    splits = list(patient_folds(bags.patients, folds, config.seed))
    variants = {"histoprism": config, "no_conditioning": dataclasses.replace(config, conditioning=False)}
    subsets = [(bags.subset(train), bags.subset(test)) for train, test in splits]
    with worker_pool(workers) as pool:
        jobs = [(train, test, cfg, vocabulary) for train, test in subsets for cfg in variants.values()]
        if final:
            jobs.append((bags, None, config, vocabulary))
        results = []
        for result in run_jobs(pool, _fit_and_predict, jobs):
            results.append(result)
            if on_fit:
                on_fit()
    fitted = results.pop()[0] if final else None
    has_spot = bags.spot_row >= 0
    slide_pred = {m: np.full(bags.bulk.shape, np.nan, np.float32) for m in METHODS}
    tile_pred = {m: np.full((int(has_spot.sum()), len(bags.genes)), np.nan, np.float32) for m in METHODS}
    spot_position = np.cumsum(has_spot) - 1
    fold_metrics = []
    for f, (train, test) in enumerate(splits):
        train_bags, test_bags = subsets[f]
        test_rows = bags.tile_rows(test)
        on_spot = has_spot[test_rows]
        for v, method in enumerate(variants):
            slide, tiles = results[f * len(variants) + v][1]
            slide_pred[method][test] = slide
            tile_pred[method][spot_position[test_rows[on_spot]]] = tiles[on_spot]
        for method, with_type in (("ridge", False), ("ridge_type", True)):
            slide, tiles = _ridge(train_bags, test_bags, vocabulary, with_type)
            slide_pred[method][test] = slide
            if tiles is not None:
                tile_pred[method][spot_position[test_rows[on_spot]]] = tiles
        fold_metrics.append({m: _metrics(slide_pred[m][test], bags.bulk[test],
                                         tile_pred[m][spot_position[test_rows[on_spot]]],
                                         bags.spots[bags.spot_row[test_rows[on_spot]]] if on_spot.any() else None, hvg)
                             for m in METHODS})
    return HistoPrismCV(fold_metrics, slide_pred, tile_pred), fitted


def predict_held_out(bags: SlideBags, splits: Sequence[tuple[np.ndarray, np.ndarray]],
                     config: HistoPrismConfig = HistoPrismConfig(), *, workers: int | None = None,
                     on_fit: Callable[[], None] | None = None) -> list[np.ndarray]:
    """HistoPrism fitted on each split's training slides: its slide-level predictions of the split's test slides.

    Parameters
    ----------
    bags
        Slides with their bulk targets (:func:`~hquery.training.bags.load_slide_bags` with ``genes``).
    splits
        ``(train, test)`` slide positions in ``bags``; the fits run in one worker pool.

    Returns
    -------
    list of numpy.ndarray
        Per split, ``[test slides, genes]`` log1p, in the split's test order.
    """
    vocabulary = sorted({t for t in bags.cancer_types if t})
    out = []
    with worker_pool(workers) as pool:
        jobs = [(bags.subset(train), bags.subset(test), config, vocabulary) for train, test in splits]
        for _, (slide, _) in run_jobs(pool, _fit_and_predict, jobs):
            out.append(slide)
            if on_fit:
                on_fit()
    return out


def _fit_and_predict(train: SlideBags, test: SlideBags | None, config: HistoPrismConfig, vocabulary: list[str]):
    fitted = fit_histoprism(train, config, cancer_types=vocabulary)
    return (fitted, None) if test is None else (None, fitted.predict(test))


def _ridge(train: SlideBags, test: SlideBags, vocabulary: list[str], with_type: bool):
    """Ridge from frozen embeddings (slide: mean of tiles; spot: the tile's), optionally with the type one-hot."""
    def features(bags: SlideBags, rows: np.ndarray | None = None) -> np.ndarray:
        x = (np.stack([bags.tiles[bags.rows(i)].mean(0) for i in range(len(bags))]) if rows is None
             else bags.tiles[rows])
        if not with_type:
            return x
        slide_of = np.arange(len(bags)) if rows is None else np.repeat(np.arange(len(bags)), bags.n_tiles)[rows]
        onehot = np.array([[t == u for u in vocabulary] for t in bags.cancer_types], np.float32)[slide_of]
        return np.hstack([x, onehot])

    slide = ridge_regression().fit(features(train), train.bulk).predict(features(test))
    train_spots, test_spots = np.flatnonzero(train.spot_row >= 0), np.flatnonzero(test.spot_row >= 0)
    if len(train_spots) < 10 or not len(test_spots):
        return slide, None
    model = ridge_regression().fit(features(train, train_spots), train.spots[train.spot_row[train_spots]])
    return slide, model.predict(features(test, test_spots))


def _metrics(slide, bulk, tiles, spots, hvg) -> dict[str, dict[str, float]]:
    out = {"slide": {"pcc_hvg50": finite_mean(pearson_per_column(slide[:, hvg], bulk[:, hvg])),
                     "pcc_all": finite_mean(pearson_per_column(slide, bulk))}}
    if spots is not None and len(spots) > 2:
        out["spot"] = {"pcc_hvg50": finite_mean(pearson_per_column(tiles[:, hvg], spots[:, hvg])),
                       "pcc_all": finite_mean(pearson_per_column(tiles, spots))}
    return out


def coherence_tables(bags: SlideBags, cv: HistoPrismCV, pathways: dict[str, np.ndarray]) -> dict:
    """GPC of each method's out-of-fold predictions: ``{level: {method: {cancer_type: {pathway: gpc}}}}``.

    ``slide``: per gene, r across the slides of a cancer type. ``spot``: per spot
    sample, r across its tiles; then averaged over the samples of each cancer type.
    """
    out: dict = {"slide": {}, "spot": {}}
    types = np.array([t or "unknown" for t in bags.cancer_types])
    has_spot = bags.spot_row >= 0
    slide_of_tile = np.repeat(np.arange(len(bags)), bags.n_tiles)[has_spot]
    for method in METHODS:
        out["slide"][method] = gene_pathway_coherence(cv.slide_predictions[method], bags.bulk, types, pathways)
        if has_spot.any() and np.isfinite(cv.tile_predictions[method]).all():
            per_sample = gene_pathway_coherence(cv.tile_predictions[method], bags.spots[bags.spot_row[has_spot]],
                                                slide_of_tile, pathways)
            out["spot"][method] = mean_by(per_sample, {i: types[i] for i in per_sample})
    if not out["spot"]:
        del out["spot"]
    return out


def train_histoprism(store: Store, genes: str = "hvg:2000", config: HistoPrismConfig = HistoPrismConfig(), *,
                     folds: int | None = 5, collection: str = "hallmark", image_encoder: str | None = None,
                     workers: int | None = None, on_fit: Callable[[], None] | None = None,
                     mixed_resolution: bool = False) -> HistoPrismReport:
    """Cross-validate HistoPrism (with its ablation and baselines), fit it on every pair, make it current.

    Parameters
    ----------
    genes
        The gene panel: ``hvg:N`` or ``collection:NAME`` (see :func:`gene_panel`).
    folds
        Patient-level folds; ``None`` skips cross-validation.
    collection
        The pathways GPC is reported for (per pathway in the model's metrics, ``gpc_pathways``).
    image_encoder
        Whose tile embeddings to read (default: the store's current encoder, frozen or PEKA-adapted).
    mixed_resolution
        Train on slides tiled at different µm per pixel (refused by default).
    """

    started = time.perf_counter()
    check_one_resolution(store, mixed_resolution)
    panel = gene_panel(store, genes)
    bags = load_slide_bags(store, genes=panel.positions, image_encoder=image_encoder)
    if folds:
        cv, fitted = cross_validate_histoprism(bags, panel.hvg, config, folds=folds, workers=workers, final=True,
                                               on_fit=on_fit)
        sets = resolve_prompts(store, collection=collection)
        pathways = {m.name: m.positions for m in match_gene_sets(panel.genes, {gs.name: gs.members for gs in sets})
                    if m.n_found >= 3}
        tables = coherence_tables(bags, cv, pathways)
        coherence = {level: {m: mean_over_pathways(t) for m, t in by_method.items()} for level, by_method in tables.items()}
        by_pathway = {level: {m: mean_over_groups(t) for m, t in by_method.items()}
                      for level, by_method in tables.items()}
    else:
        cv, coherence, by_pathway = None, {}, {}
        fitted = fit_histoprism(bags, config)
        if on_fit:
            on_fit()
    version = version_id("histoprism", {"config": dataclasses.asdict(config), "panel": genes, "data": bags.snapshot})
    metrics = {"cv": cv.summary() if cv else {}, "gpc": coherence, "gpc_pathways": by_pathway,
               "gpc_collection": collection}
    _record(store, fitted, version, config, panel, bags, metrics, cv.rows() if cv else [])
    return HistoPrismReport(version, genes, len(panel.genes), len(bags), len(set(bags.patients)),
                            int((bags.spot_row >= 0).sum()), cv, coherence, by_pathway, fitted.history,
                            time.perf_counter() - started)


def _record(store: Store, fitted: FittedHistoPrism, version: str, config: HistoPrismConfig, panel: GenePanel,
            bags: SlideBags, metrics: dict, cv_rows: list[dict]) -> None:
    params = {"config": dataclasses.asdict(config), "panel": panel.spec, "genes": panel.genes,
              "cancer_types": fitted.cancer_types, "in_dim": fitted.model.in_dim, "image_encoder": bags.image_encoder,
              "n_slides": len(bags), "n_spot_tiles": int((bags.spot_row >= 0).sum()), "history": fitted.history}
    with store.transaction() as txn:
        save_model(txn, "histoprism", fitted, kind="histoprism_expression", version=version, params=params,
                   snapshot=bags.snapshot, seed=config.seed, metrics=metrics, cv_rows=cv_rows,
                   pointer=Pointer.HISTOPRISM)

