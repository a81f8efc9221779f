"""The refresh loop on the small demo, ingested in two batches: no-op, promote, reject, the lock, a kill."""

import json
import os
import signal
import subprocess
import sys

import pytest

from hquery.demo import SIZES
from hquery.genesets import resolve_prompts
from hquery.ingest import ingest_cohort
from hquery.ingest.image_encoders import parse_image_encoder
from hquery.pipelines.refresh import paired_tolerance, parse_interval, refresh, service_model
from hquery.retrieval import build_index, run_prompt
from hquery.store import Store, StoreError
from hquery.training import AlignmentConfig, train_alignment
from tests.conftest import copy_store

QUICK = AlignmentConfig(max_epochs=40)
WEAK = AlignmentConfig(max_epochs=2)
"""The model in service is under-trained on purpose, so that a candidate with more pairs and epochs beats it."""


@pytest.fixture(scope="module")
def batches(demo_store, small_demo, tmp_path_factory):
    """The small demo serving a weak model of its first batch, and a copy with the second batch ingested too."""
    root = tmp_path_factory.mktemp("refresh")
    store = copy_store(demo_store, root / "served")
    train_alignment(store, config=WEAK)
    build_index(store)
    grown = copy_store(store, root / "grown")
    ingest_cohort(grown, small_demo.later_manifest, expression=small_demo.later_expression, name="demo")
    return store, grown


def runs(store):
    return store.sql("select * from refresh_runs order by started_at").to_pylist()


def test_nothing_new_is_a_quick_no_op(batches, tmp_path):
    store = copy_store(batches[0], tmp_path / "store")
    index = store.setting("current_index")
    report = refresh(store, config=QUICK)
    assert report.status == "nothing_new" and report.n_new_pairs == 0 and "forced refresh" in report.reason
    assert store.setting("current_index") == index
    assert [r["status"] for r in runs(store)] == ["nothing_new"]


def test_new_pairs_promote_a_model_that_does_not_retrieve_worse(batches, tmp_path):
    store = copy_store(batches[1], tmp_path / "store")
    before = service_model(store)
    index = store.setting("current_index")
    report = refresh(store, config=QUICK)
    assert report.status == "promoted", report.summary()
    later = SIZES["small"].later_patients
    assert report.n_new_pairs >= later and report.n_eval_patients == later // 2
    assert report.candidate_recall_at_10 > report.service_recall_at_10 + 0.05, report.summary()
    assert service_model(store) == report.candidate_model != before
    assert store.setting("current_index") == report.index_version != index
    row = runs(store)[-1]
    assert row["status"] == "promoted" and row["finished_at"] is not None
    assert [s["step"] for s in json.loads(row["steps"])][-1] == "built the index"
    # the promoted model was trained on every pair, so nothing is new now
    assert refresh(store, config=QUICK).status == "nothing_new"


def test_a_candidate_below_the_tolerance_is_rejected_and_nothing_moves(batches, tmp_path):
    store = copy_store(batches[1], tmp_path / "store")
    index, model = store.setting("current_index"), store.setting("alignment_model")
    report = refresh(store, config=QUICK, tolerance=-1.0)  # must beat the service model by a whole recall unit
    assert report.status == "rejected" and "fell from" in report.reason and report.tolerance == -1.0
    assert store.setting("current_index") == index and store.setting("alignment_model") == model
    assert runs(store)[-1]["candidate_recall_at_10"] == pytest.approx(report.candidate_recall_at_10)


def test_a_rejected_refresh_with_peka_keeps_the_encoder_the_service_model_reads(batches, tmp_path):
    from hquery.training.peka import PEKAConfig

    store = copy_store(batches[1], tmp_path / "store")
    encoder, spec = store.setting("image_encoder"), store.setting("image_encoder_spec")
    report = refresh(store, config=QUICK, tolerance=-1.0, peka=PEKAConfig(epochs=1))
    assert report.status == "rejected" and report.peka_adapter == store.setting("peka_adapter")
    steps = [s["step"] for s in report.steps]
    assert steps[1:3] == ["fitted the PEKA adapter", "re-embedded the slides"]
    adapted = f"slide_embeddings__{parse_image_encoder(spec).with_adapter(report.peka_adapter).version}"
    assert store.dataset(adapted).count_rows() == store.dataset(f"slide_embeddings__{encoder}").count_rows()
    assert store.setting("image_encoder") == encoder and store.setting("image_encoder_spec") == spec


