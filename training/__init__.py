"""Training: contrastive projection heads, PEKA adapters, HistoPrism and the MLP predictor.

Fits models from pairs in the store and records them as catalog versions; it
never imports retrieval. The names below load on first use, so that a module
which needs only, say, :mod:`~hquery.training.predictor` (numpy) does not pay
for torch.

>>> from hquery.training import recall_at_k
>>> recall_at_k([0, 3, 12], k=10)
0.6666666666666666
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "AlignmentConfig": "heads", "AlignmentModel": "heads", "ProjectionHead": "heads",
    "recall_at_k": "metrics", "retrieval_metrics": "metrics", "target_ranks": "metrics",
    "TrainReport": "alignment_trainer", "train_alignment": "alignment_trainer",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
