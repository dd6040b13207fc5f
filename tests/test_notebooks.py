"""Every notebook runs top to bottom with a short horizon (its parameter cell reads these variables)."""
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))
SHORT = {"GROQSIM_NB_HORIZON": "20m", "GROQSIM_NB_REPLICATIONS": "2", "GROQSIM_NB_JOBS": "1"}


def test_four_notebooks_with_parameter_cells():
    assert len(NOTEBOOKS) == 4
    for path in NOTEBOOKS:
        book = nbformat.read(path, as_version=4)
        assert "parameters" in book.cells[2].metadata.get("tags", []), path.name
        assert any(o.get("output_type") == "display_data" for c in book.cells if c.cell_type == "code"
                   for o in c.get("outputs", [])), f"{path.name} is not saved with its plots"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_with_short_horizon(path, monkeypatch, tmp_path):
    for key, value in SHORT.items():
        monkeypatch.setenv(key, value)
    book = nbformat.read(path, as_version=4)
    nbclient.NotebookClient(book, timeout=600, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}}).execute()
    errors = [o for c in book.cells if c.cell_type == "code" for o in c.get("outputs", [])
              if o.get("output_type") == "error"]
    assert not errors
