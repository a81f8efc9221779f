"""ssGSEA against gseapy.ssgsea (its Rust core) on real-sized data and real gene sets."""

import numpy as np
import pandas as pd
import pytest

from hquery.genesets import hallmark_sets
from hquery.ingest import ingest_cohort
from hquery.ingest.genesets import add_builtin_gene_data
from hquery.library import Library, score_library
from hquery.parallel import RayOptions
from hquery.scoring import match_gene_sets, score_gene_sets, ssgsea
from hquery.store import Store
from tests.conftest import write_cohort


def gseapy_es(matrix: np.ndarray, universe: list[str], sets: dict[str, list[str]]) -> np.ndarray:
    import gseapy

    frame = pd.DataFrame(matrix.T, index=universe, columns=[f"s{i}" for i in range(len(matrix))])
    result = gseapy.ssgsea(frame, sets, sample_norm_method="rank", weight=0.25, min_size=1, max_size=len(universe),
                           threads=2, outdir=None, no_plot=True)
    return (result.res2d.pivot(index="Name", columns="Term", values="ES").astype(float)
            .loc[frame.columns, list(sets)].to_numpy())


@pytest.fixture(scope="module")
def hallmark():
    return {gs.name: list(gs.members) for gs in hallmark_sets()}


def universe_for(hallmark, n_genes: int, drop_every: int) -> list[str]:
    """Hallmark genes (every ``drop_every``-th left out, so sets miss members) padded to ``n_genes``."""
    members = sorted({g for m in hallmark.values() for g in m})
    kept = [g for i, g in enumerate(members) if i % drop_every]
    return kept + [f"PAD{i}" for i in range(n_genes - len(kept))]


def assert_agrees(ours: np.ndarray, theirs: np.ndarray) -> None:
    for j in range(ours.shape[1]):
        assert np.corrcoef(ours[:, j], theirs[:, j])[0, 1] >= 0.999
        assert np.array_equal(np.argsort(ours[:, j], kind="stable"), np.argsort(theirs[:, j], kind="stable"))
    np.testing.assert_allclose(ours, theirs, rtol=1e-9, atol=1e-9)


def test_agrees_with_gseapy_on_raw_counts_with_many_zeros(hallmark):
    rng = np.random.default_rng(0)
    universe = universe_for(hallmark, 20_000, drop_every=7)
    mean = np.exp(rng.normal(0.0, 2.0, size=len(universe)))
    counts = rng.negative_binomial(2, 2 / (2 + mean), size=(60, len(universe))).astype(np.float64)
    assert (counts == 0).mean() > 0.3  # ties everywhere: their order decides agreement
    ours, matches = score_gene_sets(counts, universe, hallmark)
    assert any(m.missing for m in matches)
    assert_agrees(ours, gseapy_es(counts, universe, hallmark))


def test_agrees_with_gseapy_on_log_expression(hallmark):
    rng = np.random.default_rng(1)
    universe = universe_for(hallmark, 5_000, drop_every=5)
    logged = np.log1p(rng.gamma(0.5, 20.0, size=(40, len(universe))))
    sets = dict(list(hallmark.items())[:20])
    ours, _ = score_gene_sets(logged, universe, sets)
    assert_agrees(ours, gseapy_es(logged, universe, sets))


def test_a_sample_score_does_not_depend_on_the_batch(hallmark):
    rng = np.random.default_rng(2)
    universe = universe_for(hallmark, 3_000, drop_every=3)
    x = rng.gamma(1.0, 5.0, size=(30, len(universe)))
    sets = dict(list(hallmark.items())[:5])
    alone, _ = score_gene_sets(x[:3], universe, sets)
    together, _ = score_gene_sets(x, universe, sets)
    np.testing.assert_allclose(alone, together[:3])


def test_monotone_transforms_do_not_change_scores():
    rng = np.random.default_rng(3)
    counts = rng.poisson(3.0, size=(8, 500)).astype(np.float64)
    sets = [np.arange(0, 40), np.arange(100, 300, 3)]
    cpm = counts / counts.sum(1, keepdims=True) * 1e6
    np.testing.assert_allclose(ssgsea(counts, sets), ssgsea(np.log1p(cpm), sets))


def test_top_ranked_set_scores_high_and_bottom_ranked_low():
    x = np.arange(100, dtype=float)[None, :].repeat(2, 0)
    x[1] = x[1, ::-1]
    es = ssgsea(x, [np.arange(90, 100)])
    assert es[0, 0] > 0 > es[1, 0]


def test_missing_genes_are_reported_and_too_few_is_an_error():
    universe = ["A", "B", "C", "D"]
    (match,) = match_gene_sets(universe, {"S": ["A", "B", "Z", "A"]})
    assert match.positions.tolist() == [0, 1] and match.missing == ("Z",)
    with pytest.raises(ValueError, match="gene set S: 2 of 3 genes.*missing: Z"):
        score_gene_sets(np.ones((1, 4)), universe, {"S": ["A", "B", "Z"]}, min_genes=3)
    with pytest.raises(ValueError, match="NaN"):
        ssgsea(np.array([[1.0, np.nan, 2.0]]), [np.array([0])])


def test_fast_ranks_match_scipy_with_negatives_zeros_and_ties():
    from scipy.stats import rankdata

    from hquery.scoring import _ranks

    rng = np.random.default_rng(4)
    x = rng.integers(-3, 4, size=(7, 300)).astype(np.float32) / 2
    x[0, :5] = -0.0
    position, average = _ranks(x)
    np.testing.assert_array_equal(position, rankdata(x, method="ordinal", axis=1))
    np.testing.assert_allclose(average, rankdata(x, method="average", axis=1))


def test_blocks_of_samples_scored_in_threads_equal_one_by_one():
    rng = np.random.default_rng(5)
    x = rng.poisson(2.0, size=(450, 10_000)).astype(np.float32)  # 400 samples a block: two blocks
    sets = [np.arange(0, 100), np.arange(5000, 5200, 2)]
    together = ssgsea(x, sets, threads=2)
    np.testing.assert_allclose(together, ssgsea(x, sets, threads=1))
    np.testing.assert_allclose(together[[0, 449]], np.concatenate([ssgsea(x[[0]], sets), ssgsea(x[[449]], sets)]))


def test_the_library_scored_from_lance_in_batches_equals_scoring_it_whole(tmp_path):
    store = Store.init(tmp_path / "store")
    add_builtin_gene_data(store)
    manifest, expression = write_cohort(tmp_path / "cohort", n_pairs=3, n_ref=9, n_query=0)
    ingest_cohort(store, manifest, expression=expression)
    library = Library(store)
    sets = [np.array([0, 1, 2]), np.array([3, 4, 5, 6])]
    whole = ssgsea(library.expression(), sets)
    np.testing.assert_allclose(score_library(store, sets, batch_rows=5), whole, rtol=1e-12)
    ray = pytest.importorskip("ray")
    on_ray = score_library(store, sets, batch_rows=4, engine=RayOptions(workers=2, cpus_per_worker=1))
    np.testing.assert_allclose(on_ray, whole, rtol=1e-12)
    assert not ray.is_initialized()  # the Ray this call started is stopped again
