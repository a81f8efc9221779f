"""Prompts the trained MLP answers: the collection's recorded predictor on the aligned embedding."""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np
from hquery.retrieval.prompt.recording import record_prompt
from hquery.retrieval.prompt.results import PromptRun, fixed_route, results_table
from hquery.retrieval.prompt.selection import aligned_vectors, select_slides
from hquery.training.predictor import Predictor, load_predictor

from hquery.errors import NotReadyError, PromptError
from hquery.genesets import GeneSet
from hquery.library import Library
from hquery.stats import library_standing
from hquery.store import Store


def serve_mlp(store: Store, gene_sets: Sequence[GeneSet], *, level, samples, cohort, where, min_genes, record,
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
        keys, queries = aligned_vectors(store, predictor.model_version, level, [r.sample_id for r in slides],
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
    results = results_table(keys, info, patients, matches, score, nan, nan[:, 0], fixed_route(store, matches, "mlp"),
                            standing)
    notes = late + ([] if level == "slide" else ["the MLP was trained on slides; tile scores extrapolate it"])
    run = PromptRun(None, results, matches, {gs.name: len(set(gs.members)) for gs in gene_sets}, computed, notes,
                    0.0)
    run.seconds = time.perf_counter() - started
    if record:
        run.run_id = record_prompt(store, run, gene_sets, method="mlp", level=level, knn=None, aggregate=None,
                                   model_version=predictor.model_version, index_version=None,
                                   library_version=library.version, n_samples=len(slides),
                                   extra={"predictor": predictor.version})
    return run


def covering_predictor(store: Store, gene_sets: Sequence[GeneSet]) -> Predictor | None:
    """The trained MLP that scores every one of ``gene_sets``, if the store has one."""
    collections = {gs.collection for gs in gene_sets}
    if len(collections) != 1 or "adhoc" in collections:
        return None
    try:
        predictor = load_predictor(store, collections.pop())
    except NotReadyError:
        return None
    return predictor if {gs.members_hash for gs in gene_sets} <= set(predictor.members_hashes) else None
