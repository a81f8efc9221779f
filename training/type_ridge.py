"""The floor every route is judged against: a ridge from the frozen slide features plus the cancer-type one-hot.

A route that cannot beat it has learned nothing that a linear map of the features
and the manifest's type would not. It is also a route of its own: linear, so a
tile scored through it averages to its slide's score, and cheap enough to fit on
every paired slide whenever a prompt asks for it.

>>> import numpy as np
>>> x = np.array([[0.0], [1.0], [0.0], [1.0]])
>>> ridge = TypeRidge.fit(x, ["A", "A", "B", "B"], np.array([[0.0], [1.0], [5.0], [6.0]]))
>>> bool(ridge.predict(np.array([[0.0]]), ["B"])[0, 0] > ridge.predict(np.array([[0.0]]), ["A"])[0, 0])
True
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from hquery.stats import one_hot, ridge_regression

UNKNOWN = "unknown"


def type_one_hot(cancer_types: Sequence[str | None], known: Sequence[str]) -> np.ndarray:
    """``[samples, len(known)]`` indicators; a missing type is :data:`UNKNOWN`, a type not in ``known`` all zeros."""
    return one_hot([t or UNKNOWN for t in cancer_types], known)


@dataclasses.dataclass
class TypeRidge:
    """A fitted ridge (standardised inputs, alpha by leave-one-out) on ``[features, type one-hot]``."""

    model: object
    cancer_types: list[str]

    @classmethod
    def fit(cls, features: np.ndarray, cancer_types: Sequence[str | None], targets: np.ndarray) -> TypeRidge:
        """Fit on ``features [samples, dim]``, their cancer types and ``targets [samples, outputs]``."""
        known = sorted({t or UNKNOWN for t in cancer_types})
        model = ridge_regression().fit(np.hstack([features, type_one_hot(cancer_types, known)]), targets)
        return cls(model, known)

    def predict(self, features: np.ndarray, cancer_types: Sequence[str | None]) -> np.ndarray:
        """``[queries, outputs]``; a type unseen in training contributes nothing beyond the features."""
        predicted = self.model.predict(np.hstack([features, type_one_hot(cancer_types, self.cancer_types)]))
        return predicted.reshape(len(features), -1)
