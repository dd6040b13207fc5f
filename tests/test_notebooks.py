"""Every notebook runs top to bottom with a short horizon (its parameter cell reads these variables)."""
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

FOLDER = Path(__file__).resolve().parents[1] / "notebooks"
NOTEBOOKS = sorted(FOLDER.glob("*.ipynb"))
#: run, with checks of its own, by tests/test_lanes_notebook.py (not here too: each notebook runs once)
LANES = FOLDER / "lanes" / "lanes.ipynb"
SHORT = {"GROQSIM_NB_HORIZON": "20m", "GROQSIM_NB_REPLICATIONS": "2", "GROQSIM_NB_JOBS": "1"}


def test_four_notebooks_with_parameter_cells():
    assert len(NOTEBOOKS) == 4
    for path in NOTEBOOKS:
        book = nbformat.read(path, as_version=4)
        assert "parameters" in book.cells[2].metadata.get("tags", []), path.name
        assert any(o.get("output_type") == "display_data" for c in book.cells if c.cell_type == "code"
                   for o in c.get("outputs", [])), f"{path.name} is not saved with its plots"


def test_every_notebook_is_run_by_a_test():
    """A notebook added in a subfolder is not picked up by the glob above: it needs a test of its own."""
    found = {p for p in FOLDER.rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts}
    assert found == set(NOTEBOOKS) | {LANES}


def run_short(path: Path, monkeypatch, tmp_path) -> nbformat.NotebookNode:
    """Execute the notebook at the short horizon, in an empty folder; fail on an error or an inert setting."""
    for key, value in SHORT.items():
        monkeypatch.setenv(key, value)
    book = nbformat.read(path, as_version=4)
    nbclient.NotebookClient(book, timeout=600, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = [o for c in book.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    # a setting that changes nothing (e.g. a client policy on the batch lane) has no place in an example
    assert not [o["text"] for o in outputs if o.get("output_type") == "stream" and "InertSettingWarning" in o["text"]]
    return book


def _plain(cell) -> str:
    return "".join(o.get("data", {}).get("text/plain", "") for o in cell.get("outputs", []))


#: cells whose output the short run does not change (the calibration notebook's horizon is the log's 20
#: minutes either way; the analytic ceilings read no simulation), by the start of their source: the saved
#: notebook must show what its code prints today (its prose quotes these figures)
UNCHANGED = {"calibration": ("rows = []\nfor name, sc in SCENARIOS.items():",)}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_with_short_horizon(path, monkeypatch, tmp_path):
    ran = run_short(path, monkeypatch, tmp_path)
    saved = nbformat.read(path, as_version=4)
    for start in UNCHANGED.get(path.stem, ()):
        (now, before), = [(a, b) for a, b in zip(ran.cells, saved.cells) if a.source.startswith(start)]
        assert _plain(now) == _plain(before) and _plain(now), f"{path.name}: saved output of {start!r} is stale"
