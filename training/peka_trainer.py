"""Adapt the store's image backbone to its RNA teacher (PEKA), compare adapters, record the result.

``train_peka`` fits the deployable adapter on every tile with expression and
records it as a model version; re-embedding the slides with it is ingest's job
(``hquery ingest --reembed``). ``compare_adapters`` measures what adaptation buys,
the way the PEKA paper's Table 2 does: adapters are trained on some patients,
and a linear probe (:mod:`hquery.training.probe`) is cross-validated on the
tiles of the other patients, which no adapter has seen.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable

from hquery.errors import InputError
from hquery.ingest.image_encoders import ImageEncoder, parse_image_encoder
from hquery.names import Pointer
from hquery.store import Store
from hquery.training.pairs import TileImages, load_tile_images
from hquery.training.peka import PEKAConfig, embed_tiles, fit_peka, trainable_fraction
from hquery.training.probe import probe_expression
from hquery.training.registry import save_model, version_id
from hquery.training.splits import patient_holdout


@dataclasses.dataclass
class AdapterComparison:
    """One row of the None / LoRA / PEKA table."""

    method: str
    trainable_fraction: float
    n_tiles: int
    """Held-out tiles the probe was cross-validated on."""
    n_patients: int
    pcc_mean: float
    pcc_sd: float
    fold_pcc: list[float]
    seconds: float


@dataclasses.dataclass
class PEKAReport:
    version: str
    method: str
    target: str
    n_tiles: int
    n_patients: int
    trainable_fraction: float
    losses: list[float]
    comparison: list[AdapterComparison]
    seconds: float


def frozen_encoder(spec_text: str, device: str = "cpu"):
    """The image encoder ``spec_text`` names, without any adapter: what PEKA adapts."""

    spec = parse_image_encoder(spec_text).with_adapter(None)
    if not spec.adaptable:
        raise InputError(f"image encoder {spec.text} is not a timm backbone, which PEKA needs to adapt; "
                         "name one with --backbone (e.g. demo-vit or timm:ARCH)")
    return ImageEncoder(spec, device=device)


def compare_adapters(tiles: TileImages, encoder, config: PEKAConfig, methods=("none", "lora", "miss"), *,
                     holdout: float = 0.4, folds: int = 5,
                     on_method: Callable[[str], None] | None = None) -> list[AdapterComparison]:
    """The HEST-style probe of frozen and adapted features on patients no adapter was trained on.

    Parameters
    ----------
    tiles
        Tiles with pixels, teacher embeddings and expression.
    holdout
        Fraction of patients kept from adapter training; the probe is
        cross-validated (``folds`` patient-level folds) on their tiles only.
    methods
        ``none`` (the frozen backbone), ``lora`` and ``miss`` (PEKA's block-affine adapters).
    """
    train, probe = patient_holdout(tiles.patients, holdout, config.seed)
    fit_on, probed = tiles.subset(train), tiles.subset(probe)
    rows = []
    for method in methods:
        started = time.perf_counter()
        if method == "none":
            features, fraction = embed_tiles(encoder.model, encoder, probed.images), 0.0
        else:
            student, _ = fit_peka(encoder, fit_on.images, fit_on.teacher, dataclasses.replace(config, method=method))
            features, fraction = embed_tiles(student.backbone, encoder, probed.images), trainable_fraction(student.backbone)
        report = probe_expression(features, probed.expression, probed.patients, probed.genes, folds=folds,
                                  seed=config.seed)
        rows.append(AdapterComparison(method, fraction, len(probed), len(set(probed.patients)), report.mean,
                                      report.sd, report.fold_pcc, time.perf_counter() - started))
        if on_method:
            on_method(method)
    return rows


def train_peka(store: Store, config: PEKAConfig = PEKAConfig(), *, compare: bool = True, device: str = "cpu",
               backbone: str | None = None, on_step: Callable[[str], None] | None = None) -> PEKAReport:
    """Fit a PEKA adapter on every tile with expression and record it as the store's current adapter.

    Parameters
    ----------
    config
        Adapter method (``miss`` or ``lora``), rank, loss weights, epochs, seed.
    compare
        Also run :func:`compare_adapters` (None, LoRA and MiSS on held-out
        patients) and keep its table with the model.
    backbone
        The timm encoder spec to adapt (default: the store's image encoder, which
        must then be a timm backbone; a store embedded with ``he-features`` names one here).

    Returns
    -------
    PEKAReport with the adapter version, its training losses and the comparison.
    """
    started = time.perf_counter()
    tiles = load_tile_images(store, seed=config.seed)
    encoder = frozen_encoder(backbone or tiles.image_encoder_spec, device)
    step = on_step or (lambda name: None)
    comparison = compare_adapters(tiles, encoder, config, on_method=lambda m: step(f"compared {m}")) if compare else []
    student, losses = fit_peka(encoder, tiles.images, tiles.teacher, config,
                               on_epoch=lambda e, loss: step(f"epoch {e + 1}"))
    version = version_id(f"peka_{config.method}", {"config": dataclasses.asdict(config), "data": tiles.snapshot,
                                                   "encoder": encoder.spec.text})
    fraction = trainable_fraction(student.backbone)
    params = {"config": dataclasses.asdict(config), "base_encoder": encoder.spec.text,
              "base_version": encoder.spec.version, "target": tiles.target, "n_tiles": len(tiles),
              "trainable_fraction": fraction, "losses": losses}
    with store.transaction() as txn:
        save_model(txn, "peka", student, kind=f"peka_{config.method}", version=version, params=params,
                   snapshot=tiles.snapshot, seed=config.seed,
                   metrics={"probe": [dataclasses.asdict(r) for r in comparison]}, pointer=Pointer.PEKA_ADAPTER)
    return PEKAReport(version, config.method, tiles.target, len(tiles), len(set(tiles.patients)), fraction, losses,
                      comparison, time.perf_counter() - started)
