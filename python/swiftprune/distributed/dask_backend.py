"""The Dask backend: jobs as tasks on a ``dask.distributed`` cluster.

Each task opens its input shard from the path the coordinator sees, so the
checkpoint and the destination must be on storage every worker can reach
(NFS, a shared disk, or one machine for a ``LocalCluster``). Tasks write
their parts into the destination's staging folder; the coordinator (this
process) writes the manifests, the final shards and the index, so the output
is byte for byte what the local backend writes.
"""
from __future__ import annotations

from typing import Any, Callable, Iterator, Sequence

from .executors import Executor
from .jobs import JobSpec, run_job

__all__ = ["DaskExecutor"]


def _import_distributed() -> Any:
    try:
        import distributed
    except ImportError:
        raise ImportError('backend="dask" needs dask.distributed: pip install "swiftprune[dask]"') from None
    return distributed


class DaskExecutor(Executor):
    """Runs jobs on a Dask cluster.

    Parameters
    ----------
    scheduler : str, distributed.Client or None
        A scheduler address (``"tcp://host:8786"``), a connected client, or
        ``None`` for the client already active in this process
        (``distributed.get_client()``).
    """

    def __init__(self, scheduler: Any) -> None:
        distributed = _import_distributed()
        self._own = False
        if scheduler is None:
            try:
                self.client = distributed.get_client()
            except ValueError:
                raise ValueError('backend="dask" needs a cluster: pass scheduler="tcp://host:8786" (or a '
                                 "distributed.Client), or create a Client first") from None
        elif isinstance(scheduler, str):
            self.client = distributed.Client(scheduler)
            self._own = True
        elif isinstance(scheduler, distributed.Client):
            self.client = scheduler
        else:
            raise TypeError(f"scheduler must be an address string or a distributed.Client, got {type(scheduler).__name__}")
        self._distributed = distributed

    def run(self, specs: Sequence[JobSpec], progress: Callable[[int], None]) -> Iterator[tuple[JobSpec, dict[str, Any]]]:
        futures = {}
        for spec in specs:
            # pure=False: a resumed or repeated job must run again, never come from the cache.
            future = self.client.submit(run_job, spec, pure=False, key=f"swiftprune-job-{spec.index}-{id(spec)}")
            futures[future.key] = (future, spec)
        try:
            for future in self._distributed.as_completed([f for f, _ in futures.values()]):
                spec = futures[future.key][1]
                result = future.result()
                progress(spec.nbytes)
                yield spec, result
        finally:
            for future, _ in futures.values():
                future.cancel()

    def close(self) -> None:
        if self._own:
            self.client.close()
