"""Aligned training pairs read from the store: slide <-> bulk RNA, or tile <-> spot."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pyarrow as pa

from hquery.errors import InputError, NotReadyError
from hquery.ingest.rna_encoders import load_rna_encoder
from hquery.ingest.slides import reopen_slide
from hquery.names import EXPRESSION, SPOT_EXPRESSION, Pointer, embedding_table
from hquery.store import Store, StoreError, vectors


@dataclasses.dataclass
class Pairs:
    """Row-aligned image and RNA embeddings with each row's sample, patient and cancer type."""

    level: str
    sample_ids: list[str]
    patients: np.ndarray
    cancer_types: np.ndarray
    """Object array; ``None`` where the manifest gives no type."""
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
            cancer_types=self.cancer_types[index], image=self.image[index], rna=self.rna[index],
        )


def load_pairs(store: Store, level: str = "slide", *, image_encoder: str | None = None,
               rna_encoder: str | None = None) -> Pairs:
    """Pairs from the store's current image and RNA encoders (or the ones named).

    ``level='slide'``: slide embedding (mean of tiles) <-> the sample's bulk RNA embedding.
    ``level='tile'``: tile embedding <-> its spot's expression, embedded by the RNA encoder.
    """
    image_encoder = image_encoder or store.pointer(Pointer.IMAGE_ENCODER)
    rna_encoder = rna_encoder or store.pointer(Pointer.RNA_ENCODER)
    if not image_encoder or not rna_encoder:
        raise StoreError("the store has no pairs yet: ingest samples with both a slide and expression")
    tables = store.lance_tables()
    patient_of = {r.sample_id: r.patient_id for r in store.query("sample_patients")}
    type_of = cancer_types(store)

    def patients_and_types(samples: list[str]) -> tuple[np.ndarray, np.ndarray]:
        return np.array([patient_of[s] for s in samples]), np.array([type_of[s] for s in samples], dtype=object)

    if level == "slide":
        pair_ids = [r.sample_id for r in store.query("pairs")]
        image_name, rna_name = embedding_table("slide", image_encoder), embedding_table("rna", rna_encoder)
        image = _by_sample(store.dataset(image_name).to_table(columns=["sample_id", "embedding"]))
        rna = _by_sample(store.dataset(rna_name).to_table(columns=["sample_id", "embedding"]))
        ids = [s for s in pair_ids if s in image and s in rna]
        if len(ids) < 4:
            raise StoreError(f"only {len(ids)} slide/RNA pairs with encoders {image_encoder} and {rna_encoder}; "
                             "training needs at least 4")
        return Pairs(level, ids, *patients_and_types(ids), np.stack([image[s] for s in ids]),
                     np.stack([rna[s] for s in ids]), image_encoder, rna_encoder,
                     {image_name: tables[image_name].version, rna_name: tables[rna_name].version})
    if level == "tile":
        image_name = embedding_table("tile", image_encoder)
        if store.dataset(SPOT_EXPRESSION) is None:
            raise NotReadyError("tile-level pairs need spot expression; ingest spots first", needs="ingest spots")
        tiles = store.dataset(image_name).to_table(columns=["sample_id", "tile_index", "embedding"])
        spots = store.dataset(SPOT_EXPRESSION).to_table(columns=["sample_id", "tile_index", "values"])
        spot_row = {key: i for i, key in enumerate(zip(spots["sample_id"].to_pylist(), spots["tile_index"].to_pylist()))}
        keys = list(zip(tiles["sample_id"].to_pylist(), tiles["tile_index"].to_pylist()))
        matched = sorted((key, i, spot_row[key]) for i, key in enumerate(keys) if key in spot_row)
        tile_idx = np.array([i for _, i, _ in matched], dtype=np.int64)
        spot_idx = np.array([j for _, _, j in matched], dtype=np.int64)
        row = store.query("encoder", [rna_encoder])[0]
        encoder = load_rna_encoder(json.loads(row.params)["name"], store.artifact_path(row.artifact_path))
        return Pairs(level, [f"{s}#{t}" for (s, t), _, _ in matched],
                     *patients_and_types([s for (s, _), _, _ in matched]), vectors(tiles["embedding"])[tile_idx],
                     encoder.encode(vectors(spots["values"])[spot_idx]), image_encoder, rna_encoder,
                     {image_name: tables[image_name].version, SPOT_EXPRESSION: tables[SPOT_EXPRESSION].version})
    raise ValueError(f"level must be 'slide' or 'tile', not {level!r}")


def check_one_resolution(store: Store, mixed_resolution: bool = False) -> None:
    """Refuse to train on paired slides tiled at different µm per pixel (unless ``mixed_resolution``).

    A tile at 0.25 µm/px shows a quarter of the tissue a 0.5 µm/px tile does, so its
    embedding means something else; heads trained on both learn the scanner, not the
    biology. Slides of unknown resolution (tile folders ingested without ``mpp``) are
    not counted.
    """
    known = [r for r in store.query("paired_slide_resolutions") if r.mpp is not None]
    if len(known) > 1 and not mixed_resolution:
        found = "; ".join(f"{r.mpp:g} µm/px: {r.n_slides} slides, e.g. {r.example}" for r in known)
        raise InputError(f"the paired slides were tiled at {len(known)} resolutions ({found}); embeddings made at "
                         "different resolutions do not mean the same, so ingest them again at one (magnification), "
                         "or allow mixing them explicitly (mixed_resolution)")


