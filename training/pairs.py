"""Aligned training pairs read from the store: slide <-> bulk RNA, or tile <-> spot."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pyarrow as pa
from hquery.ingest.rna_encoders import load_rna_encoder

from hquery.store import Store, StoreError, vectors


@dataclasses.dataclass
class Pairs:
    """Row-aligned image and RNA embeddings with each row's sample and patient."""

    level: str
    sample_ids: list[str]
    patients: np.ndarray
    image: np.ndarray
    rna: np.ndarray
    image_encoder: str
    rna_encoder: str
    snapshot: dict[str, int]
    """The Lance table versions the pairs were read from."""

    def __len__(self) -> int:
        return len(self.sample_ids)

    def subset(self, index: np.ndarray) -> Pairs:
        return dataclasses.replace(
            self, sample_ids=[self.sample_ids[i] for i in index], patients=self.patients[index],
            image=self.image[index], rna=self.rna[index],
        )


def load_pairs(store: Store, level: str = "slide") -> Pairs:
    """Pairs from the store's current image and RNA encoders.

    ``level='slide'``: slide embedding (mean of tiles) <-> the sample's bulk RNA embedding.
    ``level='tile'``: tile embedding <-> its spot's expression, embedded by the RNA encoder.
    """
    image_encoder, rna_encoder = store.setting("image_encoder"), store.setting("rna_encoder")
    if not image_encoder or not rna_encoder:
        raise StoreError("the store has no pairs yet: ingest samples with both a slide and expression")
    tables = store.lance_tables()
    patient_of = dict(store.query("sample_patients"))
    if level == "slide":
        pair_ids = [r[0] for r in store.query("pairs")]
        image_name, rna_name = f"slide_embeddings__{image_encoder}", f"rna_embeddings__{rna_encoder}"
        image = _by_sample(store.dataset(image_name).to_table(columns=["sample_id", "embedding"]))
        rna = _by_sample(store.dataset(rna_name).to_table(columns=["sample_id", "embedding"]))
        ids = [s for s in pair_ids if s in image and s in rna]
        if len(ids) < 4:
            raise StoreError(f"only {len(ids)} slide/RNA pairs with encoders {image_encoder} and {rna_encoder}; "
                             "training needs at least 4")
        return Pairs(level, ids, np.array([patient_of[s] for s in ids]), np.stack([image[s] for s in ids]),
                     np.stack([rna[s] for s in ids]), image_encoder, rna_encoder,
                     {image_name: tables[image_name].version, rna_name: tables[rna_name].version})
    if level == "tile":
        image_name = f"tile_embeddings__{image_encoder}"
        if store.dataset("spot_expression") is None:
            raise StoreError("tile-level pairs need spot expression: ingest with --spots")
        tiles = store.dataset(image_name).to_table(columns=["sample_id", "tile_index", "embedding"])
        spots = store.dataset("spot_expression").to_table(columns=["sample_id", "tile_index", "values"])
        spot_row = {key: i for i, key in enumerate(zip(spots["sample_id"].to_pylist(), spots["tile_index"].to_pylist()))}
        keys = list(zip(tiles["sample_id"].to_pylist(), tiles["tile_index"].to_pylist()))
        matched = sorted((key, i, spot_row[key]) for i, key in enumerate(keys) if key in spot_row)
        tile_idx = np.array([i for _, i, _ in matched], dtype=np.int64)
        spot_idx = np.array([j for _, _, j in matched], dtype=np.int64)
        row = store.query("encoder", [rna_encoder])[0]
        encoder = load_rna_encoder(json.loads(row[3])["name"], store.artifact_path(row[5]))
        return Pairs(level, [f"{s}#{t}" for (s, t), _, _ in matched],
                     np.array([patient_of[s] for (s, _), _, _ in matched]), vectors(tiles["embedding"])[tile_idx],
                     encoder.encode(vectors(spots["values"])[spot_idx]), image_encoder, rna_encoder,
                     {image_name: tables[image_name].version, "spot_expression": tables["spot_expression"].version})
    raise ValueError(f"level must be 'slide' or 'tile', not {level!r}")


def _by_sample(table: pa.Table) -> dict[str, np.ndarray]:
    return dict(zip(table["sample_id"].to_pylist(), vectors(table["embedding"])))
