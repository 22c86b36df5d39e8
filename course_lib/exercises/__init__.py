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




_NB01, _NB02, _NB03 = "01_function_spaces", "02_prelu_linearization", "03_paths_and_napl"
EXERCISES: dict[str, Exercise] = {e.name: e for e in (
    Exercise("identity_block", _NB01, "identity_block_weights", "★ easy",
             returns="(W̄, b̄): float64 tensors of shapes (d, d), (d,)",
             hint="With W̄ = 0 the branch sees only b̄, whatever x is. Which b̄ makes relu(b̄) zero?",
             cases=_nb01.identity_block_cases),
    Exercise("collision", _NB01, "colliding_inputs", "★★ medium",
             returns="(x1, x2): two float64 tensors of shape (d,)",
             hint="Choose the pre-activations first: two vectors z1 ≠ z2 that ReLU maps to the same output (they may "
                  "differ only where both are negative). An invertible W then gives x = W⁻¹(z − b): "
                  "torch.linalg.solve.",
             cases=_nb01.collision_cases),
    Exercise("relu_wide_layer", _NB01, "relu_wide_layer", "★★ medium",
             returns="(W1, b1, A, b2) of shapes (2d, d), (2d,), (d, 2d), (d,)",
             hint="The top d units compute the branch relu(W̄x + b̄). The bottom d units compute relu(εx + 1) = εx + "
                  "1 while εx_i > −1; the read-out A = [I, I/ε] with b2 = −1/ε turns that back into x and adds it to "
                  "the branch.",
             cases=_nb01.relu_wide_layer_cases),
    Exercise("wide_layer", _NB01, "wide_layer", "★★★ hard",
             returns="(W1, b1, A, b2) of shapes (2d, d), (2d,), (d, 2d), (d,)",
             hint="φ(εx + c) ≈ φ(c) + ε·φ'(c)·x. Get φ(c) and φ'(c) from `phi` itself (torch.autograd.grad on a 0-dim "
                  "tensor with requires_grad, or a central difference), then undo the affine part in the read-out: "
                  "divide by ε·φ'(c) and subtract φ(c)/(ε·φ'(c)).",
             cases=_nb01.wide_layer_cases),
    Exercise("channel_prelu", _NB02, "channel_prelu", "★ easy",
             returns="a tensor of the shape of x",
             hint="max(0, x) + α·min(0, x), with α lined up with dim 1 of x: alpha.reshape(1, -1, 1, …) has as many "
                  "trailing 1s as x has dimensions after the channels.",
             cases=_nb02.channel_prelu_cases),
    Exercise("l05_penalty", _NB02, "l05", "★ easy",
             returns="a 0-dim tensor that carries gradient to alpha",
             hint="Index the slopes that are not frozen (alpha[~frozen]) before the power, then sum |1 − α|^0.5 with "
                  "torch operations so the gradient reaches alpha.",
             cases=_nb02.l05_cases),
    Exercise("freeze", _NB02, "freeze_slopes", "★★ medium",
             returns="(alpha, frozen): a float tensor and a bool tensor of alpha's shape",
             hint="New candidates are the slopes with |α − 1| < tol or α ≥ 1 (the crossing rule). The frozen mask "
                  "only grows (old | new), and every frozen slope holds exactly 1.",
             cases=_nb02.freeze_cases),
    Exercise("slope_counts", _NB02, "slope_counts", "★★ medium",
             returns="(channel_slopes, layer_slopes): two ints",
             hint="Run the model once on torch.zeros(input_shape) with a forward hook on every nn.ReLU module: the "
                  "hook sees the ReLU's output, whose dim 1 is its number of channels.",
             cases=_nb02.slope_counts_cases),
    Exercise("fuse_block", _NB02, "fuse_block", "★★★ hard",
             returns="(kernel, bias) of shapes (C_out, C_in, 3, 3), (C_out,)",
             hint="Fold each BatchNorm (eval mode) into its branch: kernel·γ/√(σ² + ε), bias β − μ·γ/√(σ² + ε). Pad "
                  "the 1×1 kernel to the centre of a 3×3 one (nn.functional.pad(k, (1, 1, 1, 1))); the identity is "
                  "the 3×3 Dirac kernel, 1 at the centre of channel c → c, with its own BatchNorm. Then add the three "
                  "kernels and the biases.",
             cases=_nb02.fuse_block_cases),
    Exercise("merge_convs", _NB02, "merge_two_convs", "★★★ hard",
             returns="(kernel, bias) of shapes (C2, C0, k1 + k2 − 1, …), (C2,)",
             hint="W[c2, c0, u] = Σ over c1 and over taps i + j = u of W2[c2, c1, j]·W1[c1, c0, i]: "
                  "nn.functional.conv_transpose2d(w2, w1) computes exactly this. The bias: b2 plus W2 applied to the "
                  "constant b1, b2 + w2.sum((2, 3)) @ b1.",
             cases=_nb02.merge_convs_cases),
    Exercise("plain_napl", _NB03, "plain_napl", "★ easy",
             returns="a float",
             hint="In layer l a path picks a channel uniformly, so it meets a nonlinearity with probability p_l. NAPL "
                  "is the expected number of nonlinearities met.",
             cases=_nb03.plain_napl_cases),
    Exercise("resnet_napl", _NB03, "resnet_napl", "★ easy",
             returns="a float",
             hint="A random walk takes each summand of an addition with probability ½. A ReLU on the trunk is on "
                  "every path; a ReLU inside a branch is met only by the walks that enter the branch.",
             cases=_nb03.resnet_napl_cases),
    Exercise("skip_apl_napl", _NB03, "skip_apl_napl", "★★ medium",
             returns="(apl, napl): two floats",
             hint="Count paths: the skip is 1 path of length 0; the branch has width^depth paths, each meeting depth "
                  "ReLUs. APL weighs every path the same; NAPL gives the skip and the branch ½ each.",
             cases=_nb03.skip_cases),
    Exercise("chain_histogram", _NB03, "chain_histogram", "★★ medium",
             returns="a float64 tensor of shape (L + 1,)",
             hint="Start from h = [1, 0, …, 0] (length L + 1). For each layer, h ← (1 − p)·h + p·shift(h), where "
                  "shift moves every entry one place up (torch.roll on a vector whose last entry is 0).",
             cases=_nb03.chain_histogram_cases),
)}
