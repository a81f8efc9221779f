"""Slides as bags of tile embeddings: what HistoPrism reads, conditions on and learns from."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from hquery.errors import NotReadyError
from hquery.names import EXPRESSION, SPOT_EXPRESSION, Pointer, embedding_table
from hquery.store import Store, StoreError, vectors


@dataclasses.dataclass
class SlideBags:
    """Every slide's tiles as consecutive rows, with the slide's cancer type and, for training, its expression.

    Slide ``i`` owns tile rows ``offsets[i]:offsets[i + 1]``.
    """

    sample_ids: list[str]
    patients: np.ndarray
    cancer_types: list[str | None]
    offsets: np.ndarray
    tiles: np.ndarray
    """``[tiles, dim]`` float32 embeddings."""
    tile_index: np.ndarray
    positions: np.ndarray
    """``[tiles, 2]`` tile top-left corners in tile units (x, y)."""
    image_encoder: str
    genes: list[str] = dataclasses.field(default_factory=list)
    """The gene panel of ``bulk`` and ``spots``, when loaded with targets."""
    bulk: np.ndarray | None = None
    """``[slides, genes]`` log1p bulk expression."""
    spot_row: np.ndarray | None = None
    """``[tiles]`` row of each tile in ``spots``, -1 for a tile without spot expression."""
    spots: np.ndarray | None = None
    """``[spots, genes]`` log1p spot expression."""
    snapshot: dict[str, int] = dataclasses.field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.sample_ids)

    @property
    def n_tiles(self) -> np.ndarray:
        return np.diff(self.offsets)

    def rows(self, i: int) -> slice:
        return slice(int(self.offsets[i]), int(self.offsets[i + 1]))

    def tile_rows(self, slides: Sequence[int]) -> np.ndarray:
        """The tile rows of ``slides``, slide after slide."""
        return np.concatenate([np.arange(self.offsets[i], self.offsets[i + 1]) for i in slides] or [np.zeros(0, int)])

    def subset(self, index: Sequence[int]) -> SlideBags:
        index = np.asarray(index, dtype=np.int64)
        rows = self.tile_rows(index)
        return dataclasses.replace(
            self, sample_ids=[self.sample_ids[i] for i in index], patients=self.patients[index],
            cancer_types=[self.cancer_types[i] for i in index],
            offsets=np.concatenate([[0], np.cumsum(self.n_tiles[index])]), tiles=self.tiles[rows],
            tile_index=self.tile_index[rows], positions=self.positions[rows],
            bulk=None if self.bulk is None else self.bulk[index],
            spot_row=None if self.spot_row is None else self.spot_row[rows],
        )


def load_slide_bags(store: Store, sample_ids: Sequence[str] | None = None, *, genes: Sequence[int] | None = None,
                    image_encoder: str | None = None) -> SlideBags:
    """Slides with their tile embeddings from ``image_encoder`` (default: the store's current one).

    Parameters
    ----------
    sample_ids
        Which slides (default: every paired slide, i.e. with bulk expression).
    genes
        Positions in the gene universe of the panel to load targets for: the
        slides' bulk profiles and, where the store has them, their tiles' spot
        profiles. ``None`` loads no targets (for prediction).
    """
    image_encoder = image_encoder or store.pointer(Pointer.IMAGE_ENCODER)
    if not image_encoder:
        raise StoreError("the store has no slides yet; ingest a cohort first")
    name = embedding_table("tile", image_encoder)
    dataset = store.dataset(name)
    if dataset is None:
        raise NotReadyError(f"no tile embeddings from image encoder {image_encoder}; ingest or embed the slides "
                            "with it first", needs="embed")
    info = {r.sample_id: r for r in store.query("slide_samples")}
    ids = sorted(sample_ids if sample_ids is not None else (r.sample_id for r in store.query("pairs")))
    unknown = [s for s in ids if s not in info]
    if unknown:
        raise StoreError(f"no slide for sample(s) {', '.join(unknown[:5])}")
    table = dataset.to_table(columns=["sample_id", "tile_index", "embedding"])
    wanted = set(ids)
    keys = [(s, t, i) for i, (s, t) in enumerate(zip(table["sample_id"].to_pylist(), table["tile_index"].to_pylist()))
            if s in wanted]
    keys.sort()
    have = {s for s, _, _ in keys}
    missing = [s for s in ids if s not in have]
    if missing:
        raise NotReadyError(f"{len(missing)} slide(s) ({', '.join(missing[:5])}) have no {image_encoder} tile embeddings; "
                         "embed them with the current encoder first", needs="embed")
    order = np.array([i for _, _, i in keys], dtype=np.int64)
    corner = {(r.sample_id, r.tile_index): (r.x, r.y, r.tile_size) for r in store.query("tile_positions", [ids])}
    positions = np.array([[corner[s, t][0] / (corner[s, t][2] or 1), corner[s, t][1] / (corner[s, t][2] or 1)]
                          for s, t, _ in keys], dtype=np.float32).reshape(-1, 2)
    counts = np.bincount(np.searchsorted(ids, [s for s, _, _ in keys]), minlength=len(ids))
    bags = SlideBags(ids, np.array([info[s][1] for s in ids]), [info[s][3] for s in ids],
                     np.concatenate([[0], np.cumsum(counts)]), vectors(table["embedding"])[order],
                     np.array([t for _, t, _ in keys], dtype=np.int64), positions, image_encoder,
                     snapshot={name: store.lance_tables()[name].version})
    if genes is not None:
        _attach_targets(store, bags, np.asarray(genes, dtype=np.int64))
    return bags


def _attach_targets(store: Store, bags: SlideBags, genes: np.ndarray) -> None:
    universe = [r.symbol for r in store.query("gene_universe")]
    bags.genes = [universe[j] for j in genes]
    tables = store.lance_tables()
    bulk = store.dataset(EXPRESSION).to_table(columns=["sample_id", "values"])
    row = {s: i for i, s in enumerate(bulk["sample_id"].to_pylist())}
    without = [s for s in bags.sample_ids if s not in row]
    if without:
        raise StoreError(f"slide(s) {', '.join(without[:5])} have no bulk expression to learn from")
    bags.bulk = vectors(bulk["values"])[[row[s] for s in bags.sample_ids]][:, genes]
    bags.snapshot[EXPRESSION] = tables[EXPRESSION].version
    bags.spot_row = np.full(len(bags.tiles), -1, dtype=np.int64)
    spots = store.dataset(SPOT_EXPRESSION)
    if spots is None:
        return
    table = spots.to_table(columns=["sample_id", "tile_index", "values"])
    at = {key: i for i, key in enumerate(zip(table["sample_id"].to_pylist(), table["tile_index"].to_pylist()))}
    sample_of = np.repeat(np.arange(len(bags)), bags.n_tiles)
    found = [(r, at[bags.sample_ids[sample_of[r]], int(t)]) for r, t in enumerate(bags.tile_index)
             if (bags.sample_ids[sample_of[r]], int(t)) in at]
    if found:
        values = vectors(table["values"])
        bags.spots = values[[j for _, j in found]][:, genes]
        bags.spot_row[[r for r, _ in found]] = np.arange(len(found))
        bags.snapshot[SPOT_EXPRESSION] = tables[SPOT_EXPRESSION].version
