"""The two routes to a prompt side by side: retrieval (Soft-kNN, MLP) against prediction (HistoPrism).

``compare_routes`` runs the predictability spectrum (:mod:`hquery.evaluation.spectrum`)
and HistoPrism's cross-validation (:mod:`hquery.training.histoprism_trainer`) on
the same patient-level folds of the same paired slides. HistoPrism predicts the
genes of the collection itself (``collection:NAME``), so every set is scored by
the same ssGSEA on its held-out predicted profile; the truth for all routes is
the ssGSEA of the slide's measured RNA.

When the library's gene universe is larger than the collection's genes, ssGSEA
on the panel ranks fewer genes, and HistoPrism's raw scores sit on another scale.
So they are put on the truth's scale as Soft-kNN's are, by a line, here fitted
for each fold on the other folds' held-out scores
(:meth:`~hquery.evaluation.spectrum.Spectrum.add_route`). HistoPrism then joins
the spectrum as a fifth route: ``auto`` chooses among all five, the whole
comparison is recorded as one evaluation, and the line fitted on every held-out
score is kept for prompts by the deployed HistoPrism (when it was trained on the
same panel).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from hquery.errors import NotReadyError
from hquery.evaluation.spectrum import evaluate_prompts, record_spectrum
from hquery.genesets import resolve_prompts
from hquery.names import eval_artifact
from hquery.retrieval.routes import plot_label, route_names
from hquery.scoring import match_gene_sets, ssgsea
from hquery.stats import finite_mean
from hquery.store import Store
from hquery.training.bags import load_slide_bags
from hquery.training.coherence import gene_pathway_coherence
from hquery.training.heads import AlignmentConfig
from hquery.training.histoprism import HistoPrismConfig
from hquery.training.histoprism_trainer import cross_validate_histoprism, gene_panel
from hquery.training.pairs import load_pairs

def compared_routes() -> tuple[str, ...]:
    """Every registered route (the spectrum's and HistoPrism), then ``auto`` among all of them."""
    return (*route_names(), "auto")


@dataclasses.dataclass
class RouteComparison:
    collection: str
    rows: list[dict]
    """Per gene set: ``gene_set``, each route's held-out R² (``softknn_r2`` and ``histoprism_r2`` after their
    lines, ``mlp_r2``, ``ridge_type_r2``, ``ensemble_r2``, ``auto_r2``), Pearson r (``*_r``) and r within cancer
    type (``*_r_type``), the route ``auto`` takes (``route``) and ``histoprism_gpc`` (slide-level GPC, mean over
    cancer types)."""
    expression: dict
    """HVG-50 PCC (slide and spot) of HistoPrism, its ablation and the ridge baselines: ``{method: {level: {mean, sd}}}``."""
    n_slides: int
    n_folds: int
    eval_id: str | None
    seconds: float
    plot: Path | None = None


def compare_routes(store: Store, collection: str = "hallmark", *, folds: int = 5, knn=None, neighbours=None,
                   config=None, alignment=None, workers: int | None = None,
                   on_step: Callable[[str], None] | None = None) -> RouteComparison:
    """Held-out accuracy of every gene set of ``collection`` by Soft-kNN, the MLP and HistoPrism.

    Parameters
    ----------
    knn, neighbours
        Soft-kNN settings and neighbour rule (defaults ``SoftKNN()``, ``NeighbourRule()``).
    config
        HistoPrism settings (default ``HistoPrismConfig()``); its seed also seeds the folds.
    alignment
        The spectrum's projection-head settings (default ``AlignmentConfig(seed=config.seed)``).
    """

    started = time.perf_counter()
    config = config or HistoPrismConfig()
    alignment = dataclasses.replace(alignment or AlignmentConfig(), seed=config.seed)
    spectrum = evaluate_prompts(store, collection, folds=folds, knn=knn, neighbours=neighbours, config=alignment,
                                workers=workers, record=False,
                                on_fold=(lambda i: on_step("spectrum")) if on_step else None)
    panel = gene_panel(store, f"collection:{collection}")
    bags = load_slide_bags(store, genes=panel.positions)
    check_same_slides(load_pairs(store, "slide").sample_ids, bags.sample_ids)
    cv, _ = cross_validate_histoprism(bags, panel.hvg, config, folds=folds, workers=workers,
                                      on_fit=(lambda: on_step("histoprism")) if on_step else None)
    sets = resolve_prompts(store, collection=collection)
    matches = match_gene_sets(panel.genes, {gs.name: gs.members for gs in sets})
    spectrum.add_route("histoprism", ssgsea(cv.slide_predictions["histoprism"], [m.positions for m in matches]),
                       {"panel": panel.spec, "image_encoder": bags.image_encoder,
                        "config": dataclasses.asdict(config)})
    types = np.array([t or "unknown" for t in bags.cancer_types])
    pathways = {m.name: m.positions for m in matches if m.n_found >= 3}
    gpc = gene_pathway_coherence(cv.slide_predictions["histoprism"], bags.bulk, types, pathways)
    rows = []
    for name in spectrum.gene_sets:
        values = [by_type[name] for by_type in gpc.values() if name in by_type]
        row = {"gene_set": name, "route": spectrum.routes[name]}
        for route in compared_routes():
            row[f"{route}_r2"] = spectrum.metric(name, route, "r2_calibrated")
            row[f"{route}_r"] = spectrum.metric(name, route, "pearson_r")
            row[f"{route}_r_type"] = spectrum.metric(name, route, "r_within_type")
        row["histoprism_gpc"] = finite_mean(np.array(values, dtype=float))
        rows.append(row)
    rows.sort(key=lambda r: -r["softknn_r2"])
    summary = cv.summary()
    expression = {m: {level: v["pcc_hvg50"] for level, v in by_level.items()} for m, by_level in summary.items()}
    comparison = RouteComparison(collection, rows, expression, len(bags), folds, None, 0.0)
    spectrum.seconds = comparison.seconds = time.perf_counter() - started

    def write_plot(txn, eval_id: str) -> None:
        plot_routes(comparison, txn.stage_artifact(eval_artifact(f"{eval_id}_routes")) / "routes.png")

    comparison.eval_id = record_spectrum(store, spectrum, write_plot)
    comparison.plot = store.artifact_path(eval_artifact(f"{comparison.eval_id}_routes")) / "routes.png"
    return comparison


def check_same_slides(pair_ids: list[str], bag_ids: list[str]) -> None:
    """The spectrum's pairs and HistoPrism's slides must be the same rows in the same order, or the folds differ."""

    if list(pair_ids) != list(bag_ids):
        raise NotReadyError("the aligned pairs and HistoPrism's slides differ (some paired slides lack an embedding "
                         "from the current encoder); train the alignment and build the index again first",
                            needs="train align")


def plot_routes(comparison: RouteComparison, path: str | Path) -> Path:
    """A PNG: held-out R² per gene set for each route and the floor, and HistoPrism's GPC."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [r["gene_set"].removeprefix(f"{comparison.collection.upper()}_") for r in comparison.rows]
    x = np.arange(len(names))
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(14, 9), sharex=True, constrained_layout=True,
                                      gridspec_kw={"height_ratios": [2, 1]})
    labels = [(route, plot_label(route)) for route in compared_routes()]
    width = 0.85 / len(labels)
    for k, (route, label) in enumerate(labels):
        top.bar(x + (k - (len(labels) - 1) / 2) * width, [r[f"{route}_r2"] for r in comparison.rows], width,
                label=label)
    top.axhline(0, color="black", linewidth=0.6)
    top.set_ylabel("held-out R² of ssGSEA")
    top.set_title(f"{comparison.collection}: {comparison.n_slides} slides, {comparison.n_folds} patient-level folds")
    top.legend()
    bottom.bar(x, [r["histoprism_gpc"] for r in comparison.rows], 0.6, color="tab:green")
    bottom.axhline(0, color="black", linewidth=0.6)
    bottom.set_ylabel("HistoPrism GPC (slide)")
    bottom.set_xticks(x, names, rotation=75, ha="right", fontsize=7)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path

