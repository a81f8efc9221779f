"""Metadata-filtered neighbour search against unfiltered search, on the same data in the same run.

A 100,000-profile library in 12 cancer types of very different sizes (the
rarest holds 0.2%), 2,000 queries spread over the types, d=256, k=32. Each
query must get its k nearest profiles *of its own type*. Measured:

* unfiltered ``IndexFlatIP`` top-k (the baseline: fast, but blind to type);
* post-filtering a fixed top-256 of the unfiltered search (starves rare types);
* hquery's per-group exact sub-indexes (:func:`hquery.retrieval.neighbours.search_groups`);
* FAISS ``IDSelectorBatch`` on the full flat index, and on an HNSW index.

Each filtered route is checked against brute force within the type. Usage::

    python benchmarks/filtered_search.py [--library 100000] [--queries 2000] [--types 12]
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def clustered(rng, n, d, latent=16, seed=0):
    basis = np.random.default_rng(seed).normal(size=(latent, d))
    x = (rng.normal(size=(n, latent)) @ basis + 0.3 * rng.normal(size=(n, d))).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def timed(fn, *args, **kwargs):
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - t0


def exact_within(library, types, queries, query_types, k):
    out = np.empty((len(queries), k), np.int64)
    for t in np.unique(query_types):
        rows = np.flatnonzero(types == t)
        at = np.flatnonzero(query_types == t)
        sim = queries[at] @ library[rows].T
        out[at] = rows[np.argsort(-sim, axis=1)[:, :k]]
    return out


def overlap(found, truth):
    return float(np.mean([len(set(f[f >= 0]) & set(t)) / len(t) for f, t in zip(found, truth)]))


def selector_search(index, types, queries, query_types, k, params_class):
    import faiss

    out = np.full((len(queries), k), -1, np.int64)
    for t in np.unique(query_types):
        rows = np.flatnonzero(types == t).astype(np.int64)
        at = np.flatnonzero(query_types == t)
        selector = faiss.IDSelectorBatch(rows)
        _, found = index.search(queries[at], k, params=params_class(sel=selector))
        out[at] = found
    return out


def main() -> None:
    import faiss

    from hquery.retrieval.index import build_faiss_index
    from hquery.retrieval.neighbours import plan_neighbours, search_groups

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--library", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=2_000)
    parser.add_argument("--types", type=int, default=12)
    parser.add_argument("--dim", type=int, default=256)
    parser.add_argument("--k", type=int, default=32)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    share = np.geomspace(1.0, 0.005, args.types)
    share /= share.sum()
    types = rng.choice(args.types, size=args.library, p=share)
    query_types = np.arange(args.queries) % args.types
    library, queries = clustered(rng, args.library, args.dim), clustered(rng, args.queries, args.dim)
    patients = np.arange(args.library).astype(str)
    truth = exact_within(library, types, queries, query_types, args.k)
    print(f"{args.queries} queries x {args.library} library vectors in {args.types} types "
          f"(rarest {np.bincount(types).min()} profiles), d={args.dim}, k={args.k}")

    flat = build_faiss_index(library, "flat")
    (_, plain), plain_s = timed(flat.search, queries, args.k)
    (_, wide), post_s = timed(flat.search, queries, 256)
    post = np.full((len(queries), args.k), -1, np.int64)
    for q, row in enumerate(wide):
        own = row[types[row] == query_types[q]][: args.k]
        post[q, : len(own)] = own
    values = [(str(t),) for t in types]
    plan, plan_s = timed(plan_neighbours, [(str(t),) for t in query_types], values, patients, args.k)
    (grouped, _), group_s = timed(search_groups, library, plan, queries, np.full(len(queries), "query"),
                                  patients, args.k)
    selected, select_s = timed(selector_search, flat, types, queries, query_types, args.k, faiss.SearchParameters)
    hnsw = build_faiss_index(library, "hnsw")
    hnsw_sel, hnsw_s = timed(selector_search, hnsw, types, queries, query_types, args.k,
                             lambda sel: faiss.SearchParametersHNSW(sel=sel, efSearch=128))

    starved = int((post < 0).any(axis=1).sum())
    rows = [
        ("unfiltered flat (baseline)", plain_s, overlap(plain, truth), 0),
        ("post-filter a top-256", post_s, overlap(post, truth), starved),
        ("hquery per-group sub-indexes", plan_s + group_s, overlap(grouped, truth), 0),
        ("IDSelectorBatch, flat", select_s, overlap(selected, truth), int((selected < 0).any(axis=1).sum())),
        ("IDSelectorBatch, HNSW", hnsw_s, overlap(hnsw_sel, truth), int((hnsw_sel < 0).any(axis=1).sum())),
    ]
    print(f"{'route':32s} {'seconds':>8s} {'x baseline':>10s} {'recall in type':>14s} {'queries short':>13s}")
    for name, seconds, recall, short in rows:
        print(f"{name:32s} {seconds:8.3f} {seconds / plain_s:10.2f} {recall:14.3f} {short:13d}")


if __name__ == "__main__":
    main()
