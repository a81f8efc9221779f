"""Gene sets and aliases into the catalog: a new store gets the shipped ones; GMT files and HGNC tables add more."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import pyarrow as pa

from hquery.errors import InputError
from hquery.genes import aliases_table, read_hgnc_aliases, resolve_symbols, shipped_aliases
from hquery.genesets import GeneSet, hallmark_sets, members_hash
from hquery.store import Store, utcnow


def gene_sets_table(sets: Sequence[GeneSet], aliases: Mapping[str, str]) -> pa.Table:
    members = [tuple(dict.fromkeys(resolve_symbols(gs.members, aliases))) for gs in sets]
    now = utcnow()
    return pa.table(
        {
            "name": pa.array([gs.name for gs in sets], pa.string()),
            "collection": pa.array([gs.collection for gs in sets], pa.string()),
            "source": pa.array([gs.source for gs in sets], pa.string()),
            "description": pa.array([gs.description for gs in sets], pa.string()),
            "members": pa.array([list(m) for m in members], pa.list_(pa.string())),
            "members_hash": pa.array([members_hash(m) for m in members], pa.string()),
            "added_at": pa.array([now] * len(sets), pa.timestamp("us")),
        }
    )


def add_gene_sets(store: Store, sets: Sequence[GeneSet]) -> int:
    """Store ``sets`` (members resolved through the store's aliases).

    A set of the same name in the same collection is replaced (importing a file
    again updates it); one in another collection is refused, since every prompt
    by that name would silently change meaning.
    """
    existing = {r.name: r.collection for r in store.query("gene_set_names")}
    taken = [(gs.name, existing[gs.name]) for gs in sets if existing.get(gs.name, gs.collection) != gs.collection]
    if taken:
        name, collection = taken[0]
        raise InputError(f"gene set {name} is already in collection {collection} ({len(taken)} such name(s)); "
                         "rename the set(s) in the file")
    aliases = {r.alias: r.symbol for r in store.query("gene_aliases")}
    with store.transaction() as txn:
        txn.insert("gene_sets", gene_sets_table(sets, aliases))
    return len(sets)


def list_gene_sets(store: Store, collection: str | None = None) -> list[tuple]:
    return store.query("gene_sets", [collection, collection])


def add_builtin_gene_data(store: Store) -> None:
    """Give a new store hquery's shipped gene aliases and the Hallmark collection."""

    if store.query("gene_aliases"):
        return
    aliases = shipped_aliases()
    with store.transaction() as txn:
        txn.insert("gene_aliases", aliases_table(aliases, "hquery/data/gene_aliases.tsv (HGNC)"))
        txn.insert("gene_sets", gene_sets_table(hallmark_sets(), aliases))


def init_store(path: str | Path) -> bool:
    """Create a store at ``path`` with the shipped aliases and Hallmarks; ``False`` when one was there already."""
    existed = Store.is_store(path)
    add_builtin_gene_data(Store.init(path))
    return not existed


def import_gene_aliases(store: Store, hgnc_tsv: str | Path) -> int:
    """Add the alias and previous symbols of HGNC's ``hgnc_complete_set.txt``; returns how many."""
    aliases = read_hgnc_aliases(hgnc_tsv)
    with store.transaction() as txn:
        txn.insert("gene_aliases", aliases_table(aliases, f"HGNC ({Path(hgnc_tsv).name})"))
    return len(aliases)
