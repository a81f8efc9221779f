"""Slide embeddings: tiles through an image encoder into Lance, and the stored slides again with a PEKA adapter.

:func:`embed_slides` streams tile embeddings into a transaction (bounded memory)
and writes each slide's mean; :func:`reembed_slides` reopens every stored slide
and embeds it with the backbone plus an adapter, into new tables.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa

from hquery.errors import InputError, NotReadyError, StoreError
from hquery.ingest.image_encoders import ImageEncoderSpec, create_image_encoder, parse_image_encoder
from hquery.ingest.slides import FeatureFile, SlideSource, reopen_slide
from hquery.names import Pointer, embedding_table
from hquery.parallel import prefetch
from hquery.records import model_record
from hquery.store import Store, Transaction, utcnow, vector_table

Progress = Callable[[str, int], Callable[[int], None]]
"""``progress(description, total)`` returns an ``advance(n)`` callback."""


PREFETCH = 2
"""Tile batches read ahead while a GPU encodes. On the CPU the reader would take cores from the encoder:
``benchmarks/encode_floor.py`` measures the loop at 0.96x its floor reading in turn, and no better ahead."""


def no_progress(description: str, total: int) -> Callable[[int], None]:
    return lambda n: None


def embed_slides(store: Store, txn: Transaction, spec: ImageEncoderSpec, sources: list[tuple[str, SlideSource]],
                  batch_size: int, device: str, progress: Progress, explicit: bool) -> int:
    """Stream tile embeddings into Lance (bounded memory) and write each slide's mean embedding."""
    version = spec.version
    if spec.runs_model:

        encoder = create_image_encoder(spec, device=device, adapter_dir=adapter_dir(store, spec.adapter))
        dim, params = encoder.dim, encoder.params
    else:
        encoder = None
        dim, params = sources[0][1].dim, {"spec": spec.text}
    total = sum(s.n_tiles for _, s in sources)
    advance = progress(f"embedding {total} tiles ({version})", total)
    sums: dict[str, np.ndarray] = {}
    schema = pa.schema([
        ("sample_id", pa.string()), ("tile_index", pa.int32()), ("x", pa.int64()), ("y", pa.int64()),
        ("embedding", pa.list_(pa.float32(), dim)),
    ])

    failures: list[BaseException] = []

    def batches() -> Iterator[pa.RecordBatch]:
        try:
            on_gpu = getattr(getattr(encoder, "device", None), "type", "cpu") == "cuda"
            for sid, ids, coords, emb in tile_embeddings(sources, encoder, batch_size, PREFETCH if on_gpu else 0):
                sums[sid] = sums.get(sid, 0.0) + emb.astype(np.float64).sum(axis=0)
                advance(len(ids))
                yield pa.RecordBatch.from_arrays([
                    pa.array([sid] * len(ids), pa.string()), pa.array(ids.astype(np.int32)),
                    pa.array(coords[:, 0]), pa.array(coords[:, 1]),
                    pa.FixedSizeListArray.from_arrays(pa.array(emb.astype(np.float32).reshape(-1)), dim),
                ], schema=schema)
        except BaseException as exc:
            failures.append(exc)
            raise

    try:
        txn.write_lance(embedding_table("tile", version), pa.RecordBatchReader.from_batches(schema, batches()),
                        kind="tile_embeddings", encoder=version)
    except Exception:
        if failures:  # Lance wraps errors raised while it pulls batches; surface the original one
            raise failures[0] from None
        raise
    means = np.stack([sums[sid] / s.n_tiles for sid, s in sources])
    slide_table = vector_table({"sample_id": [sid for sid, _ in sources]}, means, "embedding")
    slide_table = slide_table.add_column(1, "n_tiles", pa.array([s.n_tiles for _, s in sources], pa.int32()))
    txn.write_lance(embedding_table("slide", version), slide_table, kind="slide_embeddings", encoder=version)
    if not store.query("encoder", [version]):
        txn.insert("encoders", pa.Table.from_pylist([{
            "version": version, "kind": "image", "spec": spec.text, "params": json.dumps(params), "dim": dim,
            "artifact_path": None, "created_at": utcnow(),
        }]))
    if explicit or store.pointer(Pointer.IMAGE_ENCODER) is None:
        txn.move_pointer(Pointer.IMAGE_ENCODER, version)
        txn.move_pointer(Pointer.IMAGE_ENCODER_SPEC, spec.text)
    return total


def adapter_dir(store: Store, adapter: str | None) -> Path | None:
    """The peft folder of PEKA ``adapter``, or ``None`` for the frozen backbone."""
    if not adapter:
        return None
    try:
        return model_record(store, "peka", adapter).folder(store) / "adapter"
    except StoreError as exc:
        raise NotReadyError(f"no PEKA adapter {adapter!r} in the store; train one first", needs="train peka") from exc


@dataclasses.dataclass
class ReembedReport:
    image_encoder: str
    adapter: str | None
    n_slides: int
    n_skipped: int
    n_tiles: int
    seconds: float

    def summary(self) -> str:
        if not self.n_slides:
            return f"every slide is already embedded with {self.image_encoder}; now the current image encoder"
        return (f"re-embedded {self.n_slides} slides ({self.n_tiles} tiles) with {self.image_encoder} in "
                f"{self.seconds:.1f}s; {self.n_skipped} already there; now the current image encoder")


def reembed_slides(store: Store, adapter: str | None = None, *, batch_size: int = 64, device: str = "auto",
                   progress: Progress = no_progress) -> ReembedReport:
    """Embed every stored slide again with the store's backbone plus PEKA ``adapter``, into new tables.

    The frozen embeddings are never touched: the adapted ones land in
    ``tile_embeddings__<version>`` and ``slide_embeddings__<version>`` of an
    encoder version that names the adapter, which becomes the current image
    encoder (train the alignment again afterwards). It is one transaction: a
    failed or killed run leaves nothing behind. Slides already embedded with that
    version are skipped, so running it again after an ingest embeds only the new ones.

    Parameters
    ----------
    adapter
        A PEKA model version; default: the store's current one (``hquery train peka``).
        ``None`` with no current adapter is an error.
    """

    started = time.perf_counter()
    adapter = adapter or store.pointer(Pointer.PEKA_ADAPTER)
    if not adapter:
        raise NotReadyError("no PEKA adapter to re-embed with; train one first", needs="train peka")
    if not store.pointer(Pointer.IMAGE_ENCODER_SPEC):
        raise InputError("the store has no slides to re-embed")
    adapter_dir(store, adapter)
    spec = parse_image_encoder(model_record(store, "peka", adapter).params["base_encoder"]).with_adapter(adapter)
    done = set()
    existing = store.dataset(embedding_table("slide", spec.version))
    if existing is not None:
        done = set(existing.to_table(columns=["sample_id"])["sample_id"].to_pylist())
    todo = [r.sample_id for r in store.query("slide_samples") if r.sample_id not in done]
    with store.reading():
        sources = [(sid, reopen_slide(store, sid)) for sid in todo]
    n_tiles = 0
    with store.transaction() as txn:
        if sources:
            n_tiles = embed_slides(store, txn, spec, sources, batch_size, device, progress, explicit=True)
        else:
            txn.move_pointer(Pointer.IMAGE_ENCODER, spec.version)
            txn.move_pointer(Pointer.IMAGE_ENCODER_SPEC, spec.text)
    return ReembedReport(spec.version, adapter, len(sources), len(done), n_tiles, time.perf_counter() - started)


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
