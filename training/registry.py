"""Trained alignment models as versions in the store: safetensors + config + catalog rows."""

from __future__ import annotations

import dataclasses
import hashlib
import json

import pyarrow as pa

from hquery.errors import NotReadyError
from hquery.store import Store, StoreError, Transaction, utcnow
from hquery.training.heads import AlignmentConfig, AlignmentModel


def model_version(config: AlignmentConfig, snapshot: dict, level: str) -> str:
    """Deterministic id: the same config, data and seed give the same version (and weights)."""
    key = json.dumps({"config": dataclasses.asdict(config), "data": snapshot, "level": level}, sort_keys=True)
    return f"align_{level}_{hashlib.blake2b(key.encode(), digest_size=5).hexdigest()}"


def record_model(txn: Transaction, model: AlignmentModel, config: AlignmentConfig, *, version: str, level: str,
                 image_encoder: str, rna_encoder: str, snapshot: dict, metrics: dict, cv_rows: list[dict],
                 n_pairs: int, history: dict) -> None:
    """Stage the model's artifact, its ``models`` row and its per-fold metrics."""
    from safetensors.torch import save_file

    folder = txn.stage_artifact(f"models/{version}")
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(folder / "heads.safetensors"))
    params = {"config": dataclasses.asdict(config), "level": level, "image_dim": model.image_dim,
              "rna_dim": model.rna_dim, "image_encoder": image_encoder, "rna_encoder": rna_encoder,
              "n_pairs": n_pairs, "history": history}
    (folder / "config.json").write_text(json.dumps(params, indent=2))
    txn.insert("models", pa.Table.from_pylist([{
        "version": version, "name": "alignment", "kind": f"clip_heads_{level}", "params": json.dumps(params),
        "data_snapshot": json.dumps(snapshot), "seed": config.seed, "metrics": json.dumps(metrics),
        "artifact_path": f"models/{version}", "created_at": utcnow(),
    }]))
    txn.execute("delete_model_metrics", [version])
    if cv_rows:
        txn.insert("model_metrics", pa.Table.from_pylist([{"model_version": version, **r} for r in cv_rows]))


def load_model(store: Store, version: str | None = None) -> tuple[AlignmentModel, dict]:
    """The alignment model ``version`` (default: the store's current one) and its catalog record."""
    from safetensors.torch import load_file

    version = version or store.setting("alignment_model")
    if not version:
        raise NotReadyError("no alignment model yet; train one first", needs="train align")
    rows = store.query("model", [version])
    if not rows:
        raise StoreError(f"no model version {version!r}; see `hquery sql \"select version from models\"`")
    record = dict(zip(["version", "name", "kind", "params", "data_snapshot", "seed", "metrics", "artifact_path",
                       "created_at"], rows[0]))
    params = json.loads(record["params"])
    config = AlignmentConfig(**params["config"])
    model = AlignmentModel(params["image_dim"], params["rna_dim"], config)
    model.load_state_dict(load_file(str(store.artifact_path(record["artifact_path"]) / "heads.safetensors")))
    model.eval()
    record["params"] = params
    return model, record
