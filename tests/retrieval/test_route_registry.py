"""A new route is one module and one registry entry: a toy route registered here is fitted, predicted and reported
by prompting, the CLI and the predictability spectrum alike, with nothing else changed."""

import numpy as np
import pytest
from click.testing import CliRunner

from hquery.cli import main
from hquery.evaluation.spectrum import evaluate_prompts
from hquery.genesets import resolve_prompts
from hquery.library import Library
from hquery.retrieval.prompt import run_prompt
from hquery.retrieval.routes import (
    METHODS,
    Route,
    evaluated_r2,
    predict_fitted_routes,
    register_route,
    route_names,
    spectrum_route_names,
    unregister_route,
)
from hquery.retrieval.routes.registry import Slides
from hquery.training.heads import AlignmentConfig
from tests.conftest import copy_store

TOY = "type_mean"


def fit(train: Slides, truth: np.ndarray, seed: int):
    """Each cancer type's mean true score, and the overall mean for a type never seen."""
    types = np.asarray(train.cancer_types, object)
    return {t: truth[types == t].mean(axis=0) for t in set(types.tolist())}, truth.mean(axis=0)


def predict(fitted, query: Slides, earlier: dict) -> np.ndarray:
    means, overall = fitted
    return np.stack([means.get(t, overall) for t in query.cancer_types])


@pytest.fixture
def toy_route():
    register_route(Route(TOY, "type mean", "tmean", fit=fit, predict=predict))
    yield TOY
    unregister_route(TOY)


def test_a_registered_route_joins_every_list_and_leaves_with_its_entry(toy_route):
    assert route_names()[-1] == TOY and TOY in spectrum_route_names() and TOY in METHODS
    with pytest.raises(ValueError, match="already registered"):
        register_route(Route(TOY, "again", "again"))
    with pytest.raises(ValueError, match="needs nope"):
        register_route(Route("combined", "combined", "comb", needs=("nope",)))
    with pytest.raises(ValueError, match="routes ensemble need 'ridge_type'"):
        unregister_route("ridge_type")
    train = Slides(None, None, np.array(["A", "A", "B"], object))
    query = Slides(None, None, np.array(["B", "C"], object))
    truth = np.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])
    got = predict_fitted_routes(train, truth, query, 0, {}, (TOY,))
    np.testing.assert_allclose(got[TOY], [[5.0, 6.0], [3.0, 4.0]])  # B's mean; C unseen, the overall mean


def test_after_the_toy_route_leaves_only_the_built_in_routes_remain():
    assert route_names() == ("softknn", "mlp", "ridge_type", "ensemble", "histoprism")
    assert TOY not in METHODS


@pytest.mark.e2e
def test_a_toy_route_is_evaluated_by_the_spectrum_and_answers_prompts(indexed_store, tmp_path, toy_route):
    store = copy_store(indexed_store, tmp_path / "store")
    spectrum = evaluate_prompts(store, "hallmark", folds=2, config=AlignmentConfig(max_epochs=20), workers=2)
    assert TOY in spectrum.route_names and TOY in spectrum.methods
    toy_rows = [r for r in spectrum.rows if r["method"] == TOY]
    assert len(toy_rows) == len(spectrum.gene_sets) and all(np.isfinite(r["r2"]) for r in toy_rows)
    # a type's mean explains the type-level part of a score; within a type it varies only between the two folds'
    # training means (0.02 to 0.08 measured), where the floor reads the slide itself
    toy_within = np.nanmean([abs(r["r_within_type"]) for r in toy_rows])
    assert toy_within < 0.15 and toy_within < spectrum.means()["ridge_type"]["r_within_type"] - 0.1
    g2m = "HALLMARK_G2M_CHECKPOINT"
    assert spectrum.metric(g2m, TOY) < spectrum.metric(g2m, "ridge_type")
    recorded = evaluated_r2(store, [g2m])[g2m]
    assert recorded[TOY].r2 == pytest.approx(spectrum.metric(g2m, TOY, "r2_calibrated"))

    sets = resolve_prompts(store, ["HALLMARK_G2M"])
    run = run_prompt(store, sets, method=TOY)
    results = run.results.to_pylist()
    assert {r["route"] for r in results} == {TOY}
    assert all(r["trust"] == pytest.approx(recorded[TOY].r2) for r in results)
    # each slide's score is its cancer type's mean over the paired slides' measured scores
    library = Library(store)
    scores, _ = library.scores(sets, library.match(sets, 5))
    pairs = store.sql("select sample_id, cancer_type from pairs").to_pylist()
    by_type = {}
    for row in pairs:
        by_type.setdefault(row["cancer_type"], []).append(scores[library.row[row["sample_id"]], 0])
    for r in results[:20]:
        assert r["score"] == pytest.approx(np.mean(by_type[r["cancer_type"]]))

    cli = CliRunner().invoke(main, ["prompt", "--genes", "HALLMARK_G2M", "--method", TOY, "--limit", "3",
                                    "--store", str(store.root)])
    assert cli.exit_code == 0 and "by type_mean" in cli.output, cli.output
