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

One module per concept: which slides and their vectors (:mod:`.selection`),
serving over the index and the paired slides (:mod:`.serving`), the routes a
recorded model serves (:mod:`.mlp`, :mod:`.histoprism`), the results table
(:mod:`.results`) and the catalog record (:mod:`.recording`); each query's
neighbours come from :func:`hquery.retrieval.neighbours.library_neighbours`.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np
from hquery.retrieval.neighbours import NeighbourRule
from hquery.retrieval.prompt.histoprism import serve_histoprism
from hquery.retrieval.prompt.mlp import serve_mlp
from hquery.retrieval.prompt.recording import record_prompt
from hquery.retrieval.prompt.results import AGGREGATES, LEVELS, PromptRun, results_table
from hquery.retrieval.prompt.selection import aligned_vectors, select_slides
from hquery.retrieval.prompt.serving import serve_routes
from hquery.retrieval.routes import METHODS, RouteChoice, route
from hquery.retrieval.softknn import SoftKNN

from hquery.errors import InputError, PromptError
from hquery.genesets import GeneSet
from hquery.library import Library
from hquery.stats import library_standing
from hquery.store import Store

__all__ = ["AGGREGATES", "LEVELS", "PromptRun", "aligned_vectors", "run_prompt", "score_measured", "select_slides"]


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
    return serve_routes(store, gene_sets, method, level=level, knn=knn, neighbours=neighbours, aggregate=aggregate,
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
    results = results_table(keys, info, np.array([r.patient_id for r in rows]), matches, score, nan, nan[:, 0],
                            choices, standing)
    run = PromptRun(None, results, matches, {gs.name: len(set(gs.members)) for gs in gene_sets}, computed, [], 0.0)
    run.seconds = time.perf_counter() - started
    if record:
        run.run_id = record_prompt(store, run, gene_sets, method="measured", level="slide", knn=None, aggregate=None,
                                   model_version=None, index_version=None, library_version=library.version,
                                   n_samples=len(rows))
    return run


_MODEL_SERVERS = {"mlp": serve_mlp, "histoprism": serve_histoprism}
"""How each route served by a recorded model answers a prompt."""
