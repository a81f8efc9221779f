"""Prompt scores as AnnData for scanpy and squidpy: ``hquery export h5ad --genes ... --out FILE``.

Observations are the slides (or, at ``level="tile"``, their tiles) with their
sample metadata and clinical columns; variables are the gene sets. ``X`` holds
the predicted scores, the layers ``dispersion`` and ``effective_k`` their
uncertainty, ``obsm["spatial"]`` a tile's centre in level-0 pixels, and
``uns["hquery"]`` the run's provenance (run id, method, model, index and library
versions, each set's route and held-out trust).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from hquery.errors import InputError
from hquery.genesets import GeneSet
from hquery.retrieval import run_prompt
from hquery.retrieval.neighbours import NeighbourRule
from hquery.retrieval.prompt import LEVELS, PromptRun
from hquery.retrieval.softknn import SoftKNN
from hquery.retrieval.tilemap import tile_side
from hquery.store import Store

__all__ = ["H5adExport", "export_h5ad", "prompt_anndata", "write_h5ad"]

IDS = ("sample_id", "patient_id", "cohort", "cancer_type")
"""Observation columns that are text whatever they look like (sample ``0010`` stays ``0010``)."""


@dataclasses.dataclass(frozen=True)
class H5adExport:
    path: Path
    run_id: str
    n_obs: int
    n_vars: int
    level: str


def export_h5ad(store: Store, gene_sets: Sequence[GeneSet], out: str | Path, *, level: str = "slide",
                samples: Sequence[str] | None = None, cohort: str | None = None, method: str = "auto",
                knn: SoftKNN | None = None, neighbours: NeighbourRule | None = None,
                min_genes: int = 5) -> H5adExport:
    """Score ``gene_sets`` on the selected slides (all by default) and write them as an ``.h5ad`` file.

    Parameters
    ----------
    level
        ``slide``: one observation a slide; ``tile``: one a tile, placed in ``obsm["spatial"]``.
    samples, cohort, method, knn, neighbours, min_genes
        As for :func:`~hquery.retrieval.prompt.run_prompt` (the run is recorded).

    Returns
    -------
    H5adExport
    """
    if level not in LEVELS:
        raise InputError(f"level must be one of {', '.join(LEVELS)}, not {level!r}")
    run = run_prompt(store, gene_sets, level=level, samples=samples, cohort=cohort, method=method, knn=knn,
                     neighbours=neighbours, min_genes=min_genes)
    path, adata = write_h5ad(store, run, out)
    return H5adExport(path, run.run_id, adata.n_obs, adata.n_vars, level)


def write_h5ad(store: Store, run: PromptRun, out: str | Path):
    """Write a prompt run's results as ``.h5ad`` (``hquery prompt --format h5ad``); nothing is left half-written.

    Returns
    -------
    tuple[Path, anndata.AnnData]
        The file and what it holds.
    """
    adata = prompt_anndata(store, run)
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    adata.write_h5ad(partial)
    partial.replace(path)
    return path, adata


def prompt_anndata(store: Store, run: PromptRun):
    """The :class:`anndata.AnnData` of a prompt run's results (observations x gene sets)."""
    import anndata
    import pandas as pd

    long = run.results.to_pandas()
    tile = long["tile_index"].notna().all() and len(long) > 0
    keys = ["sample_id", "tile_index"] if tile else ["sample_id"]
    sets = list(dict.fromkeys(long["gene_set"]))
    wide = {name: long.pivot_table(index=keys, columns="gene_set", values=name, aggfunc="first", dropna=False)
            .reindex(columns=sets) for name in ("score", "dispersion", "effective_k")}
    index = wide["score"].index
    obs = long.drop_duplicates(keys).set_index(keys).reindex(index)[["patient_id", "cohort", "cancer_type"]]
    clinical = {r.sample_id: json.loads(r.clinical or "{}") for r in store.query("sample_metadata")}
    sample_ids = index.get_level_values("sample_id")
    for column in sorted({c for s in set(sample_ids) for c in clinical.get(s, {})}):
        obs[column] = [clinical.get(s, {}).get(column) for s in sample_ids]
    obs = obs.reset_index()
    obs.index = [f"{s}:{int(t)}" for s, t in zip(obs["sample_id"], obs["tile_index"])] if tile else list(obs["sample_id"])
    for column in obs.columns:  # text as categories, as scanpy keeps it; clinical numbers stay numbers
        if obs[column].dtype == object:
            numeric = pd.to_numeric(obs[column], errors="coerce")
            is_number = column not in IDS and numeric.notna().sum() == obs[column].notna().sum()
            obs[column] = numeric if is_number else pd.Categorical(obs[column].map(lambda v: None if v is None
                                                                                   else str(v)))
    route = long.drop_duplicates("gene_set").set_index("gene_set").reindex(sets)
    var = pd.DataFrame({"n_members": [run.n_members.get(s) for s in sets], "route": pd.Categorical(route["route"]),
                        "trust": route["trust"].astype(float)}, index=sets)
    adata = anndata.AnnData(X=wide["score"].to_numpy(dtype=np.float64), obs=obs, var=var,
                            layers={"dispersion": wide["dispersion"].to_numpy(dtype=np.float64),
                                    "effective_k": wide["effective_k"].to_numpy(dtype=np.float64)})
    if tile:
        centres = {}
        for sid in set(sample_ids):
            half = tile_side(store, sid) / 2
            centres.update({(sid, t.tile_index): (t.x + half, t.y + half) for t in store.query("slide_tiles", [sid])})
        adata.obsm["spatial"] = np.array([centres[(s, int(t))] for s, t in zip(obs["sample_id"], obs["tile_index"])],
                                         dtype=np.float64)
    provenance = {"run_id": run.run_id}
    if run.run_id is not None:
        [row] = store.query("prompt_run", [run.run_id])
        provenance.update({k: v for k, v in row._asdict().items() if v is not None and k != "params"})
        provenance["created_at"] = str(provenance["created_at"])
    adata.uns["hquery"] = provenance
    return adata
