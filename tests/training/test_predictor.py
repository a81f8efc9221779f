"""The trained MLP predictor behind `hquery prompt --method mlp`, on the small demo store."""

import numpy as np
import pytest

from hquery.errors import NotReadyError, PromptError
from hquery.genesets import resolve_prompts
from hquery.library import Library
from hquery.retrieval import build_index, run_prompt
from hquery.training import AlignmentConfig, train_alignment
from hquery.training.predictor import load_predictor, train_predictor
from tests.conftest import copy_store


@pytest.fixture(scope="module")
def store(indexed_store, tmp_path_factory):
    return copy_store(indexed_store, tmp_path_factory.mktemp("predictor") / "store")


def test_predictor_fits_the_collection_and_scores_slides(store):
    report = train_predictor(store, "hallmark")
    assert report.n_gene_sets == 50 and report.n_slides == len(store.query("pairs"))
    predictor = load_predictor(store, "hallmark")
    sets = resolve_prompts(store, ["HYPOXIA", "G2M"])
    run = run_prompt(store, sets, method="mlp")
    n_slides = store.sql("select count(*) n from samples where has_slide").to_pylist()[0]["n"]
    assert run.results.num_rows == 2 * n_slides
    assert all(v is None for v in run.results["dispersion"].to_pylist())
    # on the slides it was fitted on, the MLP tracks the ssGSEA of their own RNA
    library = Library(store)
    truth, _ = library.scores(sets, library.match(sets))
    by_sample = {(r["sample_id"], r["gene_set"]): r["score"] for r in run.results.to_pylist()}
    pairs = [s for s, _ in store.query("pairs")]
    for j, gs in enumerate(sets):
        predicted = np.array([by_sample[s, gs.name] for s in pairs])
        assert np.corrcoef(predicted, truth[[library.row[s] for s in pairs], j])[0, 1] > 0.5
    recorded = store.sql(f"select method, k from prompt_runs where run_id = '{run.run_id}'").to_pylist()
    assert recorded == [{"method": "mlp", "k": None}] and predictor.version.startswith("mlp_hallmark_")


def test_predictor_refuses_adhoc_sets_and_a_stale_alignment(store, tmp_path):
    with pytest.raises(PromptError, match="ad-hoc"):
        run_prompt(store, resolve_prompts(store, ["CD8A,CD8B,GZMB,PRF1,GZMA"]), method="mlp", record=False)
    stale = copy_store(store, tmp_path / "stale")
    train_predictor(stale, "hallmark")
    train_alignment(stale, config=AlignmentConfig(max_epochs=5, seed=1))
    build_index(stale)
    with pytest.raises(NotReadyError, match="train it again") as caught:
        run_prompt(stale, resolve_prompts(stale, ["G2M"]), method="mlp", record=False)
    assert caught.value.needs == "train predictor" and caught.value.context == {"collection": "hallmark"}
