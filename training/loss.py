"""The symmetric InfoNCE (CLIP) loss."""

import torch
import torch.nn.functional as F


def clip_loss(image: torch.Tensor, rna: torch.Tensor, logit_scale: torch.Tensor) -> torch.Tensor:
    """Mean of image->RNA and RNA->image cross-entropy over a batch of aligned pairs.

    ``image`` and ``rna`` are L2-normalised ``[batch, dim]``; row ``i`` of each is a pair.
    """
    logits = logit_scale * image @ rna.T
    labels = torch.arange(len(image), device=image.device)
    return (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2
