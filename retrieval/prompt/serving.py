"""Prompts answered over the index: ``auto``, Soft-kNN and every route fitted on the paired slides at prompt time."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence

import numpy as np
from hquery.retrieval.index import RNAIndex
from hquery.retrieval.neighbours import library_neighbours
from hquery.retrieval.prompt.histoprism import histoprism_route, usable_histoprism
from hquery.retrieval.prompt.mlp import covering_predictor
from hquery.retrieval.prompt.recording import record_prompt
from hquery.retrieval.prompt.results import PromptRun, results_table
from hquery.retrieval.prompt.selection import aligned_vectors, frozen_vectors, pair_vectors, select_slides
from hquery.retrieval.routes import (
    RouteChoice,
    Slides,
    choose_routes,
    predict_fitted_routes,
    route,
    routes,
    trust_of,
    with_needs,
)
from hquery.retrieval.softknn import SoftKNN
from hquery.training.pairs import load_pairs

from hquery.genesets import GeneSet
from hquery.library import Library
from hquery.scoring import GeneSetMatch, ssgsea
from hquery.stats import apply_lines, calibration_lines, library_standing
from hquery.store import Store


def serve_routes(store: Store, gene_sets: Sequence[GeneSet], method: str, *, level, knn, neighbours, aggregate,
                 samples, cohort, where, min_genes, index_version, record, started) -> PromptRun:
    """``auto``, ``softknn`` and every route fitted on the paired slides at prompt time (``ridge_type``,
    ``ensemble``, ...): Soft-kNN over the index, the others by their registered recipe. ``softknn`` returns raw
    scores; elsewhere Soft-kNN is calibrated."""
    names = [gs.name for gs in gene_sets]
    raw = method == "softknn"
    by_route: dict[str, np.ndarray] = {}
    with store.reading():
        library = Library(store)
        matches = library.match(gene_sets, min_genes)
        index = RNAIndex.load(store, index_version)
        slides = select_slides(store, samples=samples, cohort=cohort, where=where)
        late: list[str] = []
        keys, queries = aligned_vectors(store, index.model_version, level, [r.sample_id for r in slides], notes=late)
        predictor = covering_predictor(store, gene_sets) if method == "auto" else None
        usable = usable_histoprism(store) if method == "auto" else None
        if method == "auto":
            servable = {"mlp": predictor is not None, "histoprism": usable is not None}
            available = [r.name for r in routes() if r.served_by != "model" or servable.get(r.name, False)]
            choices, notes = choose_routes(store, names, available, usable)
        else:
            trust = trust_of(store, names, "softknn_raw" if raw else method)
            choices, notes = {n: RouteChoice(method, trust[n], None) for n in names}, []
        notes = late + notes
        needed = {c.route for c in choices.values()}
        computed = with_needs(needed)
        fitted_here = [name for name in computed if route(name).served_by == "pairs"]
        uses = set().union(*(route(name).uses for name in fitted_here))
        pairs = None if raw else load_pairs(store, "slide")
        cancer_type = {r.sample_id: r.cancer_type for r in store.query("sample_metadata")}
        query_ids = [s for s, _ in keys]
        if "softknn" in computed:
            rows, sims, plan_notes = library_neighbours(store, index, library, queries, query_ids, knn.k, neighbours,
                                                        saved=level == "slide")
            notes += plan_notes
            if rows.shape[1] < knn.k:
                notes.append(f"k={knn.k} is more than the {rows.shape[1]} library profiles a query can draw on; "
                             f"used k={rows.shape[1]}")
                knn = dataclasses.replace(knn, k=rows.shape[1])
            if not raw:
                # calibrated on the paired slides the index has projected; newer pairs wait for a reindex
                calibrated_on, pair_queries = aligned_vectors(store, index.model_version, "slide", pairs.sample_ids,
                                                              projected_only=True)
                calibrated_on = [sample for sample, _ in calibrated_on]
                pair_rows, pair_sims, _ = library_neighbours(store, index, library, pair_queries, calibrated_on, knn.k,
                                                             neighbours, saved=True)
        frozen = frozen_vectors(store, pairs.image_encoder, level, keys) if "image" in uses else None
        pair_aligned = pair_vectors(store, index.model_version, pairs.sample_ids) if "aligned" in uses else None
        if "mlp" in needed:
            _, aligned = aligned_vectors(store, predictor.model_version, level, query_ids, notes=[])
        if "histoprism" in needed:
            by_route["histoprism"], histoprism_notes, histoprism = histoprism_route(store, keys, level, gene_sets,
                                                                                    choices, min_genes)
            notes += histoprism_notes
        library_scores, todo = library.cached_scores(gene_sets)
    library_scores = library.fill_scores(library_scores, todo, gene_sets, matches)
    nan = np.full((len(keys), len(matches)), np.nan)
    dispersion, effective_k = nan.copy(), nan[:, 0]
    if "softknn" in computed:
        predicted = knn.predict(library_scores[rows], sims)
        dispersion, effective_k = predicted.dispersion, predicted.effective_k
        if raw:
            by_route["softknn"] = predicted.score if aggregate == "score" else _expression_scores(
                library, knn, rows, sims, matches)
        else:
            slope, intercept = calibration_lines(knn.predict(library_scores[pair_rows], pair_sims).score,
                                                 library_scores[[library.row[s] for s in calibrated_on]])
            by_route["softknn"] = apply_lines(predicted.score, slope, intercept)
            dispersion = dispersion * np.abs(slope)
    if fitted_here:
        truth = library_scores[[library.row[s] for s in pairs.sample_ids]]
        train = Slides(pairs.image, pair_aligned, np.array([cancer_type.get(s) for s in pairs.sample_ids], object))
        query = Slides(frozen, queries if "aligned" in uses else None,
                       np.array([cancer_type.get(s) for s in query_ids], object))
        by_route.update(predict_fitted_routes(train, truth, query, 0, by_route, fitted_here))
    if "mlp" in needed:
        columns = {h: j for j, h in enumerate(predictor.members_hashes)}
        by_route["mlp"] = predictor.predict(aligned)[:, [columns[gs.members_hash] for gs in gene_sets]]
    score = np.column_stack([by_route[choices[m.name].route][:, j] for j, m in enumerate(matches)])
    spread = np.array([route(choices[m.name].route).dispersion for m in matches])
    dispersion = np.where(spread[None, :], dispersion, np.nan)
    notes += _stale_index_notes(index, library) if "softknn" in computed else []
    if level == "tile" and needed - {"softknn"}:
        notes.append("the ridge, the MLP and the calibration lines were fitted on slides; tile scores extrapolate "
                     "them")
    info = {r.sample_id: r for r in slides}
    patients = np.array([info[s].patient_id for s in query_ids])
    standing = library_standing(score, library_scores, [cancer_type.get(s) for s in library.sample_ids],
                                [info[s].cancer_type for s in query_ids])
    results = results_table(keys, info, patients, matches, score, dispersion, effective_k, choices, standing)
    run = PromptRun(None, results, matches, {gs.name: len(set(gs.members)) for gs in gene_sets}, len(todo), notes,
                    0.0)
    run.seconds = time.perf_counter() - started
    if record:
        run.run_id = record_prompt(store, run, gene_sets, method=method, level=level, knn=knn,
                                   aggregate=aggregate if raw else None, model_version=index.model_version,
                                   index_version=index.version, library_version=library.version, n_samples=len(slides),
                                   extra={"neighbours": neighbours.as_json(), "notes": notes,
                                          **({} if raw else {"routes": {n: c.route for n, c in choices.items()}}),
                                          **({"predictor": predictor.version} if "mlp" in needed else {}),
                                          **({"histoprism": histoprism} if "histoprism" in needed else {})})
    return run


def _expression_scores(library: Library, knn: SoftKNN, rows: np.ndarray, sims: np.ndarray,
                       matches: Sequence[GeneSetMatch]) -> np.ndarray:
    """ssGSEA of each query's neighbour profiles averaged with the Soft-kNN weights (``aggregate="expression"``)."""
    expression = library.expression()
    profiles = np.concatenate([knn.average(expression[rows[i : i + 256]], sims[i : i + 256])
                               for i in range(0, len(rows), 256)])
    return ssgsea(profiles, [m.positions for m in matches])


def _stale_index_notes(index: RNAIndex, library: Library) -> list[str]:
    if len(index.ids) < len(library):
        return [f"the index holds {len(index.ids)} of the library's {len(library)} profiles; "
                "build the index again to search the new ones"]
    return []
