"""A trained predictor: an MLP from the aligned slide embedding to a collection's ssGSEA scores.

The seed paper's alternative to Soft-kNN. It is fitted on every paired slide (its
cross-validated accuracy is what ``hquery eval --prompts`` reports as ``mlp``) and
stored as plain arrays, so ``hquery prompt --method mlp`` runs it with numpy alone.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time

import numpy as np
import pyarrow as pa

from hquery.errors import NotReadyError
from hquery.genesets import resolve_prompts
from hquery.library import Library
from hquery.store import Store, StoreError, utcnow, vectors

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
        a = self.arrays
        hidden = np.maximum(aligned @ a["w1"] + a["b1"], 0.0)
        return (hidden @ a["w2"] + a["b2"]) * a["y_scale"] + a["y_mean"]


@dataclasses.dataclass
class PredictorReport:
    version: str
    model_version: str
    n_slides: int
    n_gene_sets: int
    seconds: float


def _setting(collection: str) -> str:
    return f"predictor__{collection}"


def current_alignment(store: Store) -> str:
    """The alignment model behind the current index (its projected slides are the predictor's inputs)."""
    index = store.setting("current_index")
    if not index:
        raise NotReadyError("no index yet; build one first", needs="index")
    return store.query("index_version", [index])[0][0]


def train_predictor(store: Store, collection: str = "hallmark", seed: int = 0) -> PredictorReport:
    """Fit the MLP on every paired slide of the store and make it the collection's current predictor."""
    from safetensors.numpy import save_file
    from sklearn.neural_network import MLPRegressor
    from sklearn.preprocessing import StandardScaler


    started = time.perf_counter()
    model_version = current_alignment(store)
    projected = store.dataset(f"slide_projected__{model_version}")
    if projected is None:
        raise NotReadyError(f"no projected slides for model {model_version}; build the index again", needs="index")
    table = projected.to_table(columns=["sample_id", "vector"])
    row = {s: i for i, s in enumerate(table["sample_id"].to_pylist())}
    library = Library(store)
    pair_ids = [s for s, _ in store.query("pairs") if s in row and s in library.row]
    if len(pair_ids) < 20:
        raise StoreError(f"only {len(pair_ids)} paired slides; the predictor needs at least 20")
    gene_sets = resolve_prompts(store, collection=collection)
    scores, _ = library.scores(gene_sets, library.match(gene_sets, min_genes=5))
    x = vectors(table["vector"])[[row[s] for s in pair_ids]]
    y = scores[[library.row[s] for s in pair_ids]]
    scale = StandardScaler().fit(y)
    mlp = MLPRegressor(hidden_layer_sizes=(HIDDEN,), alpha=1e-2, early_stopping=True, max_iter=300, random_state=seed)
    mlp.fit(x, scale.transform(y))
    arrays = {"w1": mlp.coefs_[0], "b1": mlp.intercepts_[0], "w2": mlp.coefs_[1], "b2": mlp.intercepts_[1],
              "y_mean": scale.mean_, "y_scale": scale.scale_}
    hashes = [gs.members_hash for gs in gene_sets]
    key = json.dumps({"model": model_version, "sets": hashes, "slides": pair_ids, "seed": seed})
    version = f"mlp_{collection}_{hashlib.blake2b(key.encode(), digest_size=5).hexdigest()}"
    params = {"collection": collection, "model_version": model_version, "gene_sets": [gs.name for gs in gene_sets],
              "members_hashes": hashes, "hidden": HIDDEN, "n_slides": len(pair_ids), "n_iter": mlp.n_iter_}
    with store.transaction() as txn:
        folder = txn.stage_artifact(f"models/{version}")
        save_file({k: np.ascontiguousarray(v, dtype=np.float64) for k, v in arrays.items()},
                  str(folder / "predictor.safetensors"))
        (folder / "config.json").write_text(json.dumps(params, indent=2))
        txn.insert("models", pa.Table.from_pylist([{
            "version": version, "name": "predictor", "kind": "mlp_gene_set_scores", "params": json.dumps(params),
            "data_snapshot": json.dumps({"library_version": library.version}), "seed": seed, "metrics": "{}",
            "artifact_path": f"models/{version}", "created_at": utcnow(),
        }]))
        txn.put_setting(_setting(collection), version)
    return PredictorReport(version, model_version, len(pair_ids), len(gene_sets), time.perf_counter() - started)


def load_predictor(store: Store, collection: str = "hallmark") -> Predictor:
    """The collection's current predictor; it must belong to the current index's alignment model."""
    from safetensors.numpy import load_file

    version = store.setting(_setting(collection))
    if not version:
        raise NotReadyError(f"no MLP predictor for {collection}; train one first", needs="train predictor",
                            collection=collection)
    record = store.query("model", [version])[0]
    params = json.loads(record[3])
    if params["model_version"] != current_alignment(store):
        raise StoreError(f"predictor {version} was fitted on alignment {params['model_version']}, not the current "
                         f"index's; train it again", needs="train predictor", collection=collection)
    arrays = load_file(str(store.artifact_path(record[7]) / "predictor.safetensors"))
    return Predictor(version, params["model_version"], collection, params["gene_sets"], params["members_hashes"],
                     arrays)
