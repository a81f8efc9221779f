"""Answer a gene-set prompt: every selected slide (or tile) scored by Soft-kNN over the aligned RNA library.

For each query the FAISS index returns its top-``k`` RNA neighbours in the
aligned space. Neighbours from the query's own patient are skipped, so a slide
whose RNA is in the library is still predicted from histology alone. Then either

* ``aggregate="score"`` (default): the prediction is the softmax-weighted mean of
  the neighbours' ssGSEA scores; or
* ``aggregate="expression"``: the neighbours' log-expression profiles are averaged
  with the same weights and the gene set is scored on that one profile.

ssGSEA is rank-based and not linear, so the two differ: averaging profiles first
smooths away genes that vary between neighbours, and it scores a profile that no
sample has. They agree when the neighbours agree (``effective_k`` near 1 or a low
``dispersion``). Each prediction carries the weighted standard deviation of the
neighbours' scores (``dispersion``) and the effective number of neighbours.

That is ``method="softknn"``. ``method="mlp"`` answers with the collection's
trained predictor instead (:mod:`hquery.training.predictor`), and
``method="histoprism"`` scores each gene set by the same ssGSEA on the expression
HistoPrism predicts for the slide (or tile) from its tiles and cancer type
(:mod:`hquery.training.histoprism`). ``method="ridge_type"`` is the evaluations'
floor fitted on every paired slide (:class:`~hquery.training.type_ridge.TypeRidge`),
and ``method="ensemble"`` the mean of it and calibrated Soft-kNN: Soft-kNN's
scores through the line ``truth ~ score`` fitted on the paired slides, each
predicted from the library without its own patient.

``method="auto"`` (the default) answers each gene set by the route with the best
held-out R² in its newest ``hquery eval spectrum`` or ``eval compare``
(:mod:`hquery.retrieval.routes`), and Soft-kNN, calibrated, where the set was
never evaluated. HistoPrism is among the routes where ``eval compare`` scored
it on the deployed model's gene panel; its scores then go through that
evaluation's line onto the truth's scale. Every score carries its ``route`` and
that route's held-out R² as ``trust``.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable, Sequence

import numpy as np
import pyarrow as pa
from hquery.retrieval.index import RNAIndex
from hquery.retrieval.neighbours import (
    NeighbourRule,
    SampleMetadata,
    nearest_within,
    plan_neighbours,
    search_groups,
)
from hquery.retrieval.routes import (
    METHODS,
    Evaluated,
    RouteChoice,
    Slides,
    choose_routes,
    predict_fitted_routes,
    route,
    routes,
    trust_of,
    with_needs,
)
from hquery.retrieval.softknn import SoftKNN, most_profiles_per_patient
from hquery.training.bags import load_slide_bags
from hquery.training.pairs import cancer_types, load_pairs
from hquery.training.predictor import Predictor, load_predictor
from hquery.training.registry import load_model

from hquery.errors import InputError, NotReadyError, PromptError
from hquery.genesets import GeneSet
from hquery.library import Library, match_with_minimum
from hquery.names import embedding_table, projected_table
from hquery.records import model_record
from hquery.scoring import GeneSetMatch, ssgsea
from hquery.stats import apply_lines, calibration_lines, library_standing
from hquery.store import Store, StoreError, record_id, utcnow, vectors

LEVELS = ("slide", "tile")
AGGREGATES = ("score", "expression")


@dataclasses.dataclass
class PromptRun:
    run_id: str | None
    results: pa.Table
    """Long format: sample_id, tile_index, patient_id, cohort, cancer_type, gene_set, score, percentile, type_z,
    dispersion, effective_k, route, trust."""
    matches: list[GeneSetMatch]
    n_members: dict[str, int]
    computed_sets: int
    """Gene sets that needed ssGSEA over the library (0 when every score came from the cache)."""
    notes: list[str]
    seconds: float


def select_slides(store: Store, *, samples: Sequence[str] | None = None, cohort: str | None = None,
                  where: str | None = None, profiled: bool = False) -> list[tuple]:
    """Rows ``(sample_id, patient_id, cohort, cancer_type, has_expression)`` of the slides to score, named; with
    ``profiled``, of the samples with measured expression instead."""
    rows = store.query("profiled_samples" if profiled else "slide_samples")
    what = "measured expression" if profiled else "slide"
    if samples:
        known = {r.sample_id for r in rows}
        unknown = [s for s in samples if s not in known]
        if unknown:
            raise InputError(f"no {what} for sample(s) {', '.join(unknown[:10])}; the samples view lists those "
                             f"with {'has_expression' if profiled else 'has_slide'}")
        wanted = set(samples)
        rows = [r for r in rows if r.sample_id in wanted]
    if cohort:
        cohorts = {r.cohort for r in rows}
        rows = [r for r in rows if r.cohort == cohort]
        if not rows:
            raise InputError(f"no {what}s in cohort {cohort!r}; cohorts with them: {', '.join(sorted(cohorts))}")
    if where:
        matching = set(store.samples_where(where, library=profiled))
        rows = [r for r in rows if r.sample_id in matching]
    if not rows:
        raise StoreError(f"no {what}s to score: the store has none, or the filters excluded them all")
    return rows


def run_prompt(
    store: Store,
    gene_sets: Sequence[GeneSet],
    *,
    level: str = "slide",
    knn: SoftKNN | None = None,
    neighbours: NeighbourRule | None = None,
    aggregate: str = "score",
    method: str = "auto",
    samples: Sequence[str] | None = None,
    cohort: str | None = None,
    where: str | None = None,
    min_genes: int = 5,
    index_version: str | None = None,
    record: bool = True,
) -> PromptRun:
    """Score ``gene_sets`` on the selected slides (all of them by default).

    Parameters
    ----------
    level
        ``slide`` scores each slide from its slide embedding; ``tile`` scores every tile
        from its own tile embedding, through the same image head.
    knn
        Neighbour count ``k`` and softmax temperature ``tau`` (default ``SoftKNN()``: 32, 0.05).
    neighbours
        Which library profiles a query may draw from (default ``NeighbourRule()``:
        those of its own cancer type, where the library holds ``k`` of them; see
        :mod:`hquery.retrieval.neighbours`). The run's notes say which queries fell back.
    aggregate
        ``score`` or ``expression`` (see the module docstring; Soft-kNN only).
    method
        ``auto``: per gene set, the route with the best held-out R² in its newest
        evaluation (see the module docstring); ``softknn``; ``ridge_type`` or
        ``ensemble``; ``mlp``: the collection's trained predictor
        (:func:`~hquery.training.predictor.train_predictor`), which scores only the
        sets it was trained on and carries no dispersion or effective K; or
        ``histoprism``: ssGSEA on HistoPrism's predicted profile
        (:func:`~hquery.training.histoprism_trainer.train_histoprism`), any set with
        ``min_genes`` members in its gene panel.
    samples, cohort, where
        Which slides: sample ids, a cohort, or an SQL predicate over ``samples`` columns.
    min_genes
        A gene set with fewer members in the library's gene universe is an error.
    record
        Write the run and its scores to the catalog (``prompt_runs``, ``prompt_results``).

    Returns
    -------
    PromptRun with the long-format results and the run id.

    Examples
    --------
    >>> from hquery.genesets import resolve_prompts
    >>> run = run_prompt(store, resolve_prompts(store, ["MKI67,TOP2A,CD8A,COL1A1,VIM"]))
    >>> run.results.num_rows, run.results.column_names[:3]
    (36, ['sample_id', 'tile_index', 'patient_id'])
    """
    started = time.perf_counter()
    knn = knn or SoftKNN()
    neighbours = neighbours or NeighbourRule()
    if level not in LEVELS:
        raise ValueError(f"level must be one of {', '.join(LEVELS)}, not {level!r}")
    if aggregate not in AGGREGATES:
        raise ValueError(f"aggregate must be one of {', '.join(AGGREGATES)}, not {aggregate!r}")
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}, not {method!r}")
    if aggregate == "expression" and method != "softknn":
        raise InputError("--aggregate expression averages Soft-kNN neighbours' profiles; use it with --method softknn")
    if method != "auto" and route(method).served_by == "model":
        serve = _MODEL_SERVERS.get(method)
        if serve is None:
            raise PromptError(f"route {method!r} is served by a recorded model, and hquery has no code that serves it")
        return serve(store, gene_sets, level=level, samples=samples, cohort=cohort, where=where,
                     min_genes=min_genes, record=record, started=started)
    return _run_routes(store, gene_sets, method, level=level, knn=knn, neighbours=neighbours, aggregate=aggregate,
                       samples=samples, cohort=cohort, where=where, min_genes=min_genes,
                       index_version=index_version, record=record, started=started)


def score_measured(store: Store, gene_sets: Sequence[GeneSet], *, samples: Sequence[str] | None = None,
                   cohort: str | None = None, where: str | None = None, min_genes: int = 5,
                   record: bool = True) -> PromptRun:
    """Score ``gene_sets`` on the samples' **measured** expression (ssGSEA ES, from the library's cache).

    Recorded like a prompt (``method = 'measured'``), so the measured and the
    predicted scores of a sample sit side by side in ``prompt_results``
    (``source``). Each score carries its ``percentile`` and ``type_z`` as a
    prompt's does; dispersion and effective K are empty.

    Examples
    --------
    >>> from hquery.genesets import resolve_prompts
    >>> run = score_measured(store, resolve_prompts(store, ["MKI67,TOP2A,CD8A,COL1A1,VIM"]))
    >>> run.results.num_rows, set(run.results["route"].to_pylist())
    (30, {'measured'})
    """
    started = time.perf_counter()
    with store.reading():
        library = Library(store)
        matches = library.match(gene_sets, min_genes)
        rows = select_slides(store, samples=samples, cohort=cohort, where=where, profiled=True)
        cancer_type = {r.sample_id: r.cancer_type for r in store.query("sample_metadata")}
    library_scores, computed = library.scores(gene_sets, matches)
    keys = [(r.sample_id, None) for r in rows]
    score = library_scores[[library.row[r.sample_id] for r in rows]]
    standing = library_standing(score, library_scores, [cancer_type.get(s) for s in library.sample_ids],
                                [r.cancer_type for r in rows])
    info = {r.sample_id: r for r in rows}
    nan = np.full(score.shape, np.nan)
    choices = {m.name: RouteChoice("measured", float("nan"), None) for m in matches}
    results = _results_table(keys, info, np.array([r.patient_id for r in rows]), matches, score, nan, nan[:, 0],
                             choices, standing)
    run = PromptRun(None, results, matches, {gs.name: len(set(gs.members)) for gs in gene_sets}, computed, [], 0.0)
    run.seconds = time.perf_counter() - started
    if record:
        run.run_id = _record(store, run, gene_sets, method="measured", level="slide", knn=None, aggregate=None,
                             model_version=None, index_version=None, library_version=library.version,
                             n_samples=len(rows))
    return run


def _run_predictor(store: Store, gene_sets: Sequence[GeneSet], *, level, samples, cohort, where, min_genes, record,
                   started) -> PromptRun:

    collections = {gs.collection for gs in gene_sets}
    if len(collections) != 1 or "adhoc" in collections:
        raise PromptError("the MLP scores the gene sets of one trained collection (e.g. all of hallmark, or some of "
                          "its set names); score ad-hoc sets by Soft-kNN")
    with store.reading():
        library = Library(store)
        matches = library.match(gene_sets, min_genes)
        predictor = load_predictor(store, collections.pop())
        slides = select_slides(store, samples=samples, cohort=cohort, where=where)
        late: list[str] = []
        keys, queries = _query_vectors(store, predictor.model_version, level, [r.sample_id for r in slides],
                                       notes=late)
    columns = {h: j for j, h in enumerate(predictor.members_hashes)}
    unknown = [gs.name for gs in gene_sets if gs.members_hash not in columns]
    if unknown:
        raise NotReadyError(f"predictor {predictor.version} was not trained on {', '.join(unknown[:5])} (or their "
                         f"members changed); train it again", needs="train predictor", collection=predictor.collection)
    score = predictor.predict(queries)[:, [columns[gs.members_hash] for gs in gene_sets]]
    info = {r.sample_id: r for r in slides}
    patients = np.array([info[s].patient_id for s, _ in keys])
    nan = np.full(score.shape, np.nan)
    library_scores, computed = library.scores(gene_sets, matches)
    cancer_type = {r.sample_id: r.cancer_type for r in store.query("sample_metadata")}
    standing = library_standing(score, library_scores, [cancer_type.get(s) for s in library.sample_ids],
                                [info[s].cancer_type for s, _ in keys])
    results = _results_table(keys, info, patients, matches, score, nan, nan[:, 0], _fixed_route(store, matches, "mlp"),
                             standing)
    notes = late + ([] if level == "slide" else ["the MLP was trained on slides; tile scores extrapolate it"])
    run = PromptRun(None, results, matches, {gs.name: len(set(gs.members)) for gs in gene_sets}, computed, notes,
                    0.0)
    run.seconds = time.perf_counter() - started
    if record:
        run.run_id = _record(store, run, gene_sets, method="mlp", level=level, knn=None, aggregate=None,
                             model_version=predictor.model_version, index_version=None,
                             library_version=library.version, n_samples=len(slides),
                             extra={"predictor": predictor.version})
    return run


def _run_histoprism(store: Store, gene_sets: Sequence[GeneSet], *, level, samples, cohort, where, min_genes, record,
                    started) -> PromptRun:
    from hquery.training.histoprism import load_histoprism

    with store.reading():
        fitted, params = load_histoprism(store)
        slides = select_slides(store, samples=samples, cohort=cohort, where=where)
        bags = load_slide_bags(store, [r.sample_id for r in slides], image_encoder=params["image_encoder"])
    matches = _panel_matches(fitted, params, gene_sets, min_genes)
    keys, score, notes = _histoprism_scores(fitted, params, bags, level, matches)
    info = {r.sample_id: r for r in slides}
    patients = np.array([info[s].patient_id for s, _ in keys])
    nan = np.full(score.shape, np.nan)
    # raw ssGSEA over HistoPrism's panel is on no library's scale: no standing
    results = _results_table(keys, info, patients, matches, score, nan, nan[:, 0],
                             _fixed_route(store, matches, "histoprism_raw"), (nan, nan))
    run = PromptRun(None, results, matches, {gs.name: len(set(gs.members)) for gs in gene_sets}, len(matches),
                    notes, 0.0)
    run.seconds = time.perf_counter() - started
    if record:
        run.run_id = _record(store, run, gene_sets, method="histoprism", level=level, knn=None, aggregate=None,
                             model_version=params["version"], index_version=None, library_version=None,
                             n_samples=len(slides), extra={"panel": params["panel"]})
    return run


def _panel_matches(fitted, params: dict, gene_sets: Sequence[GeneSet], min_genes: int) -> list[GeneSetMatch]:
    return match_with_minimum(fitted.genes, gene_sets, min_genes, f"HistoPrism {params['version']}'s",
                              "; train it on more genes, e.g. the panel collection:hallmark",
                              needs="train histoprism --panel collection")


def _histoprism_scores(fitted, params: dict, bags, level: str, matches: Sequence[GeneSetMatch]
                       ) -> tuple[list[tuple[str, int | None]], np.ndarray, list[str]]:
    """Keys (in the bags' order), raw ssGSEA of HistoPrism's predicted profiles ``[keys, matches]``, and notes."""
    slide_profiles, tile_profiles = fitted.predict(bags, tiles=level == "tile")
    score = ssgsea(slide_profiles if level == "slide" else tile_profiles, [m.positions for m in matches])
    if level == "slide":
        keys = [(s, None) for s in bags.sample_ids]
    else:
        slide_of = np.repeat(np.arange(len(bags)), bags.n_tiles)
        keys = [(bags.sample_ids[i], int(t)) for i, t in zip(slide_of, bags.tile_index)]
    notes = []
    unknown = sorted({t or "(none)" for t, i in zip(bags.cancer_types, fitted.type_ids(bags.cancer_types)) if i == 0})
    if unknown and fitted.model.conditioning is not None:
        notes.append(f"cancer type(s) {', '.join(unknown)} were not among HistoPrism's "
                     f"({', '.join(fitted.cancer_types)}); those slides were predicted as type unknown")
    if level == "tile" and not params.get("n_spot_tiles"):
        notes.append("HistoPrism was trained without spot expression; tile scores extrapolate from bulk")
    return keys, score, notes


def _histoprism_route(store: Store, keys: list[tuple[str, int | None]], level: str, gene_sets: Sequence[GeneSet],
                      choices: dict[str, RouteChoice], min_genes: int) -> tuple[np.ndarray, list[str], str]:
    """HistoPrism's scores of ``keys`` on the truth's scale (each set through its evaluation's line), ``NaN``
    for the sets another route answers; notes; the model version."""
    from hquery.training.histoprism import load_histoprism

    fitted, params = load_histoprism(store)
    bags = load_slide_bags(store, sorted({s for s, _ in keys}), image_encoder=params["image_encoder"])
    wanted = [j for j, gs in enumerate(gene_sets) if choices[gs.name].route == "histoprism"]
    matches = _panel_matches(fitted, params, [gene_sets[j] for j in wanted], min_genes)
    found, raw, notes = _histoprism_scores(fitted, params, bags, level, matches)
    row = {key: i for i, key in enumerate(found)}
    scores = np.full((len(keys), len(gene_sets)), np.nan)
    for column, j in enumerate(wanted):
        slope, intercept = choices[gene_sets[j].name].line
        scores[:, j] = raw[[row[key] for key in keys], column] * slope + intercept
    return scores, notes, params["version"]


def _usable_histoprism(store: Store) -> Callable[[str, Evaluated], bool] | None:
    """Which HistoPrism evaluations the deployed model answers as evaluated (its gene panel and image encoder);
    ``None`` when the store has no HistoPrism."""
    try:
        deployed = model_record(store, "histoprism").params
    except NotReadyError:
        return None

    def usable(route: str, evaluated: Evaluated) -> bool:
        return route != "histoprism" or all(evaluated.params.get(key) == deployed[key]
                                            for key in ("panel", "image_encoder"))

    return usable


def _run_routes(store: Store, gene_sets: Sequence[GeneSet], method: str, *, level, knn, neighbours, aggregate,
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
        keys, queries = _query_vectors(store, index.model_version, level, [r.sample_id for r in slides], notes=late)
        predictor = _covering_predictor(store, gene_sets) if method == "auto" else None
        usable = _usable_histoprism(store) if method == "auto" else None
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
            rows, sims, plan_notes = _neighbours(store, index, library, queries, query_ids, knn.k, neighbours,
                                                 saved=level == "slide")
            notes += plan_notes
            if rows.shape[1] < knn.k:
                notes.append(f"k={knn.k} is more than the {rows.shape[1]} library profiles a query can draw on; "
                             f"used k={rows.shape[1]}")
                knn = dataclasses.replace(knn, k=rows.shape[1])
            if not raw:
                # calibrated on the paired slides the index has projected; newer pairs wait for a reindex
                calibrated_on, pair_queries = _query_vectors(store, index.model_version, "slide", pairs.sample_ids,
                                                             projected_only=True)
                calibrated_on = [sample for sample, _ in calibrated_on]
                pair_rows, pair_sims, _ = _neighbours(store, index, library, pair_queries, calibrated_on, knn.k,
                                                      neighbours, saved=True)
        frozen = _frozen_vectors(store, pairs.image_encoder, level, keys) if "image" in uses else None
        pair_aligned = _pair_vectors(store, index.model_version, pairs.sample_ids) if "aligned" in uses else None
        if "mlp" in needed:
            _, aligned = _query_vectors(store, predictor.model_version, level, query_ids, notes=[])
        if "histoprism" in needed:
            by_route["histoprism"], histoprism_notes, histoprism = _histoprism_route(store, keys, level, gene_sets,
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
    results = _results_table(keys, info, patients, matches, score, dispersion, effective_k, choices, standing)
    run = PromptRun(None, results, matches, {gs.name: len(set(gs.members)) for gs in gene_sets}, len(todo), notes,
                    0.0)
    run.seconds = time.perf_counter() - started
    if record:
        run.run_id = _record(store, run, gene_sets, method=method, level=level, knn=knn,
                             aggregate=aggregate if raw else None, model_version=index.model_version,
                             index_version=index.version, library_version=library.version, n_samples=len(slides),
                             extra={"neighbours": neighbours.as_json(), "notes": notes,
                                    **({} if raw else {"routes": {n: c.route for n, c in choices.items()}}),
                                    **({"predictor": predictor.version} if "mlp" in needed else {}),
                                    **({"histoprism": histoprism} if "histoprism" in needed else {})})
    return run


def _pair_vectors(store: Store, model_version: str, sample_ids: list[str]) -> np.ndarray:
    """The paired slides ``sample_ids`` in model ``model_version``'s shared space, in that order."""
    keys, found = _query_vectors(store, model_version, "slide", sample_ids)
    row = {sample: i for i, (sample, _) in enumerate(keys)}
    return found[[row[s] for s in sample_ids]]


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


def _covering_predictor(store: Store, gene_sets: Sequence[GeneSet]) -> Predictor | None:
    """The trained MLP that scores every one of ``gene_sets``, if the store has one."""
    collections = {gs.collection for gs in gene_sets}
    if len(collections) != 1 or "adhoc" in collections:
        return None
    try:
        predictor = load_predictor(store, collections.pop())
    except NotReadyError:
        return None
    return predictor if {gs.members_hash for gs in gene_sets} <= set(predictor.members_hashes) else None


def _frozen_vectors(store: Store, image_encoder: str, level: str, keys: list[tuple[str, int | None]]) -> np.ndarray:
    """The image encoder's own (unprojected) embeddings of ``keys``, in their order."""
    dataset = store.dataset(embedding_table(level, image_encoder))
    columns = ["sample_id", "embedding"] + (["tile_index"] if level == "tile" else [])
    table = dataset.to_table(columns=columns)
    tiles = table["tile_index"].to_pylist() if level == "tile" else [None] * table.num_rows
    row = {key: i for i, key in enumerate(zip(table["sample_id"].to_pylist(), tiles))}
    missing = [s for s, t in keys if (s, t) not in row]
    if missing:
        raise NotReadyError(f"{len(missing)} {level}(s) of {', '.join(sorted(set(missing))[:5])} have no "
                            f"{image_encoder} embedding; ingest them again", needs="ingest")
    return vectors(table["embedding"])[[row[key] for key in keys]]


def _fixed_route(store: Store, matches: Sequence[GeneSetMatch], method: str) -> dict[str, RouteChoice]:
    trust = trust_of(store, [m.name for m in matches], method)
    return {m.name: RouteChoice(method, trust[m.name], None) for m in matches}


def _results_table(keys, info, patients, matches, score, dispersion, effective_k,
                   choices: dict[str, RouteChoice], standing: tuple[np.ndarray, np.ndarray]) -> pa.Table:
    n_q, n_s = score.shape
    sample_ids = [s for s, _ in keys]
    return pa.table({
        "sample_id": pa.array(np.repeat(sample_ids, n_s).tolist(), pa.string()),
        "tile_index": pa.array(np.repeat([t for _, t in keys], n_s).tolist(), pa.int32()),
        "patient_id": pa.array(np.repeat(patients, n_s).tolist(), pa.string()),
        "cohort": pa.array(np.repeat([info[s].cohort for s in sample_ids], n_s).tolist(), pa.string()),
        "cancer_type": pa.array(np.repeat([info[s].cancer_type for s in sample_ids], n_s).tolist(), pa.string()),
        "gene_set": pa.array([m.name for m in matches] * n_q, pa.string()),
        "score": pa.array(score.reshape(-1), pa.float64()),
        "percentile": pa.array(standing[0].reshape(-1), pa.float64(), from_pandas=True),
        "type_z": pa.array(standing[1].reshape(-1), pa.float64(), from_pandas=True),
        "dispersion": pa.array(dispersion.reshape(-1), pa.float64(), from_pandas=True),
        "effective_k": pa.array(np.repeat(effective_k, n_s), pa.float64(), from_pandas=True),
        "route": pa.array([choices[m.name].route for m in matches] * n_q, pa.string()),
        "trust": pa.array([choices[m.name].trust for m in matches] * n_q, pa.float64(), from_pandas=True),
    })


def aligned_vectors(store: Store, model_version: str, level: str, sample_ids: list[str]
                    ) -> tuple[list[tuple[str, int | None]], np.ndarray]:
    """Slides' (or tiles') embeddings in alignment model ``model_version``'s shared space, as a prompt sees them:
    keys ``(sample_id, tile_index)`` sorted, and vectors."""
    return _query_vectors(store, model_version, level, sample_ids)


def _query_vectors(store: Store, model_version: str, level: str, sample_ids: list[str], *,
                   projected_only: bool = False, notes: list[str] | None = None
                   ) -> tuple[list[tuple[str, int | None]], np.ndarray]:
    """Keys and projected vectors of ``sample_ids`` (sorted).

    The index build projected every slide stored then. A slide ingested since is
    projected now, through the same model's image head (``notes`` says so), so
    only a new model needs a new index; with ``projected_only`` such slides are
    left out instead.
    """
    dataset = store.dataset(projected_table(level, model_version))
    if dataset is None:
        raise NotReadyError(f"no projected {level} embeddings for model {model_version}; build the index again",
                            needs="index")
    columns = ["sample_id", "vector"] + (["tile_index"] if level == "tile" else [])
    table = dataset.to_table(columns=columns)
    wanted = set(sample_ids)
    ids = table["sample_id"].to_pylist()
    keep = np.array([s in wanted for s in ids], dtype=bool)
    tiles = table["tile_index"].to_pylist() if level == "tile" else [None] * len(ids)
    keys = [(s, t) for s, t, k in zip(ids, tiles, keep) if k]
    found = vectors(table["vector"])[keep]
    unprojected = sorted(wanted - {s for s, _ in keys})
    if unprojected and not projected_only:
        late_keys, late = _project_now(store, model_version, level, unprojected)
        keys, found = keys + late_keys, np.concatenate([found, late])
        if notes is not None:
            notes.append(f"{len(unprojected)} slide(s) ({', '.join(unprojected[:3])}"
                         f"{', ...' if len(unprojected) > 3 else ''}) were ingested after the index was built; "
                         f"projected now through {model_version}'s image head")
    order = sorted(range(len(keys)), key=lambda i: (keys[i][0], keys[i][1] or 0))
    return [keys[i] for i in order], found[order]


def _project_now(store: Store, model_version: str, level: str, sample_ids: list[str]
                 ) -> tuple[list[tuple[str, int | None]], np.ndarray]:
    """Slides (or their tiles) the index never saw, through the alignment model's image head."""
    import pyarrow.compute as pc

    from hquery.training.fit import project

    model, record = load_model(store, "alignment", model_version)
    encoder = record.params["image_encoder"]
    dataset = store.dataset(embedding_table(level, encoder))
    columns = ["sample_id", "embedding"] + (["tile_index"] if level == "tile" else [])
    table = dataset.to_table(columns=columns, filter=pc.field("sample_id").isin(sample_ids)) if dataset else None
    missing = sorted(set(sample_ids) - set(table["sample_id"].to_pylist() if table is not None else []))
    if missing:
        raise NotReadyError(f"{len(missing)} slide(s) ({', '.join(missing[:5])}) have no {encoder} embedding, which "
                            f"model {model_version} reads; train the alignment and build the index again",
                            needs="train align")
    ids = table["sample_id"].to_pylist()
    type_of = cancer_types(store)
    projected = project(model, image=vectors(table["embedding"]), cancer_types=[type_of[s] for s in ids])
    tiles = table["tile_index"].to_pylist() if level == "tile" else [None] * len(ids)
    return list(zip(ids, tiles)), projected


def _neighbours(store: Store, index: RNAIndex, library: Library, queries: np.ndarray, query_samples: list[str],
                k: int, rule: NeighbourRule = NeighbourRule(), saved: bool = False
                ) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Library rows and similarities ``[queries, k]`` of each query's top-k under ``rule``, other patients only.

    With ``saved`` (slide-level queries), neighbours saved with the index answer
    wherever they cover the request, and no search runs. Returns the notes of the
    :class:`~hquery.retrieval.neighbours.NeighbourPlan` too.
    """
    metadata = SampleMetadata.load(store, rule.match)
    missing = [s for s in index.ids if s not in library.row]
    if missing:
        raise NotReadyError(f"index profiles {', '.join(missing[:5])} are not in the expression table; "
                         "build the index again", needs="index")
    ids = index.ids.tolist()
    index_patients = np.array([metadata.patient[s] for s in ids])
    allowed = None
    if rule.where:
        keep = set(store.samples_where(rule.where, library=True))
        allowed = np.array([s in keep for s in ids], bool)
        if not allowed.any():
            raise InputError(f"--neighbours-where {rule.where!r} keeps none of the index's {len(ids)} profiles")
    searchable = np.flatnonzero(allowed) if allowed is not None else np.arange(len(ids))
    k = min(k, len(searchable) - most_profiles_per_patient(index_patients[searchable]))
    if k < 1:
        raise StoreError("the library has no profiles from other patients to retrieve")
    plan = plan_neighbours([metadata.values.get(s) for s in query_samples], [metadata.values[s] for s in ids],
                           index_patients, k, columns=rule.match, allowed=allowed)
    stored = index.stored_neighbours() if saved and rule.where is None else None
    query_rows = [stored.row.get(s) for s in query_samples] if stored is not None else []

    def search(group, at, n):
        if stored is not None and all(query_rows[i] is not None for i in at):
            rows = [query_rows[i] for i in at]
            if group == 0 and stored.positions.shape[1] >= n:
                return stored.positions[rows, :n].astype(np.int64), stored.similarities[rows, :n]
            if group > 0 and stored.matched_on == rule.match and (stored.matched_positions[rows, :n] >= 0).all():
                return stored.matched_positions[rows, :n].astype(np.int64), stored.matched_similarities[rows, :n]
        if group == 0 and allowed is None:
            return index.search_positions(queries[at], n)
        return nearest_within(index.vectors(), plan.groups[group], queries[at], n)

    query_patients = np.array([metadata.patient[s] for s in query_samples])
    positions, sims = search_groups(plan, query_patients, index_patients, k, search)
    library_row = np.array([library.row[s] for s in ids], dtype=np.int64)
    return library_row[positions], sims, plan.notes


def _record(store: Store, run: PromptRun, gene_sets: Sequence[GeneSet], *, method: str, level: str,
            knn: SoftKNN | None, aggregate: str | None, model_version: str, index_version: str | None,
            library_version: int | None, n_samples: int, extra: dict | None = None) -> str:
    created = utcnow()
    run_id = record_id("prompt", created)
    by_name = {m.name: m for m in run.matches}
    with store.transaction() as txn:
        txn.insert("prompt_runs", pa.Table.from_pylist([{
            "run_id": run_id, "created_at": created, "method": method, "aggregate": aggregate, "level": level,
            "model_version": model_version, "index_version": index_version, "library_version": library_version,
            "k": knn.k if knn else None, "tau": knn.tau if knn else None, "n_samples": n_samples,
            "seconds": run.seconds, "params": json.dumps({"computed_sets": run.computed_sets, **(extra or {})}),
        }]))
        txn.insert("prompt_gene_sets", pa.Table.from_pylist([{
            "run_id": run_id, "gene_set": gs.name, "members_hash": gs.members_hash,
            "n_members": run.n_members[gs.name], "n_found": by_name[gs.name].n_found,
            "missing": list(by_name[gs.name].missing),
        } for gs in gene_sets]))
        txn.insert("prompt_scores", pa.table({"run_id": pa.array([run_id] * run.results.num_rows, pa.string())})
                   .append_column("sample_id", run.results["sample_id"])
                   .append_column("tile_index", run.results["tile_index"])
                   .append_column("gene_set", run.results["gene_set"])
                   .append_column("score", run.results["score"])
                   .append_column("percentile", run.results["percentile"])
                   .append_column("type_z", run.results["type_z"])
                   .append_column("dispersion", run.results["dispersion"])
                   .append_column("effective_k", run.results["effective_k"])
                   .append_column("route", run.results["route"])
                   .append_column("trust", run.results["trust"]))
    return run_id


_MODEL_SERVERS = {"mlp": _run_predictor, "histoprism": _run_histoprism}
"""How each route served by a recorded model answers a prompt."""
