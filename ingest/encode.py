"""Tiles through an image encoder: the loop the local and the Ray engine both run, and the rows it makes."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pyarrow as pa

from hquery.ingest.slides import FeatureFile, SlideSource
from hquery.parallel import prefetch

__all__ = ["tile_batch", "tile_embeddings", "tile_schema"]


def tile_schema(dim: int) -> pa.Schema:
    """The columns of a ``tile_embeddings__<encoder>`` table."""
    return pa.schema([
        ("sample_id", pa.string()), ("tile_index", pa.int32()), ("x", pa.int64()), ("y", pa.int64()),
        ("embedding", pa.list_(pa.float32(), dim)),
    ])


def tile_batch(schema: pa.Schema, sample_id: str, ids: np.ndarray, coords: np.ndarray, emb: np.ndarray
               ) -> pa.RecordBatch:
    """One slide's chunk of :func:`tile_embeddings` as rows of :func:`tile_schema`."""
    dim = schema.field("embedding").type.list_size
    return pa.RecordBatch.from_arrays([
        pa.array([sample_id] * len(ids), pa.string()), pa.array(ids.astype(np.int32)),
        pa.array(coords[:, 0]), pa.array(coords[:, 1]),
        pa.FixedSizeListArray.from_arrays(pa.array(emb.astype(np.float32).reshape(-1)), dim),
    ], schema=schema)


def tile_embeddings(sources: list[tuple[str, SlideSource]], encoder, batch_size: int, depth: int = 0
                     ) -> Iterator[tuple[str, np.ndarray, np.ndarray, np.ndarray]]:
    """``(sample_id, tile_indices, coords, embeddings)`` chunks; images are batched across slides, and read up to
    ``depth`` batches ahead in a background thread while the encoder runs (0: in turn)."""
    if encoder is None:
        for sid, src in sources:
            assert isinstance(src, FeatureFile)
            for ids, feats in src.iter_features(batch_size):
                yield sid, ids, src.coords[ids], feats
        return
    pending: list[tuple[str, np.ndarray, np.ndarray, np.ndarray]] = []
    count = 0

    def read():
        for sid, src in sources:
            for ids, images in src.iter_tiles(batch_size):
                yield sid, src, ids, images

    def flush():
        embedded = encoder.embed(np.concatenate([p[3] for p in pending]))
        start = 0
        for sid, ids, coords, _ in pending:
            yield sid, ids, coords, embedded[start : start + len(ids)]
            start += len(ids)

    for sid, src, ids, images in prefetch(read(), depth):
        if pending and pending[0][3].shape[1:] != images.shape[1:]:
            yield from flush()
            pending, count = [], 0
        pending.append((sid, ids, src.coords[ids], images))
        count += len(ids)
        if count >= batch_size:
            yield from flush()
            pending, count = [], 0
    if pending:
        yield from flush()
