"""Gene Pathway Coherence on a hand-made example."""

import math

import numpy as np
import pytest

from hquery.stats import pearson_per_column
from hquery.training.coherence import gene_pathway_coherence, mean_by


def test_gpc_by_hand():
    # rows 0-3: sample A; rows 4-6: sample B; rows 7-8: sample C (too few rows for an r)
    predicted = np.array([[1, 1, 5], [2, 2, 5], [3, 3, 5], [4, 4, 5],
                          [1, 1, 1], [2, 2, 2], [3, 3, 3],
                          [1, 2, 3], [2, 3, 4]], dtype=float)
    measured = np.array([[2, 4, 0], [4, 3, 1], [6, 2, 2], [8, 1, 3],
                         [1, 1, 3], [3, 2, 2], [2, 3, 1],
                         [5, 5, 5], [1, 1, 1]], dtype=float)
    groups = ["A"] * 4 + ["B"] * 3 + ["C"] * 2
    gpc = gene_pathway_coherence(predicted, measured, groups, {"P1": np.array([0, 1]), "P2": np.array([2])})
    assert set(gpc) == {"A", "B"}
    # A: gene 0 r = 1, gene 1 r = -1, gene 2 is predicted constant (no r)
    assert gpc["A"]["P1"] == pytest.approx(0.0)
    assert math.isnan(gpc["A"]["P2"])
    # B: gene 0 r = 1/2 (deviations -1,0,1 against -1,1,0), gene 1 r = 1, gene 2 r = -1
    assert gpc["B"]["P1"] == pytest.approx(0.75)
    assert gpc["B"]["P2"] == pytest.approx(-1.0)
    by_type = mean_by(gpc, {"A": "BRCA", "B": "BRCA"})
    assert by_type["BRCA"]["P1"] == pytest.approx(0.375)
    assert by_type["BRCA"]["P2"] == pytest.approx(-1.0)  # A has no r for P2, so only B counts


def test_pearson_per_column_matches_numpy():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(20, 5)), rng.normal(size=(20, 5))
    expected = [np.corrcoef(a[:, j], b[:, j])[0, 1] for j in range(5)]
    np.testing.assert_allclose(pearson_per_column(a, b), expected, rtol=1e-10)
    b[:, 2] = 7.0
    assert np.isnan(pearson_per_column(a, b)[2])
