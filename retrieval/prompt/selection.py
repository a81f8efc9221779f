"""Which slides a prompt scores, and their vectors: in the aligned space (projected now where the index never saw
them) and from the frozen image encoder."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from hquery.training.pairs import cancer_types
from hquery.training.registry import load_model

from hquery.errors import InputError, NotReadyError
from hquery.names import embedding_table, projected_table
from hquery.store import Store, StoreError, vectors


def select_slides(store: Store, *, samples: Sequence[str] | None = None, cohort: str | None = None,
                  where: str | None = None, profiled: bool = False) -> list[tuple]:
    """Rows ``(sample_id, patient_id, cohort, cancer_type, has_expression)`` of the slides to score, named; with
    ``profiled``, of the samples with measured expression instead."""
    rows = store.query("profiled_samples" if profiled else "slide_samples")
    what = "measured expression" if profiled else "slide"
    if samples:
        known = {r.sample_id for r in rows}
        unknown = [s for s in samples if s not in known]
        if unknown:
            raise InputError(f"no {what} for sample(s) {', '.join(unknown[:10])}; the samples view lists those "
                             f"with {'has_expression' if profiled else 'has_slide'}")
        wanted = set(samples)
        rows = [r for r in rows if r.sample_id in wanted]
    if cohort:
        cohorts = {r.cohort for r in rows}
        rows = [r for r in rows if r.cohort == cohort]
        if not rows:
            raise InputError(f"no {what}s in cohort {cohort!r}; cohorts with them: {', '.join(sorted(cohorts))}")
    if where:
        matching = set(store.samples_where(where, library=profiled))
        rows = [r for r in rows if r.sample_id in matching]
    if not rows:
        raise StoreError(f"no {what}s to score: the store has none, or the filters excluded them all")
    return rows


def aligned_vectors(store: Store, model_version: str, level: str, sample_ids: list[str], *,
                    projected_only: bool = False, notes: list[str] | None = None
                    ) -> tuple[list[tuple[str, int | None]], np.ndarray]:
    """Slides' (or tiles') embeddings in alignment model ``model_version``'s shared space, as a prompt sees them:
    keys ``(sample_id, tile_index)`` sorted, and vectors.

    The index build projected every slide stored then. A slide ingested since is
    projected now, through the same model's image head (``notes`` says so), so
    only a new model needs a new index; with ``projected_only`` such slides are
    left out instead.
    """
    dataset = store.dataset(projected_table(level, model_version))
    if dataset is None:
        raise NotReadyError(f"no projected {level} embeddings for model {model_version}; build the index again",
                            needs="index")
    columns = ["sample_id", "vector"] + (["tile_index"] if level == "tile" else [])
    table = dataset.to_table(columns=columns)
    wanted = set(sample_ids)
    ids = table["sample_id"].to_pylist()
    keep = np.array([s in wanted for s in ids], dtype=bool)
    tiles = table["tile_index"].to_pylist() if level == "tile" else [None] * len(ids)
    keys = [(s, t) for s, t, k in zip(ids, tiles, keep) if k]
    found = vectors(table["vector"])[keep]
    unprojected = sorted(wanted - {s for s, _ in keys})
    if unprojected and not projected_only:
        late_keys, late = _project_now(store, model_version, level, unprojected)
        keys, found = keys + late_keys, np.concatenate([found, late])
        if notes is not None:
            notes.append(f"{len(unprojected)} slide(s) ({', '.join(unprojected[:3])}"
                         f"{', ...' if len(unprojected) > 3 else ''}) were ingested after the index was built; "
                         f"projected now through {model_version}'s image head")
    order = sorted(range(len(keys)), key=lambda i: (keys[i][0], keys[i][1] or 0))
    return [keys[i] for i in order], found[order]


def _project_now(store: Store, model_version: str, level: str, sample_ids: list[str]
                 ) -> tuple[list[tuple[str, int | None]], np.ndarray]:
    """Slides (or their tiles) the index never saw, through the alignment model's image head."""
    import pyarrow.compute as pc

    from hquery.training.fit import project

    model, record = load_model(store, "alignment", model_version)
    encoder = record.params["image_encoder"]
    dataset = store.dataset(embedding_table(level, encoder))
    columns = ["sample_id", "embedding"] + (["tile_index"] if level == "tile" else [])
    table = dataset.to_table(columns=columns, filter=pc.field("sample_id").isin(sample_ids)) if dataset else None
    missing = sorted(set(sample_ids) - set(table["sample_id"].to_pylist() if table is not None else []))
    if missing:
        raise NotReadyError(f"{len(missing)} slide(s) ({', '.join(missing[:5])}) have no {encoder} embedding, which "
                            f"model {model_version} reads; train the alignment and build the index again",
                            needs="train align")
    ids = table["sample_id"].to_pylist()
    type_of = cancer_types(store)
    projected = project(model, image=vectors(table["embedding"]), cancer_types=[type_of[s] for s in ids])
    tiles = table["tile_index"].to_pylist() if level == "tile" else [None] * len(ids)
    return list(zip(ids, tiles)), projected


def pair_vectors(store: Store, model_version: str, sample_ids: list[str]) -> np.ndarray:
    """The paired slides ``sample_ids`` in model ``model_version``'s shared space, in that order."""
    keys, found = aligned_vectors(store, model_version, "slide", sample_ids)
    row = {sample: i for i, (sample, _) in enumerate(keys)}
    return found[[row[s] for s in sample_ids]]


def frozen_vectors(store: Store, image_encoder: str, level: str, keys: list[tuple[str, int | None]]) -> np.ndarray:
    """The image encoder's own (unprojected) embeddings of ``keys``, in their order."""
    dataset = store.dataset(embedding_table(level, image_encoder))
    columns = ["sample_id", "embedding"] + (["tile_index"] if level == "tile" else [])
    table = dataset.to_table(columns=columns)
    tiles = table["tile_index"].to_pylist() if level == "tile" else [None] * table.num_rows
    row = {key: i for i, key in enumerate(zip(table["sample_id"].to_pylist(), tiles))}
    missing = [s for s, t in keys if (s, t) not in row]
    if missing:
        raise NotReadyError(f"{len(missing)} {level}(s) of {', '.join(sorted(set(missing))[:5])} have no "
                            f"{image_encoder} embedding; ingest them again", needs="ingest")
    return vectors(table["embedding"])[[row[key] for key in keys]]
