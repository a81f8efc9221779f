"""Parallelism without heavy imports: how many CPUs this process may use, and a pool that runs jobs side by side.

Every cross-validation (alignment folds, the spectrum, HistoPrism) runs its fits
through :func:`worker_pool` and :func:`run_jobs`, so they share one recipe: each
job is seeded on its own, and the results are the same with or without a pool.

>>> with worker_pool(1) as pool:
...     list(run_jobs(pool, pow, [(2, 3), (3, 2)]))
[8, 9]
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Executor, Future, ProcessPoolExecutor


def available_cpus() -> int:
    """CPUs this process may run on (its affinity mask where the OS has one)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


@contextlib.contextmanager
def worker_pool(workers: int | None = None, device: str = "cpu") -> Iterator[Executor | None]:
    """Worker processes that fit models side by side, or ``None`` to fit in-process.

    ``workers`` defaults to the CPUs this process may use. On CUDA, or with one
    worker, there is no pool: the GPU is shared and a pool would only add start-up.
    Workers are spawned (not forked), which is safe after torch has started threads,
    and exit by themselves when the parent dies (a killed ``train --folds`` leaves
    no workers behind).
    """
    workers = available_cpus() if workers is None else workers
    if device != "cpu" or workers <= 1:
        yield None
        return
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"), initializer=_die_with_parent,
                             initargs=(os.getpid(),)) as pool:
        yield pool


def _die_with_parent(parent: int) -> None:
    """In a worker: exit as soon as the process that made the pool is gone (killed, say), instead of
    waiting forever for work that will never come."""
    import threading
    import time

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, name="hquery-parent-watch", daemon=True).start()


def submit(pool: Executor | None, fn: Callable, *args) -> Future:
    """``fn(*args)`` on ``pool``, or right now in this process when there is none; a future either way."""
    if pool is not None:
        return pool.submit(fn, *args)
    future: Future = Future()
    future.set_result(fn(*args))
    return future


def run_jobs(pool: Executor | None, fn: Callable, jobs: Iterable[tuple]) -> Iterator:
    """``fn(*job)`` for each job, yielded in the jobs' order; all submitted at once when there is a pool."""
    if pool is None:
        for job in jobs:
            yield fn(*job)
        return
    futures = [pool.submit(fn, *job) for job in jobs]
    for future in futures:
        yield future.result()


_DONE = object()


def prefetch(items: Iterable, depth: int = 2) -> Iterator:
    """``items``, produced by a background thread up to ``depth`` ahead of the consumer.

    For reading and decoding tiles (OpenSlide, PIL and h5py release the GIL) while the
    encoder's forward pass runs. Order and values are those of ``items``; an error in
    the producer is raised in the consumer, and a consumer that stops early stops the
    producer. ``depth=0`` iterates in this thread.

    >>> list(prefetch(iter(range(5)), depth=2))
    [0, 1, 2, 3, 4]
    """
    if depth <= 0:
        yield from items
        return
    slots: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in items:
                while not stop.is_set():
                    try:
                        slots.put((item, None), timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            slots.put((_DONE, None))
        except BaseException as exc:  # handed to the consumer, which raises it
            slots.put((_DONE, exc))

    worker = threading.Thread(target=produce, name="hquery-prefetch", daemon=True)
    worker.start()
    try:
        while True:
            item, error = slots.get()
            if item is _DONE:
                if error is not None:
                    raise error
                return
            yield item
    finally:
        stop.set()
        while worker.is_alive():
            with contextlib.suppress(queue.Empty):
                slots.get_nowait()
            worker.join(timeout=0.05)
