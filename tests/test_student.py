"""The student copies (course_lib.student, notebooks/student/): the committed copies are what the generator makes,
every exercise sits in its notebook as task, solution and check, stubs keep the solutions' signatures and docstrings,
and each copy runs from top to bottom under papermill in smoke mode with every exercise "not attempted yet"."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import nbformat
import pytest

from course_lib import exercises, student

ROOT = Path(__file__).resolve().parents[1]
STUDENT_COPIES = sorted((ROOT / "notebooks" / "student").glob("*.ipynb"))
WITH_EXERCISES = sorted({e.notebook for e in exercises.EXERCISES.values()})
NEEDS_DATA = {"02_prelu_linearization"}  # trains on CIFAR-10 images
# Notebook 02's training runs in full smoke size in nbval, on the solution notebook; its student copy differs only in
# the exercise cells, so here it trains at the smallest sizes (one pass over 512 images, one ω) to keep CI short.
SMALLER = {"02_prelu_linearization": {"N_TRAIN": 512, "PRETRAIN_EPOCHS": 1, "POSTTRAIN_EPOCHS": 1, "OMEGAS": [0.1]}}


def _cells(path: Path) -> list[dict]:
    return [{**c, "source": "".join(c["source"])} for c in json.loads(path.read_text(encoding="utf-8"))["cells"]]


def _words(text: str) -> str:
    return " ".join(text.split())


def test_the_committed_student_copies_are_what_the_generator_writes():
    wanted = student.copies()
    assert sorted(wanted) == STUDENT_COPIES, "run `make student` (or delete copies without a solution notebook)"
    assert [p.stem for p in STUDENT_COPIES] == WITH_EXERCISES
    for path, text in wanted.items():
        assert path.read_text(encoding="utf-8") == text, f"{path.name} is out of date: run `make student`"


@pytest.mark.parametrize("stem", WITH_EXERCISES)
def test_every_exercise_is_a_task_with_hint_then_a_solution_then_its_check(stem):
    cells = _cells(ROOT / "notebooks" / f"{stem}.ipynb")
    solutions = [i for i, c in enumerate(cells) if student.SOLUTION_TAG in c["metadata"].get("tags", [])]
    assert len(solutions) == len(exercises.for_notebook(stem))
    for i, exercise in zip(solutions, exercises.for_notebook(stem)):  # in the registry's order
        defined = [n.name for n in ast.parse(cells[i]["source"]).body if isinstance(n, ast.FunctionDef)]
        assert defined == [exercise.function]
        assert cells[i + 1]["source"].strip() == f'exercises.check("{exercise.name}", {exercise.function})'
        task = cells[i - 1]
        assert task["cell_type"] == "markdown"
        assert re.match(rf"### Exercise \d+ · .* \({exercise.difficulty}\)\n", task["source"])
        hint = re.search(r"<details><summary>Hint</summary>(.*?)</details>", task["source"], re.S).group(1)
        assert _words(hint) == _words(exercise.hint), "the notebook's hint differs from exercises.EXERCISES"


def _functions(source: str) -> list[ast.FunctionDef]:
    return [n for n in ast.parse(source).body if isinstance(n, ast.FunctionDef)]


@pytest.mark.parametrize("stem", WITH_EXERCISES)
def test_a_stub_keeps_the_signature_and_docstring_and_raises_not_implemented(stem):
    for source in student.solution_sources(ROOT / "notebooks" / f"{stem}.ipynb"):
        for solved, stub in zip(_functions(source), _functions(student.stub_source(source)), strict=True):
            assert ast.dump(stub.args) == ast.dump(solved.args) and ast.dump(stub.returns) == ast.dump(solved.returns)
            assert ast.get_docstring(stub) == ast.get_docstring(solved) and ast.get_docstring(stub)
            assert isinstance(stub.body[-1], ast.Raise) and ast.unparse(stub.body[-1].exc) == "NotImplementedError"


def test_stub_source_keeps_imports_and_functions_without_docstring():
    source = "import math\n\n\ndef f(x: int = 1) -> int:\n    y = x + 1\n    return y"
    assert student.stub_source(source) == ("import math\n\n\ndef f(x: int = 1) -> int:\n"
                                           "    # Your code here: the exercise above says what to return.\n"
                                           "    raise NotImplementedError")


@pytest.mark.slow
@pytest.mark.parametrize("path", STUDENT_COPIES, ids=[p.name for p in STUDENT_COPIES])
def test_a_student_copy_runs_top_to_bottom_with_every_exercise_not_attempted(path, tmp_path, monkeypatch, request):
    import papermill

    if path.stem in NEEDS_DATA:
        monkeypatch.setenv("COURSE_DATA_DIR", str(request.getfixturevalue("data_dir")))  # skips without data
    monkeypatch.setenv("COURSE_RUN_MODE", "smoke")
    monkeypatch.setenv("COURSE_WIDGETS", "0")  # static figures, as course_lib.reproduce runs notebooks
    out = tmp_path / path.name
    # Raises PapermillExecutionError if any cell fails: only the exercises may be unfinished.
    papermill.execute_notebook(str(path), str(out), parameters={"RUN_MODE": "smoke", **SMALLER.get(path.stem, {})},
                               kernel_name="python3",
                               cwd=str(path.parent), progress_bar=False)
    checks = {}
    for cell in nbformat.read(out, as_version=4).cells:
        if cell.cell_type == "code" and (m := re.match(r'exercises\.check\("(\w+)"', cell.source)):
            checks[m.group(1)] = "".join(o.get("text", "") for o in cell.outputs)
    assert list(checks) == [e.name for e in exercises.for_notebook(path.stem)]
    for name, text in checks.items():
        assert text.startswith(f"○ {name}: not attempted yet"), text
