"""A trained predictor: an MLP from the aligned slide embedding to a collection's ssGSEA scores.

The seed paper's alternative to Soft-kNN. It is fitted on every paired slide (its
cross-validated accuracy is what ``hquery eval --prompts`` reports as ``mlp``) and
stored as plain arrays, so ``hquery prompt --method mlp`` runs it with numpy alone.
"""

from __future__ import annotations

import dataclasses
import time

import numpy as np

from hquery.errors import NotReadyError
from hquery.genesets import resolve_prompts
from hquery.library import Library
from hquery.names import Pointer, projected_table
from hquery.records import index_record
from hquery.store import Store, StoreError, vectors
from hquery.training.registry import load_model, save_model, version_id

HIDDEN = 256


@dataclasses.dataclass
class Predictor:
    """``scores = relu(x @ w1 + b1) @ w2 + b2``, then un-standardised; one output per gene set."""

    version: str
    model_version: str
    collection: str
    gene_sets: list[str]
    members_hashes: list[str]
    arrays: dict[str, np.ndarray]

    def predict(self, aligned: np.ndarray) -> np.ndarray:
        """Scores ``[queries, gene_sets]`` for aligned image vectors ``[queries, dim]``."""
        return mlp_predict(self.arrays, aligned)


def fit_mlp(x: np.ndarray, y: np.ndarray, seed: int = 0) -> tuple[dict[str, np.ndarray], int]:
    """The predictor's recipe, for deployment and cross-validation alike: ``(arrays, iterations)``.

    Targets are standardised per column; one hidden layer of :data:`HIDDEN` ReLU
    units, L2 1e-2, early stopping on scikit-learn's internal 10% split.
    """
    from sklearn.neural_network import MLPRegressor
    from sklearn.preprocessing import StandardScaler

    scale = StandardScaler().fit(y)
    mlp = MLPRegressor(hidden_layer_sizes=(HIDDEN,), alpha=1e-2, early_stopping=True, max_iter=300, random_state=seed)
    mlp.fit(x, scale.transform(y))
    arrays = {"w1": mlp.coefs_[0], "b1": mlp.intercepts_[0], "w2": mlp.coefs_[1], "b2": mlp.intercepts_[1],
              "y_mean": scale.mean_, "y_scale": scale.scale_}
    return arrays, mlp.n_iter_


def mlp_predict(arrays: dict[str, np.ndarray], x: np.ndarray) -> np.ndarray:
    """``relu(x @ w1 + b1) @ w2 + b2``, un-standardised: the fitted MLP with numpy alone."""
    hidden = np.maximum(x @ arrays["w1"] + arrays["b1"], 0.0)
    return (hidden @ arrays["w2"] + arrays["b2"]) * arrays["y_scale"] + arrays["y_mean"]


@dataclasses.dataclass
class PredictorReport:
    version: str
    model_version: str
    n_slides: int
    n_gene_sets: int
    seconds: float


def train_predictor(store: Store, collection: str = "hallmark", seed: int = 0) -> PredictorReport:
    """Fit the MLP on every paired slide of the store and make it the collection's current predictor."""
    started = time.perf_counter()
    model_version = index_record(store).model_version
    projected = store.dataset(projected_table("slide", model_version))
    if projected is None:
        raise NotReadyError(f"no projected slides for model {model_version}; build the index again", needs="index")
    table = projected.to_table(columns=["sample_id", "vector"])
    row = {s: i for i, s in enumerate(table["sample_id"].to_pylist())}
    library = Library(store)
    pair_ids = [r.sample_id for r in store.query("pairs") if r.sample_id in row and r.sample_id in library.row]
    if len(pair_ids) < 20:
        raise StoreError(f"only {len(pair_ids)} paired slides; the predictor needs at least 20")
    gene_sets = resolve_prompts(store, collection=collection)
    scores, _ = library.scores(gene_sets, library.match(gene_sets, min_genes=5))
    x = vectors(table["vector"])[[row[s] for s in pair_ids]]
    y = scores[[library.row[s] for s in pair_ids]]
    arrays, n_iter = fit_mlp(x, y, seed)
    hashes = [gs.members_hash for gs in gene_sets]
    version = version_id(f"mlp_{collection}", {"model": model_version, "sets": hashes, "slides": pair_ids, "seed": seed})
    params = {"collection": collection, "model_version": model_version, "gene_sets": [gs.name for gs in gene_sets],
              "members_hashes": hashes, "hidden": HIDDEN, "n_slides": len(pair_ids), "n_iter": n_iter}
    with store.transaction() as txn:
        save_model(txn, "predictor", arrays, kind="mlp_gene_set_scores", version=version, params=params,
                   snapshot={"library_version": library.version}, seed=seed, pointer=Pointer.predictor(collection))
    return PredictorReport(version, model_version, len(pair_ids), len(gene_sets), time.perf_counter() - started)


def load_predictor(store: Store, collection: str = "hallmark") -> Predictor:
    """The collection's current predictor; it must belong to the current index's alignment model."""
    if not store.pointer(Pointer.predictor(collection)):
        raise NotReadyError(f"no MLP predictor for {collection}; train one first", needs="train predictor",
                            collection=collection)
    arrays, record = load_model(store, "predictor", pointer=Pointer.predictor(collection))
    params = record.params
    if params["model_version"] != index_record(store).model_version:
        raise NotReadyError(f"predictor {record.version} was fitted on alignment {params['model_version']}, not the "
                            "current index's; train it again", needs="train predictor", collection=collection)
    return Predictor(record.version, params["model_version"], collection, params["gene_sets"],
                     params["members_hashes"], arrays)
