"""The validation report's checks pass at short horizons (the full report: `groqsim validate`)."""
import subprocess
import sys

from sim.validation import run_checks, write_report


def test_every_validation_check_passes_short(tmp_path):
    checks = run_checks(short=True)
    assert write_report(checks, tmp_path) == []
    failed = [f"{c.name}: expected {c.expected}, measured {c.measured}" for c in checks if not c.passed]
    assert not failed, failed
    names = {c.name for c in checks}
    for required in ("Little's law L = λW", "fixed window: 2x limit across a boundary",
                     "page example: RPD reset header",
                     "Poisson gaps: exponential", "trace replays exactly", "output speed, llama-3.3-70b-versatile",
                     "ceiling, sliding_log", "pacing below the ceiling"):
        assert required in names
    assert (tmp_path / "windows_vs_bucket.png").stat().st_size > 0


def test_validate_command_prints_and_writes_report(tmp_path):
    res = subprocess.run([sys.executable, "-m", "sim", "validate", "--short", "--out", str(tmp_path)],
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr
    assert res.stdout.rstrip().endswith("checks passed")
    assert "| Little's law L = λW |" in (tmp_path / "validation.md").read_text()


def test_a_report_file_that_cannot_be_written_loses_no_result(tmp_path):
    """The checks' table is printed, the other file written, then one line names the file, exit 2."""
    (tmp_path / "windows_vs_bucket.png").mkdir()
    res = subprocess.run([sys.executable, "-m", "sim", "validate", "--short", "--quiet", "--out", str(tmp_path)],
                         capture_output=True, text=True)
    assert res.returncode == 2 and res.stdout.rstrip().endswith("checks passed"), res.stdout + res.stderr
    assert res.stderr == (f"groqsim: error: {tmp_path / 'windows_vs_bucket.png'}: cannot write (Is a directory); "
                          "the other outputs were written\n")
    assert "| Little's law L = λW |" in (tmp_path / "validation.md").read_text()


def test_validation_report_does_not_depend_on_jobs():
    """The groups run on a two-process pool come back in the report's order with the same figures."""
    from sim.validation import format_checks
    assert format_checks(run_checks(short=True, jobs=2)) == format_checks(run_checks(short=True, jobs=1))
