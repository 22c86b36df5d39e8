"""Exercises of notebooks 01-03: checkers that give feedback, and hints.

Each exercise asks the learner for one function. `check(name, fn)` runs it on cases the learner does not see
(generated here with fixed seeds), compares what comes back with the course's own tested implementation (`theory`,
`linearize`, `paths`, `models`) or with a closed form, prints what was expected, what came back and a hint, and
returns a `CheckResult` (true when every case passed). A function that still raises `NotImplementedError` (the stub
of a student copy) is "not attempted yet", so a student notebook runs from top to bottom. Everything a checker needs
is in this package and the library, so the checks work wherever the notebooks run (JupyterLab, Binder, Colab).

The solutions are the notebook cells tagged `solution`; `course_lib.student` turns them into the stubs of the student
copies under `notebooks/student/`. This package: `check`, `hint` and the registry `EXERCISES` here; the hidden cases
of each notebook in `function_spaces` (01), `linearization` (02) and `paths_napl` (03); what they share (a `Case`, a
`Mismatch`, reading and comparing answers) in `compare`.
"""

from __future__ import annotations

import copy
import json
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import function_spaces as _nb01
from . import linearization as _nb02
from . import paths_napl as _nb03
from .compare import Case, Mismatch, Wrong, show

__all__ = ["CheckResult", "Exercise", "EXERCISES", "PASSED", "NOT_ATTEMPTED", "FAILED", "ERROR", "check", "hint",
           "for_notebook", "Case", "Mismatch"]

PASSED, NOT_ATTEMPTED, FAILED, ERROR = "passed", "not attempted", "failed", "error"
_SYMBOLS = {PASSED: "✓", NOT_ATTEMPTED: "○", FAILED: "✗", ERROR: "✗"}
_LIBRARY = str(Path(__file__).resolve().parents[1])  # frames in course_lib are not the learner's


@dataclass(frozen=True)
class Exercise:
    """An exercise: where it is, which function the learner writes, what it returns, how hard it is, a hint."""

    name: str
    notebook: str  # the notebook's file stem, e.g. "01_function_spaces"
    function: str  # the name of the learner's function in the notebook
    difficulty: str  # "★ easy", "★★ medium" or "★★★ hard"
    returns: str  # what the function returns, in words (shown when the answer cannot be read)
    hint: str
    cases: Callable[[], list[Case]]


@dataclass(frozen=True)
class CheckResult:
    """The outcome of `check`: `status` is one of passed / not attempted / failed / error; true only when passed."""

    name: str
    status: str
    message: str

    def __bool__(self) -> bool:
        return self.status == PASSED

    def _ipython_display_(self) -> None:
        """Show nothing more in a notebook: `check` has printed the message already."""


def check(name: str, fn: Callable[..., Any]) -> CheckResult:
    """Run the learner's `fn` on the hidden cases of exercise `name` and print feedback.

    Args:
        name: the exercise's name (a key of `EXERCISES`).
        fn: the learner's function.

    Returns:
        A `CheckResult`: passed (every case right), not attempted (the stub still raises NotImplementedError),
        failed (a wrong answer: what differed, what was expected, what came back, a hint) or error (the function
        raised: the error and the line it came from, a hint). Never raises for a wrong answer.

    Raises:
        KeyError: for an unknown exercise name.
    """
    exercise = EXERCISES[name]
    if not callable(fn):
        return _report(exercise, ERROR, f"expected a function, got {type(fn).__name__}.\n  hint: {exercise.hint}")
    cases = exercise.cases()
    for i, case in enumerate(cases, 1):
        where = f"case {i} of {len(cases)} ({case.label})"
        args = copy.deepcopy(case.args)  # the learner may change its inputs in place
        try:
            got = fn(*args)
        except NotImplementedError:
            if i == 1:
                return _report(exercise, NOT_ATTEMPTED, f"not attempted yet: `{exercise.function}` still raises "
                               f"NotImplementedError. Write its body, then run this cell again (stuck? "
                               f"exercises.hint({name!r})).")
            return _report(exercise, ERROR, f"{where}: raised NotImplementedError, so part of `{exercise.function}` "
                           f"is still a stub.\n  hint: {exercise.hint}")
        except Exception as exc:  # the learner's bug: show it, do not raise it
            return _report(exercise, ERROR, f"{where}: your function raised {type(exc).__name__}: {exc}"
                           f"{_user_line(exc)}\n  hint: {exercise.hint}")
        try:
            mismatch = case.judge(got, args if case.pass_inputs else case.args)
        except Wrong as wrong:
            mismatch = wrong.mismatch
        except Exception as exc:  # what came back has the wrong type or structure
            mismatch = Mismatch(f"what came back could not be read ({type(exc).__name__}: {exc})", exercise.returns,
                                show(got))
        if mismatch is not None:
            return _report(exercise, FAILED, f"{where}: {mismatch.differed}\n  expected: {mismatch.expected}\n"
                           f"  got:      {mismatch.got}\n  hint: {exercise.hint}")
    return _report(exercise, PASSED, f"all {len(cases)} hidden cases pass.")


def hint(name: str) -> None:
    """Print the hint of exercise `name`."""
    print(f"hint for {name}: {EXERCISES[name].hint}")


def for_notebook(stem: str) -> list[Exercise]:
    """The exercises of one notebook (file stem, e.g. "02_prelu_linearization"), in the order they appear."""
    return [e for e in EXERCISES.values() if e.notebook == stem]


def _report(exercise: Exercise, status: str, body: str) -> CheckResult:
    message = f"{_SYMBOLS[status]} {exercise.name}: {body}"
    print(message)
    return CheckResult(exercise.name, status, message)


def _user_line(exc: BaseException) -> str:
    """Where in the learner's code the error came from: the innermost frame outside course_lib and torch."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if not f.filename.startswith(_LIBRARY)
              and "site-packages" not in f.filename and "/torch/" not in f.filename]
    return f"\n  at line {frames[-1].lineno} of your code: {frames[-1].line}" if frames else ""




def _load_exercises() -> dict[str, Exercise]:
    """The registry, from `exercises.json` (notebook, function, difficulty, hint of every exercise; data, not code),
    each with its hidden cases: the function `cases` of the notebook's case module."""
    modules = {"01_function_spaces": _nb01, "02_prelu_linearization": _nb02, "03_paths_and_napl": _nb03}
    rows = json.loads(Path(__file__).with_name("exercises.json").read_text(encoding="utf-8"))
    return {row["name"]: Exercise(**{**row, "cases": getattr(modules[row["notebook"]], row["cases"])}) for row in rows}


EXERCISES: dict[str, Exercise] = _load_exercises()
