"""Parallel and resumable studies: identical results with 1 process, N processes or Dask."""
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from sim.runner import plan, run_study
from sim.scenario import scenario_from_dict

ROOT = Path(__file__).resolve().parents[1]


def small_scenario(**changes):
    data = {
        "scenario": {"name": "small", "duration": "5m", "seed": 9, "replications": 3},
        "org": {"tier": "free"},
        "clients": [{"name": "c", "model": "llama-3.1-8b-instant", "arrival": {"kind": "poisson", "rate": "50/min"},
                     "prompt_tokens": {"dist": "lognormal", "median": 100, "p95": 400}, "max_tokens": 64,
                     "policy": "groq-sdk"}],
        "compare": {"policy": ["no-retry", "groq-sdk", "full-jitter"]},
    }
    for key, value in changes.items():
        data[key] = {**data.get(key, {}), **value}
    return scenario_from_dict(data)


METRIC_COLUMNS = ["point", "policy", "replication", "key", "offered", "ok", "n429", "latency_p95", "throughput_rpm"]


def test_one_process_equals_a_process_pool():
    s = small_scenario()
    one = run_study(s, jobs=1, progress=False)
    pool = run_study(s, jobs=2, progress=False)
    pd.testing.assert_frame_equal(one.summary, pool.summary)
    for key in one.results:
        pd.testing.assert_frame_equal(one.results[key].records, pool.results[key].records)


def test_dask_local_cluster_equals_the_local_pool(tmp_path):
    pytest.importorskip("dask.distributed")
    s = small_scenario()
    local = run_study(s, tmp_path / "pool", jobs=2, progress=False)
    dask = run_study(s, tmp_path / "dask", dask="local", jobs=2, progress=False)
    pd.testing.assert_frame_equal(local.summary, dask.summary)
    pd.testing.assert_frame_equal(local.records(), dask.records())  # written by the Dask workers themselves


def test_run_files_read_back_as_pandas_reads_them(tmp_path):
    """The study's fast reader of run files (``ParquetFile`` on one thread) gives the frames
    ``pd.read_parquet`` gives, dtypes and all, for records, a subset of columns and the 429 log; and the
    records read back from disk equal the ones kept in memory."""
    from sim.study import load_records, load_refusals, read_run_file
    s = small_scenario()
    disk = run_study(s, tmp_path, jobs=1, progress=False)
    memory = run_study(s, jobs=1, progress=False)
    for key in disk.summary["key"]:
        for name in (f"{key}.parquet", f"{key}.refusals.parquet"):
            path = tmp_path / "runs" / name
            pd.testing.assert_frame_equal(read_run_file(path).to_pandas(), pd.read_parquet(path), check_exact=True)
        path = tmp_path / "runs" / f"{key}.parquet"
        pd.testing.assert_frame_equal(read_run_file(path, ["outcome", "latency"]).to_pandas(),
                                      pd.read_parquet(path, columns=["outcome", "latency"]), check_exact=True)
    columns = ["outcome", "latency", "attempts"]
    pd.testing.assert_frame_equal(load_records(disk, 1, columns=columns), load_records(memory, 1, columns=columns),
                                  check_exact=True, check_categorical=False)
    assert len(load_records(disk, 1, columns=columns)) == sum(len(r.records) for (p, _), r in memory.results.items()
                                                              if p == 1)
    pd.testing.assert_frame_equal(load_refusals(disk, 2, 1), memory.results[(2, 1)].refusals,
                                  check_exact=True, check_categorical=False)
    # the run files are the bytes pandas writes (the writer only keeps pyarrow off its thread pool)
    rec = memory.results[(2, 1)].records.assign(point=np.int32(2), replication=np.int32(1))
    rec.to_parquet(tmp_path / "pandas.parquet", index=False)
    memory.results[(2, 1)].refusals.to_parquet(tmp_path / "pandas.refusals.parquet", index=False)
    key = disk.summary.loc[(disk.summary["point"] == 2) & (disk.summary["replication"] == 1), "key"].item()
    assert (tmp_path / "runs" / f"{key}.parquet").read_bytes() == (tmp_path / "pandas.parquet").read_bytes()
    assert ((tmp_path / "runs" / f"{key}.refusals.parquet").read_bytes()
            == (tmp_path / "pandas.refusals.parquet").read_bytes())


def test_replications_of_the_longest_points_go_first_once_replication_0_has_measured_them():
    """LongestFirst: replication 0 of every point first, in plan order; then the other replications by the
    events their point's replication 0 took, most first; a point not measured yet counts as the longest so
    far; the order is recomputed only when a run has finished."""
    from sim.runner import LongestFirst
    jobs = plan(small_scenario())  # 3 points x 3 replications, point-major
    assert [(j.point_index, j.replication) for j in jobs][:4] == [(0, 0), (0, 1), (0, 2), (1, 0)]
    rows = {}
    order = LongestFirst(jobs, rows)
    todo = list(range(len(jobs)))
    first = order(todo)
    assert [(jobs[n].point_index, jobs[n].replication) for n in first] == [
        (0, 0), (1, 0), (2, 0), (0, 1), (0, 2), (1, 1), (1, 2), (2, 1), (2, 2)]
    assert order(first) is first  # nothing new: the same order, not sorted again
    rows["z"] = {"point": 1, "replication": 2, "events": 7}
    assert order(first) is first  # no replication 0 among the new rows: nothing learnt, not sorted again
    rows["a"] = {"point": 0, "replication": 0, "events": 10}
    rows["b"] = {"point": 2, "replication": 0, "events": 500}
    rows["c"] = {"point": 2, "replication": 1, "events": 10_000}  # only replication 0 measures a point
    rest = order([n for n in first if jobs[n].replication > 0])
    # point 1 not measured: as long as the longest so far (point 2's 500); ties keep the order they were in
    assert [(jobs[n].point_index, jobs[n].replication) for n in rest] == [
        (1, 1), (1, 2), (2, 1), (2, 2), (0, 1), (0, 2)]
    rows["d"] = {"point": 1, "replication": 0, "events": 100}
    assert [(jobs[n].point_index, jobs[n].replication) for n in order(rest)] == [
        (2, 1), (2, 2), (1, 1), (1, 2), (0, 1), (0, 2)]
    # resumed: the rows already there when the order is first asked for count too
    resumed = LongestFirst(jobs, {"r": {"point": 2, "replication": 0, "events": 500},
                                  "s": {"point": 0, "replication": 0, "events": 50}})
    todo = [n for n in range(len(jobs)) if (jobs[n].point_index, jobs[n].replication) not in ((2, 0), (0, 0))]
    assert [(jobs[n].point_index, jobs[n].replication) for n in resumed(todo)] == [
        (1, 0), (1, 1), (1, 2), (2, 1), (2, 2), (0, 1), (0, 2)]


def test_records_and_refusals_of_a_point_or_replication_from_memory_or_disk(tmp_path):
    """``study.records(point, replication)`` and ``load_refusals``: exactly the runs asked for (a point, a
    replication, both, or all), tagged with their point and replication, the same from memory as from the run
    files; a point the study does not have is an error (and an empty frame for the figures' own reading)."""
    from sim.study import load_records, load_refusals
    s = small_scenario()
    memory = run_study(s, jobs=1, progress=False)
    disk = run_study(s, str(tmp_path), jobs=1, progress=False)  # a string is a directory too
    for study in (memory, disk):
        for point, rep in ((1, 2), (None, 1), (2, None), (None, None)):
            got = study.records(point, rep)
            runs = [(p, r) for (p, r) in sorted(memory.results) if point in (None, p) and rep in (None, r)]
            assert len(got) == sum(len(memory.results[run].records) for run in runs)
            assert sorted(set(zip(got["point"], got["replication"]))) == runs
            first = got[(got["point"] == runs[0][0]) & (got["replication"] == runs[0][1])]
            assert first["latency"].tolist() == memory.results[runs[0]].records["latency"].tolist()
        # (named as the argument is: records(point=7) would be a TypeError)
        with pytest.raises(ValueError, match=r"records\(point_index=7\): no such point in this study \(allowed: 0, 1, "
                                             r"2\)"):
            study.records(7)
        with pytest.raises(ValueError, match=r"^label\(7\): no such point in this study \(allowed: 0, 1, 2\)$"):
            study.label(7)  # (a pandas IndexError)
        assert load_records(study, 7).empty  # (what the figures of an interrupted study read for a missing run)
        pd.testing.assert_frame_equal(load_refusals(study, 2, 1), memory.results[(2, 1)].refusals,
                                      check_exact=True, check_categorical=False)
    assert list(load_records(memory, 0, 0, columns=["latency", "outcome"]).columns) == ["latency", "outcome"]


