"""Catalog rows hquery reads back as typed records, and the model versions' catalog side.

Every model (projection heads, MLP predictor, HistoPrism, PEKA adapter) is a
``models`` row plus an artifact folder; :func:`record_model` writes both in a
transaction and :func:`model_record` reads one back, so the four kinds are saved
and found one way. What a folder holds (safetensors, a peft adapter) is the
trainer's business: :mod:`hquery.training.registry`.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import pyarrow as pa

from hquery.errors import NotReadyError, StoreError
from hquery.names import Pointer, model_artifact
from hquery.store import Store, Transaction, utcnow

MODEL_NAMES = ("alignment", "predictor", "histoprism", "peka")
"""The ``models.name`` of each kind of model."""

LABELS = {"alignment": "alignment model", "predictor": "MLP predictor", "histoprism": "HistoPrism model",
          "peka": "PEKA adapter"}
NEEDS = {"alignment": "train align", "predictor": "train predictor", "histoprism": "train histoprism",
         "peka": "train peka"}


@dataclasses.dataclass(frozen=True)
class ModelRecord:
    """One ``models`` row, its JSON decoded."""

    version: str
    name: str
    """``alignment``, ``predictor``, ``histoprism`` or ``peka``."""
    kind: str
    params: dict
    data_snapshot: dict
    """The Lance table versions it was trained on."""
    seed: int | None
    metrics: dict
    artifact_path: str
    created_at: datetime

    def folder(self, store: Store) -> Path:
        """Where its files are."""
        return store.artifact_path(self.artifact_path)


@dataclasses.dataclass(frozen=True)
class IndexRecord:
    """One ``index_versions`` row: an index, the alignment model it was built with, and its folder."""

    version: str
    model_version: str
    artifact_path: str


def record_model(txn: Transaction, *, name: str, kind: str, version: str, params: dict, snapshot: dict,
                 seed: int | None, write: Callable[[Path], None], metrics: dict | None = None,
                 cv_rows: list[dict] | None = None, pointer: Pointer | str | None = None) -> ModelRecord:
    """Stage a model version: its folder (``write(folder)`` fills it; ``config.json`` holds ``params``), its
    ``models`` row, its per-fold metrics, and optionally move ``pointer`` to it."""
    if name not in MODEL_NAMES:
        raise ValueError(f"model name must be one of {', '.join(MODEL_NAMES)}, not {name!r}")
    folder = txn.stage_artifact(model_artifact(version))
    write(folder)
    (folder / "config.json").write_text(json.dumps(params, indent=2))
    record = ModelRecord(version, name, kind, params, snapshot, seed, metrics or {}, model_artifact(version), utcnow())
    txn.insert("models", pa.Table.from_pylist([{
        **dataclasses.asdict(record), "params": json.dumps(params), "data_snapshot": json.dumps(snapshot),
        "metrics": json.dumps(record.metrics)}]))
    txn.execute("delete_model_metrics", [version])
    if cv_rows:
        txn.insert("model_metrics", pa.Table.from_pylist([{"model_version": version, **r} for r in cv_rows]))
    if pointer is not None:
        txn.move_pointer(pointer, version)
    return record


def model_record(store: Store, name: str, version: str | None = None, *,
                 pointer: Pointer | str | None = None) -> ModelRecord:
    """The ``name`` model ``version``, or the one ``pointer`` names (default: that kind's current pointer).

    Raises :class:`~hquery.errors.NotReadyError` when there is none yet, and
    :class:`~hquery.errors.StoreError` for an unknown version or one of another kind.
    """
    default = {"alignment": Pointer.ALIGNMENT_MODEL, "histoprism": Pointer.HISTOPRISM, "peka": Pointer.PEKA_ADAPTER}
    if not version and not pointer and name not in default:
        raise ValueError(f"a {LABELS[name]} has one current version per collection: give its pointer or a version")
    version = version or store.pointer(pointer or default[name])
    if not version:
        raise NotReadyError(f"no {LABELS[name]} yet; train one first", needs=NEEDS[name])
    rows = store.query("model", [version])
    if not rows or rows[0].name != name:
        raise StoreError(f"no {LABELS[name]} {version!r} in the store (the models table lists them)")
    row = rows[0]
    if row.retired_at is not None:
        raise StoreError(f"{LABELS[name]} {version!r} was removed by `hquery gc` on {row.retired_at:%Y-%m-%d %H:%M}; "
                         "its runs stay in the catalog, but its files are gone")
    return ModelRecord(row.version, row.name, row.kind, json.loads(row.params), json.loads(row.data_snapshot or "{}"),
                       row.seed, json.loads(row.metrics or "{}"), row.artifact_path, row.created_at)


def index_record(store: Store, version: str | None = None) -> IndexRecord:
    """The current index version (or ``version``); :class:`~hquery.errors.NotReadyError` before the first."""
    version = version or store.pointer(Pointer.CURRENT_INDEX)
    if not version:
        raise NotReadyError("no index yet; build one first", needs="index")
    rows = store.query("index_version", [version])
    if not rows:
        raise StoreError(f"no index version {version!r}")
    if rows[0].retired_at is not None:
        raise StoreError(f"index version {version!r} was removed by `hquery gc` on {rows[0].retired_at:%Y-%m-%d %H:%M}")
    return IndexRecord(version, rows[0].model_version, rows[0].path)


def service_model(store: Store) -> str | None:
    """The alignment model behind the current index (the one prompts use), or ``None`` before the first index."""
    return index_record(store).model_version if store.pointer(Pointer.CURRENT_INDEX) else None
