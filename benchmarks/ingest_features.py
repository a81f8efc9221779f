"""Ingest throughput for precomputed tile features, against a naive baseline.

Writes a synthetic cohort of TRIDENT/CLAM-layout .h5 feature files, then in
separate processes (so peak memory is each one's own):

* hquery: ``hquery ingest`` of the cohort (validation, content hashes, streamed
  Lance write, slide means, catalog transaction);
* baseline: read every file with h5py into one array and write it with a single
  ``lance.write_dataset`` call -- the ten lines one would write by hand, with no
  checks, no catalog and everything in memory.

Prints tiles/s and peak RSS of both and their ratios. Usage::

    python benchmarks/ingest_features.py [--slides 40] [--tiles 2500] [--dim 1024]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

BASELINE = r"""
import sys, glob, h5py, numpy as np, pyarrow as pa, lance
files = sorted(glob.glob(sys.argv[1] + "/*.h5"))
feats, ids = [], []
for f in files:
    with h5py.File(f) as h5:
        x = h5["features"][()]
    feats.append(x); ids += [f] * len(x)
x = np.concatenate(feats).astype(np.float32)
t = pa.table({"sample_id": pa.array(ids, pa.string()),
              "embedding": pa.FixedSizeListArray.from_arrays(pa.array(x.reshape(-1)), x.shape[1])})
lance.write_dataset(t, sys.argv[2])
"""


def make_cohort(root: Path, slides: int, tiles: int, dim: int) -> Path:
    import h5py

    rng = np.random.default_rng(0)
    lines = ["sample_id,patient_id,slide_path"]
    for i in range(slides):
        with h5py.File(root / f"slide{i:04d}.h5", "w") as h5:
            h5["features"] = rng.standard_normal((tiles, dim), dtype=np.float32)
            h5["coords"] = (np.stack(np.unravel_index(np.arange(tiles), (tiles // 50 + 1, 50)), 1) * 256)[:, ::-1]
        lines.append(f"B{i:04d},P{i:04d},slide{i:04d}.h5")
    (root / "manifest.csv").write_text("\n".join(lines) + "\n")
    return root / "manifest.csv"


def timed_child(cmd: list[str]) -> tuple[float, float]:
    """Wall seconds and this child's own peak RSS in MiB."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env={**os.environ, "HF_HUB_OFFLINE": "1"}, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise subprocess.CalledProcessError(proc.returncode, cmd)
    return seconds, usage.ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slides", type=int, default=40)
    parser.add_argument("--tiles", type=int, default=2500)
    parser.add_argument("--dim", type=int, default=1024)
    args = parser.parse_args()
    n = args.slides * args.tiles
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "cohort").mkdir()
        manifest = make_cohort(root / "cohort", args.slides, args.tiles, args.dim)
        gib = n * args.dim * 4 / 2**30
        print(f"cohort: {args.slides} slides x {args.tiles} tiles x {args.dim} dims = {n} tiles, {gib:.2f} GiB of features")
        base_s, base_mem = timed_child([sys.executable, "-c", BASELINE, str(root / "cohort"), str(root / "naive.lance")])
        hq = [sys.executable, "-m", "hquery"]
        subprocess.run(hq + ["init", "--store", str(root / "store")], check=True, stdout=subprocess.DEVNULL)
        hq_s, hq_mem = timed_child(hq + ["ingest", str(manifest), "--encoder", "precomputed:bench", "--quiet",
                                         "--batch-size", "4096", "--store", str(root / "store")])
        status = json.loads(subprocess.run(hq + ["status", "--format", "json", "--store", str(root / "store")],
                                           check=True, capture_output=True, text=True).stdout)
        assert status["counts"]["tiles"] == n, status["counts"]
    print(f"{'':28}{'tiles/s':>12}{'seconds':>10}{'peak RSS MiB':>15}")
    print(f"{'baseline (h5py + lance)':28}{n / base_s:12.0f}{base_s:10.1f}{base_mem:15.0f}")
    print(f"{'hquery ingest':28}{n / hq_s:12.0f}{hq_s:10.1f}{hq_mem:15.0f}")
    print(f"hquery/baseline: throughput x{base_s / hq_s:.2f}, peak memory x{hq_mem / base_mem:.2f}")
    print("(peak RSS includes the interpreter and imports; the baseline holds all features in memory, "
          "hquery streams them in batches)")


if __name__ == "__main__":
    main()
