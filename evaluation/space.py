"""A map of the aligned space (the seed paper's Fig. 4A): slides and RNA profiles, projected by one alignment
model's two heads into the same space, laid out together in two dimensions by UMAP (umap-learn).

If the alignment works, a slide lies near its own RNA profile and the two
modalities mix instead of forming two islands. ``pair_distance_ratio`` says how
much: the median 2-D distance between a slide and its own RNA over the median
distance to another pair's RNA of the same cancer type, so that tumour types
lying apart earn nothing (1: no better than chance; near 0: each slide sits on
its profile). Coordinates are kept in
``space_coordinates`` for SQL, the picture in the store's artifacts.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pyarrow as pa

from hquery.errors import InputError, NotReadyError
from hquery.evaluation.clinical import SAMPLE_COLUMNS, latest_scores, sample_column
from hquery.genesets import resolve_prompts
from hquery.names import map_artifact, projected_table
from hquery.records import index_record
from hquery.retrieval.prompt import aligned_vectors
from hquery.store import Store, record_id, utcnow, vectors

MAX_POINTS = 20_000
"""More points than this are subsampled (seeded) before UMAP, which grows superlinearly."""


@dataclasses.dataclass
class SpaceMap:
    map_id: str | None
    model_version: str
    color: str
    sample_ids: list[str]
    modality: np.ndarray
    """``slide`` or ``rna`` per point."""
    xy: np.ndarray
    pair_distance_ratio: float
    n_pairs: int
    notes: list[str]
    plot: Path | None = None


def map_space(store: Store, *, color: str = "cancer_type", model_version: str | None = None,
              n_neighbors: int = 15, seed: int = 0, max_points: int = MAX_POINTS, record: bool = True) -> SpaceMap:
    """UMAP of every slide and RNA profile in an alignment model's shared space.

    Parameters
    ----------
    color
        ``cohort``, ``cancer_type``, any clinical column, or a gene set (slides by
        their newest predicted score, profiles by their measured one).
    model_version
        The alignment model (default: the one behind the current index).
    n_neighbors, seed
        UMAP's neighbourhood size and seed (a seeded UMAP is deterministic).

    Returns
    -------
    SpaceMap, also recorded in ``space_maps`` / ``space_coordinates``, with its PNG.
    """
    import umap

    model_version = model_version or index_record(store).model_version
    notes: list[str] = []
    rna = store.dataset(projected_table("rna", model_version))
    if rna is None:
        raise NotReadyError(f"no RNA profiles projected by {model_version}; build its index first", needs="index")
    rna_table = rna.to_table(columns=["sample_id", "vector"])
    rna_ids, rna_vectors = rna_table["sample_id"].to_pylist(), vectors(rna_table["vector"])
    slide_ids = [r.sample_id for r in store.query("slide_samples")]
    keys, slide_vectors = aligned_vectors(store, model_version, "slide", slide_ids)
    ids = [s for s, _ in keys] + rna_ids
    modality = np.array(["slide"] * len(keys) + ["rna"] * len(rna_ids))
    points = np.concatenate([slide_vectors, rna_vectors]).astype(np.float32)
    if len(points) > max_points:
        keep = np.sort(np.random.default_rng(seed).choice(len(points), max_points, replace=False))
        notes.append(f"{len(points)} points; a seeded {max_points} of them were mapped")
        ids, modality, points = [ids[i] for i in keep], modality[keep], points[keep]
    if len(points) < n_neighbors + 2:
        raise InputError(f"{len(points)} slides and profiles are too few to map (UMAP needs more than "
                         f"{n_neighbors + 1})")
    colours = _colours(store, color, ids, modality)  # a bad --color fails before the slow part
    xy = umap.UMAP(n_neighbors=n_neighbors, min_dist=0.1, metric="cosine", random_state=seed).fit_transform(points)
    try:
        types = sample_column(store, "cancer_type")
    except InputError:
        types = {}
    ratio, n_pairs = _pair_distance_ratio(ids, modality, xy, types, seed)
    space = SpaceMap(None, model_version, color, ids, modality, xy, ratio, n_pairs, notes)
    if record:
        _record(store, space, colours, n_neighbors, seed)
    return space


def _pair_distance_ratio(ids: list[str], modality: np.ndarray, xy: np.ndarray, types: dict[str, str],
                         seed: int) -> tuple[float, int]:
    """Median 2-D distance from a slide to its own RNA over that to another pair's RNA of the same cancer type
    (any type where the manifest gives none), and the number of pairs."""
    slides = {s: i for i, (s, m) in enumerate(zip(ids, modality)) if m == "slide"}
    profiles = {s: i for i, (s, m) in enumerate(zip(ids, modality)) if m == "rna"}
    paired = sorted(s for s in slides if s in profiles)
    rng = np.random.default_rng(seed)
    own, other = [], []
    for group in sorted({types.get(s, "") for s in paired}):
        members = [s for s in paired if types.get(s, "") == group]
        if len(members) < 2:
            continue
        a = np.array([slides[s] for s in members])
        b = np.array([profiles[s] for s in members])
        shift = rng.integers(1, len(members))  # a derangement: every slide gets another pair's RNA
        own.append(np.linalg.norm(xy[a] - xy[b], axis=1))
        other.append(np.linalg.norm(xy[a] - xy[np.roll(b, shift)], axis=1))
    if not own:
        return float("nan"), len(paired)
    return float(np.median(np.concatenate(own)) / np.median(np.concatenate(other))), len(paired)


def _colours(store: Store, color: str, ids: list[str], modality: np.ndarray) -> tuple[str, list]:
    """``("categorical", labels)`` for a column some sample has, else ``("score", values)`` for a gene set."""
    try:
        values = sample_column(store, color)
        return "categorical", [values.get(s, "(none)") for s in ids]
    except InputError:
        if color in SAMPLE_COLUMNS:
            raise
    gene_sets = resolve_prompts(store, [color])
    if len(gene_sets) != 1:
        raise InputError(f"--color names one column or one gene set, not {color!r}")
    predicted = latest_scores(store, gene_sets[0], "predicted")
    measured = latest_scores(store, gene_sets[0], "measured")
    return "score", [(predicted if m == "slide" else measured).get(s, np.nan) for s, m in zip(ids, modality)]


def _record(store: Store, space: SpaceMap, colours: tuple[str, list], n_neighbors: int, seed: int) -> None:
    created = utcnow()
    space.map_id = record_id("map", created)
    with store.transaction() as txn:
        txn.insert("space_maps", pa.Table.from_pylist([{
            "map_id": space.map_id, "created_at": created, "model_version": space.model_version,
            "color": space.color, "params": json.dumps({
                "n_neighbors": n_neighbors, "seed": seed, "pair_distance_ratio": space.pair_distance_ratio,
                "n_pairs": space.n_pairs, "notes": space.notes})}]))
        txn.insert("space_coordinates", pa.table({
            "map_id": pa.array([space.map_id] * len(space.sample_ids), pa.string()),
            "sample_id": pa.array(space.sample_ids, pa.string()),
            "modality": pa.array(space.modality.tolist(), pa.string()),
            "x": pa.array(space.xy[:, 0], pa.float64()), "y": pa.array(space.xy[:, 1], pa.float64())}))
        folder = txn.stage_artifact(map_artifact(space.map_id))
        plot_space(space, colours, folder / "space.png")
    space.plot = store.artifact_path(map_artifact(space.map_id)) / "space.png"


def plot_space(space: SpaceMap, colours: tuple[str, list], path: Path) -> Path:
    """The map: slides as dots, RNA profiles as crosses, coloured by a column (legend) or a score (colour bar)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    kind, values = colours
    fig, ax = plt.subplots(figsize=(8, 7), constrained_layout=True)
    markers = {"slide": "o", "rna": "x"}
    if kind == "categorical":
        labels = sorted(set(values))
        palette = plt.get_cmap("tab20" if len(labels) > 10 else "tab10")
        for i, label in enumerate(labels):
            for modality, marker in markers.items():
                at = (np.array(values, dtype=object) == label) & (space.modality == modality)
                if at.any():
                    ax.scatter(*space.xy[at].T, s=6, marker=marker, color=palette(i % palette.N), alpha=0.6,
                               label=f"{label} ({modality})")
        ax.legend(fontsize=6, markerscale=2, ncol=2, loc="best")
    else:
        scores = np.array(values, dtype=float)
        for modality, marker in markers.items():
            at = space.modality == modality
            shown = ax.scatter(*space.xy[at].T, c=scores[at], s=6, marker=marker, cmap="viridis", alpha=0.7,
                               vmin=np.nanpercentile(scores, 2), vmax=np.nanpercentile(scores, 98))
        fig.colorbar(shown, ax=ax, label=f"{space.color} score (slides predicted, profiles measured)")
    ax.set_title(f"aligned space of {space.model_version}\n{int((space.modality == 'slide').sum())} slides (o), "
                 f"{int((space.modality == 'rna').sum())} RNA profiles (x); a slide's distance to its own RNA / to "
                 f"another's of its type: {space.pair_distance_ratio:.2f}", fontsize=8)
    ax.set_xticks([])
    ax.set_yticks([])
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
