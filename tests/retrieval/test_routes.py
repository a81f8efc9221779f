"""Per-set route choice: routes read from the newest evaluation, fitted on the paired slides at prompt time."""

import json

import numpy as np
import polars as pl
import pyarrow as pa
import pytest

from hquery.genesets import resolve_prompts
from hquery.library import Library
from hquery.retrieval.prompt import run_prompt
from hquery.retrieval.routes import best_route, choose_routes, route_names
from hquery.store import utcnow
from hquery.training.pairs import load_pairs
from hquery.training.type_ridge import TypeRidge
from tests.conftest import copy_store

G2M, HYPOXIA, E2F = "HALLMARK_G2M_CHECKPOINT", "HALLMARK_HYPOXIA", "HALLMARK_E2F_TARGETS"


def record_eval(store, r2: dict[str, dict[str, float]], *, leak: bool = False, eval_id: str = "eval_hand",
                lines: dict[str, tuple[float, float]] | None = None, routes: dict | None = None) -> None:
    """A hand-made evaluation: ``{gene_set: {method: R²}}`` as `eval spectrum` records it; ``lines`` per set for
    HistoPrism and its ``routes`` params as `eval compare` records them."""
    with store.transaction() as txn:
        txn.insert("prompt_eval_runs", pa.Table.from_pylist([{
            "eval_id": eval_id, "created_at": utcnow(), "collection": "hallmark", "folds": 5, "k": 32, "tau": 0.05,
            "n_slides": 10, "seconds": 1.0, "params": json.dumps({"library_leak": leak, "routes": routes or {}})}]))
        txn.insert("prompt_eval_results", pa.Table.from_pylist([{
            "eval_id": eval_id, "gene_set": name, "method": method, "pearson_r": 0.5, "r2": value - 0.2,
            "r2_calibrated": value, "r_within_type": 0.4, "n": 10, "route": None,
            **dict(zip(("line_slope", "line_intercept"),
                       (lines or {}).get(name, (None, None)) if method == "histoprism" else (None, None)))}
            for name, by_method in r2.items() for method, value in by_method.items()]))


@pytest.fixture
def fresh(indexed_store, tmp_path):
    return copy_store(indexed_store, tmp_path / "store")


def test_best_route_prefers_the_highest_finite_r2_and_falls_back_to_softknn():
    assert best_route({"softknn": 0.2, "ridge_type": 0.3, "mlp": float("nan")}) == "ridge_type"
    assert best_route({"softknn": 0.3, "ensemble": 0.3}) == "softknn"  # ties go to the earlier route
    assert best_route({"softknn": float("nan")}) == "softknn" and best_route({}) == "softknn"


def test_routes_come_from_the_newest_careful_evaluation(fresh):
    record_eval(fresh, {G2M: {"softknn": 0.6, "ridge_type": 0.5, "ensemble": 0.55, "mlp": 0.9}}, eval_id="eval_a")
    choices, notes = choose_routes(fresh, [G2M, HYPOXIA], ["softknn", "ridge_type", "ensemble"])
    assert choices[G2M].route == "softknn" and choices[G2M].trust == pytest.approx(0.6)  # no MLP trained
    assert choices[HYPOXIA].route == "softknn" and np.isnan(choices[HYPOXIA].trust) and "no evaluation" in notes[0]
    record_eval(fresh, {G2M: {"softknn": 0.1, "ridge_type": 0.7, "ensemble": 0.65}}, eval_id="eval_b")
    record_eval(fresh, {G2M: {"softknn": 0.95, "ridge_type": 0.1}}, leak=True, eval_id="eval_leak")
    choices, _ = choose_routes(fresh, [G2M], route_names())
    assert choices[G2M].route == "ridge_type" and choices[G2M].eval_id == "eval_b"  # a leaky eval never counts


