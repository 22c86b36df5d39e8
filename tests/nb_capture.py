"""Executed notebooks from the nbval run of the same pytest session, for the site test (tests/test_site.py).

The site is built from the notebooks executed in smoke mode, and `make test` already executes every notebook in smoke
mode under `pytest --nbval-lax`. Executing them all once more would add minutes to CI, so `NotebookCapture`, a pytest
plugin registered by tests/conftest.py (like `nb_memory.NotebookMemory`), keeps the outputs nbval reads back for
each cell (`IPyNbCell.test_outputs`, the kernel's own messages) and puts them into a copy of the notebook.
`executed()` returns only the notebooks of which every code cell ran and passed in this session; test_site.py
executes whatever is missing itself, with `course_lib.reproduce`. The plugin also moves test_site.py behind the
notebook runs.

What differs from a papermill execution: no injected-parameters cell (nbval runs the notebook as it is, and
`COURSE_RUN_MODE=smoke` makes its `RUN_MODE = "auto"` smoke), and no widget state (the site drops widgets anyway).
"""

from __future__ import annotations

import copy

import nbformat
import pytest

PLUGIN_NAME = "course-notebook-capture"
SITE_TESTS = "test_site.py"


class NotebookCapture:
    """pytest plugin: records the outputs of every notebook cell nbval runs."""

    def __init__(self):
        self._notebooks: dict[str, nbformat.NotebookNode] = {}  # file name -> the notebook nbval read
        self._outputs: dict[str, dict[int, list]] = {}  # file name -> code cell number -> outputs
        self._failed: set[str] = set()

    def pytest_collection_modifyitems(self, items):
        # The site is built from what the notebook runs recorded, so its tests go behind them (stable sort).
        items.sort(key=lambda item: item.path.name == SITE_TESTS)

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(self, item, call):
        report = yield
        if type(item).__name__ == "IPyNbCell" and report.when == "call":
            # nbval's attributes, read defensively: if a later nbval renames them, the site test executes instead.
            name, outputs = item.parent.path.name, getattr(item, "test_outputs", None)
            if getattr(item.parent, "nb", None) is not None:
                self._notebooks.setdefault(name, item.parent.nb)
            if report.passed and outputs is not None and isinstance(getattr(item, "cell_num", None), int):
                self._outputs.setdefault(name, {})[item.cell_num] = copy.deepcopy(outputs)
            else:
                self._failed.add(name)
        return report

    def executed(self) -> dict[str, nbformat.NotebookNode]:
        """File name -> executed notebook, for each notebook whose every code cell passed in this session."""
        done = {}
        for name, original in self._notebooks.items():
            outputs = self._outputs.get(name, {})
            nb = copy.deepcopy(original)
            code = [c for c in nb.cells if c.cell_type == "code"]
            if name in self._failed or sorted(outputs) != list(range(len(code))):
                continue
            for count, cell in enumerate(code, start=1):
                cell.execution_count = count
                cell.outputs = [nbformat.from_dict(dict(o)) for o in outputs[count - 1]]
                for output in cell.outputs:
                    if output.output_type == "execute_result":
                        output.execution_count = count
            done[name] = nb
        return done
