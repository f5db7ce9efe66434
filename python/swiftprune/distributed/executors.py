"""Where jobs run: this process, local worker processes, or a Dask cluster.

Every executor takes job specs and yields ``(spec, result)`` as jobs finish,
calling ``progress(nbytes)`` as input bytes are done (per tensor locally, per
job on Dask). A failing job raises its exception in the caller; the jobs not
yet started are cancelled.
"""
from __future__ import annotations

import multiprocessing
import dataclasses
import queue as queue_module
import sys
import threading
from contextlib import contextmanager
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from typing import Any, Callable, Iterator, Sequence

from .jobs import JobSpec, run_job, set_progress_sink
from .worker_process import initialize_worker, threads_per_worker

__all__ = ["Executor", "InProcessExecutor", "LocalProcessExecutor", "make_executor"]

Progress = Callable[[int], None]


class Executor:
    """Runs job specs; see the module documentation."""

    def run(self, specs: Sequence[JobSpec], progress: Progress) -> Iterator[tuple[JobSpec, dict[str, Any]]]:
        raise NotImplementedError

    def close(self) -> None:
        pass


class InProcessExecutor(Executor):
    """One job after the other in this process (``workers=1``)."""

    def run(self, specs: Sequence[JobSpec], progress: Progress) -> Iterator[tuple[JobSpec, dict[str, Any]]]:
        set_progress_sink(lambda message: progress(message[2]))
        try:
            for spec in specs:
                yield spec, run_job(spec)
        finally:
            set_progress_sink(None)


@contextmanager
def _main_script_not_rerun() -> Iterator[None]:
    """While worker processes are spawned, hides the ``__file__`` of a script run as ``__main__``.

    A spawned process runs the parent's main script again before it can
    work (so that functions defined there can be unpickled), which fails, or
    starts the whole compression again, in a script without an
    ``if __name__ == "__main__":`` guard. Jobs only need swiftprune itself,
    so the workers are spawned as if from an interactive session.
    """
    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None)
    if main is None or path is None or getattr(main, "__spec__", None) is not None:
        yield
        return
    del main.__file__
    try:
        yield
    finally:
        main.__file__ = path


class LocalProcessExecutor(Executor):
    """``workers`` spawned processes, each running one job (shard) at a time,
    so at most ``workers`` tensors are in memory at once."""

    def __init__(self, workers: int) -> None:
        self.workers = workers
        context = multiprocessing.get_context("spawn")
        self._queue = context.Queue()
        self._runs = 0
        self._pool = ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=initialize_worker,
                                         initargs=(self._queue, threads_per_worker(workers)))

    def run(self, specs: Sequence[JobSpec], progress: Progress) -> Iterator[tuple[JobSpec, dict[str, Any]]]:
        # The queue outlives a run (a two-pass job runs the pool several times): messages are tagged
        # with the run, and a late one of an earlier run is dropped instead of counted again here.
        self._runs += 1
        run = self._runs
        specs = [dataclasses.replace(spec, run=run) for spec in specs]
        stop = threading.Event()
        lock = threading.Lock()
        reported: dict[int, int] = {}   # job index -> bytes counted so far
        finished: set[int] = set()

        def count(index: int, nbytes: int) -> None:
            with lock:
                if index in finished:  # a late message of a job already counted in full
                    return
                reported[index] = reported.get(index, 0) + nbytes
            progress(nbytes)

        def drain() -> None:
            while not stop.is_set():
                try:
                    sender, index, nbytes = self._queue.get(timeout=0.1)
                except queue_module.Empty:
                    continue
                except (EOFError, OSError):
                    return
                if sender == run:
                    count(index, nbytes)

        drainer = threading.Thread(target=drain, name="swiftprune-progress", daemon=True)
        drainer.start()
        with _main_script_not_rerun():  # processes are spawned on submit
            futures: dict[Future, JobSpec] = {self._pool.submit(run_job, spec): spec for spec in specs}
        try:
            pending = set(futures)
            while pending:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for future in sorted(done, key=lambda f: futures[f].index):
                    spec, result = futures[future], future.result()
                    with lock:  # the queue may still carry some of its messages: count the rest now
                        rest = spec.nbytes - reported.get(spec.index, 0)
                        finished.add(spec.index)
                    if rest > 0:
                        progress(rest)
                    yield spec, result
        finally:
            for future in futures:
                future.cancel()
            stop.set()
            drainer.join()

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._queue.close()


def make_executor(backend: str, workers: int, scheduler: Any) -> Executor:
    """The executor for ``backend`` (``"local"`` or ``"dask"``)."""
    if backend == "dask":
        from .dask_backend import DaskExecutor  # dask is imported only here
        return DaskExecutor(scheduler)
    if scheduler is not None:
        raise ValueError("scheduler is for backend='dask'; the local backend runs on this machine")
    return InProcessExecutor() if workers == 1 else LocalProcessExecutor(workers)
