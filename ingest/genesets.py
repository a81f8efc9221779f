"""Gene sets: read GMT files, store them in the catalog, list them.

The 50 MSigDB Hallmark sets (v7.5.1; Liberzon et al., Cell Systems 2015) ship
with hquery and are added to every new store.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path

import pyarrow as pa

from hquery.ingest.errors import IngestError
from hquery.ingest.genes import resolve_symbols
from hquery.store import Store, utcnow

HALLMARK_FILE = "h.all.v7.5.1.symbols.gmt"
HALLMARK_SOURCE = "MSigDB Hallmark v7.5.1 (Liberzon et al., Cell Systems 2015)"


@dataclasses.dataclass(frozen=True)
class GeneSet:
    name: str
    members: tuple[str, ...]
    collection: str
    source: str
    description: str = ""

    @property
    def members_hash(self) -> str:
        return members_hash(self.members)


def members_hash(members: Sequence[str]) -> str:
    """A stable id for a set's membership (order and duplicates do not matter)."""
    return hashlib.sha256("\n".join(sorted(set(members))).encode()).hexdigest()[:16]


def hallmark_path() -> Path:
    return Path(str(resources.files("hquery").joinpath(f"data/{HALLMARK_FILE}")))


def read_gmt(path: str | Path, collection: str | None = None, source: str | None = None) -> list[GeneSet]:
    """Parse a GMT file: one set a line, ``name<TAB>description<TAB>gene...``."""
    path = Path(path)
    if not path.exists():
        raise IngestError(f"{path}: no such gene-set file")
    collection = collection or _collection_from_name(path.name)
    sets: list[GeneSet] = []
    seen: dict[str, int] = {}
    for lineno, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip() or line.startswith("#"):
            continue
        fields = line.rstrip("\n").split("\t")
        if len(fields) < 3:
            raise IngestError(f"{path}:{lineno}: a GMT line needs a name, a description and genes, tab-separated")
        name = fields[0].strip()
        if name in seen:
            raise IngestError(f"{path}:{lineno}: gene set {name} already defined on line {seen[name]}")
        seen[name] = lineno
        members = tuple(dict.fromkeys(g.strip() for g in fields[2:] if g.strip()))
        if not members:
            raise IngestError(f"{path}:{lineno}: gene set {name} has no genes")
        sets.append(GeneSet(name, members, collection, source or str(path.name), fields[1].strip()))
    if not sets:
        raise IngestError(f"{path}: no gene sets found")
    return sets


def _collection_from_name(filename: str) -> str:
    if filename.startswith("h.all"):
        return "hallmark"
    return filename.split(".")[0].lower()


def hallmark_sets() -> list[GeneSet]:
    return read_gmt(hallmark_path(), collection="hallmark", source=HALLMARK_SOURCE)


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
    """Store ``sets`` (members resolved through the store's aliases); same-named sets are replaced."""
    aliases = dict(store.query("gene_aliases"))
    with store.transaction() as txn:
        txn.insert("gene_sets", gene_sets_table(sets, aliases))
    return len(sets)


def list_gene_sets(store: Store, collection: str | None = None) -> list[tuple]:
    return store.query("gene_sets", [collection, collection])


def add_builtin_gene_data(store: Store) -> None:
    """Give a new store hquery's shipped gene aliases and the Hallmark collection."""
    from hquery.ingest.genes import aliases_table, shipped_aliases

    if store.query("gene_aliases"):
        return
    aliases = shipped_aliases()
    with store.transaction() as txn:
        txn.insert("gene_aliases", aliases_table(aliases, "hquery/data/gene_aliases.tsv (HGNC)"))
        txn.insert("gene_sets", gene_sets_table(hallmark_sets(), aliases))
