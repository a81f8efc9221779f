"""``mlp``: the seed paper's trained-predictor alternative, an MLP from the aligned slide embedding to the
collection's scores (:mod:`hquery.training.predictor`). A prompt uses the recorded predictor of the collection;
each evaluation fold fits one on its training slides."""

import numpy as np

from hquery.retrieval.routes.registry import Route, Slides, register_route
from hquery.training.predictor import fit_mlp, mlp_predict


def fit(train: Slides, truth: np.ndarray, seed: int) -> dict[str, np.ndarray]:
    return fit_mlp(train.aligned, truth, seed)[0]


def predict(arrays: dict[str, np.ndarray], query: Slides, earlier: dict[str, np.ndarray]) -> np.ndarray:
    return mlp_predict(arrays, query.aligned)


MLP = register_route(Route("mlp", "MLP", "MLP", fit=fit, predict=predict, served_by="model",
                           uses=frozenset({"aligned"})))
