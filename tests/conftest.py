import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import json
import shutil
import socket
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from PIL import Image

from hquery.ingest.genesets import add_builtin_gene_data
from hquery.store import Store

DATA = Path(__file__).parent / "data"
SVS = DATA / "cmu_small_region.svs"


@pytest.fixture
def store(tmp_path) -> Store:
    s = Store.init(tmp_path / "store")
    add_builtin_gene_data(s)
    return s


def write_tiles(folder: Path, grid: int = 2, size: int = 32, seed: int = 0) -> Path:
    """A slide as a folder of random RGB tiles named <x>_<y>.png."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(grid):
        for j in range(grid):
            pixels = rng.integers(0, 255, (size, size, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(folder / f"{i * size}_{j * size}.png")
    return folder


GENES = ["MKI67", "TOP2A", "CD8A", "COL1A1", "VIM", "HIF1A", "LDHA", "ESR1", "GAPDH", "ACTB", "DDX58", "PTPRC"]


def write_cohort(root: Path, n_pairs: int = 4, n_ref: int = 4, n_query: int = 1, seed: int = 0,
                 genes=GENES, expression_name: str = "expression.csv", prefix: str = "") -> tuple[Path, Path]:
    """A tiny cohort: pairs (tiles + counts), reference (counts only) and query slides (tiles only); ``prefix``
    starts every sample and patient id."""
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    rows, expr = [], []
    for i in range(n_pairs + n_ref + n_query):
        sid = f"{prefix}S{i:03d}"
        slide = ""
        if i < n_pairs or i >= n_pairs + n_ref:
            write_tiles(root / "slides" / sid, seed=seed * 1000 + i)
            slide = f"slides/{sid}"
        rows.append({"sample_id": sid, "patient_id": f"{prefix}P{i // 2:03d}", "cancer_type": ["BRCA", "LUAD"][i % 2],
                     "slide_path": slide, "stage": ["I", "II", "III"][i % 3], "age": 40 + i})
        if i < n_pairs + n_ref:
            expr.append({"sample_id": sid, **{g: int(v) for g, v in zip(genes, rng.poisson(50, len(genes)) + 1)}})
    manifest = root / "manifest.csv"
    pl.DataFrame(rows).write_csv(manifest)
    expression = root / expression_name
    frame = pl.DataFrame(expr)
    if expression_name.endswith(".parquet"):
        frame.write_parquet(expression)
    else:
        frame.write_csv(expression, separator="\t" if ".tsv" in expression_name else ",")
    return manifest, expression


def snapshot(store: Store) -> dict:
    """Everything a reader can see: catalog counts, settings, and each committed Lance table's rows.

    Lance versions are left out: rolling a table back (``restore``) writes a new
    version with the old content.
    """
    counts = store.query("store_counts")[0]
    tables = {}
    for name in store.lance_tables():
        table = store.dataset(name).to_table(columns=["sample_id"])
        tables[name] = (table.num_rows, sorted(table["sample_id"].to_pylist()))
    settings = {k: store.setting(k) for k in ("image_encoder", "rna_encoder")}
    return {"counts": counts, "tables": tables, "settings": settings,
            "samples": sorted(r[0] for r in store.query("sample_hashes"))}


@pytest.fixture(scope="session")
def small_demo(tmp_path_factory):
    from hquery.demo import generate_demo_cohort

    return generate_demo_cohort(tmp_path_factory.mktemp("demo"), size="small", seed=0)


@pytest.fixture(scope="session")
def small_demo_b(tmp_path_factory):
    """World B of the demo (its own renderer and program-to-morphology map), small."""
    from hquery.demo import generate_demo_cohort

    return generate_demo_cohort(tmp_path_factory.mktemp("demo_b"), size="small", seed=0, world="B")


def ingest_demo(files, root: Path, encoder: str | None = None) -> Store:
    """A store holding a generated demo cohort, its tiles embedded by ``encoder`` (the ingest default if None)."""
    from hquery.pipelines.demo import ingest_demo_cohort

    return ingest_demo_cohort(root, files, encoder)


@pytest.fixture(scope="session")
def demo_store(tmp_path_factory, small_demo) -> Store:
    """The small demo ingested once, tiles embedded by the random ViT (a timm backbone PEKA can adapt); tests
    that write copy it first."""
    return ingest_demo(small_demo, tmp_path_factory.mktemp("demo_store") / "store", "demo-vit")


@pytest.fixture(scope="session")
def indexed_store(demo_store, tmp_path_factory) -> Store:
    """The small demo with a quickly trained alignment and its index; tests that write copy it first."""
    from hquery.retrieval import build_index
    from hquery.training import AlignmentConfig, train_alignment

    s = copy_store(demo_store, tmp_path_factory.mktemp("indexed_store") / "store")
    train_alignment(s, config=AlignmentConfig(max_epochs=40))
    build_index(s)
    return s


@pytest.fixture(scope="session")
def clinic_store(indexed_store, tmp_path_factory) -> Store:
    """The indexed small demo, for the clinical analyses (which record runs): a copy of its own."""
    return copy_store(indexed_store, tmp_path_factory.mktemp("clinic") / "store")


@pytest.fixture(scope="session")
def second_site(tmp_path_factory):
    """The small demo's second hospital (:data:`hquery.demo.SECOND_SITE`): its own stain, scanner and case mix."""
    from hquery.demo import SECOND_SITE, generate_demo_cohort

    return generate_demo_cohort(tmp_path_factory.mktemp("site2"), size="small", site=SECOND_SITE)


@pytest.fixture(scope="session")
def two_hospitals(small_demo, second_site, tmp_path_factory) -> Store:
    """The small demo (cohort ``demo``, tiles by he-features) with a model served before the second hospital's
    pairs arrived (cohort ``site2``). Tests that write copy it first."""
    from hquery.ingest import ingest_cohort
    from hquery.pipelines.demo import ingest_demo_cohort
    from hquery.training import AlignmentConfig, train_alignment

    s = ingest_demo_cohort(tmp_path_factory.mktemp("hospitals") / "store", small_demo, spots=False)
    train_alignment(s, config=AlignmentConfig(max_epochs=40), workers=1)
    ingest_cohort(s, second_site.cohort_manifest, expression=second_site.cohort_expression, name="site2",
                  encoder="he-features")
    return s


def free_port() -> int:
    """A loopback port nothing listens on now (for a server a test starts)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def copy_store(store: Store, dest: Path) -> Store:
    shutil.copytree(store.root, dest)
    return Store.open(dest)


def dumps(x) -> str:
    return json.dumps(x, sort_keys=True, default=str)


E2E_FIXTURES = {"small_demo", "small_demo_b", "demo_store", "indexed_store", "clinic_store", "second_site",
                "two_hospitals"}


def pytest_collection_modifyitems(config, items):
    """Tests over the demo cohort, and the ``slow`` ones, are the end-to-end tier (``make test-fast`` skips it)."""
    for item in items:
        if E2E_FIXTURES & set(getattr(item, "fixturenames", ())) or item.get_closest_marker("slow"):
            item.add_marker(pytest.mark.e2e)
