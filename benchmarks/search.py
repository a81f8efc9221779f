"""Index build and search speed against a plain matmul + top-k floor, on the same data.

10,000 queries over a 100,000-vector library at d=256, k=32 (L2-normalised,
near a 16-dimensional subspace, like aligned embeddings). Baselines measured in the same run:

* numpy: blocked ``queries @ library.T`` + ``argpartition`` top-k (the floor);
* torch: blocked matmul + ``torch.topk``.

hquery's exact index (FAISS ``IndexFlatIP``) must return the same neighbours;
HNSW is timed too, with its recall against exact. Usage::

    python benchmarks/search.py [--library 100000] [--queries 10000] [--dim 256] [--k 32]
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def clustered(rng, n, d, latent=16, seed=0):
    """Vectors near a ``latent``-dimensional subspace, like embeddings from a projection head."""
    basis = np.random.default_rng(seed).normal(size=(latent, d))
    x = (rng.normal(size=(n, latent)) @ basis + 0.3 * rng.normal(size=(n, d))).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def numpy_topk(queries, library, k, block=1000):
    ids = np.empty((len(queries), k), dtype=np.int64)
    for s in range(0, len(queries), block):
        sim = queries[s : s + block] @ library.T
        part = np.argpartition(-sim, k - 1, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(sim, part, 1), axis=1)
        ids[s : s + block] = np.take_along_axis(part, order, 1)
    return ids


def torch_topk(queries, library, k, block=2000):
    import torch

    q, lib = torch.from_numpy(queries), torch.from_numpy(library)
    return torch.cat([torch.topk(q[s : s + block] @ lib.T, k, dim=1).indices for s in range(0, len(q), block)]).numpy()


def timed(fn, *args):
    t0 = time.perf_counter()
    out = fn(*args)
    return out, time.perf_counter() - t0


def overlap(a, b):
    return float(np.mean([len(set(x) & set(y)) / len(x) for x, y in zip(a, b)]))


def main() -> None:
    from hquery.retrieval.index import build_faiss_index

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--library", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=10_000)
    parser.add_argument("--dim", type=int, default=256)
    parser.add_argument("--k", type=int, default=32)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    library, queries = clustered(rng, args.library, args.dim), clustered(rng, args.queries, args.dim)
    print(f"{args.queries} queries x {args.library} library vectors, d={args.dim}, k={args.k}")

    floor_ids, floor_s = timed(numpy_topk, queries, library, args.k)
    torch_ids, torch_s = timed(torch_topk, queries, library, args.k)
    flat, flat_build = timed(build_faiss_index, library, "flat")
    (_, flat_ids), flat_s = timed(flat.search, queries, args.k)
    hnsw, hnsw_build = timed(build_faiss_index, library, "hnsw")
    (_, hnsw_ids), hnsw_s = timed(hnsw.search, queries, args.k)

    rows = [
        ("numpy matmul + argpartition", 0.0, floor_s, 1.0),
        ("torch matmul + topk", 0.0, torch_s, overlap(torch_ids, floor_ids)),
        ("hquery flat (IndexFlatIP)", flat_build, flat_s, overlap(flat_ids, floor_ids)),
        ("hquery hnsw (M=32, ef=128)", hnsw_build, hnsw_s, overlap(hnsw_ids, floor_ids)),
    ]
    print(f"{'':30}{'build s':>9}{'search s':>10}{'queries/s':>11}{'vs numpy':>10}{'recall@k':>10}")
    for name, build, search, recall in rows:
        print(f"{name:30}{build:9.2f}{search:10.2f}{args.queries / search:11.0f}{floor_s / search:9.1f}x{recall:10.3f}")


if __name__ == "__main__":
    main()
