"""The HEST-style linear probe on synthetic data whose answer is known."""

import numpy as np
import pytest

from hquery.stats import most_variable
from hquery.training.probe import probe_expression


def synthetic(noise: float, n: int = 2000, dims: int = 32, n_genes: int = 60, seed: int = 0):
    """Genes = a linear map of the features (unit variance) plus noise, so r = 1 / sqrt(1 + noise²)."""
    rng = np.random.default_rng(seed)
    features = rng.normal(size=(n, dims))
    weights = rng.normal(size=(dims, n_genes)) / np.sqrt(dims)
    signal = features @ weights
    signal /= signal.std(axis=0)
    expression = 5.0 + signal + noise * rng.normal(size=(n, n_genes))
    patients = np.repeat([f"P{i}" for i in range(n // 4)], 4)
    return features, expression, patients, [f"G{j}" for j in range(n_genes)]


@pytest.mark.parametrize("noise", [0.5, 1.0, 2.0])
def test_probe_recovers_the_known_correlation(noise):
    features, expression, patients, genes = synthetic(noise)
    report = probe_expression(features, expression, patients, genes)
    expected = 1 / np.sqrt(1 + noise**2)
    assert report.mean == pytest.approx(expected, abs=0.03)
    assert len(report.fold_pcc) == 5 and report.sd < 0.03 and len(report.genes) == 50


def test_features_unrelated_to_expression_score_zero():
    features, expression, patients, genes = synthetic(1.0)
    shuffled = features[np.random.default_rng(1).permutation(len(features))]
    assert abs(probe_expression(shuffled, expression, patients, genes).mean) < 0.05


def test_most_variable_genes_come_first():
    rng = np.random.default_rng(2)
    expression = rng.normal(size=(100, 5)) * np.array([1.0, 5.0, 0.1, 3.0, 2.0])
    assert most_variable(expression, 3).tolist() == [1, 3, 4]
