"""Soft-kNN arithmetic on a hand-made index."""

import numpy as np
import pytest

from hquery.retrieval.index import build_faiss_index
from hquery.retrieval.softknn import SoftKNN


def test_weights_are_a_softmax_of_similarity_over_tau():
    sims = np.array([[0.9, 0.8, 0.5]])
    w = SoftKNN(k=3, tau=0.1).weights(sims)
    expected = np.exp(sims / 0.1) / np.exp(sims / 0.1).sum()
    np.testing.assert_allclose(w, expected)
    np.testing.assert_allclose(SoftKNN(k=3, tau=1e6).weights(sims), [[1 / 3] * 3], rtol=1e-6)


def test_prediction_dispersion_and_effective_k_by_hand():
    # library: 4 unit vectors; the query is nearest item 0 (sim 0.96), then item 1 (0.936)
    library = np.array([[1, 0, 0], [0.8, 0.6, 0], [0, 1, 0], [0, 0, 1]], dtype=np.float32)
    scores = np.array([[1.0, 10.0], [3.0, 10.0], [5.0, 0.0], [7.0, 0.0]])
    index = build_faiss_index(library, "flat")
    query = np.array([[0.96, 0.28, 0.0]], dtype=np.float32)
    sims, pos = index.search(query, 2)
    assert pos.tolist() == [[0, 1]]
    knn = SoftKNN(k=2, tau=0.05)
    pred = knn.predict(scores[pos], sims)
    w = np.exp(sims[0] / 0.05) / np.exp(sims[0] / 0.05).sum()
    assert pred.score[0, 0] == pytest.approx(w[0] * 1 + w[1] * 3)
    assert pred.score[0, 1] == pytest.approx(10.0)
    assert pred.dispersion[0, 1] == pytest.approx(0.0, abs=1e-12)  # neighbours agree
    mean = w[0] * 1 + w[1] * 3
    assert pred.dispersion[0, 0] == pytest.approx(np.sqrt(w[0] * (1 - mean) ** 2 + w[1] * (3 - mean) ** 2))
    assert pred.effective_k[0] == pytest.approx(1 / (w ** 2).sum())
    assert 1 <= pred.effective_k[0] <= 2


def test_equal_similarities_give_the_plain_mean_and_k_voters():
    pred = SoftKNN(k=4).predict(np.arange(4.0).reshape(1, 4, 1), np.full((1, 4), 0.3))
    assert pred.score[0, 0] == pytest.approx(1.5) and pred.effective_k[0] == pytest.approx(4.0)
    assert pred.dispersion[0, 0] == pytest.approx(np.std(np.arange(4.0)))


def test_average_profile_uses_the_same_weights():
    knn = SoftKNN(k=2, tau=0.5)
    profiles = np.array([[[1.0, 0.0], [3.0, 2.0]]])
    sims = np.array([[0.5, 0.0]])
    w = knn.weights(sims)[0]
    np.testing.assert_allclose(knn.average(profiles, sims)[0], w[0] * profiles[0, 0] + w[1] * profiles[0, 1])


@pytest.mark.parametrize("k,tau", [(0, 0.05), (5, 0.0), (5, -1.0)])
def test_bad_parameters_are_refused(k, tau):
    with pytest.raises(ValueError):
        SoftKNN(k=k, tau=tau)
