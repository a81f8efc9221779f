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
import dataclasses
import multiprocessing
import os
import queue
import threading
import warnings
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Executor, Future, ProcessPoolExecutor

from hquery.errors import InputError, NotReadyError


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


@dataclasses.dataclass(frozen=True)
class RayOptions:
    """Where and how wide a Ray job runs (an ingest's encoders, library scoring, index shards).

    Parameters
    ----------
    address
        ``None`` starts a Ray on this machine for the run (and stops it after);
        ``auto`` joins the cluster this machine belongs to; ``ray://HOST:10001``
        joins a remote one through Ray Client.
    workers
        Workers side by side: an ingest's encoder replicas (Ray actors, each loading the
        model once), or tasks at a time.
    gpus_per_worker
        GPUs each worker holds (``0.5`` puts two on one GPU); ``0``: CPUs only.
    cpus_per_worker
        CPU cores each worker holds (its torch threads); default: this machine's
        cores shared among the workers on a local Ray, else 1.

    Examples
    --------
    >>> RayOptions(address="auto", workers=4, gpus_per_worker=0.5).worker_cpus()
    1.0
    """

    address: str | None = None
    workers: int = 1
    gpus_per_worker: float = 0.0
    cpus_per_worker: float | None = None

    def __post_init__(self):
        if self.workers < 1:
            raise InputError(f"--workers must be at least 1, not {self.workers}")
        if self.gpus_per_worker < 0:
            raise InputError(f"--gpus-per-worker cannot be negative ({self.gpus_per_worker})")
        if self.cpus_per_worker is not None and self.cpus_per_worker <= 0:
            raise InputError(f"--cpus-per-worker must be positive, not {self.cpus_per_worker}")

    def worker_cpus(self) -> float:
        if self.cpus_per_worker is not None:
            return self.cpus_per_worker
        if self.address is None:
            return max(1, available_cpus() // self.workers)
        return 1.0


@contextlib.contextmanager
def ray_session(options: RayOptions):
    """The ``ray`` module, connected as ``options`` say: a running session is used as it is; else this starts a
    local Ray (``address=None``) or joins a cluster, and disconnects when the block ends."""
    try:
        import ray
    except ImportError as exc:
        raise NotReadyError("the Ray engine needs Ray: pip install 'hquery[ray]'", needs="install ray") from exc
    # Ray starts its processes by fork and exec, which is safe for lance; lance's at-fork warning is not for this
    warnings.filterwarnings("ignore", message="lance is not fork-safe")
    started_here = not ray.is_initialized()
    if started_here and options.address is None:
        ray.init(num_cpus=max(available_cpus(), int(options.workers * options.worker_cpus())),
                 include_dashboard=False, log_to_driver=False, configure_logging=False)
    elif started_here:
        ray.init(address=options.address, log_to_driver=False, configure_logging=False)
    try:
        yield ray
    finally:
        if started_here:
            ray.shutdown()


def ray_map(fn: Callable, items: Iterable, options: RayOptions, **remote_args) -> Iterator:
    """``fn(*item)`` for each item as Ray tasks (at most ``options.workers`` at a time), results in order."""
    items = list(items)
    with ray_session(options) as ray:
        task = ray.remote(num_cpus=options.worker_cpus(), num_gpus=options.gpus_per_worker, **remote_args)(fn)
        pending, submitted = [], 0
        for i in range(len(items)):
            while submitted < len(items) and submitted - i < options.workers:
                pending.append(task.remote(*items[submitted]))
                submitted += 1
            yield ray.get(pending[i])
            pending[i] = None
