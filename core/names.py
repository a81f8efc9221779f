"""Names of what a store holds, built in one place: Lance tables, artifact folders and current pointers.

>>> embedding_table("tile", "vit_abc")
'tile_embeddings__vit_abc'
>>> projected_table("slide", "align_slide_1f")
'slide_projected__align_slide_1f'
>>> model_artifact("histoprism_2a")
'models/histoprism_2a'
>>> Pointer.predictor("hallmark")
'predictor__hallmark'
"""

from __future__ import annotations

import enum
import re

EXPRESSION = "expression"
"""Bulk log1p profiles, one row per sample, in the store's gene-universe order."""
SPOT_EXPRESSION = "spot_expression"
"""Tile-level profiles (spots), matched to tiles by coordinates."""


def embedding_table(level: str, encoder: str) -> str:
    """Raw embeddings of ``level`` (``tile``, ``slide`` or ``rna``) by encoder version ``encoder``."""
    if level not in ("tile", "slide", "rna"):
        raise ValueError(f"embedding level must be tile, slide or rna, not {level!r}")
    return f"{level}_embeddings__{encoder}"


def projected_table(level: str, model: str) -> str:
    """Embeddings of ``level`` (``tile``, ``slide`` or ``rna``) through alignment model ``model``'s heads."""
    if level not in ("tile", "slide", "rna"):
        raise ValueError(f"projected level must be tile, slide or rna, not {level!r}")
    return f"{level}_projected__{model}"


def model_artifact(version: str) -> str:
    """Folder (under ``artifacts/``) of a model version's files."""
    return f"models/{version}"


def index_artifact(version: str) -> str:
    """Folder (under ``artifacts/``) of an index version's files."""
    return f"indexes/{version}"


def eval_artifact(eval_id: str) -> str:
    """Folder (under ``artifacts/``) of an evaluation's plots."""
    return f"evals/{eval_id}"


def association_artifact(run_id: str) -> str:
    """Folder (under ``artifacts/``) of an association run's plots."""
    return f"associations/{run_id}"


def survival_artifact(run_id: str) -> str:
    """Folder (under ``artifacts/``) of a survival run's Kaplan-Meier plots."""
    return f"survival/{run_id}"


def map_artifact(map_id: str) -> str:
    """Folder (under ``artifacts/``) of a map of the aligned space."""
    return f"maps/{map_id}"


def qc_artifact(ingest_id: str) -> str:
    """Folder (under ``artifacts/``) of an ingest's QC thumbnails: each whole-slide image, its kept tiles outlined."""
    return f"qc/{ingest_id}"


def file_safe(name: str) -> str:
    """``name`` as a file name: anything but letters, digits, ``.``, ``_`` and ``-`` becomes ``_``.

    >>> file_safe("TCGA-A1/01 x")
    'TCGA-A1_01_x'
    """
    return re.sub(r"[^A-Za-z0-9._-]", "_", name)


def encoder_artifact(version: str) -> str:
    """Folder (under ``artifacts/``) of a fitted encoder (e.g. the RNA PCA)."""
    return f"rna/{version}"


class Pointer(str, enum.Enum):
    """A "current" version the store keeps in ``settings``; read with :meth:`Store.pointer`, move in a transaction."""

    IMAGE_ENCODER = "image_encoder"
    """The image encoder version new slides are embedded with and training reads."""
    IMAGE_ENCODER_SPEC = "image_encoder_spec"
    """Its spec text (``random:vit_tiny...``), to rebuild it."""
    RNA_ENCODER = "rna_encoder"
    ALIGNMENT_MODEL = "alignment_model"
    """The newest slide-level alignment model."""
    ALIGNMENT_MODEL_TILE = "alignment_model_tile"
    CURRENT_INDEX = "current_index"
    """The index prompts are answered from; its model is the one in service."""
    PEKA_ADAPTER = "peka_adapter"
    HISTOPRISM = "histoprism_model"

    def __str__(self) -> str:
        return self.value

    @staticmethod
    def alignment(level: str) -> Pointer:
        return {"slide": Pointer.ALIGNMENT_MODEL, "tile": Pointer.ALIGNMENT_MODEL_TILE}[level]

    @staticmethod
    def predictor(collection: str) -> str:
        """The key of a collection's current MLP predictor (one per collection, so not a member)."""
        return f"predictor__{collection}"
