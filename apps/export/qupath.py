"""A slide's tile scores as QuPath detections: ``hquery export qupath SAMPLE --genes ... --out DIR``.

QuPath imports a GeoJSON ``FeatureCollection`` onto the open image (*File >
Import objects from file*, or drag and drop): each feature's ``geometry`` in
level-0 pixels with the origin at the image's top-left, and in ``properties``
an ``objectType`` (``detection`` here) and ``measurements``, a map of name to
number that QuPath lists in its measurement table and can colour by.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from pathlib import Path

import pyarrow as pa

from hquery.errors import InputError
from hquery.genesets import GeneSet
from hquery.names import file_safe
from hquery.retrieval import run_prompt
from hquery.retrieval.neighbours import NeighbourRule
from hquery.retrieval.prompt import PromptRun
from hquery.retrieval.softknn import SoftKNN
from hquery.retrieval.tilemap import tile_side
from hquery.store import Store

__all__ = ["QuPathExport", "export_qupath", "tile_features", "write_geojson"]


@dataclasses.dataclass(frozen=True)
class QuPathExport:
    path: Path
    run_id: str
    sample_id: str
    n_tiles: int
    gene_sets: list[str]


def export_qupath(store: Store, sample_id: str, gene_sets: Sequence[GeneSet], out: str | Path, *,
                  method: str = "auto", knn: SoftKNN | None = None, neighbours: NeighbourRule | None = None,
                  min_genes: int = 5) -> QuPathExport:
    """Score ``gene_sets`` on every tile of slide ``sample_id`` and write them as QuPath detections.

    Parameters
    ----------
    out
        A folder; the file is ``<sample_id>.geojson`` in it.
    method, knn, neighbours, min_genes
        As for :func:`~hquery.retrieval.prompt.run_prompt` (the run is recorded).

    Returns
    -------
    QuPathExport
        The file, the prompt run it holds, and how many tiles.
    """
    footprint = store.query("slide_footprint", [sample_id])
    if not footprint:
        raise InputError(f"sample {sample_id} has no slide in the store; `hquery sql \"select sample_id from "
                         f"slides\"` lists them")
    run = run_prompt(store, gene_sets, level="tile", samples=[sample_id], method=method, knn=knn,
                     neighbours=neighbours, min_genes=min_genes)
    [path] = write_geojson(store, run, out)
    n_tiles = len({r["tile_index"] for r in run.results.select(["tile_index"]).to_pylist()})
    return QuPathExport(path, run.run_id, sample_id, n_tiles, [gs.name for gs in gene_sets])


def write_geojson(store: Store, run: PromptRun, out: str | Path) -> list[Path]:
    """Write a tile-level prompt run as one ``<sample_id>.geojson`` of QuPath detections a slide, in folder ``out``
    (``hquery prompt --level tile --format geojson``); each file appears whole or not at all.

    Returns
    -------
    list[Path]
        The files, in the order of the run's slides.
    """
    if run.results.num_rows == 0 or run.results.column("tile_index").null_count:
        raise InputError("QuPath detections are tiles: run the prompt at level='tile' (--level tile)")
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for sample_id in dict.fromkeys(run.results.column("sample_id").to_pylist()):
        path = folder / f"{file_safe(sample_id)}.geojson"
        partial = path.with_suffix(".geojson.partial")
        partial.write_text(json.dumps(tile_features(store, sample_id, run.results)))
        partial.replace(path)
        paths.append(path)
    return paths


def tile_features(store: Store, sample_id: str, results: pa.Table) -> dict:
    """A GeoJSON ``FeatureCollection``: one square detection per tile of ``sample_id`` in level-0 pixels, with its
    score and dispersion for each gene set in ``results`` (tile-level prompt results) as measurements."""
    side = tile_side(store, sample_id)
    coords = {t.tile_index: (t.x, t.y) for t in store.query("slide_tiles", [sample_id])}
    measurements: dict[int, dict[str, float]] = {}
    for row in results.to_pylist():
        if row["sample_id"] != sample_id:
            continue
        values = measurements.setdefault(row["tile_index"], {})
        values[row["gene_set"]] = row["score"]
        if row["dispersion"] is not None:
            values[f"{row['gene_set']} dispersion"] = row["dispersion"]
    features = []
    for tile, values in sorted(measurements.items()):
        x, y = coords[tile]
        ring = [[x, y], [x + side, y], [x + side, y + side], [x, y + side], [x, y]]
        features.append({
            "type": "Feature",
            "geometry": {"type": "Polygon", "coordinates": [ring]},
            "properties": {"objectType": "detection", "name": f"{sample_id} tile {tile}",
                           "measurements": values},
        })
    return {"type": "FeatureCollection", "features": features}
