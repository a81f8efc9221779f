"""PEKA: teach a frozen image backbone transcriptomics through parameter-efficient adapters.

Seed paper 001 (PEKA). The student is the image backbone with block-affine adapters
(peft's MiSS in its "bat" form, the successor of Bone) or LoRA on the attention and
MLP linear layers, a translator MLP to the RNA teacher's dimension, and a
classifier head. The teacher is the frozen RNA encoder's embedding of the same
tile's spot (or of the slide's bulk profile). Two losses, weighted 0.5 each:

* knowledge distillation, ``KL(softmax(T/τ) ‖ softmax(S/τ)) · τ²``, between the
  translated student embedding ``S`` and the teacher embedding ``T``;
* structure alignment, the cross-entropy of the classifier on the student against
  pseudo-labels from k-means clustering of the teacher embeddings.

Only adapters, translator and classifier train; the backbone's own weights stay frozen.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

VIT_LINEAR = r".*blocks\.\d+\.(attn\.(qkv|proj)|mlp\.(fc1|fc2))"
"""timm ViT attention and MLP linears; a bare ``proj`` would also match the patch-embedding Conv2d."""

METHODS = ("miss", "lora")


@dataclasses.dataclass(frozen=True)
class PEKAConfig:
    """Adapter and loss settings (the paper's defaults where it gives them)."""

    method: str = "miss"
    rank: int = 16
    """MiSS block size (``r``) or LoRA rank."""
    clusters: int = 8
    """k of the k-means pseudo-labels for structure alignment."""
    tau: float = 1.0
    """Distillation temperature."""
    lambda_kd: float = 0.5
    lambda_sa: float = 0.5
    translator_hidden: int = 256
    lr: float = 1e-3
    weight_decay: float = 0.01
    epochs: int = 5
    batch_size: int = 64
    seed: int = 0


def distillation_loss(student: torch.Tensor, teacher: torch.Tensor, tau: float = 1.0) -> torch.Tensor:
    """``KL(softmax(T/τ) ‖ softmax(S/τ)) · τ²``, averaged over the batch."""
    return F.kl_div(F.log_softmax(student / tau, dim=-1), F.softmax(teacher / tau, dim=-1),
                    reduction="batchmean") * tau**2


def structure_loss(logits: torch.Tensor, pseudo_labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of the student's classifier against the teacher's cluster labels."""
    return F.cross_entropy(logits, pseudo_labels)


def peka_loss(student: torch.Tensor, teacher: torch.Tensor, logits: torch.Tensor, pseudo_labels: torch.Tensor,
              config: PEKAConfig) -> torch.Tensor:
    return (config.lambda_kd * distillation_loss(student, teacher, config.tau)
            + config.lambda_sa * structure_loss(logits, pseudo_labels))


def pseudo_labels(teacher: np.ndarray, clusters: int, seed: int = 0) -> np.ndarray:
    """k-means cluster of each teacher embedding (k = ``clusters``)."""
    from sklearn.cluster import KMeans

    if len(teacher) < clusters:
        raise ValueError(f"{len(teacher)} teacher embeddings cannot make {clusters} clusters")
    return KMeans(clusters, n_init=4, random_state=seed).fit_predict(teacher).astype(np.int64)


def adapt_backbone(backbone: nn.Module, method: str = "miss", rank: int = 16,
                   target_modules: str = VIT_LINEAR) -> nn.Module:
    """Wrap ``backbone`` with peft adapters on its ViT linears; every original weight is frozen.

    ``method="miss"`` is MiSS with ``init_weights="bat"``, the block-affine Bat form
    of the paper's Bone (peft removed Bone in 0.19); ``"lora"`` is the comparison.
    """
    from peft import LoraConfig, MissConfig, get_peft_model

    if method == "miss":
        config = MissConfig(r=rank, init_weights="bat", target_modules=target_modules)
    elif method == "lora":
        config = LoraConfig(r=rank, lora_alpha=rank, target_modules=target_modules)
    else:
        raise ValueError(f"unknown adapter method {method!r}; use one of {', '.join(METHODS)}")
    return get_peft_model(backbone, config)


def trainable_fraction(model: nn.Module) -> float:
    """Trainable parameters over all parameters."""
    total = sum(p.numel() for p in model.parameters())
    return sum(p.numel() for p in model.parameters() if p.requires_grad) / total


class PEKAStudent(nn.Module):
    """Adapted backbone -> embedding; translator -> teacher space; classifier -> pseudo-label logits."""

    def __init__(self, backbone: nn.Module, feature_dim: int, teacher_dim: int, config: PEKAConfig,
                 forward: Callable[[nn.Module, torch.Tensor], torch.Tensor] | None = None):
        super().__init__()
        self.backbone = backbone
        self.pooled = forward
        self.translator = nn.Sequential(nn.Linear(feature_dim, config.translator_hidden), nn.GELU(),
                                        nn.Linear(config.translator_hidden, teacher_dim))
        self.classifier = nn.Linear(teacher_dim, config.clusters)

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """The adapted backbone's embedding: what re-embedding writes as the new tile features."""
        return self.pooled(self.backbone, images) if self.pooled else self.backbone(images)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        translated = self.translator(self.embed(images))
        return translated, self.classifier(translated)


def fit_peka(encoder, images: np.ndarray, teacher: np.ndarray, config: PEKAConfig,
             on_epoch: Callable[[int, float], None] | None = None) -> tuple[PEKAStudent, list[float]]:
    """Train adapters, translator and classifier on ``images`` taught by ``teacher``.

    Parameters
    ----------
    encoder
        The frozen :class:`~hquery.ingest.image_encoders.ImageEncoder`; its
        backbone is copied and adapted, and its preprocessing is used as is.
    images
        uint8 ``[n, h, w, 3]`` tiles.
    teacher
        ``[n, d]`` RNA embeddings of the same tiles. They are standardised per
        dimension first: PCA components differ in scale by orders of magnitude, and
        a softmax over raw components would be decided by the leading few.

    Returns
    -------
    The trained student (in eval mode) and the mean loss of each epoch.
    """
    import copy

    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    teacher = (teacher - teacher.mean(axis=0)) / (teacher.std(axis=0) + 1e-6)
    labels = torch.from_numpy(pseudo_labels(teacher, config.clusters, config.seed)).to(encoder.device)
    target = torch.from_numpy(teacher.astype(np.float32)).to(encoder.device)
    backbone = adapt_backbone(copy.deepcopy(encoder.model), config.method, config.rank)
    student = PEKAStudent(backbone, encoder.dim, teacher.shape[1], config, encoder.forward).to(encoder.device)
    trainable = [p for p in student.parameters() if p.requires_grad]
    optimiser = torch.optim.AdamW(trainable, lr=config.lr, weight_decay=config.weight_decay)
    losses = []
    for epoch in range(config.epochs):
        student.train()
        total = 0.0
        for batch in np.array_split(rng.permutation(len(images)), max(1, len(images) // config.batch_size)):
            x = _augment(encoder.preprocess(images[np.sort(batch)]), rng)
            index = torch.from_numpy(np.sort(batch)).to(encoder.device)
            translated, logits = student(x)
            loss = peka_loss(translated, target[index], logits, labels[index], config)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            total += loss.item() * len(batch)
        losses.append(total / len(images))
        if on_epoch:
            on_epoch(epoch, losses[-1])
    return student.eval(), losses


def _augment(x: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    """Flips and right-angle turns: tissue has no up or left."""
    turns = int(rng.integers(4))
    x = torch.rot90(x, turns, dims=(2, 3)) if turns else x
    return torch.flip(x, dims=(3,)) if rng.random() < 0.5 else x


def embed_tiles(model: nn.Module, encoder, images: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """``model``'s embedding of uint8 tiles, preprocessed as ``encoder`` does; float32 ``[n, dim]``."""
    model.eval()
    out = []
    with torch.inference_mode():
        for start in range(0, len(images), batch_size):
            out.append(encoder.forward(model, encoder.preprocess(images[start:start + batch_size])).float().cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, encoder.dim), np.float32)
