"""Training: contrastive projection heads, PEKA adapters, HistoPrism and the refresh loop.

Fits models from pairs in the store and records them as catalog versions.
"""

from hquery.training.heads import AlignmentConfig, AlignmentModel, ProjectionHead
from hquery.training.metrics import recall_at_k, retrieval_metrics, target_ranks
from hquery.training.train import TrainReport, train_alignment

__all__ = [
    "AlignmentConfig", "AlignmentModel", "ProjectionHead", "TrainReport", "recall_at_k", "retrieval_metrics",
    "target_ranks", "train_alignment",
]