def test_a_study_keeps_records_in_memory_only_without_a_directory_or_when_asked(tmp_path, monkeypatch):
    """Written to a directory, a study holds no records in memory (its figures are drawn by workers, from
    the files) unless ``keep_results``; held in memory, it writes nothing anywhere."""
    monkeypatch.chdir(tmp_path)
    s = small_scenario()
    memory = run_study(s, jobs=1, progress=False)
    assert len(memory.results) == 9 and memory.out is None and list(tmp_path.iterdir()) == []
    disk = run_study(s, tmp_path / "a", jobs=1, progress=False)
    assert disk.results == {} and len(list((tmp_path / "a" / "runs").glob("*.parquet"))) == 18
    kept = run_study(s, tmp_path / "b", jobs=1, progress=False, keep_results=True)
    assert sorted(kept.results) == sorted(memory.results)
    pd.testing.assert_frame_equal(kept.results[(1, 1)].records, memory.results[(1, 1)].records)
    dropped = run_study(s, jobs=1, progress=False, keep_results=False)  # neither kept nor written: no records
    assert dropped.results == {} and len(dropped.summary) == 9 and dropped.records().empty


def test_the_first_replication_callback_comes_once_replication_0_of_every_point_is_done(tmp_path):
    """Replication 0 of every point runs first, so ``on_first_replication`` comes after exactly those runs
    (3 of 9 here), once, with the study so far (incomplete); a resumed study whose replication 0 is already
    done gets it before any new run."""
    s = small_scenario()
    seen = []
    rows = []
    study = run_study(s, tmp_path, jobs=1, progress=False, on_row=rows.append,
                      on_first_replication=lambda so_far: seen.append((len(rows), so_far)))
    assert len(seen) == 1 and study.complete
    done, so_far = seen[0]
    assert done == 3 and not so_far.complete
    assert so_far.summary["replication"].tolist() == [0, 0, 0] and so_far.summary["point"].tolist() == [0, 1, 2]
    assert so_far.comparison["point"].tolist() == [0, 1, 2]
    # resumed: replication 0 done by a one-replication study of the same points (same keys)
    one = small_scenario(scenario={"replications": 1})
    out = tmp_path / "resumed"
    run_study(one, out, jobs=1, progress=False)
    seen.clear()
    rows.clear()
    run_study(s, out, jobs=1, progress=False, on_row=rows.append,
              on_first_replication=lambda so_far: seen.append((len(rows), so_far)))
    assert [done for done, _ in seen] == [0]


def test_requests_file_holds_every_record_and_dictionary_encodes_only_the_columns_with_few_values(tmp_path):
    """requests.parquet reads back as every run's records in summary order (categories as strings); its
    outcome, client and count columns are dictionary-encoded, its times (nearly all distinct) are not."""
    import pyarrow.parquet as pq

    from sim.report import write_requests
    from sim.study import load_records
    study = run_study(small_scenario(), tmp_path / "study", jobs=1, progress=False)
    write_requests(study, tmp_path)
    back = pd.read_parquet(tmp_path / "requests.parquet")
    # plain strings: a categorical's categories would differ from run to run in a reader's hands
    assert not any(isinstance(back[c].dtype, pd.CategoricalDtype) for c in ("client", "model", "outcome"))
    assert pq.read_schema(tmp_path / "requests.parquet").field("outcome").type == "string"
    expected = load_records(study)
    for column in ("client", "model", "outcome", "refused_by"):
        expected[column] = expected[column].astype(str).astype(back[column].dtype)
    pd.testing.assert_frame_equal(back, expected, check_exact=True)
    meta = pq.ParquetFile(tmp_path / "requests.parquet").metadata.row_group(0)
    encodings = {meta.column(i).path_in_schema: meta.column(i).encodings for i in range(meta.num_columns)}
    assert all(any("DICTIONARY" in e for e in encodings[c]) for c in ("outcome", "client", "attempts", "point"))
    assert not any(any("DICTIONARY" in e for e in encodings[c]) for c in ("created", "finished", "latency"))


def test_the_scenarios_run_settings_choose_the_workers_and_the_cluster(tmp_path, monkeypatch):
    """``[run] jobs`` and ``dask`` apply when the call does not say (the call's own values win); a pool handed
    in is used as it is, no other started."""
    import sim.runner as runner
    started, clusters = [], []

    class Recorded(runner.Pool):
        def __init__(self, jobs=None):
            started.append(jobs)
            super().__init__(1)  # run here: the test looks only at what was asked for

    def on_dask(address, scenario, calls, collect, workers, flag, ready, say=True):
        clusters.append((address, workers, len(calls), flag.rsplit(" ", 1)[-1]))  # who asked: an error names it
        ready()
        for call in calls:
            collect(*runner.execute(scenario, *call))

    monkeypatch.setattr(runner, "Pool", Recorded)
    monkeypatch.setattr(runner, "_on_dask", on_dask)
    s = small_scenario(run={"jobs": 3})
    run_study(s, progress=False)
    run_study(s, jobs=2, progress=False)
    assert started == [3, 2]
    with runner.Pool(1) as mine:
        run_study(s, progress=False, pool=mine)
    assert started == [3, 2, 1]  # only the test's own pool
    study = run_study(small_scenario(run={"jobs": 3, "dask": "tcp://127.0.0.1:1"}), tmp_path, progress=False)
    assert clusters == [("tcp://127.0.0.1:1", 3, 9, "run.dask")] and len(study.summary) == 9 and started == [3, 2, 1]
    run_study(small_scenario(run={"dask": "tcp://127.0.0.1:1"}), tmp_path / "b", dask="local", jobs=2,
              progress=False)
    assert clusters[-1] == ("local", 2, 9, "--dask")


def test_an_interrupted_study_keeps_what_finished_and_says_it_is_incomplete(tmp_path, monkeypatch):
    """Ctrl-C (here during the fourth run, after its files were written, as a worker finishes while the
    parent is interrupted): the study comes back incomplete with every run that finished, including the
    one whose row never reached the parent (read back from its files); held in memory, with what was
    collected; interrupted before any run, empty."""
    import sim.runner as runner
    real = runner.execute
    calls = []

    def interrupted_at(n, after_files):
        def execute(*args):
            calls.append(args[1].key)
            if len(calls) == n:
                if after_files:
                    real(*args)
                raise KeyboardInterrupt
            return real(*args)
        return execute

    s = small_scenario()
    monkeypatch.setattr(runner, "execute", interrupted_at(4, True))
    disk = run_study(s, tmp_path, jobs=1, progress=False)
    assert not disk.complete and sorted(disk.summary["key"]) == sorted(calls)
    assert sorted(zip(disk.summary["replication"], disk.summary["point"])) == [(0, 0), (0, 1), (0, 2), (1, 0)]
    calls.clear()
    monkeypatch.setattr(runner, "execute", interrupted_at(3, False))
    memory = run_study(s, jobs=1, progress=False)
    assert not memory.complete and len(memory.summary) == 2 and sorted(memory.results) == [(0, 0), (1, 0)]
    calls.clear()
    monkeypatch.setattr(runner, "execute", interrupted_at(1, False))
    nothing = run_study(s, jobs=1, progress=False)
    assert not nothing.complete and nothing.summary.empty and nothing.comparison.empty


