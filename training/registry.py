"""The model registry: save a fitted model as a version of its kind, load one back.

One entry per kind; each says what its artifact folder holds. The catalog side
(the ``models`` row, per-fold metrics, the current pointer) is written and read
the same way for all of them (:func:`hquery.records.record_model`,
:func:`hquery.records.model_record`).

========== ============================= ==========================================
kind       the model                     its folder
========== ============================= ==========================================
alignment  :class:`AlignmentModel`       ``heads.safetensors``
predictor  the MLP's arrays (numpy)      ``predictor.safetensors``
histoprism :class:`FittedHistoPrism`     ``histoprism.safetensors`` (weights, scales)
peka       :class:`PEKAStudent`          ``adapter/`` (peft) and ``heads.safetensors``
========== ============================= ==========================================

Loading a ``predictor`` needs numpy only; the other kinds import torch when used.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

from hquery.names import Pointer
from hquery.records import ModelRecord, model_record, record_model
from hquery.store import Store, Transaction, build_id, content_digest


def version_id(prefix: str, key: dict) -> str:
    """``PREFIX_DIGEST_BUILD``: the digest names what was fitted (the same config, data and seed give the same
    one, and on CPU the same weights); the build part is new every time, so a committed version is never
    written again, even by a rerun of the same fit."""
    return f"{prefix}_{content_digest(key)}_{build_id()}"


def _write_alignment(folder: Path, model) -> None:
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(folder / "heads.safetensors"))


def _read_alignment(folder: Path, record: ModelRecord):
    from safetensors.torch import load_file

    from hquery.training.heads import AlignmentConfig, AlignmentModel

    params = record.params
    model = AlignmentModel(params["image_dim"], params["rna_dim"], AlignmentConfig(**params["config"]),
                           params.get("cancer_types", ()))
    model.load_state_dict(load_file(str(folder / "heads.safetensors")))
    return model.eval()


def _write_predictor(folder: Path, arrays) -> None:
    import numpy as np
    from safetensors.numpy import save_file

    save_file({k: np.ascontiguousarray(v, dtype=np.float64) for k, v in arrays.items()},
              str(folder / "predictor.safetensors"))


def _read_predictor(folder: Path, record: ModelRecord):
    from safetensors.numpy import load_file

    return load_file(str(folder / "predictor.safetensors"))


def _write_histoprism(folder: Path, fitted) -> None:
    import torch
    from safetensors.torch import save_file

    tensors = {f"model.{k}": v.contiguous() for k, v in fitted.model.state_dict().items()}
    tensors.update({f"scale.{k}": torch.as_tensor(v) for k, v in fitted.scales.items()})
    save_file(tensors, str(folder / "histoprism.safetensors"))


def _read_histoprism(folder: Path, record: ModelRecord):
    from safetensors.torch import load_file

    from hquery.training.histoprism import FittedHistoPrism, HistoPrism, HistoPrismConfig

    params = record.params
    tensors = load_file(str(folder / "histoprism.safetensors"))
    model = HistoPrism(params["in_dim"], len(params["genes"]), len(params["cancer_types"]),
                       HistoPrismConfig(**params["config"]))
    model.load_state_dict({k.removeprefix("model."): v for k, v in tensors.items() if k.startswith("model.")})
    model.eval()
    scales = {k.removeprefix("scale."): v.numpy() for k, v in tensors.items() if k.startswith("scale.")}
    return FittedHistoPrism(model, params["cancer_types"], params["genes"], scales, params["history"])


def _write_peka(folder: Path, student) -> None:
    from safetensors.torch import save_file

    student.backbone.save_pretrained(str(folder / "adapter"))
    heads = {f"translator.{k}": v for k, v in student.translator.state_dict().items()}
    heads |= {f"classifier.{k}": v for k, v in student.classifier.state_dict().items()}
    save_file({k: v.contiguous().cpu() for k, v in heads.items()}, str(folder / "heads.safetensors"))


def _read_peka(folder: Path, record: ModelRecord) -> Path:
    """The adapter folder: an image encoder merges it into its backbone (:class:`~hquery.ingest.image_encoders.ImageEncoder`)."""
    return folder / "adapter"


@dataclasses.dataclass(frozen=True)
class ModelKind:
    write: Callable[[Path, object], None]
    read: Callable[[Path, ModelRecord], object]


KINDS = {
    "alignment": ModelKind(_write_alignment, _read_alignment),
    "predictor": ModelKind(_write_predictor, _read_predictor),
    "histoprism": ModelKind(_write_histoprism, _read_histoprism),
    "peka": ModelKind(_write_peka, _read_peka),
}


def save_model(txn: Transaction, name: str, model, *, kind: str, version: str, params: dict, snapshot: dict,
               seed: int | None, metrics: dict | None = None, cv_rows: list[dict] | None = None,
               pointer: Pointer | str | None = None) -> ModelRecord:
    """Stage ``model`` as version ``version`` of ``name`` (a key of :data:`KINDS`), optionally moving ``pointer``."""
    return record_model(txn, name=name, kind=kind, version=version, params=params, snapshot=snapshot, seed=seed,
                        write=lambda folder: KINDS[name].write(folder, model), metrics=metrics, cv_rows=cv_rows,
                        pointer=pointer)


def load_model(store: Store, name: str, version: str | None = None, *,
               pointer: Pointer | str | None = None) -> tuple[object, ModelRecord]:
    """``(model, record)`` of ``name``'s ``version`` (default: the one its current pointer names)."""
    record = model_record(store, name, version, pointer=pointer)
    return KINDS[name].read(record.folder(store), record), record
