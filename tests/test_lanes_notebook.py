"""The lanes notebook (on-demand upgrade vs Flex vs Batch API) runs top to bottom with a short horizon and is
saved with its plots.  It lives in notebooks/lanes/, apart from the four in notebooks/ that
tests/test_notebooks.py counts and runs."""
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

PATH = Path(__file__).resolve().parents[1] / "notebooks" / "lanes" / "lanes.ipynb"
SHORT = {"GROQSIM_NB_HORIZON": "20m", "GROQSIM_NB_REPLICATIONS": "2", "GROQSIM_NB_JOBS": "1"}


def test_lanes_notebook_has_parameters_and_saved_plots():
    book = nbformat.read(PATH, as_version=4)
    assert "parameters" in book.cells[2].metadata.get("tags", [])
    assert any(o.get("output_type") == "display_data" for c in book.cells if c.cell_type == "code"
               for o in c.get("outputs", []))


def test_lanes_notebook_runs_with_short_horizon(monkeypatch, tmp_path):
    for key, value in SHORT.items():
        monkeypatch.setenv(key, value)
    book = nbformat.read(PATH, as_version=4)
    nbclient.NotebookClient(book, timeout=600, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}}).execute()
    errors = [o for c in book.cells if c.cell_type == "code" for o in c.get("outputs", [])
              if o.get("output_type") == "error"]
    assert not errors
    table = next(o for c in book.cells if c.cell_type == "code" for o in c.get("outputs", [])
                 if o.get("output_type") == "execute_result" and "$ per 1 000 docs" in o["data"]["text/plain"])
    assert "Batch API, 24 h" in table["data"]["text/plain"]
