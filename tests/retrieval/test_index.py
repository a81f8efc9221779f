import json

import numpy as np
import pytest

from hquery.genesets import resolve_prompts
from hquery.parallel import RayOptions
from hquery.retrieval import RNAIndex, build_index, run_prompt
from hquery.retrieval.index import build_faiss_index, gpu_count, recall_against_exact, tune_nprobe
from hquery.store import StoreError, vectors
from hquery.training import AlignmentConfig, train_alignment
from hquery.training.fit import project
from hquery.training.pairs import load_pairs
from hquery.training.registry import load_model
from tests.conftest import copy_store


@pytest.fixture(scope="module")
def indexed(demo_store, tmp_path_factory):
    store = copy_store(demo_store, tmp_path_factory.mktemp("indexed") / "store")
    train_alignment(store, config=AlignmentConfig(max_epochs=40))
    return store, build_index(store)


def test_index_holds_the_whole_rna_library(indexed):
    store, report = indexed
    n_library = store.sql("select count(*) n from reference_library").to_pylist()[0]["n"]
    assert report.n_vectors == n_library and report.kind == "flat" and report.on_gpu == (gpu_count() > 0)
    assert store.dataset(f"rna_projected__{report.model_version}").count_rows() == n_library
    assert store.setting("current_index") == report.version


def test_search_finds_each_profile_first(indexed):
    store, _ = indexed
    index = RNAIndex.load(store)
    model, record = load_model(store, "alignment")
    table = store.dataset(f"rna_embeddings__{record.params['rna_encoder']}").to_table()
    queries = project(model, rna=vectors(table["embedding"])[:20])
    ids, sims = index.search(queries, k=5)
    assert ids.shape == sims.shape == (20, 5)
    assert ids[:, 0].tolist() == table["sample_id"].to_pylist()[:20]
    np.testing.assert_allclose(sims[:, 0], 1.0, atol=1e-5)
    assert np.all(np.diff(sims, axis=1) <= 1e-6)


def test_image_queries_retrieve_their_own_rna_above_chance(indexed):
    store, _ = indexed
    pairs = load_pairs(store)
    model, _ = load_model(store, "alignment")
    ids, _ = RNAIndex.load(store).search(project(model, image=pairs.image, cancer_types=pairs.cancer_types), k=50)
    hit = np.mean([sid in row for sid, row in zip(pairs.sample_ids, ids)])
    assert hit > 3 * 50 / len(RNAIndex.load(store).ids)  # trained on these pairs: far above chance


def test_approximate_indexes_report_recall_and_agree_with_exact():
    rng = np.random.default_rng(0)  # clustered, like aligned embeddings (isotropic noise is IVF's worst case)
    x = (rng.normal(size=(50, 32))[rng.integers(0, 50, 5000)] + 0.3 * rng.normal(size=(5000, 32))).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    for kind in ("hnsw", "ivf"):
        assert recall_against_exact(build_faiss_index(x, kind), x) > 0.9, kind
    assert recall_against_exact(build_faiss_index(x, "flat"), x) == 1.0


def test_older_index_versions_stay_queryable_and_failed_builds_change_nothing(indexed, monkeypatch):
    store, first = indexed
    second = build_index(store, kind="hnsw")
    assert store.setting("current_index") == second.version != first.version
    assert RNAIndex.load(store, first.version).version == first.version
    import faiss

    def broken_write(*args):
        raise OSError("disk full")

    monkeypatch.setattr(faiss, "write_index", broken_write)
    with pytest.raises(OSError, match="disk full"):
        build_index(store, kind="ivf")
    assert store.setting("current_index") == second.version
    assert not list((store.root / "artifacts").glob(".staging-*"))
    versions = [r["version"] for r in store.sql("select version from index_versions").to_pylist()]
    assert sorted(versions) == sorted([first.version, second.version])
    with pytest.raises(StoreError, match="no index version"):
        RNAIndex.load(store, "idx_nope")
    metrics = json.loads(store.sql(f"select metrics from index_versions where version = '{second.version}'").to_pylist()[0]["metrics"])
    assert metrics["recall_vs_exact@10"] > 0.9


def clustered(n: int, d: int = 32, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = (rng.normal(size=(50, d))[rng.integers(0, 50, n)] + 0.3 * rng.normal(size=(n, d))).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_an_ivf_index_filled_in_shards_answers_as_one_filled_at_once():
    x = clustered(20_000)
    whole, sharded = build_faiss_index(x, "ivf"), build_faiss_index(x, "ivf", shards=3)
    assert sharded.ntotal == whole.ntotal == len(x) and sharded.nprobe == whole.nprobe
    sims_a, ids_a = whole.search(x[:300], 10)
    sims_b, ids_b = sharded.search(x[:300], 10)
    np.testing.assert_array_equal(ids_b, ids_a)
    np.testing.assert_allclose(sims_b, sims_a, atol=1e-6)
    assert recall_against_exact(sharded, x, n_queries=300) > 0.9
    with pytest.raises(ValueError, match="only an IVF index is filled in shards"):
        build_faiss_index(x, "hnsw", shards=2)


def test_ivf_shards_filled_as_ray_tasks_merge_to_the_same_index():
    pytest.importorskip("ray")
    x = clustered(6_000, seed=1)
    local = build_faiss_index(x, "ivf", shards=2)
    on_ray = build_faiss_index(x, "ivf", shards=2, engine=RayOptions(workers=2, cpus_per_worker=1))
    np.testing.assert_array_equal(on_ray.search(x[:200], 10)[1], local.search(x[:200], 10)[1])


def test_an_ivf_index_probes_as_many_lists_as_its_recall_target_needs():
    x = clustered(20_000, seed=2)
    index = build_faiss_index(x, "ivf", nprobe=1)
    assert recall_against_exact(index, x) < 0.95
    recall = tune_nprobe(index, x, target=0.95)
    assert recall >= 0.95 and index.nprobe > 1 and recall == recall_against_exact(index, x)
    assert tune_nprobe(index, x, target=1.01) <= 1.0 and index.nprobe == index.nlist  # an unreachable target stops


def test_a_sharded_ivf_index_is_tuned_recorded_and_serves_prompts(indexed, tmp_path):
    store = copy_store(indexed[0], tmp_path / "store")
    report = build_index(store, kind="ivf", shards=2)
    index = RNAIndex.load(store)
    params = json.loads(store.sql(f"select params from index_versions where version = '{report.version}'")
                        .to_pylist()[0]["params"])
    assert report.kind == "ivf" and params["shards"] == 2 and params["nprobe"] == index.index.nprobe
    assert report.recall_vs_exact >= 0.95 or index.index.nprobe == index.index.nlist
    answer = run_prompt(store, resolve_prompts(store, ["MKI67,TOP2A,CD8A,COL1A1,VIM"]), record=False)
    assert answer.results.num_rows > 0