def test_the_output_stage_in_this_process_writes_and_lists_every_file(tmp_path):
    """``write_outputs`` without workers: the two tables, requests.parquet (complete and readable, from the
    run files or from memory alike) and the four figures, each listed once; a figure already started
    (``early``) is not drawn again and its files are listed in its place."""
    from concurrent.futures import Future

    from sim.report import plot_utilisation, write_outputs
    s = small_scenario()
    disk = run_study(s, tmp_path / "study", jobs=1, progress=False)
    memory = run_study(s, jobs=1, progress=False)
    figures = ["utilisation_over_time.png", "latency_cdf.png", "throughput_over_time.png",
               "attempts_per_success.png"]
    for name, study in (("disk", disk), ("memory", memory)):
        out = tmp_path / name
        files = write_outputs(study, out)
        assert [f.name for f in files] == ["summary.csv", "comparison.csv", "requests.parquet", *figures]
        assert all(f.parent == out and f.stat().st_size > 0 for f in files)
        summary, comparison = pd.read_csv(out / "summary.csv"), pd.read_csv(out / "comparison.csv")
        assert list(summary.columns) == list(study.summary.columns)  # no index column
        assert list(comparison.columns) == list(study.comparison.columns)
        columns = ["point", "replication", "key", "ok", "latency_p95"]
        pd.testing.assert_frame_equal(summary[columns], study.summary[columns])
        assert comparison["point"].tolist() == [0, 1, 2]
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "disk" / "requests.parquet"),
                                  pd.read_parquet(tmp_path / "memory" / "requests.parquet"), check_exact=True)
    assert len(pd.read_parquet(tmp_path / "disk" / "requests.parquet")) == sum(
        len(r.records) for r in memory.results.values())
    drawn = Future()
    drawn.set_result(([tmp_path / "early" / "drawn-before.png"], None))  # as sim.errors.writing returns
    (tmp_path / "early").mkdir()  # the command line makes the directory first
    files = write_outputs(disk, tmp_path / "early", early={plot_utilisation: drawn})
    assert [f.name for f in files] == ["summary.csv", "comparison.csv", "requests.parquet", "drawn-before.png",
                                       *figures[1:]]  # in its place among the figures
    assert not (tmp_path / "early" / "utilisation_over_time.png").exists()


def test_seeds_common_within_a_replication_independent_across():
    s = small_scenario()
    study = run_study(s, jobs=1, progress=False)
    created = {k: r.records["created"].to_numpy() for k, r in study.results.items()}
    assert (created[(0, 0)] == created[(1, 0)]).all()  # same traffic for every policy of replication 0
    assert len(created[(0, 0)]) != len(created[(0, 1)]) or (created[(0, 0)] != created[(0, 1)]).any()


def test_resume_skips_finished_runs_and_reruns_only_changed_points(tmp_path):
    s = small_scenario()
    first = run_study(s, tmp_path, jobs=1, progress=False)
    files = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "runs").glob("*.json")}
    assert len(files) == 9 and first.reused == 0
    again = run_study(s, tmp_path, jobs=1, progress=False)
    pd.testing.assert_frame_equal(first.summary, again.summary)
    assert {p.name: p.stat().st_mtime_ns for p in (tmp_path / "runs").glob("*.json")} == files
    assert again.reused == 9
    changed = small_scenario(compare={"policy": ["no-retry", "groq-sdk", "retry-after"]})
    done = []
    assert run_study(changed, tmp_path, jobs=1, progress=False, on_row=done.append).reused == 6
    assert {row["policy"] for row in done} == {"retry-after"} and len(done) == 3
    fresh = []
    assert run_study(changed, tmp_path, jobs=1, progress=False, resume=False, on_row=fresh.append).reused == 0
    assert len(fresh) == 9


def test_runs_finished_by_other_code_are_run_again(tmp_path, monkeypatch):
    """The version number stayed 0.4.0 across fixes that changed results (a success answered after the run's
    end): runs are keyed by the package's code too, so a resume never mixes in runs other code computed."""
    import sim.runner
    s = small_scenario()
    assert run_study(s, tmp_path, jobs=1, progress=False).reused == 0
    assert run_study(s, tmp_path, jobs=1, progress=False).reused == 9
    monkeypatch.setattr(sim.runner, "code_fingerprint", lambda: "other code")
    assert run_study(s, tmp_path, jobs=1, progress=False).reused == 0


def test_the_code_fingerprint_follows_the_packages_files(tmp_path):
    """Every .py and .csv file's path and bytes count; caches (__pycache__) and other files do not."""
    from sim.runner import code_fingerprint, files_fingerprint
    (tmp_path / "data").mkdir()
    (tmp_path / "engine.py").write_text("x = 1\n")
    (tmp_path / "data" / "limits.csv").write_text("a,b\n")
    first = files_fingerprint(tmp_path)
    (tmp_path / "__pycache__").mkdir()
    (tmp_path / "__pycache__" / "engine.cpython-311.py").write_text("cache")
    (tmp_path / "notes.txt").write_text("not code")
    assert files_fingerprint(tmp_path) == first
    (tmp_path / "data" / "limits.csv").write_text("a,b\n1,2\n")
    second = files_fingerprint(tmp_path)
    assert second != first
    (tmp_path / "engine.py").rename(tmp_path / "kernel.py")  # (the same bytes under another name)
    assert files_fingerprint(tmp_path) not in (first, second)
    assert len(code_fingerprint()) == 16 and code_fingerprint() == code_fingerprint()


def test_a_resumed_command_says_how_many_runs_it_read_back(tmp_path, capsys):
    from sim.cli import main
    path = tmp_path / "s.toml"
    text = ("[scenario]\nduration = '2m'\nseed = 4\nreplications = {reps}\n[org]\ntier = 'developer'\n"
            "[[clients]]\nname = 'c'\nmodel = 'openai/gpt-oss-20b'\n"
            "arrival = {{ kind = 'poisson', rate = '20/min' }}\nprompt_tokens = 50\nmax_tokens = 20\n"
            "[compare]\npolicy = ['no-retry', 'groq-sdk']\n")
    cmd = ["run", str(path), "--out", str(tmp_path / "out"), "--jobs", "1", "--format", "csv"]
    path.write_text(text.format(reps=2))
    assert main(cmd) == 0
    assert "groqsim: resumed" not in capsys.readouterr().err
    path.write_text(text.format(reps=3))
    assert main(cmd) == 0
    err = capsys.readouterr().err
    assert f"groqsim: resumed: 4 of 6 run(s) were already finished in {tmp_path / 'out' / 'runs'}" in err
    assert main([*cmd, "--quiet"]) == 0  # all 6 read back, and --quiet does not say it
    assert "groqsim: resumed" not in capsys.readouterr().err
    assert main([*cmd, "--fresh"]) == 0
    assert "groqsim: resumed" not in capsys.readouterr().err


def test_keys_depend_on_configuration_not_on_names():
    a = plan(small_scenario())
    b = plan(small_scenario(scenario={"name": "renamed", "duration": "5m", "seed": 9, "replications": 3}))
    c = plan(small_scenario(scenario={"duration": "5m", "seed": 10, "replications": 3}))
    assert [j.key for j in a] == [j.key for j in b]
    assert not set(j.key for j in a) & set(j.key for j in c)


