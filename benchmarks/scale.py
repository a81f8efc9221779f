"""Scale: slide encoding on the local path against Ray, and library scoring and indexing at 100k and 1M profiles.

Three parts, each against a baseline measured in the same run:

* **encode**: one cohort of tile folders (``--slides`` slides of ``--tiles`` 64 px
  PNG tiles, the demo ViT) ingested into fresh stores by the local path and by
  the Ray engine with 1 and 2 workers (1 CPU each). Prints tiles/s and the ratio
  to the local path; Ray's fixed cost is the time of an ingest of three
  one-tile slides on Ray less the local one.
* **ssgsea**: ``N`` synthetic log-expression profiles (``--genes`` genes, written to
  a store's Lance ``expression`` table) scored for ``--sets`` gene sets by
  :func:`hquery.library.score_library`: streamed from Lance in batches in this
  process, and as Ray tasks with 2 workers. Ratio: Ray against local.
* **index**: ``N`` L2-normalised ``--dim``-d vectors near a 16-d subspace (like
  aligned embeddings). IVF trained on a sample and filled in 2 shards merged,
  against the exact index (``IndexFlatIP``) as the baseline: build seconds,
  search seconds for 1,000 queries (k=10) and recall against exact search on
  them, at nprobe 16 and 64 and at the nprobe ``hquery index`` tunes at build.

* **read**: tiles of the real CMU H&E region (``tests/data/cmu_small_region.svs``)
  read, cut and decoded at 224 px, 20x, by one core through the ingest's reader
  (:meth:`~hquery.ingest.slides.WholeSlide.iter_tiles`): the per-core read rate
  docs/scale.md's cost model divides a GPU's encode rate by.

Each part and size runs in its own process and prints its peak RSS (``ru_maxrss``). Usage::

    python benchmarks/scale.py [--parts encode,ssgsea,index,read] [--profiles 100000,1000000]
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def write_tile_cohort(root: Path, slides: int, tiles: int) -> tuple[Path, Path]:
    """``slides`` tile folders of ``tiles`` random 64 px PNG tiles, each paired with a random profile."""
    import polars as pl
    from PIL import Image

    rng = np.random.default_rng(0)
    side = int(np.ceil(np.sqrt(tiles)))
    rows, expression = [], []
    for i in range(slides):
        folder = root / "slides" / f"S{i:04d}"
        folder.mkdir(parents=True)
        for t in range(tiles):
            pixels = rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(folder / f"{(t % side) * 64}_{(t // side) * 64}.png")
        rows.append({"sample_id": f"S{i:04d}", "patient_id": f"P{i:04d}", "slide_path": f"slides/S{i:04d}"})
        expression.append({"sample_id": f"S{i:04d}", **{f"G{g}": int(v) for g, v in enumerate(rng.poisson(20, 8))}})
    pl.DataFrame(rows).write_csv(root / "manifest.csv")
    pl.DataFrame(expression).write_csv(root / "expression.csv")
    return root / "manifest.csv", root / "expression.csv"


def timed_ingest(root: Path, manifest: Path, expression: Path, engine) -> tuple[float, int]:
    from hquery.ingest import ingest_cohort
    from hquery.store import Store

    if root.exists():
        shutil.rmtree(root)
    store = Store.init(root)
    started = time.perf_counter()
    report = ingest_cohort(store, manifest, expression=expression, encoder="demo-vit", engine=engine)
    return time.perf_counter() - started, report.n_tiles


def encode(args, work: Path) -> None:
    import ray

    from hquery.parallel import RayOptions

    manifest, expression = write_tile_cohort(work / "cohort", args.slides, args.tiles)
    one_manifest, one_expression = write_tile_cohort(work / "one", 3, 1)
    print(f"encode: {args.slides} slides x {args.tiles} tiles (64 px PNG), demo-vit, {os.cpu_count()} CPUs")
    one_local, _ = timed_ingest(work / "one_local", one_manifest, one_expression, None)
    one_ray, _ = timed_ingest(work / "one_ray", one_manifest, one_expression, RayOptions(workers=1))
    fixed = one_ray - one_local
    print(f"  Ray's fixed cost (an ingest of 3 one-tile slides, Ray less local): {fixed:.1f} s")
    local_s, n = timed_ingest(work / "local", manifest, expression, None)
    print(f"  local path:          {n / local_s:7.1f} tiles/s  ({local_s:.1f} s)")
    for workers in (1, 2):
        options = RayOptions(workers=workers, cpus_per_worker=1)
        ray_s, n_ray = timed_ingest(work / f"ray{workers}", manifest, expression, options)
        assert n_ray == n
        print(f"  Ray, {workers} worker(s):    {n / ray_s:7.1f} tiles/s  ({ray_s:.1f} s)  "
              f"{local_s / ray_s:.2f}x the local path; net of the fixed cost {n / (ray_s - fixed):7.1f} tiles/s")
    assert not ray.is_initialized()
    print(f"  peak RSS {peak_rss_gib():.2f} GiB")


def profile_store(root: Path, n: int, genes: int):
    """A store whose ``expression`` table holds ``n`` synthetic log1p profiles, written in batches."""
    import pyarrow as pa

    from hquery.names import EXPRESSION
    from hquery.store import Store

    store = Store.init(root)
    schema = pa.schema([("sample_id", pa.string()), ("values", pa.list_(pa.float32(), genes))])
    rng = np.random.default_rng(0)
    level = rng.normal(1.5, 1.0, genes).astype(np.float32)

    def batches():
        for start in range(0, n, 50_000):
            rows = min(50_000, n - start)
            values = np.log1p(rng.gamma(2.0, np.exp(level), (rows, genes))).astype(np.float32)
            yield pa.RecordBatch.from_arrays([
                pa.array([f"R{i:07d}" for i in range(start, start + rows)], pa.string()),
                pa.FixedSizeListArray.from_arrays(pa.array(values.reshape(-1)), genes)], schema=schema)

    with store.transaction() as txn:
        txn.write_lance(EXPRESSION, pa.RecordBatchReader.from_batches(schema, batches()), kind="expression")
    return store


def ssgsea(args, work: Path) -> None:
    from hquery.library import score_library
    from hquery.parallel import RayOptions
    from hquery.store import Store

    rng = np.random.default_rng(1)
    sets = [np.sort(rng.choice(args.genes, size, replace=False)) for size in rng.integers(30, 200, args.sets)]
    print(f"ssgsea: {args.sets} sets over {args.genes} genes, profiles read from Lance in batches of 50,000")
    for n in args.profiles:
        root = work / f"profiles_{n}"
        started = time.perf_counter()
        subprocess.run([sys.executable, __file__, "--one", "--parts", "write", "--profiles", str(n),
                        "--genes", str(args.genes), "--store", str(root)], check=True)
        written = time.perf_counter() - started
        store = Store.open(root)
        started = time.perf_counter()
        local = score_library(store, sets)
        local_s = time.perf_counter() - started
        started = time.perf_counter()
        on_ray = score_library(store, sets, engine=RayOptions(workers=2, cpus_per_worker=1))
        ray_s = time.perf_counter() - started
        assert np.allclose(on_ray, local)
        print(f"  {n:>9,} profiles: written {written:5.1f} s; local {local_s:6.1f} s ({n / local_s:8.0f} profiles/s); "
              f"Ray 2 workers {ray_s:6.1f} s, {local_s / ray_s:.2f}x local; peak RSS {peak_rss_gib():.2f} GiB")
        shutil.rmtree(root)


def index(args, work: Path) -> None:
    from search import clustered  # benchmarks/search.py: vectors near a subspace

    from hquery.retrieval.index import build_faiss_index, tune_nprobe

    print(f"index: {args.dim}-d vectors, IVF (trained on a sample, 2 shards merged) against exact search, "
          f"1,000 queries, k=10")
    for n in args.profiles:
        vectors = clustered(np.random.default_rng(0), n, args.dim)
        queries = vectors[np.random.default_rng(1).choice(n, 1000, replace=False)]
        started = time.perf_counter()
        exact = build_faiss_index(vectors, "flat")
        exact_build = time.perf_counter() - started
        started = time.perf_counter()
        _, truth = exact.search(queries, 10)
        exact_search = time.perf_counter() - started
        started = time.perf_counter()
        ivf = build_faiss_index(vectors, "ivf", shards=2)
        ivf_build = time.perf_counter() - started
        print(f"  {n:>9,} vectors: exact build {exact_build:5.1f} s, search {exact_search:6.2f} s | IVF "
              f"({ivf.nlist} lists) build {ivf_build:6.1f} s")
        for nprobe in (16, 64):
            ivf.nprobe = nprobe
            started = time.perf_counter()
            _, found = ivf.search(queries, 10)
            ivf_search = time.perf_counter() - started
            recall = np.mean([len(set(t) & set(f)) / 10 for t, f in zip(truth, found)])
            print(f"      nprobe {nprobe:3d}: search {ivf_search:6.2f} s ({exact_search / ivf_search:5.1f}x faster than "
                  f"exact), recall@10 vs exact {recall:.3f}")
        started = time.perf_counter()
        tuned = tune_nprobe(ivf, vectors)
        tuning = time.perf_counter() - started
        started = time.perf_counter()
        ivf.search(queries, 10)
        ivf_search = time.perf_counter() - started
        print(f"      tuned at build (hquery index): nprobe {ivf.nprobe} for recall@10 {tuned:.3f} on its own sample "
              f"({tuning:.1f} s), search {ivf_search:6.2f} s ({exact_search / ivf_search:5.1f}x faster than exact)")
        print(f"      peak RSS {peak_rss_gib():.2f} GiB")
        del vectors, exact, ivf


def read(args, work: Path) -> None:
    from hquery.ingest.slides import TilingOptions, open_slide

    svs = Path(__file__).resolve().parents[1] / "tests" / "data" / "cmu_small_region.svs"
    slide = open_slide(svs, TilingOptions(tile_size=224, magnification=20, min_tissue=0.0))
    started, n = time.perf_counter(), 0
    for _ in range(3):
        for ids, _images in slide.iter_tiles(64):
            n += len(ids)
    seconds = time.perf_counter() - started
    print(f"read: {n} tiles of 224 px at 20x from {svs.name} ({slide.n_tiles} a pass, 3 passes), one core: "
          f"{n / seconds:.0f} tiles/s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", default="encode,ssgsea,index,read")
    parser.add_argument("--slides", type=int, default=24)
    parser.add_argument("--tiles", type=int, default=64)
    parser.add_argument("--profiles", default="100000,1000000")
    parser.add_argument("--genes", type=int, default=1000)
    parser.add_argument("--sets", type=int, default=10)
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--store", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.profiles = [int(n) for n in args.profiles.split(",")]
    if args.one:  # one part at one size, in its own process, so its peak RSS is its own
        work = Path(tempfile.mkdtemp(prefix="hquery-scale-"))
        try:
            if args.parts == "write":  # the ssgsea part's store, written in a process of its own
                profile_store(args.store, args.profiles[0], args.genes)
            else:
                {"encode": encode, "ssgsea": ssgsea, "index": index, "read": read}[args.parts](args, work)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        return
    for part in args.parts.split(","):
        for size in args.profiles if part in ("ssgsea", "index") else [args.profiles[0]]:
            subprocess.run([sys.executable, __file__, "--one", "--parts", part, "--profiles", str(size),
                            "--slides", str(args.slides), "--tiles", str(args.tiles), "--genes", str(args.genes),
                            "--sets", str(args.sets), "--dim", str(args.dim)], check=True)

if __name__ == "__main__":
    main()
