"""A study's results: its summaries, comparison and the request records of every run, in memory or on disk.

Written by :func:`sim.runner.run_study`, read by reports, plots and notebooks.  On disk a run's records are
``out/runs/<key>.parquet``, its 429 log ``out/runs/<key>.refusals.parquet`` and, when its clients gave up
admitted attempts by their ``timeout``, those admissions ``out/runs/<key>.earlier.parquet``
(:func:`sim.records.earlier_admissions`).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .fields import is_whole
from .records import RunResult
from .scenario import Scenario


@dataclass
class StudyResult:
    """Summaries of every run (``summary``), one row per grid point (``comparison``), and, for in-memory
    studies, the request records of every run.  ``reused``: how many of the runs were read back from ``out``
    (finished by an earlier command with the same inputs) rather than simulated."""
    scenario: Scenario
    summary: pd.DataFrame
    comparison: pd.DataFrame
    out: Path | None = None
    results: dict[tuple[int, int], RunResult] = field(default_factory=dict)
    complete: bool = True
    duration: float | None = None
    reused: int = 0
    #: each run's per client group summaries (run key -> one dict a group), for a scenario of two groups or more
    by_client: dict[str, list[dict]] = field(default_factory=dict)

    def point(self, index: int) -> dict:
        """The axis values of grid point ``index`` (numbered from 0, as ``comparison["point"]`` lists them)."""
        return self.scenario.point(index)

    def spec(self, index: int):
        """Grid point ``index`` resolved as its runs were, at the study's duration (a ``RunSpec``)."""
        return self.scenario.spec(self.point(index), duration=self.duration)

    def label(self, point: int) -> str:
        """Grid point ``point`` as the figures and tables name it: its axis values, a flag or number with its
        axis ("developer, project_quotas=True"); the scenario's name if nothing is compared."""
        axes = list(self.scenario.compare)
        if not axes:
            return self.scenario.scenario.name
        rows = self.comparison.loc[self.comparison["point"] == point]
        if not is_whole(point) or rows.empty:
            raise ValueError(f"label({point!r}): no such point in this study (allowed: "
                             f"{', '.join(str(v) for v in self.comparison['point']) or 'none yet'})")
        row = rows.iloc[0]
        return ", ".join(f"{row[a]}" if isinstance(row[a], str) else f"{a}={row[a]}" for a in axes)

    def records(self, point_index: int | None = None, replication: int | None = None) -> pd.DataFrame:
        """Request records with ``point`` and ``replication`` columns, from memory or from ``out``: all, or
        those of one grid point (its number, as ``comparison["point"]`` lists them) and/or one replication;
        one the study does not have is a ValueError naming those it has."""
        for name, arg, value in (("point", "point_index", point_index), ("replication", "replication", replication)):
            have = self.summary[name].unique().tolist() if len(self.summary) else []
            if value is not None and (not is_whole(value) or value not in have):
                raise ValueError(f"records({arg}={value!r}): no such {name} in this study (allowed: "
                                 f"{', '.join(str(v) for v in sorted(have)) or 'none yet'})")
        return load_records(self, point_index, replication)


def summary_frame(rows: list[dict]) -> pd.DataFrame:
    """Summary rows -> DataFrame with the same dtypes whether rows came from memory or from JSON files (where
    NaN was written as null)."""
    frame = pd.DataFrame([{k: (None if isinstance(v, float) and np.isnan(v) else v.item()
                               if isinstance(v, np.generic) else v) for k, v in r.items()} for r in rows])
    for col in frame.columns:
        if frame[col].dtype == object and frame[col].map(lambda v: v is None or isinstance(v, (int, float))).all() \
                and not frame[col].map(lambda v: isinstance(v, bool)).any():
            frame[col] = frame[col].astype(float)
    return frame


