"""What a prompt returns: the run and its long-format results table."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
import pyarrow as pa
from hquery.retrieval.routes import RouteChoice, trust_of

from hquery.scoring import GeneSetMatch
from hquery.store import Store

LEVELS = ("slide", "tile")
AGGREGATES = ("score", "expression")


@dataclasses.dataclass
class PromptRun:
    run_id: str | None
    results: pa.Table
    """Long format: sample_id, tile_index, patient_id, cohort, cancer_type, gene_set, score, percentile, type_z,
    dispersion, effective_k, route, trust."""
    matches: list[GeneSetMatch]
    n_members: dict[str, int]
    computed_sets: int
    """Gene sets that needed ssGSEA over the library (0 when every score came from the cache)."""
    notes: list[str]
    seconds: float


def results_table(keys, info, patients, matches, score, dispersion, effective_k,
                  choices: dict[str, RouteChoice], standing: tuple[np.ndarray, np.ndarray]) -> pa.Table:
    n_q, n_s = score.shape
    sample_ids = [s for s, _ in keys]
    return pa.table({
        "sample_id": pa.array(np.repeat(sample_ids, n_s).tolist(), pa.string()),
        "tile_index": pa.array(np.repeat([t for _, t in keys], n_s).tolist(), pa.int32()),
        "patient_id": pa.array(np.repeat(patients, n_s).tolist(), pa.string()),
        "cohort": pa.array(np.repeat([info[s].cohort for s in sample_ids], n_s).tolist(), pa.string()),
        "cancer_type": pa.array(np.repeat([info[s].cancer_type for s in sample_ids], n_s).tolist(), pa.string()),
        "gene_set": pa.array([m.name for m in matches] * n_q, pa.string()),
        "score": pa.array(score.reshape(-1), pa.float64()),
        "percentile": pa.array(standing[0].reshape(-1), pa.float64(), from_pandas=True),
        "type_z": pa.array(standing[1].reshape(-1), pa.float64(), from_pandas=True),
        "dispersion": pa.array(dispersion.reshape(-1), pa.float64(), from_pandas=True),
        "effective_k": pa.array(np.repeat(effective_k, n_s), pa.float64(), from_pandas=True),
        "route": pa.array([choices[m.name].route for m in matches] * n_q, pa.string()),
        "trust": pa.array([choices[m.name].trust for m in matches] * n_q, pa.float64(), from_pandas=True),
    })


def fixed_route(store: Store, matches: Sequence[GeneSetMatch], method: str) -> dict[str, RouteChoice]:
    trust = trust_of(store, [m.name for m in matches], method)
    return {m.name: RouteChoice(method, trust[m.name], None) for m in matches}
