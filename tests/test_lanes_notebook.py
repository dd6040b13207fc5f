"""The lanes notebook (on-demand upgrade vs Flex vs Batch API) runs top to bottom with a short horizon and is
saved with its plots.  It lives in notebooks/lanes/, apart from the four in notebooks/ that
tests/test_notebooks.py counts and runs; this is the one test that runs it (test_notebooks.py checks that
every notebook is run by one of the two)."""
import pytest

from tests.test_notebooks import LANES, run_short

nbformat = pytest.importorskip("nbformat")


def test_lanes_notebook_has_parameters_and_saved_plots():
    book = nbformat.read(LANES, as_version=4)
    assert "parameters" in book.cells[2].metadata.get("tags", [])
    assert any(o.get("output_type") == "display_data" for c in book.cells if c.cell_type == "code"
               for o in c.get("outputs", []))


def test_lanes_notebook_runs_with_short_horizon(monkeypatch, tmp_path):
    book = run_short(LANES, monkeypatch, tmp_path)  # no error, and no InertSettingWarning (no batch policy)
    table = next(o for c in book.cells if c.cell_type == "code" for o in c.get("outputs", [])
                 if o.get("output_type") == "execute_result" and "$ per 1 000 docs" in o["data"]["text/plain"])
    assert "Batch API, 24 h" in table["data"]["text/plain"]
