"""Projection heads that map frozen image and RNA embeddings into one aligned space."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from hquery.stats import one_hot


@dataclasses.dataclass(frozen=True)
class AlignmentConfig:
    """Hyper-parameters of the projection heads and their training."""

    dim: int = 256
    hidden: int = 512
    dropout: float = 0.5
    lr: float = 3e-4
    weight_decay: float = 0.1
    batch_size: int = 128
    max_epochs: int = 300
    patience: int = 50
    val_fraction: float = 0.15
    init_temperature: float = 0.2
    """CLIP's 0.07 over-sharpens on a few thousand pairs: on the default demo (5 folds)
    0.2 lifts held-out recall@10 from 0.19 to 0.28 (ridge: 0.21); lr 3e-4 with
    patience 50 (rather than 1e-3 and 25) then lifts it to 0.33."""
    seed: int = 0
    condition_on_type: bool = True
    """Give the image head the slide's cancer type (a one-hot beside its features), as HistoPrism
    conditions its transformer. Measured on both demo worlds (``benchmarks/type_conditioning.py``):
    it lifts held-out Soft-kNN and MLP R² over the same heads without it."""


def conditioning_types(cancer_types: Sequence[str | None] | None, config: AlignmentConfig) -> tuple[str, ...]:
    """The types an image head is conditioned on: every known type of the training slides, if two or more."""
    if not config.condition_on_type or cancer_types is None:
        return ()
    known = sorted({t for t in cancer_types if t})
    return tuple(known) if len(known) > 1 else ()


class ProjectionHead(nn.Module):
    """Standardise, then linear -> GELU -> LayerNorm -> dropout -> linear, L2-normalised.

    The input mean and standard deviation are buffers fitted on the training
    pairs, so a saved head takes raw encoder embeddings.
    """

    def __init__(self, in_dim: int, out_dim: int = 256, hidden: int = 512, dropout: float = 0.1):
        super().__init__()
        self.register_buffer("mean", torch.zeros(in_dim))
        self.register_buffer("std", torch.ones(in_dim))
        self.net = nn.Sequential(
            nn.Linear(in_dim, hidden), nn.GELU(), nn.LayerNorm(hidden), nn.Dropout(dropout), nn.Linear(hidden, out_dim)
        )

    def fit_standardisation(self, x: torch.Tensor) -> None:
        self.mean.copy_(x.mean(dim=0))
        self.std.copy_(x.std(dim=0).clamp_min(1e-6))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.net((x - self.mean) / self.std), dim=-1)


class AlignmentModel(nn.Module):
    """An image head, an RNA head and a learnable temperature (CLIP's logit scale).

    With ``cancer_types`` the image head also reads the slide's type: the
    indicators of :func:`type_indicators` sit beside the image embedding and are
    standardised with it. A type the model never saw (or none) is all zeros.
    """

    def __init__(self, image_dim: int, rna_dim: int, config: AlignmentConfig, cancer_types: Sequence[str] = ()):
        super().__init__()
        self.image_dim, self.rna_dim = image_dim, rna_dim
        self.cancer_types = tuple(cancer_types)
        self.image_head = ProjectionHead(image_dim + len(self.cancer_types), config.dim, config.hidden, config.dropout)
        self.rna_head = ProjectionHead(rna_dim, config.dim, config.hidden, config.dropout)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1.0 / config.init_temperature)))

    def image_inputs(self, image: np.ndarray, cancer_types: Sequence[str | None] | None = None) -> np.ndarray:
        """What the image head reads: the embeddings, beside the type indicators when the model is conditioned."""
        if not self.cancer_types:
            return image
        if cancer_types is None or len(cancer_types) != len(image):
            raise ValueError(f"this alignment model reads each slide's cancer type; give one per row "
                             f"({len(image)} rows, {'no' if cancer_types is None else len(cancer_types)} types)")
        return np.hstack([image, one_hot(cancer_types, self.cancer_types)])

    def encode_image(self, x: torch.Tensor) -> torch.Tensor:
        """``x``: :meth:`image_inputs` as a tensor."""
        return self.image_head(x)

    def encode_rna(self, x: torch.Tensor) -> torch.Tensor:
        return self.rna_head(x)

    def forward(self, image: torch.Tensor, rna: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.encode_image(image), self.encode_rna(rna), self.logit_scale.exp().clamp(max=100.0)
