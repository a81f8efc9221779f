"""Small statistical recipes that evaluation and deployment must share, one copy each.

>>> import numpy as np
>>> pearson_r(np.array([1.0, 2.0, 3.0]), np.array([2.0, 4.0, 7.0]))
0.9933992677987828
>>> round(pearson_within_groups(np.array([0.0, 1.0, 10.0, 12.0]), np.array([0.0, 1.0, 5.0, 6.0]),
...                             np.array(["a", "a", "b", "b"])), 4)
0.9487
>>> most_variable(np.array([[0, 1, 5], [0, 3, 5], [0, 2, 9]]), 2).tolist()
[2, 1]
>>> one_hot(["b", None, "a", "z"], ["a", "b"]).tolist()
[[0.0, 1.0], [0.0, 0.0], [1.0, 0.0], [0.0, 0.0]]
>>> slope, intercept = calibration_lines(np.array([[0.0], [1.0], [2.0]]), np.array([[1.0], [3.0], [5.0]]))
>>> apply_lines(np.array([[4.0]]), slope, intercept).tolist()
[[9.0]]
>>> cross_fitted_lines(np.array([[0.0], [1.0], [2.0], [3.0]]), np.array([[1.0], [3.0], [5.0], [7.0]]),
...                    np.array([0, 0, 1, 1])).ravel().tolist()
[1.0, 3.0, 5.0, 7.0]
>>> percentile, z = library_standing(np.array([[2.5], [9.0]]), np.array([[1.0], [2.0], [3.0], [4.0], [10.0]]),
...                                  ["a", "a", "a", "a", "b"], ["a", "b"], min_group=3)
>>> percentile.ravel().tolist(), z.round(3).ravel().tolist()
([40.0, 80.0], [0.0, nan])
"""

from __future__ import annotations

import numpy as np

RIDGE_ALPHAS = np.logspace(-2, 4, 13)
"""The ridge baselines' alpha grid, chosen by efficient leave-one-out on the training fold."""


def one_hot(labels, categories) -> np.ndarray:
    """``[rows, len(categories)]`` 0/1 indicators (float32); a label not among ``categories`` is all zeros."""
    labels = np.array(list(labels), dtype=object)
    return (labels[:, None] == np.array(list(categories), dtype=object)[None, :]).astype(np.float32)


def pearson_r(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson r of two vectors; NaN when either is constant."""
    return float(pearson_per_column(np.asarray(a, float)[:, None], np.asarray(b, float)[:, None])[0])


def pearson_per_column(predicted: np.ndarray, measured: np.ndarray) -> np.ndarray:
    """Pearson r of each column of ``predicted`` with the same column of ``measured`` (NaN without variance)."""
    p = predicted - predicted.mean(0)
    m = measured - measured.mean(0)
    denominator = np.sqrt((p * p).sum(0) * (m * m).sum(0))
    with np.errstate(invalid="ignore", divide="ignore"):
        r = (p * m).sum(0) / denominator
    return np.where(denominator > 1e-12, r, np.nan)


def pearson_within_groups(predicted: np.ndarray, truth: np.ndarray, groups: np.ndarray) -> float:
    """Pearson r after removing each group's mean from prediction and truth alike.

    With cancer types as the groups, this is the part of the agreement that
    recognising the tumour type cannot explain: a predictor that only knows the
    type scores 0.
    """
    predicted, truth = np.asarray(predicted, float).copy(), np.asarray(truth, float).copy()
    groups = np.asarray(groups)
    for g in np.unique(groups):
        at = groups == g
        predicted[at] -= predicted[at].mean()
        truth[at] -= truth[at].mean()
    return pearson_r(predicted, truth)


def r_squared(predicted: np.ndarray, truth: np.ndarray) -> float:
    """Coefficient of determination of ``predicted`` for ``truth`` (negative when worse than the mean)."""
    from sklearn.metrics import r2_score

    return float(r2_score(truth, predicted))


def calibration_lines(predicted: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per column, the least-squares line ``truth ~ slope * predicted + intercept``.

    Soft-kNN averages neighbours, so its scores are shrunk toward the library's
    mean; the line fitted on training slides puts them back on the scale of measured scores.
    A constant column keeps slope 0 and its truth's mean.
    """
    predicted, truth = np.asarray(predicted, float), np.asarray(truth, float)
    centred = predicted - predicted.mean(0)
    spread = (centred * centred).sum(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        slope = np.where(spread > 1e-12, (centred * (truth - truth.mean(0))).sum(0) / spread, 0.0)
    return slope, truth.mean(0) - slope * predicted.mean(0)


def apply_lines(predicted: np.ndarray, slope: np.ndarray, intercept: np.ndarray) -> np.ndarray:
    """``predicted`` through the per-column lines of :func:`calibration_lines`."""
    return np.asarray(predicted, float) * slope + intercept


def cross_fitted_lines(predicted: np.ndarray, truth: np.ndarray, fold_of: np.ndarray) -> np.ndarray:
    """``predicted`` on the truth's scale, each fold through the :func:`calibration_lines` of the other folds.

    For held-out predictions whose raw scale differs from the truth's (a score of
    a predicted profile, say): no slide's truth shapes its own line.
    """
    predicted, out = np.asarray(predicted, float), np.full(np.shape(predicted), np.nan)
    for fold in np.unique(fold_of):
        here = fold_of == fold
        out[here] = apply_lines(predicted[here], *calibration_lines(predicted[~here], np.asarray(truth)[~here]))
    return out


def finite_mean(values: np.ndarray) -> float:
    """The mean of the finite values; NaN when there are none."""
    values = np.asarray(values, dtype=np.float64)
    return float(np.nanmean(values)) if np.isfinite(values).any() else float("nan")


def library_standing(scores: np.ndarray, library: np.ndarray, library_groups, query_groups, *,
                     min_group: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """Where scores ``[queries, sets]`` stand among the reference library's ``[profiles, sets]``.

    Returns each score's percentile (0-100) among the library's scores of its
    set, and its z-score among the library profiles of the query's own group
    (its cancer type), ``NaN`` where the query has no group or the library
    fewer than ``min_group`` profiles of it. Raw ssGSEA ES have no scale a
    reader knows; these two do.
    """
    from scipy.stats import percentileofscore, zmap

    scores, library = np.asarray(scores, dtype=float), np.asarray(library, dtype=float)
    percentile = np.column_stack([percentileofscore(library[:, j], scores[:, j], kind="mean")
                                  for j in range(scores.shape[1])]).reshape(scores.shape)
    z = np.full(scores.shape, np.nan)
    library_groups, query_groups = np.asarray(library_groups, dtype=object), np.asarray(query_groups, dtype=object)
    for group in {g for g in query_groups if g is not None}:
        members = library_groups == group
        if members.sum() >= min_group:
            at = query_groups == group
            z[at] = zmap(scores[at], library[members], axis=0, ddof=1)
    return percentile, z


def most_variable(matrix: np.ndarray, n: int) -> np.ndarray:
    """Column positions of the ``n`` columns with the highest variance, most variable first (ties: leftmost)."""
    return np.argsort(-np.asarray(matrix).var(axis=0), kind="stable")[:n]


def ridge_regression():
    """The ridge every baseline uses: standardised features, alpha from :data:`RIDGE_ALPHAS` by leave-one-out.

    Returns an unfitted scikit-learn pipeline (``.fit(x, y).predict(x)``).
    """
    from sklearn.linear_model import RidgeCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), RidgeCV(alphas=RIDGE_ALPHAS))
