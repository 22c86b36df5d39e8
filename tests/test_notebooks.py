"""The notebook contract (DESIGN.md): structure checks for every notebook, and papermill runs of each profile."""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest

from course_lib import notebook_meta, reproduce

NOTEBOOKS = reproduce.notebooks()
IDS = [p.name for p in NOTEBOOKS]
# The generated student copies (course_lib.student) carry their own badge and the same install cell.
WITH_STUDENT_COPIES = NOTEBOOKS + sorted((reproduce.ROOT / "notebooks" / notebook_meta.STUDENT_FOLDER).glob("*.ipynb"))
WITH_STUDENT_IDS = [notebook_meta.notebook_name(p) for p in WITH_STUDENT_COPIES]


def _cells(path: Path):
    return nbformat.read(path, as_version=4).cells


def test_there_are_notebooks():
    assert NOTEBOOKS and NOTEBOOKS[0].name == "00_setup.ipynb"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_exactly_one_parameters_cell_with_run_mode(path):
    params = [c for c in _cells(path) if "parameters" in c.metadata.get("tags", [])]
    assert len(params) == 1
    assert re.search(r'^RUN_MODE = "auto"', params[0].source, re.M)


def test_there_are_student_copies_and_their_badges_point_at_them():
    copies = WITH_STUDENT_COPIES[len(NOTEBOOKS):]
    assert copies, "no notebooks/student/*.ipynb: run `make student`"
    for path in copies:
        assert f"/notebooks/student/{path.name})" in _cells(path)[0].source


@pytest.mark.parametrize("path", WITH_STUDENT_COPIES, ids=WITH_STUDENT_IDS)
def test_badge_and_colab_install_cell_are_in_sync(path):
    assert notebook_meta.sync_notebook(path) == []


@pytest.mark.parametrize("path", WITH_STUDENT_COPIES, ids=WITH_STUDENT_IDS)
def test_python3_kernel_no_outputs_no_absolute_paths(path):
    nb = nbformat.read(path, as_version=4)
    assert nb.metadata["kernelspec"]["name"] == "python3"
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert not cell.outputs and cell.execution_count is None, "strip outputs before committing"
        assert not re.search(r"(?<![\w.])(/home/|/work/|/Users/|C:\\\\)", cell.source), "absolute path in a cell"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_opens_with_goals_and_run_times_and_ends_with_summary(path):
    cells = _cells(path)
    assert "smoke" in cells[0].source and "cpu" in cells[0].source and "full" in cells[0].source
    assert any("## Summary" in c.source for c in cells if c.cell_type == "markdown")
    assert any("Further reading" in c.source for c in cells if c.cell_type == "markdown")


@pytest.mark.parametrize("mode", ["smoke", "cpu", "full"])
@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_papermill_injects_every_profile(path, mode, tmp_path):
    import papermill

    out = tmp_path / path.name
    papermill.execute_notebook(str(path), str(out), parameters=reproduce.profile(path, mode), prepare_only=True,
                               kernel_name="python3")
    injected = [c for c in nbformat.read(out, as_version=4).cells
                if "injected-parameters" in c.metadata.get("tags", [])]
    assert len(injected) == 1 and f'RUN_MODE = "{mode}"' in injected[0].source


def test_reproduce_writes_executed_notebook_and_summary(tmp_path, monkeypatch, data_dir):
    monkeypatch.setenv("COURSE_DATA_DIR", str(data_dir))
    assert reproduce.main(["--mode", "smoke", "--out", str(tmp_path), "--only", "00"]) == 0
    summary = (tmp_path / "smoke" / "summary.json").read_text()
    assert '"status": "ok"' in summary and (tmp_path / "smoke" / "00_setup.ipynb").exists()


@pytest.mark.parametrize("path", [p for p in NOTEBOOKS if p.name[:2] in ("01", "02", "03")], ids=lambda p: p.name)
def test_explanations_stay_folded_until_the_learner_has_guessed(path):
    for cell in _cells(path):
        if cell.cell_type == "markdown":
            assert "*Explain:*" not in cell.source, "fold it: <details><summary>Explanation (open after ...)"
            assert cell.source.count("<details>") == cell.source.count("</details>")
    assert any("<summary>Explanation (open after you have guessed)</summary>" in c.source for c in _cells(path))