def test_interrupted_sweep_resumes_to_the_same_result(tmp_path):
    scenario = tmp_path / "s.toml"
    scenario.write_text(
        "[scenario]\nduration = '20m'\nseed = 4\nreplications = 4\n[org]\ntier = 'free'\n"
        "[[clients]]\nname = 'c'\nmodel = 'llama-3.1-8b-instant'\narrival = { kind = 'poisson', rate = '200/min' }\n"
        "prompt_tokens = 50\nmax_tokens = 20\npolicy = 'groq-sdk'\n"
        "[compare]\npolicy = ['no-retry', 'groq-sdk', 'full-jitter', 'retry-after', 'fixed']\n")
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "sim", "run", str(scenario), "--out", str(out), "--jobs", "1", "--quiet",
           "--format", "csv"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    runs = out / "runs"
    deadline = time.time() + 60
    while time.time() < deadline and len(list(runs.glob("*.json"))) < 3:
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    finished = len(list(runs.glob("*.json")))
    assert proc.returncode == 130 and 3 <= finished < 20, (proc.returncode, finished, err)
    assert "interrupted" in err
    resumed = subprocess.run(cmd, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    assert len(list(runs.glob("*.json"))) == 20
    reference = subprocess.run(cmd[:6] + [str(tmp_path / "ref")] + cmd[7:], capture_output=True, text=True)
    assert resumed.stdout == reference.stdout
    pd.testing.assert_frame_equal(pd.read_csv(out / "summary.csv"),
                                  pd.read_csv(tmp_path / "ref" / "summary.csv"))


def _rerun(scenario_path, out, text) -> list[dict]:
    """Write the scenario, run it in ``out`` (resuming) and return the rows that were actually simulated."""
    from sim.scenario import load_scenario
    scenario_path.write_text(text)
    done = []
    run_study(load_scenario(scenario_path), out, jobs=1, progress=False, on_row=done.append)
    return done


def test_resume_reruns_the_runs_whose_trace_changed_by_content(tmp_path):
    trace = tmp_path / "trace.csv"
    trace.write_text("timestamp,prompt_tokens,max_tokens\n" + "".join(f"{k * 3},100,50\n" for k in range(40)))
    text = ("[scenario]\nduration = '2m'\nreplications = 2\n[[clients]]\nname = 'r'\nmodel = 'llama-3.1-8b-instant'\n"
            "arrival = { kind = 'trace', file = 'trace.csv' }\n[compare]\nload = [1, 2]\n")
    path, out = tmp_path / "s.toml", tmp_path / "out"
    assert len(_rerun(path, out, text)) == 4
    trace.write_text(trace.read_text())  # touched, same bytes: nothing to redo
    assert _rerun(path, out, text) == []
    trace.write_text(trace.read_text().replace("\n9,100,50\n", "\n9,9000,50\n"))  # one request larger
    redone = _rerun(path, out, text)
    assert len(redone) == 4  # every run replays the trace
    assert _rerun(path, out, text) == []


def test_resume_reruns_only_the_tier_whose_limits_changed(tmp_path):
    text = ("[scenario]\nduration = '2m'\nreplications = 2\n[tiers.mine]\nbase = 'free'\n"
            "[tiers.mine.overrides.'llama-3.1-8b-instant']\nrpm = {rpm}\n"
            "[[clients]]\nname = 'c'\nmodel = 'llama-3.1-8b-instant'\n"
            "arrival = {{ kind = 'poisson', rate = '40/min' }}\n"
            "[compare]\ntier = ['free', 'mine']\npolicy = ['no-retry', 'groq-sdk']\n")
    path, out = tmp_path / "s.toml", tmp_path / "out"
    assert len(_rerun(path, out, text.format(rpm=20))) == 8
    redone = _rerun(path, out, text.format(rpm=10))
    assert len(redone) == 4 and {r["tier"] for r in redone} == {"mine"}


def test_resume_reruns_only_the_model_whose_service_figures_changed(tmp_path):
    text = ("[scenario]\nduration = '2m'\n[service.'llama-3.1-8b-instant']\noutput_tps = {tps}\n"
            "[[clients]]\nname = 'c'\nmodel = 'llama-3.1-8b-instant'\n"
            "arrival = {{ kind = 'poisson', rate = '20/min' }}\n"
            "[compare]\nmodel = ['llama-3.1-8b-instant', 'llama-3.3-70b-versatile']\n")
    path, out = tmp_path / "s.toml", tmp_path / "out"
    assert len(_rerun(path, out, text.format(tps=800))) == 2
    redone = _rerun(path, out, text.format(tps=400))
    assert [r["model"] for r in redone] == ["llama-3.1-8b-instant"]


def test_resume_reruns_runs_whose_policy_or_accounting_changed(tmp_path):
    text = ("[scenario]\nduration = '2m'\n[org.accounting]\ncharge = '{charge}'\n"
            "[policies.mine]\nextends = 'groq-sdk'\n"
            "max_attempts = {attempts}\n[[clients]]\nname = 'c'\nmodel = 'llama-3.1-8b-instant'\n"
            "arrival = {{ kind = 'poisson', rate = '20/min' }}\n[compare]\npolicy = ['no-retry', 'mine']\n")
    path, out = tmp_path / "s.toml", tmp_path / "out"
    assert len(_rerun(path, out, text.format(charge="max_tokens", attempts=3))) == 2
    assert [r["policy"] for r in _rerun(path, out, text.format(charge="max_tokens", attempts=5))] == ["mine"]
    assert len(_rerun(path, out, text.format(charge="actual", attempts=5))) == 2


def _stopped_after_two_runs(sig, scenario, out, *args, group: bool = False) -> tuple[int, str]:
    """``groqsim run SCENARIO --out OUT ARGS`` in a child process, sent ``sig`` once two runs are kept (with
    ``group``, to its whole process group, twice, as a terminal's Ctrl-C and ``timeout`` reach the workers
    too): (exit status, stderr)."""
    proc = subprocess.Popen([sys.executable, "-m", "sim", "run", str(scenario), "--out", str(out), *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
                            start_new_session=group)
    deadline = time.time() + 90
    while time.time() < deadline and len(list((out / "runs").glob("*.json"))) < 2:
        time.sleep(0.05)
    if group:
        os.killpg(proc.pid, sig)
        time.sleep(0.05)
        os.killpg(proc.pid, sig)
    else:
        proc.send_signal(sig)
    try:
        _, err = proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL) if group else proc.kill()
        raise
    return proc.returncode, err


def test_ctrl_c_during_dask_local_is_one_line(tmp_path):
    pytest.importorskip("distributed")
    scenario = tmp_path / "s.toml"
    scenario.write_text(
        "[scenario]\nduration = '3h'\nreplications = 40\n[[clients]]\nname = 'c'\nmodel = 'llama-3.1-8b-instant'\n"
        "arrival = { kind = 'poisson', rate = '300/min' }\nprompt_tokens = 50\nmax_tokens = 20\npolicy = 'groq-sdk'\n"
        "[compare]\npolicy = ['no-retry', 'groq-sdk', 'full-jitter']\n")
    out = tmp_path / "out"
    code, err = _stopped_after_two_runs(signal.SIGINT, scenario, out, "--dask", "local", "--jobs", "2", "--quiet")
    assert code == 130, err
    assert err.strip().splitlines() == [line for line in err.strip().splitlines() if line.startswith("groqsim: ")], err
    assert "Traceback" not in err and "interrupted" in err


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_to_the_whole_process_group_twice_stops_the_sweep_cleanly(tmp_path, sig):
    """A terminal's Ctrl-C and ``timeout`` signal every process of the group, the pool's workers included,
    and ``timeout`` twice: exit 130 with one line, no traceback, and no hang (a second KeyboardInterrupt inside
    the executor's shutdown had left the command waiting at exit for ever, 2 times in 12)."""
    scenario = tmp_path / "s.toml"
    scenario.write_text(
        "[scenario]\nduration = '3h'\nreplications = 20\n[[clients]]\nname = 'c'\nmodel = 'llama-3.1-8b-instant'\n"
        "arrival = { kind = 'poisson', rate = '300/min' }\nprompt_tokens = 50\nmax_tokens = 20\n"
        "[compare]\npolicy = ['no-retry', 'groq-sdk']\n")
    code, err = _stopped_after_two_runs(sig, scenario, tmp_path / "out", "--jobs", "2", group=True)
    assert code == 130, err
    assert "Traceback" not in err and "Exception" not in err, err
    kept = len(list((tmp_path / "out" / "runs").glob("*.json")))
    # the last line says what was kept, whether the second signal came before the partial table, after it or
    # while the outputs were written
    assert re.fullmatch(rf"groqsim: interrupted( while writing the outputs)?: {kept} run\(s\) finished and kept in "
                        rf"{re.escape(str(tmp_path / 'out'))}; run the same command again to resume",
                        err.strip().splitlines()[-1]), err
    if "alternative(s) x" in err:  # the table's header does not claim the replications not run
        assert f"alternative(s) x at most 20 replication(s) (interrupted: {kept} of 40 runs finished" in err, err


def test_cli_outputs_are_identical_with_one_or_two_jobs(tmp_path):
    """The output stage written by the pool's workers (records, plots, the per-group table) is the in-process
    one, byte for byte in its tables; and the whole output set is the same."""
    from sim.cli import main
    scenario = tmp_path / "s.toml"
    scenario.write_text(
        "[scenario]\nduration = '5m'\nseed = 2\nreplications = 3\n[org]\ntier = 'free'\n"
        "[[clients]]\nname = 'c'\nmodel = 'llama-3.1-8b-instant'\narrival = { kind = 'bursty', rate = '45/min' }\n"
        "prompt_tokens = 50\nmax_tokens = 20\n"
        "[[clients]]\nname = 'd'\nmodel = 'llama-3.1-8b-instant'\narrival = { kind = 'poisson', rate = '5/min' }\n"
        "prompt_tokens = 500\nmax_tokens = 50\n[compare]\npolicy = ['no-retry', 'groq-sdk', 'retry-after']\n")
    outs = {}
    for jobs in ("1", "2"):
        out = tmp_path / f"out{jobs}"
        assert main(["run", str(scenario), "--out", str(out), "--jobs", jobs, "--quiet", "--format", "csv"]) == 0
        outs[jobs] = out
    one, two = outs["1"], outs["2"]
    assert sorted(p.name for p in one.iterdir()) == sorted(p.name for p in two.iterdir())
    assert (one / "by_client.csv").is_file()
    for name in ("summary.csv", "comparison.csv", "by_client.csv"):
        assert (one / name).read_bytes() == (two / name).read_bytes()
    pd.testing.assert_frame_equal(pd.read_parquet(one / "requests.parquet"), pd.read_parquet(two / "requests.parquet"))
    # the figures of replication 0 drawn while the other replications run with --jobs 2, the others after
    # them: the same images as drawn here
    pngs = sorted(p.name for p in one.glob("*.png"))
    assert len(pngs) == 4 and all((one / name).read_bytes() == (two / name).read_bytes() for name in pngs)


def _grid_scenario(path: Path, compare: str) -> Path:
    path.write_text(
        "[scenario]\nname = 'grid'\nduration = '5m'\nseed = 3\nreplications = 2\n[org]\ntier = 'free'\n"
        "[[clients]]\nname = 'c'\nmodel = 'openai/gpt-oss-20b'\narrival = { kind = 'poisson', rate = '40/min' }\n"
        f"prompt_tokens = 300\nmax_tokens = 200\n[compare]\n{compare}\n")
    return path


def test_a_changed_grid_reuses_finished_runs_where_the_new_grid_puts_them(tmp_path):
    """Runs are reused by what they compute; their grid point, axis values and records' ``point`` are the
    current grid's.  Values reordered, one added and a one-valued axis added: the outputs in the reused
    directory are those of a fresh one, byte for byte (the utilisation figure reads each point's limits)."""
    from sim.cli import main
    first = _grid_scenario(tmp_path / "a.toml", "tier = ['free', 'developer']\npolicy = ['no-retry']")
    reused, fresh = tmp_path / "reused", tmp_path / "fresh"
    assert main(["run", str(first), "--out", str(reused), "--jobs", "1", "--quiet", "--format", "csv"]) == 0
    then = {p.name: p.stat().st_mtime_ns for p in (reused / "runs").glob("*.json")}
    second = _grid_scenario(tmp_path / "b.toml", "tier = ['developer', 'free']\npolicy = ['groq-sdk', 'no-retry']\n"
                                                 "limiter = ['token_bucket']")
    for out in (reused, fresh):
        assert main(["run", str(second), "--out", str(out), "--jobs", "1", "--quiet", "--format", "csv"]) == 0
    now = {p.name: p.stat().st_mtime_ns for p in (reused / "runs").glob("*.json")}
    assert len(now) == 8 and all(now[name] == t for name, t in then.items())  # 4 reused, 4 new
    for name in ("summary.csv", "comparison.csv", "utilisation_over_time.png", "throughput_over_time.png"):
        assert (reused / name).read_bytes() == (fresh / name).read_bytes(), name
    pd.testing.assert_frame_equal(pd.read_parquet(reused / "requests.parquet"),
                                  pd.read_parquet(fresh / "requests.parquet"))
    summary = pd.read_csv(reused / "summary.csv")
    assert summary[["point", "tier", "policy", "limiter"]].drop_duplicates().values.tolist() == [
        [0, "developer", "groq-sdk", "token_bucket"], [1, "developer", "no-retry", "token_bucket"],
        [2, "free", "groq-sdk", "token_bucket"], [3, "free", "no-retry", "token_bucket"]]


def test_a_run_whose_files_cannot_be_read_runs_again(tmp_path):
    s = small_scenario()
    first = run_study(s, tmp_path, jobs=1, progress=False)
    keys = first.summary["key"].tolist()
    (tmp_path / "runs" / f"{keys[0]}.parquet").write_bytes(b"PAR1 truncated")
    (tmp_path / "runs" / f"{keys[4]}.json").write_text("")
    (tmp_path / "runs" / f"{keys[7]}.refusals.parquet").unlink()
    again = []
    second = run_study(s, tmp_path, jobs=1, progress=False, on_row=again.append)
    assert sorted(row["key"] for row in again) == sorted([keys[0], keys[4], keys[7]])
    pd.testing.assert_frame_equal(first.summary.drop(columns="events"), second.summary.drop(columns="events"))
    assert len(second.records()) == len(first.records())


def test_requests_parquet_is_replaced_only_when_whole(tmp_path, monkeypatch):
    """Stopped while writing ``requests.parquet``, a command leaves the earlier file as it was and no partial."""
    from sim import report
    study = run_study(small_scenario(), tmp_path, jobs=1, progress=False)
    report.write_requests(study, tmp_path)
    before = (tmp_path / "requests.parquet").read_bytes()
    calls = []
    real = report.run_records

    def stop_on_the_third(*args, **kw):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*args, **kw)
    monkeypatch.setattr(report, "run_records", stop_on_the_third)
    with pytest.raises(KeyboardInterrupt):
        report.write_requests(study, tmp_path)
    assert (tmp_path / "requests.parquet").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_file()) == ["requests.parquet"]
    monkeypatch.setattr(report, "run_records", real)
    (tmp_path / "requests.parquet").unlink()
    (tmp_path / "requests.parquet").mkdir()  # the rename fails: no partial file is left either
    with pytest.raises(OSError):
        report.write_requests(study, tmp_path)
    assert not (tmp_path / "requests.parquet.partial").exists()