def test_one_refresh_at_a_time(batches, tmp_path):
    store = copy_store(batches[1], tmp_path / "store")
    with store.refresh_lock():
        with pytest.raises(StoreError, match="is refreshing"):
            refresh(store, config=QUICK)
    assert runs(store) == []


def test_killed_mid_refresh_the_store_keeps_serving_the_last_promoted_index(batches, tmp_path):
    store = copy_store(batches[1], tmp_path / "store")
    index = store.setting("current_index")
    indexed = [r[0] for r in batches[0].query("slide_samples")][:5]  # first-batch slides, which the index knows
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    process = subprocess.Popen([sys.executable, "-m", "hquery", "refresh", "--store", str(store.root)],
                               stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=env)
    prompted = None
    try:
        for line in process.stderr:
            if "fitted the candidate" in line:  # a prompt while the refresh runs answers from the old index
                prompted = run_prompt(store, resolve_prompts(store, ["G2M"]), samples=indexed)
            if "fitted the deployable model" in line:  # the new model is recorded, the index not yet built
                process.send_signal(signal.SIGKILL)
                break
    finally:
        process.kill()
        process.wait()
    assert prompted is not None and prompted.results.num_rows == 5
    reopened = Store.open(store.root)
    answered = reopened.sql(f"select index_version from prompt_runs where run_id = '{prompted.run_id}'")
    assert answered["index_version"].to_pylist() == [index]
    assert reopened.setting("current_index") == index
    assert run_prompt(reopened, resolve_prompts(reopened, ["G2M"]), samples=indexed).results.num_rows == 5
    assert runs(reopened)[-1]["status"] == "running"
    report = refresh(reopened, config=QUICK)
    assert report.status == "promoted" and [r["status"] for r in runs(reopened)][0] == "interrupted"


def test_every_repeats_the_refresh_until_killed(batches, tmp_path):
    store = copy_store(batches[0], tmp_path / "store")
    index = store.setting("current_index")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen([sys.executable, "-m", "hquery", "refresh", "--every", "2s", "--store",
                                str(store.root)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
    summaries = []
    try:
        for line in process.stdout:
            if ": nothing_new (" in line:
                summaries.append(line)
            if len(summaries) == 2:  # killed while it waits for the third
                process.send_signal(signal.SIGKILL)
                break
    finally:
        process.kill()
        process.wait()
    assert len(summaries) == 2
    reopened = Store.open(store.root)
    assert [r["status"] for r in runs(reopened)] == ["nothing_new", "nothing_new"]
    assert reopened.setting("current_index") == index
    assert refresh(reopened, config=QUICK).status == "nothing_new"  # the lock died with the process


def test_auto_tolerance_is_two_standard_errors_of_the_paired_difference():
    import numpy as np

    candidate, service = np.array([1, 1, 0, 0, 1], bool), np.array([1, 0, 1, 0, 1], bool)
    difference = np.array([0, 1, -1, 0, 0])
    assert paired_tolerance(candidate, service) == pytest.approx(2 * difference.std(ddof=1) / np.sqrt(5))
    assert paired_tolerance(candidate, candidate) == 0.0 and paired_tolerance(candidate[:1], service[:1]) == 0.0


def test_intervals():
    assert parse_interval("6h") == 21600 and parse_interval("30m") == 1800 and parse_interval("1.5s") == 1.5
    with pytest.raises(ValueError, match="e.g. 6h"):
        parse_interval("often")


def test_the_gate_ranks_each_slide_among_the_profiles_its_prompt_could_draw_on(batches):
    import numpy as np

    from hquery.pipelines.refresh import _gate_plan, _hits
    from hquery.retrieval.neighbours import NeighbourRule
    from hquery.training.pairs import load_pairs
    from hquery.training.registry import load_model

    store = batches[1]
    held = load_pairs(store).subset(np.arange(80))
    model = load_model(store, "alignment", service_model(store))[0]
    typed, anywhere = _gate_plan(store, held, NeighbourRule()), _gate_plan(store, held, NeighbourRule(()))
    types = {r.sample_id: r.cancer_type for r in store.query("slide_samples")}
    for q, group in enumerate(typed.group_of):
        if group:
            assert {types[held.sample_ids[i]] for i in typed.groups[group]} == {types[held.sample_ids[q]]}
    assert typed.matched().any() and not anywhere.matched().any()
    by_type, by_all = _hits(model, held, typed), _hits(model, held, anywhere)
    assert (by_type >= by_all).all() and by_type.mean() > by_all.mean()  # fewer rivals, never a worse rank