def read_run_file(path: Path, columns: list[str] | None = None):
    """One run file (``runs/<key>.parquet`` or its ``.refusals.parquet``) as an Arrow table, read with
    :class:`pyarrow.parquet.ParquetFile` on one thread.  A study's outputs read many small files, in worker
    processes that share the cores: the dataset layer behind ``pd.read_parquet`` and ``pq.read_table`` costs
    more per file than the reading (two columns of 65 run files: 0.12 s that way, 0.035 s this way), and
    pyarrow's own threads would compete with the other workers.  ``.to_pandas()`` of the table is the frame
    ``pd.read_parquet`` gives (``tests/test_runner.py``)."""
    import pyarrow.parquet as pq
    with pq.ParquetFile(path) as f:
        return f.read(columns=columns, use_threads=False)


def run_records(study, point: int, replication: int, key: str, columns: list[str] | None = None):
    """A finished run's records from its run file (an Arrow table), its ``point`` and ``replication`` those of
    the current plan: a run reused after the ``[compare]`` grid changed keeps in its file the grid point it
    was written for (:func:`sim.runner.retag`)."""
    import pyarrow as pa
    table = read_run_file(study.out / "runs" / f"{key}.parquet", columns)
    for name, value in (("point", point), ("replication", replication)):
        k = table.schema.get_field_index(name)
        if k >= 0 and table.num_rows and table.column(k)[0].as_py() != value:
            table = table.set_column(k, name, pa.array(np.full(table.num_rows, value, dtype=np.int32)))
    return table


def tagged(records: pd.DataFrame, point: int, replication: int) -> pd.DataFrame:
    """A run's records with its grid point and replication as columns: what its run file holds."""
    return records.assign(point=np.int32(point), replication=np.int32(replication))


def run_table(frame: pd.DataFrame):
    """A run's records or 429 log as an Arrow table, converted on this thread (pyarrow's default starts a pool
    of threads per frame of more than a few thousand cells, which with one worker per core only competes with
    the other workers)."""
    import pyarrow as pa
    return pa.Table.from_pandas(frame, preserve_index=False, nthreads=1)


def write_run_file(frame: pd.DataFrame, path: Path) -> None:
    """Write a run's records or 429 log: the bytes ``frame.to_parquet(path, index=False)`` writes."""
    import pyarrow.parquet as pq
    pq.write_table(run_table(frame), path)


def load_records(study, point: int | None = None, replication: int | None = None,
                 columns: list[str] | None = None) -> pd.DataFrame:
    """Request records of a study, optionally of one grid point and/or replication and only some columns."""
    summary = study.summary
    if not len(summary):
        return pd.DataFrame()
    chosen = np.ones(len(summary), dtype=bool)
    if point is not None:
        chosen &= summary["point"].to_numpy() == point
    if replication is not None:
        chosen &= summary["replication"].to_numpy() == replication
    keys = zip(*(summary[c].to_numpy()[chosen].tolist() for c in ("point", "replication", "key")))
    frames = []
    for p, rep, key in keys:
        if (p, rep) in study.results:
            frame = tagged(study.results[(p, rep)].records, p, rep)
            frames.append(frame if columns is None else frame[columns])
        elif study.out is not None:
            frames.append(run_records(study, p, rep, key, columns).to_pandas())
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def _run_file(study, point: int, replication: int, suffix: str) -> Path:
    """The path of a finished run's file ``runs/<key><suffix>`` (its key read from the study's summary)."""
    summary = study.summary
    key = summary.loc[(summary["point"] == point) & (summary["replication"] == replication), "key"].iloc[0]
    return study.out / "runs" / f"{key}{suffix}"


def load_refusals(study, point: int, replication: int) -> pd.DataFrame:
    if (point, replication) in study.results:
        return study.results[(point, replication)].refusals
    return read_run_file(_run_file(study, point, replication, ".refusals.parquet")).to_pandas()


def load_earlier(study, point: int, replication: int) -> pd.DataFrame | None:
    """A run's admissions its records do not show (:attr:`~sim.records.RunResult.earlier_admissions`), from
    memory or its run file; None when there were none."""
    if (point, replication) in study.results:
        return study.results[(point, replication)].earlier_admissions
    path = _run_file(study, point, replication, ".earlier.parquet")
    return read_run_file(path).to_pandas() if path.exists() else None
