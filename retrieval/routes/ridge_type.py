"""``ridge_type``, the floor of every evaluation: a ridge from the frozen slide embedding plus the cancer-type
one-hot to every set's score, alpha chosen on the training slides (:class:`~hquery.training.type_ridge.TypeRidge`).
A route that cannot beat it has learned nothing a linear map of the features and the manifest's type would not."""

import numpy as np

from hquery.retrieval.routes.registry import FLOOR, Route, Slides, register_route
from hquery.training.type_ridge import TypeRidge


def fit(train: Slides, truth: np.ndarray, seed: int) -> TypeRidge:
    return TypeRidge.fit(train.image, train.cancer_types, truth)


def predict(ridge: TypeRidge, query: Slides, earlier: dict[str, np.ndarray]) -> np.ndarray:
    return ridge.predict(query.image, query.cancer_types)


RIDGE_TYPE = register_route(Route(FLOOR, "ridge+type", "floor", fit=fit, predict=predict, uses=frozenset({"image"})))
