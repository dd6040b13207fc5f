"""Running a study's jobs on Dask distributed (``--dask tcp://scheduler:8786`` or ``--dask local``).

Workers run the function they are handed (the runner's ``execute``): with an output directory they write
their own run files there (Parquet records, JSON summary) and send back only the summary row, so the
directory must be storage every worker can reach (an NFS/shared mount on a real cluster).  Without an
output directory the full results travel back to the client.  Seeds do not depend on the worker, so the
results equal a local run's.
"""
from __future__ import annotations

from typing import Callable

from .errors import ConfigError


def run_on_dask(address: str, fn: Callable, shared, calls: list[tuple], collect: Callable, workers: int,
                ready: Callable[[], None] | None = None) -> None:
    """Call ``fn(shared, *args)`` for every ``args`` in ``calls`` on Dask (``shared`` is sent to every
    worker once) and ``collect(*result)`` each result as it arrives.  ``address``: a scheduler address, or
    ``local`` for a LocalCluster of ``workers`` single-threaded processes.  ``ready()``: called once connected,
    before any work is sent (what may only be done once the work can run)."""
    try:
        from dask.distributed import Client, LocalCluster, as_completed
    except ImportError:  # pragma: no cover - depends on the install
        raise ConfigError("--dask needs Dask distributed: pip install 'groqsim[dask]'") from None

    # the scheduler serves HTTP (its metrics) whatever ``dashboard_address`` says, on 8787 by default, which
    # another cluster or a notebook's may hold (then a warning): on a free port of the loopback address instead
    cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                           dashboard_address="127.0.0.1:0") if address == "local" else None
    client = Client(cluster if cluster is not None else address)
    try:
        if ready is not None:
            ready()
        shared_future = client.scatter(shared, broadcast=True)
        futures = [client.submit(fn, shared_future, *args, key=f"groqsim-{getattr(args[0], 'key', n)}", pure=False)
                   for n, args in enumerate(calls)]
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
