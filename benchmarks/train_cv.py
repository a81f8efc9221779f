"""5-fold cross-validation plus the final fit (`hquery train --folds 5`), parallel against in-process.

Reads the pairs of a store (default: the one `make demo` writes, 1,721 slide
pairs, the seed paper's scale) and times :func:`train_alignment` twice on a copy:

* baseline: ``workers=1``, every fold and the final model fitted one after another
  in this process;
* hquery: the default, folds and final fit side by side in one process per CPU.

Both must give identical metrics (each fit is seeded and single-threaded). Usage::

    python benchmarks/train_cv.py [--store hquery-store] [--folds 5]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path


def timed_train(store_dir: Path, folds: int, workers: int | None):
    from hquery.store import Store
    from hquery.training.alignment_trainer import train_alignment

    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / "store"
        shutil.copytree(store_dir, copy)
        started = time.perf_counter()
        report = train_alignment(Store.open(copy), folds=folds, workers=workers)
        return report, time.perf_counter() - started


def main() -> None:
    from hquery.parallel import available_cpus

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", type=Path, default=Path("hquery-store"))
    parser.add_argument("--folds", type=int, default=5)
    args = parser.parse_args()
    if not (args.store / "catalog.duckdb").exists():
        raise SystemExit(f"{args.store}: no hquery store; run `make demo` first or pass --store")

    parallel, t_parallel = timed_train(args.store, args.folds, None)
    serial, t_serial = timed_train(args.store, args.folds, 1)
    same = parallel.cv.rows() == serial.cv.rows()
    recall, sd = parallel.cv.summary("aligned", "he_to_rna", "recall@10")
    print(f"{parallel.n_pairs} pairs from {parallel.n_patients} patients, {args.folds} folds + final fit, "
          f"{available_cpus()} CPUs")
    print(f"  in-process (baseline)  {t_serial:6.1f} s")
    print(f"  hquery (parallel)      {t_parallel:6.1f} s   {t_serial / t_parallel:.2f}x")
    print(f"  H&E->RNA recall@10 {recall:.3f} ± {sd:.3f}; identical metrics: {same}")
    if not same:
        raise SystemExit("parallel and in-process metrics differ")


if __name__ == "__main__":
    main()