def test_auto_answers_each_set_by_its_route_and_carries_its_trust(fresh):
    sets = resolve_prompts(fresh, ["G2M", "HYPOXIA", "E2F"])
    record_eval(fresh, {G2M: {"softknn": 0.2, "ridge_type": 0.4, "ensemble": 0.3},
                        HYPOXIA: {"softknn": 0.5, "ridge_type": 0.1, "ensemble": 0.3},
                        E2F: {"softknn": 0.2, "ridge_type": 0.3, "ensemble": 0.45}})
    auto = pl.from_arrow(run_prompt(fresh, sets).results)
    routes = dict(auto.select("gene_set", "route").unique().iter_rows())
    assert routes == {G2M: "ridge_type", HYPOXIA: "softknn", E2F: "ensemble"}
    trust = dict(auto.select("gene_set", "trust").unique().iter_rows())
    assert trust == pytest.approx({G2M: 0.4, HYPOXIA: 0.5, E2F: 0.45})
    assert auto.filter(pl.col("route") == "ridge_type")["dispersion"].is_null().all()

    # the ridge route is the floor refitted on every paired slide
    pairs, library = load_pairs(fresh, "slide"), Library(fresh)
    scores, todo = library.cached_scores(sets)
    scores = library.fill_scores(scores, todo, sets, library.match(sets))
    types = {r.sample_id: r.cancer_type for r in fresh.query("slide_samples")}
    ridge = TypeRidge.fit(pairs.image, [types[s] for s in pairs.sample_ids],
                          scores[[library.row[s] for s in pairs.sample_ids]])
    by_sample = {s: i for i, s in enumerate(pairs.sample_ids)}
    g2m = auto.filter((pl.col("gene_set") == G2M) & pl.col("sample_id").is_in(pairs.sample_ids[:20]))
    expected = ridge.predict(pairs.image[[by_sample[s] for s in g2m["sample_id"]]], list(g2m["cancer_type"]))
    np.testing.assert_allclose(g2m["score"].to_numpy(), expected[:, [m.name for m in sets].index(G2M)], rtol=1e-6)

    # the ensemble is the mean of calibrated Soft-kNN and that ridge
    alone = {m: pl.from_arrow(run_prompt(fresh, sets, method=m, record=False).results).sort("sample_id", "gene_set")
             for m in ("ridge_type", "ensemble")}
    e2f = auto.filter(pl.col("gene_set") == E2F).sort("sample_id")["score"].to_numpy()
    np.testing.assert_allclose(e2f, alone["ensemble"].filter(pl.col("gene_set") == E2F)["score"].to_numpy())
    soft = 2 * e2f - alone["ridge_type"].filter(pl.col("gene_set") == E2F)["score"].to_numpy()
    raw = pl.from_arrow(run_prompt(fresh, sets, method="softknn", record=False).results)
    raw_e2f = raw.filter(pl.col("gene_set") == E2F).sort("sample_id")["score"].to_numpy()
    assert np.corrcoef(soft, raw_e2f)[0, 1] == pytest.approx(1.0, abs=1e-6)  # a line through raw Soft-kNN
    recorded = fresh.sql("select params from prompt_runs where method = 'auto'").to_pylist()
    assert json.loads(recorded[0]["params"])["routes"] == routes


def test_auto_without_an_evaluation_calibrates_soft_knn_and_says_so(fresh):
    sets = resolve_prompts(fresh, ["G2M"])
    run = run_prompt(fresh, sets, record=False)
    assert any("no evaluation" in n for n in run.notes)
    frame = pl.from_arrow(run.results)
    assert set(frame["route"]) == {"softknn"} and frame["trust"].is_null().all()
    raw = pl.from_arrow(run_prompt(fresh, sets, method="softknn", record=False).results)
    assert np.corrcoef(frame["score"].to_numpy(), raw["score"].to_numpy())[0, 1] == pytest.approx(1.0, abs=1e-6)
    # calibrated onto the scale of measured scores: the paired slides' mean matches their truth's
    library, pairs = Library(fresh), load_pairs(fresh, "slide")
    truth = library.fill_scores(*library.cached_scores(sets), sets, library.match(sets))[
        [library.row[s] for s in pairs.sample_ids], 0]
    paired = frame.filter(pl.col("sample_id").is_in(pairs.sample_ids))["score"].to_numpy()
    assert abs(paired.mean() - truth.mean()) < 0.05 * truth.std()


def test_auto_answers_by_histoprism_through_its_evaluations_line(fresh):
    """HistoPrism is a route where its evaluation fitted a line and used the deployed model's gene panel."""
    from hquery.training.histoprism import HistoPrismConfig
    from hquery.training.histoprism_trainer import train_histoprism

    trained = train_histoprism(fresh, "collection:hallmark", HistoPrismConfig(dim=32, max_epochs=3), folds=None)
    encoder = fresh.setting("image_encoder")
    sets = resolve_prompts(fresh, ["G2M", "HYPOXIA"])
    r2 = {G2M: {"softknn": 0.2, "ridge_type": 0.3, "histoprism": 0.6}, HYPOXIA: {"softknn": 0.5, "histoprism": 0.7}}
    record_eval(fresh, r2, lines={G2M: (2.0, 100.0)}, eval_id="eval_compare",
                routes={"histoprism": {"panel": "collection:hallmark", "image_encoder": encoder}})
    auto = pl.from_arrow(run_prompt(fresh, sets, record=False).results)
    assert dict(auto.select("gene_set", "route").unique().iter_rows()) == {G2M: "histoprism", HYPOXIA: "softknn"}
    assert auto.filter(pl.col("gene_set") == G2M)["trust"].unique().to_list() == [pytest.approx(0.6)]
    raw = pl.from_arrow(run_prompt(fresh, sets, method="histoprism", record=False).results)
    by_sample = lambda frame: frame.filter(pl.col("gene_set") == G2M).sort("sample_id")["score"].to_numpy()
    np.testing.assert_allclose(by_sample(auto), 2.0 * by_sample(raw) + 100.0, rtol=1e-6)
    # HYPOXIA's HistoPrism row has no line (an older evaluation): it cannot be answered on the truth's scale
    # evaluated on another panel than the deployed model's, HistoPrism is not a route either
    record_eval(fresh, r2, lines={G2M: (2.0, 100.0)}, eval_id="eval_other_panel",
                routes={"histoprism": {"panel": "hvg:2000", "image_encoder": encoder}})
    choices = pl.from_arrow(run_prompt(fresh, sets, record=False).results).select("gene_set", "route").unique()
    assert dict(choices.iter_rows()) == {G2M: "ridge_type", HYPOXIA: "softknn"} and trained.panel != "hvg:2000"
