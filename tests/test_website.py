"""course_lib.website without building: what the site's copies of the notebooks hold, and which inputs it refuses.
(The built site itself is checked in a browser by tests/test_site.py.)"""

from __future__ import annotations

import shutil

import nbformat
import pytest

from course_lib import reproduce, website


def _executed_copy(path, tmp_path):
    nb = nbformat.read(path, as_version=4)
    for count, cell in enumerate((c for c in nb.cells if c.cell_type == "code"), start=1):
        cell.execution_count = count
    nbformat.write(nb, tmp_path / path.name)
    return nb


def test_site_copy_loads_nothing_from_outside():
    nb = nbformat.v4.new_notebook(metadata={"widgets": {"state": {}}})
    nb.cells = [
        nbformat.v4.new_markdown_cell("[![Open In Colab](https://example.org/badge.svg)](https://example.org/nb)\n"
                                      "![a plot](https://example.org/plot.png) and $x^2$"),
        nbformat.v4.new_code_cell("import sys", metadata={"tags": ["colab-install"]}),
        nbformat.v4.new_code_cell("progress()", outputs=[nbformat.v4.new_output(
            "display_data", data={website._WIDGET_MIME: {"model_id": "1"}, "text/plain": "100%|##| 4/4"})]),
    ]
    site = website._offline_copy(nb)
    assert site.cells[0].source == ("[Open In Colab](https://example.org/nb)\n"
                                    "[a plot](https://example.org/plot.png) and $x^2$")
    assert "remove-cell" in site.cells[1].metadata["tags"]
    assert dict(site.cells[2].outputs[0].data) == {"text/plain": "100%|##| 4/4"}
    assert "widgets" not in site.metadata
    assert "widgets" in nb.metadata and "remove-cell" not in nb.cells[1].metadata["tags"]  # the input is untouched


def test_executed_notebooks_are_accepted_when_complete_and_current(tmp_path):
    for path in reproduce.notebooks():
        _executed_copy(path, tmp_path)
    assert [p.name for p in website.check_executed(tmp_path)] == [p.name for p in reproduce.notebooks()]


def test_missing_unexecuted_stale_or_failed_notebooks_are_refused(tmp_path):
    first, second, third, *rest = reproduce.notebooks()
    shutil.copy(first, tmp_path / first.name)  # never executed
    stale = _executed_copy(second, tmp_path)
    next(c for c in stale.cells if c.cell_type == "code").source += "\nprint('edited')"
    nbformat.write(stale, tmp_path / second.name)
    failed = _executed_copy(third, tmp_path)
    next(c for c in failed.cells if c.cell_type == "code").outputs = [
        nbformat.v4.new_output("error", ename="ValueError", evalue="boom", traceback=[])]
    nbformat.write(failed, tmp_path / third.name)
    with pytest.raises(ValueError) as error:
        website.check_executed(tmp_path)
    message = str(error.value)
    assert f"{first.name}: not every code cell was executed" in message
    assert f"{second.name}: its code differs" in message
    assert f"{third.name}: a cell has an error output" in message
    assert all(f"{p.name}: not in" in message for p in rest)
