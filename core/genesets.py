"""Gene sets: the :class:`GeneSet` record, GMT files, the shipped Hallmarks, and prompt resolution.

The 50 MSigDB Hallmark sets (v7.5.1; Liberzon et al., Cell Systems 2015) ship
with hquery and are added to every new store.

Turning what a user types as a prompt into gene sets (:func:`resolve_prompts`).

A prompt is one of:

* a gene-set name from the catalog, matched exactly (any case), or by an
  unambiguous prefix of the name or of the name without its collection prefix
  (``HALLMARK_G2M`` and ``G2M`` both find ``HALLMARK_G2M_CHECKPOINT``);
* a comma-separated list of gene symbols, an ad-hoc set;
* ``@FILE``: a ``.gmt`` file (every set in it) or a text file of symbols
  (whitespace- or comma-separated; ``#`` starts a comment).

Symbols are normalised and renamed through the store's aliases, as at ingest.

>>> hallmarks = hallmark_sets()
>>> len(hallmarks), hallmarks[0].collection
(50, 'hallmark')
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import re
from collections.abc import Sequence
from importlib import resources
from pathlib import Path

from hquery.errors import InputError, PromptError
from hquery.genes import resolve_symbols
from hquery.store import Store

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
        raise InputError(f"{path}: no such gene-set file")
    if not path.is_file():
        raise InputError(f"{path}: a gene-set file must be a file")
    collection = collection or _collection_from_name(path.name)
    sets: list[GeneSet] = []
    seen: dict[str, int] = {}
    for lineno, raw in enumerate(path.read_bytes().splitlines(), start=1):
        try:
            line = raw.decode("utf-8-sig" if lineno == 1 else "utf-8")
        except UnicodeDecodeError as exc:
            raise InputError(f"{path}:{lineno}: not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
        if not line.strip() or line.startswith("#"):
            continue
        fields = line.split("\t")
        name = fields[0].strip()
        if len(fields) < 3:
            raise InputError(f"{path}:{lineno}: gene set {name!r}: a GMT line needs a name, a description and "
                             "genes, tab-separated")
        if name in seen:
            raise InputError(f"{path}:{lineno}: gene set {name} already defined on line {seen[name]}")
        seen[name] = lineno
        members = tuple(dict.fromkeys(g.strip() for g in fields[2:] if g.strip()))
        if not members:
            raise InputError(f"{path}:{lineno}: gene set {name} has no genes")
        spaced = next((g for g in members if any(c.isspace() for c in g)), None)
        if spaced:
            raise InputError(f"{path}:{lineno}: gene set {name}: member {spaced!r} holds a space; a GMT file "
                             "separates genes with tabs")
        sets.append(GeneSet(name, members, collection, source or str(path.name), fields[1].strip()))
    if not sets:
        raise InputError(f"{path}: no gene sets found")
    return sets


def _collection_from_name(filename: str) -> str:
    if filename.startswith("h.all"):
        return "hallmark"
    return filename.split(".")[0].lower()


def hallmark_sets() -> list[GeneSet]:
    return read_gmt(hallmark_path(), collection="hallmark", source=HALLMARK_SOURCE)


def resolve_prompts(store: Store, prompts: Sequence[str] = (), collection: str | None = None) -> list[GeneSet]:
    """Gene sets for each prompt (in order, duplicates dropped), plus every set of ``collection``."""
    aliases = {r.alias: r.symbol for r in store.query("gene_aliases")}
    names = store.query("gene_set_names")
    wanted: list[GeneSet] = []
    for prompt in prompts:
        prompt = prompt.strip()
        if not prompt:
            raise PromptError("an empty prompt; give a gene-set name, genes separated by commas, or @FILE")
        if prompt.startswith("@"):
            wanted += _from_file(Path(prompt[1:]), aliases)
        elif "," in prompt:
            wanted.append(_adhoc([g for g in prompt.split(",") if g.strip()], aliases, "prompt"))
        else:
            wanted += _catalog_sets(store, [_match_name(prompt, names)])
    if collection:
        rows = store.query("gene_sets_of_collection", [collection])
        if not rows:
            known = sorted({r.collection for r in names})
            raise PromptError(f"no gene sets in collection {collection!r}; known collections: {', '.join(known)}")
        wanted += [_catalog_set(r) for r in rows]
    if not wanted:
        raise PromptError("no prompt: give a gene-set name, GENE,GENE,..., @FILE or a collection")
    return list({gs.name: gs for gs in wanted}.values())


def _match_name(prompt: str, rows: list[tuple[str, str]]) -> str:
    names = [(r.name, r.collection) for r in rows]
    query = prompt.upper()
    exact = [n for n, _ in names if n.upper() == query]
    if exact:
        return exact[0]
    matches = sorted({n for n, c in names if n.upper().startswith(query) or _short(n, c).startswith(query)})
    if len(matches) == 1:
        return matches[0]
    if matches:
        raise PromptError(f"{prompt!r} matches {len(matches)} gene sets: {', '.join(matches[:12])}"
                          f"{' ...' if len(matches) > 12 else ''}; give more of the name")
    close = difflib.get_close_matches(query, [n.upper() for n, _ in names] + [_short(n, c) for n, c in names], n=5,
                                      cutoff=0.5)
    by_upper = {n.upper(): n for n, _ in names} | {_short(n, c): n for n, c in names}
    hint = f"; closest: {', '.join(dict.fromkeys(by_upper[c] for c in close))}" if close else ""
    raise PromptError(f"no gene set named {prompt!r}{hint}. The gene_sets table lists them all; "
                      f"for an ad-hoc set give genes separated by commas")


def _short(name: str, collection: str) -> str:
    """The name without a leading collection prefix: HALLMARK_G2M_CHECKPOINT -> G2M_CHECKPOINT."""
    upper = name.upper()
    prefix = collection.upper() + "_"
    return upper[len(prefix):] if upper.startswith(prefix) else upper


def _catalog_sets(store: Store, names: list[str]) -> list[GeneSet]:
    return [_catalog_set(r) for r in store.query("gene_sets_in", [names])]


def _catalog_set(row) -> GeneSet:
    return GeneSet(row.name, tuple(row.members), row.collection, "catalog")


def _adhoc(symbols: Sequence[str], aliases: dict[str, str], source: str, name: str | None = None) -> GeneSet:
    members = tuple(dict.fromkeys(resolve_symbols([s.strip() for s in symbols if s.strip()], aliases)))
    if not members:
        raise PromptError(f"{source}: no gene symbols")
    if name is None:
        name = "genes:" + ",".join(members[:3]) + (f"+{len(members) - 3}" if len(members) > 3 else "")
    return GeneSet(name, members, "adhoc", source)


def _from_file(path: Path, aliases: dict[str, str]) -> list[GeneSet]:
    if not path.is_file():
        raise PromptError(f"@{path}: no such file")
    if path.suffix.lower() == ".gmt":
        return [_adhoc(gs.members, aliases, str(path), gs.name) for gs in read_gmt(path, collection="adhoc")]
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise PromptError(f"@{path}:{line}: not UTF-8 text ({exc.reason}); save the gene list as UTF-8") from exc
    text = "\n".join(line.split("#", 1)[0] for line in text.splitlines())
    return [_adhoc(re.split(r"[\s,]+", text), aliases, str(path), path.stem)]
