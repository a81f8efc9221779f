"""Prompts HistoPrism answers: ssGSEA on the expression it predicts from a slide's tiles and cancer type."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import numpy as np
from hquery.retrieval.prompt.recording import record_prompt
from hquery.retrieval.prompt.results import PromptRun, fixed_route, results_table
from hquery.retrieval.prompt.selection import select_slides
from hquery.retrieval.routes import Evaluated, RouteChoice
from hquery.training.bags import load_slide_bags

from hquery.errors import NotReadyError
from hquery.genesets import GeneSet
from hquery.library import match_with_minimum
from hquery.records import model_record
from hquery.scoring import GeneSetMatch, ssgsea
from hquery.store import Store


def serve_histoprism(store: Store, gene_sets: Sequence[GeneSet], *, level, samples, cohort, where, min_genes, record,
                     started) -> PromptRun:
    from hquery.training.histoprism import load_histoprism

    with store.reading():
        fitted, params = load_histoprism(store)
        slides = select_slides(store, samples=samples, cohort=cohort, where=where)
        bags = load_slide_bags(store, [r.sample_id for r in slides], image_encoder=params["image_encoder"])
    matches = _panel_matches(fitted, params, gene_sets, min_genes)
    keys, score, notes = histoprism_scores(fitted, params, bags, level, matches)
    info = {r.sample_id: r for r in slides}
    patients = np.array([info[s].patient_id for s, _ in keys])
    nan = np.full(score.shape, np.nan)
    # raw ssGSEA over HistoPrism's panel is on no library's scale: no standing
    results = results_table(keys, info, patients, matches, score, nan, nan[:, 0],
                            fixed_route(store, matches, "histoprism_raw"), (nan, nan))
    run = PromptRun(None, results, matches, {gs.name: len(set(gs.members)) for gs in gene_sets}, len(matches),
                    notes, 0.0)
    run.seconds = time.perf_counter() - started
    if record:
        run.run_id = record_prompt(store, run, gene_sets, method="histoprism", level=level, knn=None, aggregate=None,
                                   model_version=params["version"], index_version=None, library_version=None,
                                   n_samples=len(slides), extra={"panel": params["panel"]})
    return run


def _panel_matches(fitted, params: dict, gene_sets: Sequence[GeneSet], min_genes: int) -> list[GeneSetMatch]:
    return match_with_minimum(fitted.genes, gene_sets, min_genes, f"HistoPrism {params['version']}'s",
                              "; train it on more genes, e.g. the panel collection:hallmark",
                              needs="train histoprism --panel collection")


def histoprism_scores(fitted, params: dict, bags, level: str, matches: Sequence[GeneSetMatch]
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


def histoprism_route(store: Store, keys: list[tuple[str, int | None]], level: str, gene_sets: Sequence[GeneSet],
                     choices: dict[str, RouteChoice], min_genes: int) -> tuple[np.ndarray, list[str], str]:
    """HistoPrism's scores of ``keys`` on the truth's scale (each set through its evaluation's line), ``NaN``
    for the sets another route answers; notes; the model version."""
    from hquery.training.histoprism import load_histoprism

    fitted, params = load_histoprism(store)
    bags = load_slide_bags(store, sorted({s for s, _ in keys}), image_encoder=params["image_encoder"])
    wanted = [j for j, gs in enumerate(gene_sets) if choices[gs.name].route == "histoprism"]
    matches = _panel_matches(fitted, params, [gene_sets[j] for j in wanted], min_genes)
    found, raw, notes = histoprism_scores(fitted, params, bags, level, matches)
    row = {key: i for i, key in enumerate(found)}
    scores = np.full((len(keys), len(gene_sets)), np.nan)
    for column, j in enumerate(wanted):
        slope, intercept = choices[gene_sets[j].name].line
        scores[:, j] = raw[[row[key] for key in keys], column] * slope + intercept
    return scores, notes, params["version"]


def usable_histoprism(store: Store) -> Callable[[str, Evaluated], bool] | None:
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
