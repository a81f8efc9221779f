"""A prompt's record in the catalog: its run, gene sets and scores, in one transaction."""

from __future__ import annotations

import json
from collections.abc import Sequence

import pyarrow as pa
from hquery.retrieval.prompt.results import PromptRun
from hquery.retrieval.softknn import SoftKNN

from hquery.genesets import GeneSet
from hquery.store import Store, record_id, utcnow


def record_prompt(store: Store, run: PromptRun, gene_sets: Sequence[GeneSet], *, method: str, level: str,
                  knn: SoftKNN | None, aggregate: str | None, model_version: str, index_version: str | None,
                  library_version: int | None, n_samples: int, extra: dict | None = None) -> str:
    created = utcnow()
    run_id = record_id("prompt", created)
    by_name = {m.name: m for m in run.matches}
    with store.transaction() as txn:
        txn.insert("prompt_runs", pa.Table.from_pylist([{
            "run_id": run_id, "created_at": created, "method": method, "aggregate": aggregate, "level": level,
            "model_version": model_version, "index_version": index_version, "library_version": library_version,
            "k": knn.k if knn else None, "tau": knn.tau if knn else None, "n_samples": n_samples,
            "seconds": run.seconds, "params": json.dumps({"computed_sets": run.computed_sets, **(extra or {})}),
        }]))
        txn.insert("prompt_gene_sets", pa.Table.from_pylist([{
            "run_id": run_id, "gene_set": gs.name, "members_hash": gs.members_hash,
            "n_members": run.n_members[gs.name], "n_found": by_name[gs.name].n_found,
            "missing": list(by_name[gs.name].missing),
        } for gs in gene_sets]))
        txn.insert("prompt_scores", pa.table({"run_id": pa.array([run_id] * run.results.num_rows, pa.string())})
                   .append_column("sample_id", run.results["sample_id"])
                   .append_column("tile_index", run.results["tile_index"])
                   .append_column("gene_set", run.results["gene_set"])
                   .append_column("score", run.results["score"])
                   .append_column("percentile", run.results["percentile"])
                   .append_column("type_z", run.results["type_z"])
                   .append_column("dispersion", run.results["dispersion"])
                   .append_column("effective_k", run.results["effective_k"])
                   .append_column("route", run.results["route"])
                   .append_column("trust", run.results["trust"]))
    return run_id