def cancer_types(store: Store) -> dict[str, str | None]:
    """Each stored sample's cancer type from its manifest (``None`` where it has none): what a conditioned
    image head reads beside the embedding."""
    return {r.sample_id: r.cancer_type or None for r in store.query("sample_metadata")}


def _by_sample(table: pa.Table, column: str = "embedding") -> dict[str, np.ndarray]:
    return dict(zip(table["sample_id"].to_pylist(), vectors(table[column])))


@dataclasses.dataclass
class TileImages:
    """Tiles with their pixels and their RNA teacher: what PEKA trains and is probed on."""

    keys: list[tuple[str, int]]
    """``(sample_id, tile_index)`` of each row."""
    patients: np.ndarray
    images: np.ndarray
    """uint8 ``[n, h, w, 3]``."""
    teacher: np.ndarray
    """The RNA encoder's embedding of each tile's spot (or of its slide's bulk profile)."""
    expression: np.ndarray
    """The log expression the teacher embeds, for the linear probe."""
    genes: list[str]
    target: str
    """``spot`` or ``bulk``."""
    image_encoder_spec: str
    snapshot: dict[str, int]

    def __len__(self) -> int:
        return len(self.keys)

    def subset(self, index: np.ndarray) -> TileImages:
        return dataclasses.replace(self, keys=[self.keys[i] for i in index], patients=self.patients[index],
                                   images=self.images[index], teacher=self.teacher[index],
                                   expression=self.expression[index])


def load_tile_images(store: Store, max_tiles_per_slide: int | None = 16, seed: int = 0) -> TileImages:
    """Every tile with spot expression, read back from its slide, with the RNA teacher's embedding of its spot.

    A store without spot expression falls back to bulk: tiles of each paired
    slide (at most ``max_tiles_per_slide``, drawn with ``seed``; ``None`` for all)
    are taught by their slide's bulk profile, as the PEKA paper does for slides
    without spatial data. The pixels are held in memory, hence the cap.
    """
    spec = store.pointer(Pointer.IMAGE_ENCODER_SPEC)
    rna_encoder = store.pointer(Pointer.RNA_ENCODER)
    if not spec or not rna_encoder:
        raise StoreError("PEKA needs paired slides and expression in the store; ingest a cohort first")
    tables = store.lance_tables()
    if store.dataset(SPOT_EXPRESSION) is not None:
        target, name = "spot", SPOT_EXPRESSION
        spots = store.dataset(name).to_table(columns=["sample_id", "tile_index", "values"])
        keys = list(zip(spots["sample_id"].to_pylist(), spots["tile_index"].to_pylist()))
        values = vectors(spots["values"])
    else:
        target, name = "bulk", EXPRESSION
        bulk = _by_sample(store.dataset(name).to_table(columns=["sample_id", "values"]), "values")
        rng = np.random.default_rng(seed)
        keys, rows = [], []
        for sid in (r.sample_id for r in store.query("pairs")):
            n_tiles = len(store.query("slide_tiles", [sid]))
            chosen = np.arange(n_tiles)
            if max_tiles_per_slide and n_tiles > max_tiles_per_slide:
                chosen = np.sort(rng.choice(n_tiles, max_tiles_per_slide, replace=False))
            keys += [(sid, int(t)) for t in chosen]
            rows += [bulk[sid]] * len(chosen)
        values = np.stack(rows) if rows else np.zeros((0, 0), np.float32)
    if len(keys) < 8:
        raise StoreError(f"only {len(keys)} tiles with {target} expression; PEKA needs more paired tiles")
    order = sorted(range(len(keys)), key=lambda i: keys[i])
    keys, values = [keys[i] for i in order], values[order]
    with store.reading():
        images = _read_tiles(store, keys)
    row = store.query("encoder", [rna_encoder])[0]
    encoder = load_rna_encoder(json.loads(row.params)["name"], store.artifact_path(row.artifact_path))
    patient_of = {r.sample_id: r.patient_id for r in store.query("sample_patients")}
    genes = [r.symbol for r in store.query("gene_universe")]
    return TileImages(keys, np.array([patient_of[s] for s, _ in keys]), images,
                      encoder.encode(values).astype(np.float32), values, genes, target, spec,
                      {name: tables[name].version})


def _read_tiles(store: Store, keys: list[tuple[str, int]]) -> np.ndarray:
    """Pixels of the ``(sample_id, tile_index)`` tiles, in that order (keys grouped by sample)."""

    out: list[np.ndarray] = []
    start = 0
    while start < len(keys):
        sid = keys[start][0]
        stop = start
        while stop < len(keys) and keys[stop][0] == sid:
            stop += 1
        wanted = [t for _, t in keys[start:stop]]
        source = reopen_slide(store, sid)
        found: dict[int, np.ndarray] = {}
        for ids, images in source.iter_tiles(256):
            found.update({int(i): im for i, im in zip(ids, images) if int(i) in wanted})
        out += [found[t] for t in wanted]
        start = stop
    return np.stack(out)