def test_runs_that_is_not_a_writable_directory_is_one_line(tmp_path, capsys):
    from sim.cli import main
    scenario = _grid_scenario(tmp_path / "a.toml", "policy = ['no-retry']")
    out = tmp_path / "out"
    out.mkdir()
    (out / "runs").write_text("not a directory")
    assert main(["run", str(scenario), "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert f"--out {out}: cannot write to {out / 'runs'}" in err and "Traceback" not in err
    (out / "runs").unlink()
    (out / "runs" / "kept").mkdir(parents=True)  # --fresh removes run files, and leaves a directory alone
    assert main(["run", str(scenario), "--out", str(out), "--quiet", "--fresh", "--format", "csv"]) == 0
    assert (out / "runs" / "kept").is_dir() and len(list((out / "runs").glob("*.json"))) == 2


def test_an_earlier_studys_outputs_that_this_one_does_not_write_are_removed(tmp_path, capsys):
    """A lane scenario's tables and figure, then a plain scenario into the same directory: only the plain
    study's files remain (every file a study writes is one :data:`OUTPUT_FILES` names)."""
    from sim.cli import main
    from sim.report import MANIFEST, OUTPUT_FILES
    out = tmp_path / "out"
    lanes = ROOT / "scenarios" / "projects_noisy_neighbour.toml"
    assert main(["run", str(lanes), "--out", str(out), "--duration", "2m", "--replications", "1", "--quiet",
                 "--format", "csv", "--jobs", "1"]) == 0
    first = {p.name for p in out.iterdir() if p.is_file() and p.name != MANIFEST}
    assert {"by_project.csv", "by_lane.csv", "lanes_cost_time.png"} <= first <= set(OUTPUT_FILES)
    plain = _grid_scenario(tmp_path / "plain.toml", "policy = ['no-retry']")
    capsys.readouterr()
    assert main(["run", str(plain), "--out", str(out), "--format", "csv", "--jobs", "1"]) == 0
    second = {p.name for p in out.iterdir() if p.is_file() and p.name != MANIFEST}
    assert "by_client.csv" in first  # (two client groups)
    assert second == first - {"by_project.csv", "by_lane.csv", "by_service_tier.csv", "lanes_cost_time.png",
                              "by_client.csv"}
    assert f"removed an earlier study's {', '.join(sorted(first - second, key=OUTPUT_FILES.index))} from {out}" \
        in capsys.readouterr().err


def test_outputs_written_before_a_ctrl_c_are_listed_so_that_the_next_study_removes_them(tmp_path, monkeypatch,
                                                                                        capsys):
    """A Ctrl-C while the output files are written (here in the last of them) left the ones already written out
    of the manifest: a later study into the same directory never removed them, and a lane study's tables stayed
    beside a plain study's files as if they were its.  A file of an output's name put there before the command
    is not the command's, and is not listed."""
    import sim.report as report
    from sim.cli import main
    from sim.report import MANIFEST
    out = tmp_path / "out"
    plain = _grid_scenario(tmp_path / "plain.toml", "policy = ['no-retry']")
    assert main(["run", str(plain), "--out", str(out), "--format", "csv", "--jobs", "1", "--quiet"]) == 0
    mine = out / "batch_job_times.png"  # (a name the lane study below does not write)
    mine.write_bytes(b"the user's own")
    os.utime(mine, ns=(0, 0))

    def stopped(*args, **kw):
        raise KeyboardInterrupt
    monkeypatch.setattr(report, "client_table", stopped)  # (the last output task)
    lanes = ROOT / "scenarios" / "projects_noisy_neighbour.toml"
    assert main(["run", str(lanes), "--out", str(out), "--duration", "2m", "--replications", "1", "--quiet",
                 "--format", "csv", "--jobs", "1"]) == 130
    listed = (out / MANIFEST).read_text().split()
    assert {"by_project.csv", "by_lane.csv", "by_service_tier.csv", "lanes_cost_time.png"} <= set(listed)
    assert "batch_job_times.png" not in listed
    monkeypatch.undo()
    capsys.readouterr()
    assert main(["run", str(plain), "--out", str(out), "--format", "csv", "--jobs", "1"]) == 0
    left = {p.name for p in out.iterdir() if p.is_file()}
    assert not left & {"by_project.csv", "by_lane.csv", "by_service_tier.csv", "lanes_cost_time.png"}
    assert mine.read_bytes() == b"the user's own"


def test_two_ctrl_c_while_the_workers_write_the_outputs_end_the_command(tmp_path):
    """Ctrl-C twice (or ``timeout``, which signals the process and then its group) while a ``--jobs 2`` run's
    workers write the output files: the command printed its last line and then waited for ever at exit for
    workers no one had told to stop (the pool was closed without the signals held, and the second signal broke
    its shutdown half-way)."""
    scenario, out = ROOT / "scenarios" / "projects_noisy_neighbour.toml", tmp_path / "out"
    args = [sys.executable, "-m", "sim", "run", str(scenario), "--out", str(out), "--jobs", "2", "--replications",
            "2", "--duration", "30m"]
    subprocess.run([*args, "--quiet"], check=True, capture_output=True, cwd=ROOT, timeout=300)
    (out / "summary.csv").unlink()  # the second command has only the outputs to write
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=ROOT,
                            start_new_session=True)
    try:
        deadline = time.time() + 120
        while not (out / "summary.csv").exists() and proc.poll() is None and time.time() < deadline:
            time.sleep(0.01)
        time.sleep(0.05)
        os.killpg(proc.pid, signal.SIGINT)
        time.sleep(0.3)
        os.killpg(proc.pid, signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
    assert proc.returncode == 130, err
    assert "Traceback" not in err, err
    assert err.strip().splitlines()[-1].startswith("groqsim: interrupted while writing the outputs: 4 run(s)"), err


def test_remove_stale_goes_by_the_last_studys_list_and_writes_this_ones(tmp_path):
    from sim.report import MANIFEST, remove_stale
    for name in ("summary.csv", "by_lane.csv", "by_project.csv", "latency_cdf.png"):
        (tmp_path / name).write_text("x")
    (tmp_path / MANIFEST).write_text("summary.csv\nby_lane.csv\nlanes_cost_time.png\nlatency_cdf.png\n")
    # listed and not written now: removed (lanes_cost_time.png is listed but gone: nothing to remove)
    written = [tmp_path / "summary.csv", tmp_path / "latency_cdf.png"]
    assert remove_stale(tmp_path, written) == [tmp_path / "by_lane.csv"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [MANIFEST, "by_project.csv", "latency_cdf.png",
                                                         "summary.csv"]
    assert (tmp_path / MANIFEST).read_text() == "summary.csv\nlatency_cdf.png\n"  # in OUTPUT_FILES' order
    (tmp_path / MANIFEST).write_bytes(b"\xff\xfe by_project.csv")  # unreadable: nothing is taken as listed
    assert remove_stale(tmp_path, []) == [] and (tmp_path / "by_project.csv").exists()
    assert (tmp_path / MANIFEST).read_text() == ""


def test_an_interrupted_studys_outputs_are_listed_and_removed_by_the_next_complete_one(tmp_path):
    """An interrupted study writes its tables too but removes nothing: its files join the list (they were
    never listed, so no later study removed them, and a plain study's summary sat beside a lane study's
    by_lane.csv)."""
    from sim.report import MANIFEST, remove_stale
    for name in ("summary.csv", "by_lane.csv", "lanes_cost_time.png"):
        (tmp_path / name).write_text("x")
    (tmp_path / MANIFEST).write_text("summary.csv\nlatency_cdf.png\n")  # a complete study's, earlier
    assert remove_stale(tmp_path, [tmp_path / "summary.csv", tmp_path / "by_lane.csv",
                                   tmp_path / "lanes_cost_time.png"], remove=False) == []
    assert (tmp_path / MANIFEST).read_text() == ("summary.csv\nlatency_cdf.png\nlanes_cost_time.png\n"
                                                 "by_lane.csv\n")  # (both studies', in OUTPUT_FILES' order)
    # the next complete study, writing only its summary: the interrupted one's lane files go
    assert remove_stale(tmp_path, [tmp_path / "summary.csv"]) == [tmp_path / "lanes_cost_time.png",
                                                                  tmp_path / "by_lane.csv"]


def test_an_interrupted_run_leaves_nothing_a_later_study_mistakes_for_its_own(tmp_path, capsys, monkeypatch):
    """End to end: a lane study stopped after its runs (the study incomplete) writes its lane tables; the
    plain study run next in the same directory removes them."""
    import sim.runner
    from sim.cli import main
    out = tmp_path / "out"
    lanes = ROOT / "scenarios" / "projects_noisy_neighbour.toml"
    real = sim.runner.run_study

    def interrupted(*args, **kw):
        study = real(*args, **kw)
        study.complete = False  # as Ctrl-C leaves it: the runs done kept, the outputs written
        return study
    monkeypatch.setattr(sim.runner, "run_study", interrupted)
    assert main(["run", str(lanes), "--out", str(out), "--duration", "2m", "--replications", "1", "--quiet",
                 "--format", "csv", "--jobs", "1"]) == 130
    assert (out / "by_lane.csv").is_file()
    monkeypatch.setattr(sim.runner, "run_study", real)
    plain = _grid_scenario(tmp_path / "plain.toml", "policy = ['no-retry']")
    assert main(["run", str(plain), "--out", str(out), "--format", "csv", "--jobs", "1", "--quiet"]) == 0
    assert not (out / "by_lane.csv").exists() and not (out / "lanes_cost_time.png").exists()


def test_files_of_an_output_name_that_no_study_wrote_are_left_alone(tmp_path, capsys):
    """A directory holding someone's own by_lane.csv and by_project.csv, never a study's: a run there writes
    its files and removes nothing (they were said to be "an earlier study's" and deleted)."""
    from sim.cli import main
    from sim.report import MANIFEST
    out = tmp_path / "mine"
    out.mkdir()
    for name in ("by_lane.csv", "by_project.csv"):
        (out / name).write_text("my own table\n")
    plain = _grid_scenario(tmp_path / "plain.toml", "policy = ['no-retry']")
    assert main(["run", str(plain), "--out", str(out), "--format", "csv"]) == 0
    assert "removed an earlier study's" not in capsys.readouterr().err  # (the message: a path may hold the word)
    assert (out / "by_lane.csv").read_text() == (out / "by_project.csv").read_text() == "my own table\n"
    assert "by_lane.csv" not in (out / MANIFEST).read_text().splitlines()
    assert "summary.csv" in (out / MANIFEST).read_text().splitlines()


def test_ctrl_c_while_the_outputs_are_written_says_the_runs_are_kept(tmp_path, monkeypatch, capsys):
    from sim import report
    from sim.cli import main

    def stopped(*args, **kw):
        raise KeyboardInterrupt
    monkeypatch.setattr(report, "write_outputs", stopped)
    out = tmp_path / "out"
    scenario = _grid_scenario(tmp_path / "a.toml", "policy = ['no-retry', 'groq-sdk']")
    assert main(["run", str(scenario), "--out", str(out), "--jobs", "1", "--quiet", "--format", "csv"]) == 130
    assert capsys.readouterr().err == (f"groqsim: interrupted while writing the outputs: 4 run(s) finished and kept "
                                       f"in {out}; run the same command again to resume\n")
    assert len(list((out / "runs").glob("*.json"))) == 4


def test_the_python_api_says_what_is_wrong_with_its_arguments():
    """Plausible mistakes in a notebook get one clear message, not a KeyError, a TypeError deep inside or an
    empty result."""
    from sim.engine import simulate
    from sim.errors import ConfigError
    s = small_scenario()
    with pytest.raises(ConfigError, match=r"grid point: unknown compare axis 'polciy' \(did you mean 'policy'"):
        s.spec({"polciy": "groq-sdk"})
    for load in (-2, 0, "2x", float("nan")):
        with pytest.raises(ConfigError, match="a load multiplier is a number > 0"):
            s.spec({"load": load})
    assert s.spec(duration="10m").duration == 600.0 == s.spec(duration=600).duration
    assert s.spec(duration="10m").warmup == s.spec(duration=600.0).warmup
    for bad in (0, -5, "soon"):
        with pytest.raises(ConfigError, match="duration"):
            s.spec(duration=bad)
    with pytest.raises(TypeError, match="takes a RunSpec, got Scenario: resolve a grid point first"):
        simulate(s)
    study = run_study(s, jobs=1, progress=False, duration="1m")
    assert study.duration == 60.0 and len(study.records(1, 0)) > 0
    for point, rep in ((99, None), ("1", None), ({"policy": "groq-sdk"}, None), (None, 3)):
        with pytest.raises(ValueError, match="no such (point|replication) in this study"):
            study.records(point, rep)


def test_usage_over_time_reads_the_saved_requests_file_as_the_records_in_memory(tmp_path):
    """requests.parquet keeps strings, not categoricals: the public helpers read it as they read a study."""
    from sim import report
    s = small_scenario()
    study = run_study(s, tmp_path, jobs=1, progress=False)
    report.write_requests(study, tmp_path)
    saved = pd.read_parquet(tmp_path / "requests.parquet")
    saved = saved[(saved["point"] == 1) & (saved["replication"] == 0)]
    assert not isinstance(saved["model"].dtype, pd.CategoricalDtype)
    times, spec = np.linspace(0, 300, 7), s.spec(s.grid()[1])
    a, b = report.usage_over_time(study.records(1, 0), spec, times), report.usage_over_time(saved, spec, times)
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
    assert max(v.max() for v in a.values()) > 0.1


def test_the_files_written_are_listed_in_one_order_whatever_the_jobs(tmp_path, capsys):
    from sim.cli import main
    scenario = _grid_scenario(tmp_path / "a.toml", "policy = ['no-retry', 'groq-sdk']")
    listed = []
    for jobs in ("1", "2"):
        out = tmp_path / f"out{jobs}"
        assert main(["run", str(scenario), "--out", str(out), "--jobs", jobs, "--format", "csv"]) == 0
        wrote = [x for x in capsys.readouterr().err.splitlines() if x.startswith("wrote ")]
        listed.append([line.replace(str(out), "OUT") for line in wrote])
    assert listed[0] == listed[1] and len(listed[0]) == 1
    assert listed[0][0].startswith("wrote OUT/summary.csv, OUT/comparison.csv, OUT/requests.parquet, "
                                   "OUT/utilisation_over_time.png")


def test_sigterm_stops_a_sweep_as_ctrl_c_does(tmp_path):
    """A scheduler's SIGTERM: the finished runs are kept and counted as they are on disk, exit 130, no
    traceback (resuming them is test_interrupted_sweep_resumes_to_the_same_result's)."""
    scenario = tmp_path / "s.toml"
    scenario.write_text(
        "[scenario]\nduration = '2h'\nreplications = 30\n[[clients]]\nname = 'c'\nmodel = 'openai/gpt-oss-20b'\n"
        "arrival = { kind = 'poisson', rate = '300/min' }\nprompt_tokens = 50\nmax_tokens = 20\npolicy = 'groq-sdk'\n"
        "[compare]\npolicy = ['no-retry', 'groq-sdk']\n")
    out = tmp_path / "out"
    code, err = _stopped_after_two_runs(signal.SIGTERM, scenario, out, "--jobs", "2", "--quiet", "--format", "csv")
    assert code == 130, err
    assert "Traceback" not in err and "run the same command again to resume" in err, err
    kept = len(list((out / "runs").glob("*.json")))
    assert 2 <= kept < 60 and f"{kept} run(s) finished and kept in {out}" in err, err


def test_numpy_numbers_are_loads_and_durations_and_only_run_makes_runs(tmp_path, capsys):
    """A notebook's numpy numbers (np.arange, a comparison column) are loads and durations as Python's are;
    validate and calibrate leave no runs/ behind; a directory in the way of a run file is one line."""
    from sim.cli import main
    s = small_scenario()
    assert s.spec({"load": np.int64(2)}).load == 2.0 and s.spec({"load": np.float32(0.5)}).load == 0.5
    assert s.spec(duration=np.int64(600)).duration == 600.0
    with pytest.raises(Exception, match="a load multiplier is a number > 0"):
        s.spec({"load": np.bool_(True)})
    out = tmp_path / "cal"
    main(["calibrate", str(ROOT / "scenarios" / "logs" / "example_groq_calls.jsonl"), "--out", str(out), "--no-plots"])
    assert not (out / "runs").exists()
    scenario = _grid_scenario(tmp_path / "a.toml", "policy = ['no-retry']")
    run_out = tmp_path / "run"
    assert main(["run", str(scenario), "--out", str(run_out), "--quiet", "--format", "csv"]) == 0
    capsys.readouterr()
    key = sorted(p.stem for p in (run_out / "runs").glob("*.json"))[0]
    (run_out / "runs" / f"{key}.json").unlink()
    (run_out / "runs" / f"{key}.json").mkdir()  # the run is not done, and its summary cannot be written
    for jobs in ("1", "2"):
        assert main(["run", str(scenario), "--out", str(run_out), "--quiet", "--jobs", jobs]) == 2
        err = capsys.readouterr().err
        assert f"cannot write run {key}" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
        # --fresh would delete the runs kept (and leaves a directory in the way where it is): not advised
        assert "run the same command again to resume" in err and "--fresh" not in err


def test_fresh_removes_the_finished_run_files_and_only_those(tmp_path):
    """resume=False (``--fresh``): every file in runs/ goes before the work starts (a stale run of another
    plan too), a directory there is left alone, and every run is done again."""
    s = small_scenario(scenario={"replications": 1})
    run_study(s, tmp_path, jobs=1, progress=False)
    runs = tmp_path / "runs"
    (runs / "stale.json").write_text("{}")
    (runs / "a-folder").mkdir()
    ran = []
    run_study(s, tmp_path, jobs=1, progress=False, resume=False, on_row=ran.append)
    assert len(ran) == 3 and not (runs / "stale.json").exists() and (runs / "a-folder").is_dir()
    resumed = []
    run_study(s, tmp_path, jobs=1, progress=False, on_row=resumed.append)
    assert resumed == []  # and the runs just done are the finished ones now


def test_a_file_where_runs_go_is_one_error_before_any_run(tmp_path):
    from sim.errors import ConfigError
    (tmp_path / "runs").write_text("not a directory")
    ran = []
    with pytest.raises(ConfigError, match=r"--out .*: cannot write to .*runs"):
        run_study(small_scenario(), tmp_path, jobs=1, progress=False, on_row=ran.append)
    assert ran == []


def test_execute_makes_the_runs_directory_it_writes_to(tmp_path):
    """A run executed where no study prepared the directory (a Dask worker's own view of the storage): its
    files appear all the same."""
    from sim.runner import execute
    s = small_scenario()
    job = plan(s)[0]
    row, _ = execute(s, job, str(tmp_path / "fresh"))
    names = sorted(p.name for p in (tmp_path / "fresh" / "runs").iterdir())
    assert names == sorted(f"{job.key}{ext}" for ext in (".json", ".parquet", ".refusals.parquet"))
    assert row["key"] == job.key


def test_write_outputs_lists_the_files_it_could_not_write(tmp_path):
    """A file that cannot be written does not stop the others: its line goes to ``errors``."""
    from sim.report import write_outputs
    study = run_study(small_scenario(scenario={"replications": 1}), tmp_path, jobs=1, progress=False)
    (tmp_path / "latency_cdf.png").mkdir()  # a directory where the figure goes
    problems: list[str] = []
    files = write_outputs(study, tmp_path, errors=problems)
    assert len(problems) == 1 and "latency_cdf.png" in problems[0]
    assert tmp_path / "summary.csv" in files and tmp_path / "latency_cdf.png" not in files


def test_a_second_command_writing_the_same_out_is_refused_in_one_line(tmp_path, capsys):
    """Two commands on one --out used the same temporary names: one failed half-way. While a command holds
    the directory, another is refused (exit 2, one line, nothing written); once it is released, it runs."""
    from sim.cli import main
    from sim.runner import hold_out
    scenario = tmp_path / "s.toml"
    scenario.write_text("[scenario]\nduration = '1m'\nreplications = 1\n[[clients]]\nname = 'c'\n"
                        "model = 'llama-3.1-8b-instant'\narrival = { kind = 'poisson', rate = '10/min' }\n")
    out = tmp_path / "out"
    out.mkdir()
    with hold_out(out):
        assert main(["run", str(scenario), "--out", str(out), "--jobs", "1", "--quiet"]) == 2
        err = capsys.readouterr().err
        assert err == f"groqsim: error: --out {out}: another groqsim command is writing there now; wait for it to " \
                      "end, or choose another --out\n"
        assert list(out.iterdir()) == []
    assert main(["run", str(scenario), "--out", str(out), "--jobs", "1", "--quiet"]) == 0
    assert (out / "summary.csv").is_file()


def test_quiet_says_nothing_but_the_error_when_the_dask_scheduler_is_unreachable(tmp_path, capsys):
    from sim.cli import main
    scenario = _grid_scenario(tmp_path / "a.toml", "policy = ['no-retry']")
    code = main(["run", str(scenario), "--dask", "tcp://127.0.0.1:9", "--quiet", "--out", str(tmp_path / "out")])
    said = [line for line in capsys.readouterr().err.splitlines() if not line.startswith("groqsim: warning:")]
    assert code == 2 and len(said) == 1 and said[0].startswith("groqsim: error: --dask tcp://127.0.0.1:9: cannot"), said


def test_timed_out_admissions_are_kept_from_memory_or_disk_and_counted_in_the_utilisation(tmp_path):
    """A run whose client gives up admitted attempts by its ``timeout`` keeps those admissions (the records
    show each request's last one only) in ``<key>.earlier.parquet``, read back as the in-memory frame; a run
    with none writes no file.  The utilisation figure's use of a limit counts them, as ``util_*`` does."""
    from sim.report import usage_over_time
    from sim.study import load_earlier, load_records
    s = small_scenario(scenario={"replications": 1}, compare={"policy": ["no-retry", "slow"]},
                       policies={"slow": {"retry": "fixed", "delay": 1.0, "max_attempts": 3, "timeout": "0.2s"}})
    memory = run_study(s, jobs=1, progress=False)
    disk = run_study(s, tmp_path, jobs=1, progress=False)
    earlier = memory.results[(1, 0)].earlier_admissions
    assert len(earlier) > 10 and len(memory.results[(0, 0)].earlier_admissions) == 0
    pd.testing.assert_frame_equal(load_earlier(disk, 1, 0), earlier, check_categorical=False)
    assert load_earlier(disk, 0, 0) is None and len(list((tmp_path / "runs").glob("*.earlier.parquet"))) == 1
    spec = s.spec(memory.point(1))
    times = np.array([spec.duration])
    rec = load_records(memory, 1, 0)
    with_them, without = usage_over_time(rec, spec, times, earlier), usage_over_time(rec, spec, times)
    assert with_them["llama-3.1-8b-instant RPM"][0] > without["llama-3.1-8b-instant RPM"][0]
    # that file cut short (a kill while it was written): the run is not done, and runs again
    (path,) = (tmp_path / "runs").glob("*.earlier.parquet")
    path.write_bytes(path.read_bytes()[:100])
    again = []
    resumed = run_study(s, tmp_path, jobs=1, progress=False, on_row=again.append)
    assert [row["point"] for row in again] == [1]
    pd.testing.assert_frame_equal(load_earlier(resumed, 1, 0), earlier, check_categorical=False)


def test_an_error_only_the_run_finds_names_the_file_and_the_grid_point(monkeypatch):
    # a keyed error (the engine's closed loop that cannot advance) gets the key's line from the scenario; any
    # other the file; both the grid point, as the file may be fine at its other points
    import sim.runner as runner
    from sim.errors import ConfigError, KeyedError
    scenario = small_scenario()
    job = plan(scenario)[3]  # replication 0 of point 1, groq-sdk (replication 0 of every point first)
    for raised, said in ((ConfigError("boom"), "<scenario>: boom (at grid point 1: policy = 'groq-sdk')"),
                         (KeyedError("clients[0].arrival.think", "stuck"),
                          "<scenario>: clients[0].arrival.think: stuck (at grid point 1: policy = 'groq-sdk')")):
        def fails(*args, error=raised):
            raise error
        monkeypatch.setattr(runner, "simulate", fails)
        with pytest.raises(ConfigError) as caught:
            runner.execute(scenario, job)
        assert str(caught.value) == said and not isinstance(caught.value, KeyedError)
    alone = scenario_from_dict({"scenario": {"duration": "1m"}, "clients": [
        {"name": "c", "model": "openai/gpt-oss-20b", "arrival": {"kind": "poisson", "rate": "5/min"}}]})
    with pytest.raises(ConfigError, match=r"^<scenario>: clients\[0\]\.arrival\.think: stuck$"):  # no grid to name
        runner.execute(alone, plan(alone)[0])
