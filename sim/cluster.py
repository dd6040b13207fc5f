"""Running a study's jobs on Dask distributed (``--dask tcp://scheduler:8786`` or ``--dask local``).

Workers run :func:`sim.runner.execute`: with an output directory they write their own run files there
(Parquet records, JSON summary) and send back only the summary row, so the directory must be storage every
worker can reach (an NFS/shared mount on a real cluster).  Without an output directory the full results
travel back to the client.  Seeds do not depend on the worker, so the results equal a local run's.
"""
from __future__ import annotations

from typing import Callable


def run_on_dask(address: str, scenario, jobs: list, out: str | None, duration: float | None, keep: bool,
                collect: Callable, workers: int) -> None:
    try:
        from dask.distributed import Client, LocalCluster, as_completed
    except ImportError:  # pragma: no cover - depends on the install
        from .errors import ConfigError
        raise ConfigError("--dask needs Dask distributed: pip install 'groqsim[dask]'") from None
    from .runner import execute

    cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None) \
        if address == "local" else None
    client = Client(cluster if cluster is not None else address)
    try:
        scenario_future = client.scatter(scenario, broadcast=True)
        futures = [client.submit(execute, scenario_future, job, out, duration, keep, key=f"groqsim-{job.key}",
                                 pure=False) for job in jobs]
        try:
            for fut in as_completed(futures):
                collect(*fut.result())
        except BaseException:
            client.cancel(futures)
            raise
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
