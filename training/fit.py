"""Fit projection heads on aligned pairs with early stopping on a patient-level validation split."""

from __future__ import annotations

import contextlib
import copy
import dataclasses
from collections.abc import Callable, Iterator, Sequence

import numpy as np
import torch

from hquery.training.heads import AlignmentConfig, AlignmentModel, conditioning_types
from hquery.training.loss import clip_loss
from hquery.training.splits import patient_holdout


@dataclasses.dataclass
class FitHistory:
    epochs: int
    best_epoch: int
    best_val_loss: float
    train_loss: list[float]
    val_loss: list[float]


def fit_alignment(
    image: np.ndarray,
    rna: np.ndarray,
    patients: Sequence[str],
    config: AlignmentConfig = AlignmentConfig(),
    device: str = "cpu",
    loss_fn: Callable = clip_loss,
    cancer_types: Sequence[str | None] | None = None,
) -> tuple[AlignmentModel, FitHistory]:
    """Train an :class:`AlignmentModel` on row-aligned ``image``/``rna`` embeddings.

    With each row's ``cancer_types`` (and ``config.condition_on_type``), the image
    head reads the type beside the embedding (:func:`conditioning_types`).

    A ``config.val_fraction`` of the patients is held out for early stopping
    (patience ``config.patience`` epochs on the validation loss); the weights of
    the best epoch are returned. Deterministic for a given ``config.seed`` on CPU:
    there the fit runs on one thread, since the heads' matrices are too small to
    gain from more and a different thread count changes the sums in the last bits.
    Parallelism comes from fitting several models at once (:func:`hquery.parallel.worker_pool`).
    """
    with torch_threads(1 if device == "cpu" else torch.get_num_threads()):
        return _fit(image, rna, patients, config, device, loss_fn, cancer_types)


def _fit(image, rna, patients, config, device, loss_fn, cancer_types):
    torch.manual_seed(config.seed)
    train_idx, val_idx = patient_holdout(patients, config.val_fraction, config.seed)
    model = AlignmentModel(image.shape[1], rna.shape[1], config, conditioning_types(cancer_types, config))
    x_img = torch.tensor(model.image_inputs(image, cancer_types), dtype=torch.float32)
    x_rna = torch.tensor(rna, dtype=torch.float32)
    model.image_head.fit_standardisation(x_img[train_idx])
    model.rna_head.fit_standardisation(x_rna[train_idx])
    return _train(model, x_img, x_rna, train_idx, val_idx, config, device, loss_fn)


def fine_tune_alignment(
    model: AlignmentModel,
    image: np.ndarray,
    rna: np.ndarray,
    patients: Sequence[str],
    config: AlignmentConfig,
    device: str = "cpu",
    loss_fn: Callable = clip_loss,
    cancer_types: Sequence[str | None] | None = None,
    min_val_patients: int = 4,
) -> tuple[AlignmentModel, FitHistory]:
    """Warm start: a copy of a fitted ``model``, trained further on new pairs (a new site's) for a short schedule.

    The copy keeps the model's input standardisation and cancer-type vocabulary
    (a type it never saw reads as none), so it starts exactly where the served
    model is. ``config`` sets the schedule (``max_epochs``, ``lr``, ``patience``,
    ``seed``); its architecture fields are the model's. Early stopping uses a
    ``config.val_fraction`` patient holdout when that holds ``min_val_patients``
    or more; with fewer pairs every epoch of the short schedule is run.
    """
    with torch_threads(1 if device == "cpu" else torch.get_num_threads()):
        torch.manual_seed(config.seed)
        patients = np.asarray(patients)
        train_idx, val_idx = np.arange(len(patients)), np.array([], dtype=int)
        if round(len(set(patients)) * config.val_fraction) >= min_val_patients:
            train_idx, val_idx = patient_holdout(patients, config.val_fraction, config.seed)
        tuned = copy.deepcopy(model).cpu()
        x_img = torch.tensor(tuned.image_inputs(image, cancer_types), dtype=torch.float32)
        return _train(tuned, x_img, torch.tensor(rna, dtype=torch.float32), train_idx, val_idx, config, device,
                      loss_fn)


def _train(model, x_img, x_rna, train_idx, val_idx, config, device, loss_fn):
    """AdamW on the CLIP loss over ``train_idx``; the best epoch on ``val_idx`` (the last, when it is empty)."""
    generator = torch.Generator().manual_seed(config.seed)
    model.to(device)
    x_img, x_rna = x_img.to(device), x_rna.to(device)
    optimiser = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay, fused=True)
    train_idx_t = torch.as_tensor(train_idx)
    best_state, best_loss, best_epoch = copy.deepcopy(model.state_dict()), float("inf"), 0
    train_curve, val_curve = [], []
    for epoch in range(config.max_epochs):
        model.train()
        order = train_idx_t[torch.randperm(len(train_idx_t), generator=generator)]
        losses = []
        for start in range(0, len(order), config.batch_size):
            batch = order[start : start + config.batch_size]
            if len(batch) < 2:
                continue
            loss = loss_fn(*model(x_img[batch], x_rna[batch]))
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            losses.append(loss.item())
        train_curve.append(float(np.mean(losses)) if losses else float("nan"))
        if len(val_idx) == 0:
            best_state, best_loss, best_epoch = None, train_curve[-1], epoch
            continue
        model.eval()
        with torch.no_grad():
            val_loss = loss_fn(*model(x_img[val_idx], x_rna[val_idx])).item()
        val_curve.append(val_loss)
        if val_loss < best_loss - 1e-4:
            best_state, best_loss, best_epoch = copy.deepcopy(model.state_dict()), val_loss, epoch
        elif epoch - best_epoch >= config.patience:
            break
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    return model.cpu(), FitHistory(len(train_curve), best_epoch, best_loss, train_curve, val_curve)


def project(model: AlignmentModel, image: np.ndarray | None = None, rna: np.ndarray | None = None,
            batch_size: int = 8192, cancer_types: Sequence[str | None] | None = None) -> np.ndarray:
    """Aligned, L2-normalised vectors for raw image *or* RNA embeddings.

    A model conditioned on cancer type needs each image row's ``cancer_types``.
    """
    head = model.image_head if image is not None else model.rna_head
    x = torch.tensor(model.image_inputs(image, cancer_types) if image is not None else rna, dtype=torch.float32)
    with torch.no_grad():
        return torch.cat([head(x[i : i + batch_size]) for i in range(0, len(x), batch_size)]).numpy()


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run the block on ``n`` torch threads (a fit's sums then do not depend on the machine's CPU count)."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)
