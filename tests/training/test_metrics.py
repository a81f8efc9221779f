import numpy as np
import pytest

from hquery.training.metrics import (
    chance_recall_at_k,
    recall_at_k,
    retrieval_metrics,
    target_ranks,
)


def test_ranks_count_strictly_higher_scores():
    sim = np.array([
        [0.9, 0.1, 0.2],   # target best: rank 0
        [0.5, 0.4, 0.6],   # two candidates above: rank 2
        [0.3, 0.7, 0.7],   # tied with one other: ties do not count against the target
    ])
    np.testing.assert_array_equal(target_ranks(sim), [0, 2, 0])


def test_all_tied_ranks_every_target_first():
    np.testing.assert_array_equal(target_ranks(np.ones((4, 4))), [0, 0, 0, 0])


def test_explicit_targets():
    sim = np.array([[0.1, 0.9], [0.8, 0.2]])
    np.testing.assert_array_equal(target_ranks(sim, targets=[1, 0]), [0, 0])


def test_recall_mrr_and_ranks_on_a_hand_made_matrix():
    sim = np.array([
        [1.0, 0.0, 0.0, 0.0],
        [0.9, 0.5, 0.0, 0.0],
        [0.9, 0.8, 0.7, 0.0],
        [0.9, 0.8, 0.7, 0.1],
    ])  # target ranks 0, 1, 2, 3
    m = retrieval_metrics(sim, ks=(1, 2, 10))
    assert m["recall@1"] == 0.25 and m["recall@2"] == 0.5 and m["recall@10"] == 1.0
    assert m["chance@1"] == 0.25 and m["chance@10"] == 1.0
    assert m["mean_rank"] == 2.5 and m["median_rank"] == 2.5
    assert m["mrr"] == pytest.approx((1 + 1 / 2 + 1 / 3 + 1 / 4) / 4)


def test_random_scores_give_chance_recall():
    rng = np.random.default_rng(0)
    ranks = target_ranks(rng.normal(size=(2000, 100)), targets=rng.integers(0, 100, 2000))
    assert recall_at_k(ranks, 10) == pytest.approx(chance_recall_at_k(100, 10), abs=0.02)
