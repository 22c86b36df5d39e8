"""Exercises of notebooks 01-03: checkers that give feedback, and hints.

Each exercise asks the learner for one function. `check(name, fn)` runs it on cases the learner does not see
(generated here with fixed seeds), compares what comes back with the course's own tested implementation (`theory`,
`linearize`, `paths`, `models`) or with a closed form, prints what was expected, what came back and a hint, and
returns a `CheckResult` (true when every case passed). A function that still raises `NotImplementedError` (the stub
of a student copy) is "not attempted yet", so a student notebook runs from top to bottom. Everything a checker needs
is in this module and the library, so the checks work wherever the notebooks run (JupyterLab, Binder, Colab).

The solutions are the notebook cells tagged `solution`; `course_lib.student` turns them into the stubs of the student
copies under `notebooks/student/`. Taught in 01_function_spaces, 02_prelu_linearization and 03_paths_and_napl.
"""

from __future__ import annotations

import copy
import math
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from . import linearize, paths, theory
from .models import cifar_resnet, plain_cifar_net, repvgg
from .models.repvgg import RepVGGBlock

__all__ = ["CheckResult", "Exercise", "EXERCISES", "PASSED", "NOT_ATTEMPTED", "FAILED", "ERROR", "check", "hint",
           "for_notebook"]

PASSED, NOT_ATTEMPTED, FAILED, ERROR = "passed", "not attempted", "failed", "error"
_SYMBOLS = {PASSED: "✓", NOT_ATTEMPTED: "○", FAILED: "✗", ERROR: "✗"}
_F64 = torch.float64
_HERE = str(Path(__file__).resolve().parent)


# ---------------------------------------------------------------------------------------------------------------------
# The framework: cases, judges, results
# ---------------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Mismatch:
    """What differed between the learner's answer and the reference, in words."""

    differed: str
    expected: str
    got: str


class _Wrong(Exception):
    """Raised by a judge's helpers when what came back is unusable; carries the `Mismatch` to report."""

    def __init__(self, mismatch: Mismatch):
        super().__init__(mismatch.differed)
        self.mismatch = mismatch


@dataclass(frozen=True)
class Case:
    """One hidden test: a description of the input (shown only when it fails), the arguments, and a judge that
    returns None when the answer is right and a `Mismatch` otherwise.

    The learner's function gets a copy of `args` (it may change them in place); the judge gets `args` themselves, or
    with `pass_inputs` the very copy the learner got (to take gradients through it)."""

    label: str
    args: tuple
    judge: Callable[[Any, tuple], Mismatch | None]
    pass_inputs: bool = False


@dataclass(frozen=True)
class Exercise:
    """An exercise: where it is, which function the learner writes, what it returns, how hard it is, a hint."""

    name: str
    notebook: str  # the notebook's file stem, e.g. "01_function_spaces"
    function: str  # the name of the learner's function in the notebook
    returns: str  # what the function returns, in words (shown when the answer cannot be read)
    difficulty: str  # "★ easy", "★★ medium" or "★★★ hard"
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
        except _Wrong as wrong:
            mismatch = wrong.mismatch
        except Exception as exc:  # what came back has the wrong type or structure
            mismatch = Mismatch(f"what came back could not be read ({type(exc).__name__}: {exc})", exercise.returns,
                                _show(got))
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
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if not f.filename.startswith(_HERE)
              and "site-packages" not in f.filename and "/torch/" not in f.filename]
    return f"\n  at line {frames[-1].lineno} of your code: {frames[-1].line}" if frames else ""


# --- reading and comparing answers -----------------------------------------------------------------------------------


def _fmt(value: Any) -> str:
    return f"{value:.6g}" if isinstance(value, float) else str(value)


def _show(value: Any) -> str:
    """A short description of what came back."""
    if torch.is_tensor(value):
        if value.numel() <= 12:
            return f"tensor {[round(v, 6) for v in value.detach().double().flatten().tolist()]} of shape " \
                   f"{tuple(value.shape)}"
        return f"tensor of shape {tuple(value.shape)}, dtype {value.dtype}"
    if isinstance(value, (tuple, list)):
        return "(" + ", ".join(_show(v) for v in value) + ")"
    return repr(value) if not isinstance(value, float) else _fmt(value)


def _items(value: Any, n: int, what: str) -> tuple:
    """`value` as a tuple of n items, else a `_Wrong`."""
    if not isinstance(value, (tuple, list)) or len(value) != n:
        raise _Wrong(Mismatch(f"expected {n} values {what}", f"a tuple {what}", _show(value)))
    return tuple(value)


def _tensor(value: Any, what: str, shape: tuple[int, ...] | None = None) -> Tensor:
    """`value` as a detached float64 CPU tensor of `shape`, else a `_Wrong` that names `what`."""
    if not torch.is_tensor(value):
        try:
            value = torch.as_tensor(value, dtype=_F64)
        except (TypeError, ValueError, RuntimeError):
            raise _Wrong(Mismatch(f"{what} is not a tensor", f"a tensor of shape {shape}", _show(value))) from None
    if shape is not None and tuple(value.shape) != tuple(shape):
        raise _Wrong(Mismatch(f"{what} has the wrong shape", f"{what} of shape {tuple(shape)}",
                              f"{what} of shape {tuple(value.shape)}"))
    return value.detach().to("cpu", _F64)


def _number(value: Any, what: str) -> float:
    if torch.is_tensor(value) and value.numel() == 1:
        return float(value.detach())
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    raise _Wrong(Mismatch(f"{what} is not a number", f"{what} as a float", _show(value)))


def _differ(got: Tensor, expected: Tensor, atol: float, rtol: float = 1e-7) -> Tensor:
    """Bool mask of the entries where `got` and `expected` differ (NaN counts as different)."""
    return ~((got - expected).abs() <= atol + rtol * expected.abs())


def _first_difference(got: Tensor, expected: Tensor, bad: Tensor, what: str, differed: str) -> Mismatch:
    """A `Mismatch` that shows the worst entry (NaN first)."""
    error = (got - expected).abs().nan_to_num(nan=math.inf) * bad
    index = tuple(int(i) for i in torch.unravel_index(error.flatten().argmax(), error.shape))
    at = f"{what}[{', '.join(map(str, index))}]" if index else what
    return Mismatch(differed, f"{at} = {_fmt(float(expected[index]))}", f"{at} = {_fmt(float(got[index]))}")


def _compare(got: Tensor, expected: Tensor, what: str, atol: float = 1e-9, rtol: float = 1e-7,
             explain: Callable[[Tensor], str] | None = None) -> Mismatch | None:
    """None when `got` equals `expected` within tolerance, else a `Mismatch` naming how many entries differ."""
    expected = expected.detach().to("cpu", _F64)
    got = _tensor(got, what, tuple(expected.shape))
    bad = _differ(got, expected, atol, rtol)
    if not bad.any():
        return None
    differed = f"{what} differs in {int(bad.sum())} of {bad.numel()} entries"
    return _first_difference(got, expected, bad, what, differed + (f", {explain(bad)}" if explain else ""))


def _known(got: float, expected: float, mistakes: dict[str, float]) -> Mismatch | None:
    """None when `got` is `expected`; else a `Mismatch` that names the known mistake `got` matches, if any."""
    if math.isclose(got, expected, rel_tol=1e-9, abs_tol=1e-9):
        return None
    why = next((m for m, v in mistakes.items() if math.isclose(got, v, rel_tol=1e-9, abs_tol=1e-9)), None)
    return Mismatch(f"the value differs{f': {why}' if why else ''}", _fmt(expected), _fmt(got))


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _randn(*shape: int, seed: int) -> Tensor:
    return torch.randn(*shape, generator=_gen(seed), dtype=_F64)


def _vector(t: Tensor) -> str:
    return "[" + ", ".join(f"{v:.4g}" for v in t.tolist()) + "]"


# ---------------------------------------------------------------------------------------------------------------------
# Notebook 01: function spaces
# ---------------------------------------------------------------------------------------------------------------------


def _identity_block_cases() -> list[Case]:
    def judge(got: Any, args: tuple) -> Mismatch | None:
        (d,) = args
        W, b = _items(got, 2, "(W̄, b̄)")
        W, b = _tensor(W, "W̄", (d, d)), _tensor(b, "b̄", (d,))
        x = torch.cat([100 * _randn(50, d, seed=d), _randn(50, d, seed=d + 1)])  # (100, d), large and small
        added = theory.residual_block(x, W, b, "relu") - x  # what the branch adds, (100, d)
        gap = added.abs().max().item()
        if gap <= 1e-12:
            return None
        k = int(added.abs().amax(1).argmax())
        why = ("the branch adds the same nonzero vector for every x, relu(b̄); it is 0 only when b̄ ≤ 0"
               if (added - added[0]).abs().max() <= 1e-12 else
               "what the branch adds depends on x: with any nonzero entry in W̄, some inputs get through the ReLU")
        return Mismatch(f"R(x) = relu(W̄x + b̄) + x is not x: {why}", "R(x) − x = 0 for every x",
                        f"max |R(x) − x| = {gap:.4g}, e.g. at x = {_vector(x[k])}")

    return [Case(f"d = {d}", (d,), judge) for d in (1, 3, 8)]


def _collision_cases() -> list[Case]:
    def judge(got: Any, args: tuple) -> Mismatch | None:
        W, b = (_tensor(a, "W") for a in args)
        d = W.shape[0]
        x1, x2 = _items(got, 2, "(x1, x2)")
        x1, x2 = _tensor(x1, "x1", (d,)), _tensor(x2, "x2", (d,))
        if (x1 - x2).norm() <= 1e-6 * max(1.0, x1.norm().item()):
            return Mismatch("x1 and x2 are the same input", "two different inputs with the same output",
                            f"x1 = {_vector(x1)}, x2 = {_vector(x2)}")
        z1, z2 = x1 @ W.T + b, x2 @ W.T + b  # pre-activations (d,)
        bad = (torch.relu(z1) - torch.relu(z2)).abs() > 1e-9 * (1 + max(z1.abs().max(), z2.abs().max()))
        if not bad.any():
            return None
        k = int(bad.nonzero()[0])
        return Mismatch(f"the outputs differ in coordinate {k}, where the pre-activations are Wx1 + b = {z1[k]:.4g} "
                        f"and Wx2 + b = {z2[k]:.4g}: ReLU keeps a difference unless both are ≤ 0",
                        "relu(Wx1 + b) = relu(Wx2 + b)",
                        f"relu(Wx1 + b) = {_vector(torch.relu(z1))}, relu(Wx2 + b) = {_vector(torch.relu(z2))}")

    cases = []
    for d, seed, shift in ((2, 0, 0.0), (3, 1, 0.0), (5, 2, 0.0), (4, 3, 3.0)):
        W, b = _randn(d, d, seed=seed), _randn(d, seed=seed + 10) + shift
        bias = "a bias b" if shift == 0 else f"a bias b ≈ +{shift:g} in every coordinate"
        cases.append(Case(f"a random invertible {d}x{d} W and {bias}", (W, b), judge))
    return cases


_WIDE_SHAPES = {"W1": lambda d: (2 * d, d), "b1": lambda d: (2 * d,), "A": lambda d: (d, 2 * d), "b2": lambda d: (d,)}


def _wide_matrices(got: Any, d: int) -> dict[str, Tensor]:
    """The learner's (W1, b1, A, b2), checked for shape: the hidden layer has width 2d."""
    values = _items(got, 4, "(W1, b1, A, b2)")
    out = {}
    for (name, shape), value in zip(_WIDE_SHAPES.items(), values):
        try:
            out[name] = _tensor(value, name, shape(d))
        except _Wrong as wrong:
            m = wrong.mismatch
            raise _Wrong(Mismatch(f"{m.differed} (the hidden layer has width 2d = {2 * d})", m.expected, m.got)) \
                from None
    return out


def _relu_wide_layer_cases() -> list[Case]:
    def judge(got: Any, args: tuple) -> Mismatch | None:
        W, b, eps = args
        d = W.shape[0]
        m = _wide_matrices(got, d)
        x = (2 * torch.rand(400, d, generator=_gen(d), dtype=_F64) - 1) * (0.9 / eps)  # |x_i| < 0.9/ε
        F_x = torch.relu(x @ m["W1"].T + m["b1"]) @ m["A"].T + m["b2"]
        R_x = theory.residual_block(x, W, b, "relu")
        error = (F_x - R_x).abs().amax(1)  # (400,)
        if error.max() <= 1e-10 * (1 + 1 / eps + R_x.abs().max()):
            return None
        ref = theory.residual_as_wide_layer(W, b, "relu", eps)
        differing = [n for n in _WIDE_SHAPES if not torch.allclose(m[n], getattr(ref, n), rtol=1e-9, atol=1e-12)]
        k = int(error.nan_to_num(nan=math.inf).argmax())
        return Mismatch("F(x) = A·relu(W1·x + b1) + b2 is not R(x) on inputs with |x_i| < 0.9/ε; compared with the "
                        f"course's construction (c = 1) these differ: {', '.join(differing)}",
                        "F(x) = R(x) up to rounding", f"max |F(x) − R(x)| = {error[k]:.4g} at x = {_vector(x[k])}")

    cases = []
    for d, eps, seed in ((2, 0.1, 0), (4, 0.01, 1), (3, 0.5, 2)):
        W, b = _randn(d, d, seed=seed) / d**0.5, _randn(d, seed=seed + 10)
        cases.append(Case(f"d = {d}, ε = {eps}", (W, b, eps), judge))
    return cases


_WIDE_FORMULAS = {"W1": "W1 stacks W̄ on top of ε·I", "b1": "b1 stacks b̄ on top of c·1",
                  "A": "A = [I, I/(ε·φ'(c))]", "b2": "b2 = −φ(c)/(ε·φ'(c))·1"}


def _wide_layer_cases() -> list[Case]:
    def judge_for(name: str) -> Callable[[Any, tuple], Mismatch | None]:
        def judge(got: Any, args: tuple) -> Mismatch | None:
            W, b, eps, _, _ = args
            act, ref = theory.PHIS[name], theory.residual_as_wide_layer(W, b, name, eps)
            m = _wide_matrices(got, W.shape[0])
            for part, formula in _WIDE_FORMULAS.items():
                if mismatch := _compare(m[part], getattr(ref, part), part, atol=1e-8 / eps, rtol=1e-6):
                    return Mismatch(f"{mismatch.differed} ({formula}; here φ(c) = {act.phi_c:.6g} and φ'(c) = "
                                    f"{act.dphi_c:.6g})", mismatch.expected, mismatch.got)
            return None

        return judge

    cases = []
    for i, (name, eps) in enumerate((("relu", 0.1), ("softplus", 0.1), ("tanh", 0.01), ("gelu", 0.05))):
        W, b, act = _randn(3, 3, seed=i) / 3**0.5, _randn(3, seed=i + 10), theory.PHIS[name]
        cases.append(Case(f"φ = {name}, c = {act.c:g}, ε = {eps}, d = 3", (W, b, eps, act.fn, act.c),
                          judge_for(name)))
    return cases


# ---------------------------------------------------------------------------------------------------------------------
# Notebook 02: PReLU linearization
# ---------------------------------------------------------------------------------------------------------------------


def _prelu_module(alpha: Tensor, frozen: Tensor | None = None) -> linearize.LinearizablePReLU:
    """The course's PReLU holding these slopes (channel-wise, or layer-wise for a single slope)."""
    granularity = "layer" if alpha.numel() == 1 else "channel"
    module = linearize.LinearizablePReLU(alpha.numel(), granularity, dtype=alpha.dtype)
    with torch.no_grad():
        module.alpha.copy_(alpha.detach())
        if frozen is not None:
            module.frozen.copy_(frozen)
    return module


def _channel_prelu_cases() -> list[Case]:
    def judge(got: Any, args: tuple) -> Mismatch | None:
        x, alpha = args
        with torch.no_grad():
            expected = _prelu_module(alpha)(x)
        x64 = x.to(_F64)

        def explain(bad: Tensor) -> str:
            signs = [s for s, mask in (("negative", x64 < 0), ("positive", x64 >= 0)) if (bad & mask).any()]
            channels = sorted({int(i) for i in bad.nonzero()[:, 1]})
            return f"at {' and '.join(signs)} inputs, in channel(s) {channels}"

        return _compare(got, expected, "output", atol=1e-6, rtol=1e-6, explain=explain)

    cases = []
    for i, (shape, slopes) in enumerate((((6, 4), 4), ((2, 3, 4, 3), 3), ((2, 3, 5, 5), 3), ((2, 5, 4, 4), 1))):
        x = torch.randn(*shape, generator=_gen(i))
        alpha = torch.rand(slopes, generator=_gen(i + 10)) * 2 - 0.5  # in [-0.5, 1.5)
        what = "one slope for every channel" if slopes == 1 else f"{slopes} slopes, one per channel"
        cases.append(Case(f"x of shape {shape}, {what}", (x, alpha), judge))
    return cases


def _l05_cases() -> list[Case]:
    def judge(got: Any, args: tuple) -> Mismatch | None:
        alpha, frozen = args
        module = _prelu_module(alpha, frozen)
        expected = linearize.l05_penalty(module)
        (expected_grad,) = torch.autograd.grad(expected, module.alpha)
        if not torch.is_tensor(got):
            return Mismatch("the penalty is not a tensor, so it carries no gradient to the slopes",
                            f"a 0-dim tensor = {expected.item():.6g}", _show(got))
        value, target = _number(got, "the penalty"), expected.item()
        unfrozen, every = alpha[~frozen].detach(), alpha.detach()
        if mismatch := _known(value, target, {
                "your sum includes the frozen slopes": (1 - every).abs().sqrt().sum().item(),
                "that is L1, Σ|1 − α|, not Σ|1 − α|^0.5": (1 - unfrozen).abs().sum().item(),
                "that is L2, Σ(1 − α)², not Σ|1 − α|^0.5": ((1 - unfrozen) ** 2).sum().item()}):
            return Mismatch(f"the penalty: {mismatch.differed}", mismatch.expected, mismatch.got)
        if not got.requires_grad:
            return Mismatch("the penalty carries no gradient to the slopes (computed outside torch, or detached?)",
                            "a tensor that requires grad", _show(got))
        (grad,) = torch.autograd.grad(got.sum(), alpha, allow_unused=True)
        grad = torch.zeros_like(alpha) if grad is None else grad

        def explain(bad: Tensor) -> str:
            return f"{int((bad & frozen).sum())} of them at frozen slopes (a frozen slope gets no penalty, so no " \
                   "gradient)"

        return _compare(grad, expected_grad, "∂L/∂α", atol=1e-9, rtol=1e-6, explain=explain)

    def slopes(values: list[float], frozen: list[bool]) -> tuple[Tensor, Tensor]:
        return torch.tensor(values, dtype=_F64, requires_grad=True), torch.tensor(frozen)

    return [
        Case("8 slopes, none frozen", slopes([0.0, 0.3, -0.4, 0.9, 0.5, 0.1, 0.97, -0.2], [False] * 8), judge, True),
        Case("8 slopes, 3 frozen at exactly 1 (as freezing leaves them), two unfrozen ones above 1",
             slopes([1.0, 0.2, 1.3, 1.0, 0.6, 1.0, -0.3, 1.1], [True, False, False, True, False, True, False, False]),
             judge, True),
        Case("6 slopes, 3 frozen whose parameter still holds its old value (they act as α = 1)",
             slopes([0.995, 0.4, 1.004, 0.8, 0.991, 0.0], [True, False, True, False, True, False]), judge, True),
    ]


def _freeze_cases() -> list[Case]:
    def judge(got: Any, args: tuple) -> Mismatch | None:
        alpha, was_frozen, tol = args
        module = _prelu_module(alpha, was_frozen)
        linearize.freeze_mask(module, linearize.freeze_candidates(module, tol, freeze_crossing=True))
        new_alpha, new_frozen = _items(got, 2, "(alpha, frozen)")
        new_frozen = _tensor(new_frozen, "frozen", tuple(alpha.shape)).bool()
        missing, extra = module.frozen & ~new_frozen, new_frozen & ~module.frozen
        if missing.any():
            k = int(missing.nonzero()[0])
            why = ("it was frozen before, and the frozen mask only grows" if was_frozen[k] else
                   "it stepped past 1, and the crossing rule freezes that too" if alpha[k] >= 1 else
                   f"|α − 1| = {abs(alpha[k].item() - 1):.4g} < tol = {tol}")
            return Mismatch(f"slope {k} (α = {alpha[k].item():.4g}) should be frozen but is not: {why}",
                            f"frozen = {module.frozen.tolist()}", f"frozen = {new_frozen.tolist()}")
        if extra.any():
            k = int(extra.nonzero()[0])
            return Mismatch(f"slope {k} (α = {alpha[k].item():.4g}) is frozen but should not be: "
                            f"|α − 1| = {abs(alpha[k].item() - 1):.4g} is not below tol = {tol}, and α < 1",
                            f"frozen = {module.frozen.tolist()}", f"frozen = {new_frozen.tolist()}")
        new_alpha = _tensor(new_alpha, "alpha", tuple(alpha.shape))
        bad = new_alpha != module.alpha.detach()
        if not bad.any():
            return None
        k = int(bad.nonzero()[0])
        why = "a frozen slope must hold exactly 1" if module.frozen[k] else "a slope that is not frozen keeps its value"
        return Mismatch(f"alpha[{k}] is wrong: {why}", f"alpha[{k}] = {module.alpha[k].item():.6g}",
                        f"alpha[{k}] = {new_alpha[k].item():.6g}")

    def case(label: str, values: list[float], frozen: list[bool], tol: float) -> Case:
        return Case(label, (torch.tensor(values, dtype=_F64), torch.tensor(frozen), tol), judge)

    spread = (0.8 + 0.4 * torch.rand(12, generator=_gen(0), dtype=_F64)).tolist()
    return [
        case("8 slopes, none frozen yet, tol = 0.01", [0.2, 0.995, 1.004, 0.985, 1.3, -0.4, 0.999, 0.6],
             [False] * 8, 0.01),
        case("6 slopes, 2 frozen earlier (one has drifted), tol = 0.01", [0.97, 1.0, 0.5, 1.02, 0.991, 0.3],
             [True, True, False, False, False, False], 0.01),
        case("12 slopes between 0.8 and 1.2, 3 frozen earlier, tol = 0.05", spread,
             [i % 4 == 0 for i in range(12)], 0.05),
    ]


def _random_bn(bn: nn.BatchNorm2d, gen: torch.Generator) -> None:
    """Give a BatchNorm the statistics of a trained one (not 0 and 1)."""
    with torch.no_grad():
        for t, low, high in ((bn.weight, 0.5, 1.5), (bn.bias, -0.5, 0.5), (bn.running_mean, -0.5, 0.5),
                             (bn.running_var, 0.5, 1.5)):
            t.copy_(low + (high - low) * torch.rand(t.shape, generator=gen, dtype=t.dtype))


def _fuse_block_cases() -> list[Case]:
    def judge(got: Any, args: tuple) -> Mismatch | None:
        (block,) = args
        block = block.eval()
        ref = block.fused_conv()
        kernel, bias = _items(got, 2, "(kernel, bias)")
        kernel = _tensor(kernel, "kernel", tuple(ref.weight.shape))
        bias = _tensor(bias, "bias", tuple(ref.bias.shape))
        bad = _differ(kernel, ref.weight.detach(), atol=1e-9)
        if bad.any():
            centre_only = not bad[:, :, [0, 0, 0, 1, 1, 2, 2, 2], [0, 1, 2, 0, 2, 0, 1, 2]].any()
            diagonal_only = all(o == i for o, i, _, _ in bad.nonzero().tolist())
            if centre_only and diagonal_only and block.identity is not None:
                where = ("only at the centre tap of channel c → c: that is the identity branch, the Dirac kernel "
                         "(1 at the centre of c → c) times its BatchNorm's γ/√(σ² + ε)")
            elif centre_only:
                where = "only at the centre tap: that is where the 1×1 branch sits (padded to 3×3)"
            else:
                where = ("away from the centre tap: the 3×3 branch (kernel·γ/√(σ² + ε)), or a 1×1 kernel that is "
                         "not at the centre")
            return _first_difference(kernel, ref.weight.detach(), bad, "kernel", f"the kernel differs {where}")
        bn = [block.conv3x3[1], block.conv1x1[1]] + ([block.identity] if block.identity is not None else [])
        scales = [b.weight / torch.sqrt(b.running_var + b.eps) for b in bn]
        mistakes = {"the running means μ are missing (each branch adds β − μ·γ/√(σ² + ε))":
                    sum(b.bias for b in bn)}
        if block.identity is not None:
            mistakes["the identity branch's BatchNorm bias β − μ·γ/√(σ² + ε) is missing"] = (
                sum(b.bias - b.running_mean * s for b, s in zip(bn[:2], scales[:2])))
        bad = _differ(bias, ref.bias.detach(), atol=1e-9)
        if bad.any():
            why = next((m for m, v in mistakes.items() if not _differ(bias, v.detach(), atol=1e-9).any()),
                       "each branch adds its BatchNorm's β − μ·γ/√(σ² + ε)")
            return _first_difference(bias, ref.bias.detach(), bad, "bias", f"the bias differs: {why}")
        x = torch.randn(2, block.in_ch, 7, 7, generator=_gen(1), dtype=_F64)
        with torch.no_grad():
            ours = torch.relu(F.conv2d(x, kernel, bias, stride=block.stride, padding=1))
            return _compare(ours, block(x), "relu(conv(x)) of your fusion vs the block", atol=1e-9)

    cases = []
    for seed, (c_in, c_out, stride) in enumerate(((4, 4, 1), (3, 5, 1), (4, 4, 2), (6, 6, 1))):
        torch.manual_seed(seed)  # the convs' default initialisation
        block, gen = RepVGGBlock(c_in, c_out, stride).double(), _gen(seed)
        for bn in (block.conv3x3[1], block.conv1x1[1], block.identity):
            if bn is not None:
                _random_bn(bn, gen)
        branches = "3×3, 1×1 and identity branches" if block.identity is not None else "3×3 and 1×1 branches"
        cases.append(Case(f"RepVGGBlock({c_in} → {c_out} channels, stride {stride}): {branches}", (block.eval(),),
                          judge))
    return cases


def _composed_kernel(w1: Tensor, w2: Tensor) -> Tensor:
    """The kernel of conv2 ∘ conv1 (stride 1, no padding) from its impulse responses, shape (C2, C0, K, K)."""
    c0, k = w1.shape[1], w1.shape[-1] + w2.shape[-1] - 1
    impulses = torch.eye(c0 * k * k, dtype=_F64).reshape(c0 * k * k, c0, k, k)  # one input pixel set to 1
    response = F.conv2d(F.conv2d(impulses, w1), w2)  # (C0·K·K, C2, 1, 1)
    return response.reshape(c0, k, k, -1).permute(3, 0, 1, 2)


def _merge_convs_cases() -> list[Case]:
    def judge(got: Any, args: tuple) -> Mismatch | None:
        w1, b1, w2, b2 = args
        kernel_ref = _composed_kernel(w1, w2)
        bias_ref = b2 + w2.sum(dim=(2, 3)) @ b1  # b2 + Σ_{c1, taps} W2·b1
        kernel, bias = _items(got, 2, "(kernel, bias)")
        try:
            kernel = _tensor(kernel, "kernel", tuple(kernel_ref.shape))
        except _Wrong as wrong:
            m = wrong.mismatch
            raise _Wrong(Mismatch(f"{m.differed}: (C2, C0, k1 + k2 − 1, k1 + k2 − 1)", m.expected, m.got)) from None
        if mismatch := _compare(kernel, kernel_ref, "kernel", atol=1e-9):
            correlated = F.conv2d(w1.transpose(0, 1), w2, padding=w2.shape[-1] - 1).transpose(0, 1)
            if not _differ(kernel, correlated, atol=1e-9).any():
                mismatch = Mismatch(f"{mismatch.differed}: that is conv2d of the kernels, a cross-correlation; one "
                                    "of them must be flipped (or use conv_transpose2d)", mismatch.expected,
                                    mismatch.got)
            return mismatch
        if mismatch := _compare(bias, bias_ref, "bias", atol=1e-9):
            return Mismatch(f"{mismatch.differed}: the first conv's bias b1 goes through the second conv's weights, "
                            "so b = b2 + Σ over c1 and the taps of W2·b1", mismatch.expected, mismatch.got)
        return None

    cases = []
    for seed, (c0, c1, c2, k1, k2) in enumerate(((3, 4, 4, 3, 3), (2, 3, 2, 1, 3), (4, 2, 3, 3, 1), (3, 6, 2, 3, 3))):
        w1, w2 = _randn(c1, c0, k1, k1, seed=seed), _randn(c2, c1, k2, k2, seed=seed + 10)
        b1, b2 = _randn(c1, seed=seed + 20), _randn(c2, seed=seed + 30)
        cases.append(Case(f"a {k1}×{k1} conv {c0} → {c1} channels, then a {k2}×{k2} conv {c1} → {c2}",
                          (w1, b1, w2, b2), judge))
    return cases


def _slope_counts_cases() -> list[Case]:
    def judge(got: Any, args: tuple) -> Mismatch | None:
        model, input_shape = args
        counts = linearize.slope_counts(model, input_shape)
        channel, layer = (_number(v, n) for v, n in zip(_items(got, 2, "(channel_slopes, layer_slopes)"),
                                                         ("channel_slopes", "layer_slopes")))
        convs = sum(m.out_channels for m in model.modules() if isinstance(m, nn.Conv2d))
        if mismatch := _known(channel, counts["channel_slopes"], {
                "that is the sum of the convs' output channels; count the channels each ReLU sees (a RepVGG "
                "training block has two convs before its one ReLU)": convs}):
            return Mismatch(f"channel slopes: {mismatch.differed}", mismatch.expected, mismatch.got)
        if mismatch := _known(layer, counts["layer_slopes"], {"that is the number of convs": sum(
                isinstance(m, nn.Conv2d) for m in model.modules())}):
            return Mismatch(f"layer slopes (one per ReLU layer): {mismatch.differed}", mismatch.expected,
                            mismatch.got)
        return None

    torch.manual_seed(0)
    mlp = nn.Sequential(nn.Linear(5, 7), nn.ReLU(), nn.Linear(7, 3), nn.ReLU(), nn.Linear(3, 2))
    cifar = (1, 3, 32, 32)
    return [
        Case("RepVGG-A0 at 1/8 width, deploy form (plain conv + ReLU)", (plain_cifar_net("A0", 10, 0.125), cifar),
             judge),
        Case("RepVGG-A0 at 1/8 width, training form (3×3, 1×1 and identity branches)",
             (repvgg("A0", 10, cifar=True, width_mult=0.125), cifar), judge),
        Case("ResNet-20 (CIFAR)", (cifar_resnet(20), cifar), judge),
        Case("a 3-layer MLP on inputs of size 5", (mlp, (1, 5)), judge),
    ]


# ---------------------------------------------------------------------------------------------------------------------
# Notebook 03: paths and NAPL
# ---------------------------------------------------------------------------------------------------------------------


def _plain_net(width: int, linear_channels: Sequence[int], seed: int) -> nn.Module:
    """A plain MLP of len(linear_channels) PReLU layers of `width` units, that many channels of each frozen linear."""
    layers = [m for _ in linear_channels for m in (nn.Linear(width, width), nn.ReLU())]
    net = linearize.to_prelu(nn.Sequential(*layers, nn.Linear(width, width)), "channel", (1, width))
    gen = _gen(seed)
    with torch.no_grad():
        for (_, prelu), k in zip(linearize.prelu_modules(net), linear_channels):
            pick = torch.randperm(width, generator=gen)[:k]
            prelu.frozen[pick], prelu.alpha[pick] = True, 1.0
    return net


_PLAIN_NETS = ((4, (0, 2, 4, 1)), (8, (3, 0, 8, 5, 1, 6)), (16, (8,) * 6), (5, (2,)))  # (width, linear channels)


def _fraction_cases(judge_for: Callable[[nn.Module, int], Callable[[Any, tuple], Mismatch | None]]) -> list[Case]:
    """One case per plain net of `_PLAIN_NETS`: the learner gets its nonlinear fractions, the judge the net."""
    cases = []
    for seed, (width, linear) in enumerate(_PLAIN_NETS):
        net = _plain_net(width, linear, seed)
        fractions = [float(m.nonlinear_mask().double().mean()) for _, m in linearize.prelu_modules(net)]
        cases.append(Case(f"a plain net of {len(linear)} layers of {width} channels, nonlinear fractions "
                          f"{[round(p, 3) for p in fractions]}", (fractions,), judge_for(net, width)))
    return cases


def _plain_napl_cases() -> list[Case]:
    def judge_for(net: nn.Module, width: int) -> Callable[[Any, tuple], Mismatch | None]:
        def judge(got: Any, args: tuple) -> Mismatch | None:
            s, n = sum(args[0]), len(args[0])
            return _known(_number(got, "NAPL"), paths.napl(net, (1, width)), {
                "off by one (the read-out layer has no nonlinearity; NAPL counts nonlinear units only)": s + 1,
                "off by one": s - 1,
                "that is the mean of the fractions; a path meets layer l's nonlinearity with probability p_l, and "
                "these add up": s / n,
                "that counts the layers, not the share of nonlinear channels in each": float(n)})

        return judge

    return _fraction_cases(judge_for)


def _chain_histogram_cases() -> list[Case]:
    def judge_for(net: nn.Module, width: int) -> Callable[[Any, tuple], Mismatch | None]:
        def judge(got: Any, args: tuple) -> Mismatch | None:
            (fractions,) = args
            exact = paths.path_length_distribution(net, (1, width))  # ends at its last nonzero entry
            expected = torch.cat([exact, torch.zeros(len(fractions) + 1 - len(exact), dtype=_F64)])
            got = _tensor(got, "the histogram")
            if got.shape != expected.shape:
                return Mismatch("the histogram has the wrong length: it needs one entry per length 0, 1, …, L",
                                f"{len(expected)} entries", f"{got.numel()} entries")
            if not _differ(got, expected, atol=1e-9).any():
                return None
            if abs(got.sum().item() - 1) > 1e-9:
                return Mismatch(f"the histogram sums to {got.sum().item():.6g}, not 1: at each layer mix the "
                                "histogram with its shifted copy, (1 − p)·h + p·shift(h), instead of adding "
                                "p·shift(h) to it", _show(expected), _show(got))
            if not _differ(got, expected.flip(0), atol=1e-9).any():
                return Mismatch("the histogram is reversed: entry k is the probability of meeting k nonlinear units",
                                _show(expected), _show(got))
            p, L = sum(fractions) / len(fractions), len(fractions)
            binomial = torch.tensor([math.comb(L, k) * p**k * (1 - p) ** (L - k) for k in range(L + 1)], dtype=_F64)
            if not _differ(got, binomial, atol=1e-9).any():
                return Mismatch("that is Binomial(L, p̄) with the mean fraction p̄; the layers have different p_l, "
                                "so the lengths are Poisson-binomial", _show(expected), _show(got))
            return _compare(got, expected, "the histogram", atol=1e-9)

        return judge

    return _fraction_cases(judge_for)


class _SkipAround(nn.Module):
    """x + branch(x): a skip around `depth` fully connected ReLU layers of `width` units, one input and one output."""

    def __init__(self, width: int, depth: int):
        super().__init__()
        sizes = [1] + [width] * depth
        layers = [m for a, b in zip(sizes, sizes[1:]) for m in (nn.Linear(a, b), nn.ReLU())]
        self.branch = nn.Sequential(*layers, nn.Linear(width, 1))

    def forward(self, x: Tensor) -> Tensor:
        return x + self.branch(x)


def _skip_cases() -> list[Case]:
    def judge(got: Any, args: tuple) -> Mismatch | None:
        width, depth = args
        net = _SkipAround(width, depth)
        apl, napl = paths.apl(net, (1, 1)), paths.napl(net, (1, 1))
        got_apl, got_napl = (_number(v, n) for v, n in zip(_items(got, 2, "(apl, napl)"), ("APL", "NAPL")))
        if mismatch := _known(got_apl, apl, {
                "your APL weighs the skip ½, as NAPL does; APL counts each of the w^depth + 1 paths once": napl,
                "that counts w·depth paths through the branch; a path picks one of w units in each of the depth "
                "layers, w^depth": depth * width * depth / (width * depth + 1)}):
            return Mismatch(f"APL: {mismatch.differed}", mismatch.expected, mismatch.got)
        if mismatch := _known(got_napl, napl, {
                "your NAPL counts every path once (that is APL); NAPL takes each summand of the addition with "
                "probability ½": apl}):
            return Mismatch(f"NAPL: {mismatch.differed}", mismatch.expected, mismatch.got)
        return None

    return [Case(f"width {w}, depth {d}", (w, d), judge) for w, d in ((4, 4), (2, 3), (16, 2), (1, 5), (3, 6))]


class _ResidualMLP(nn.Module):
    """An optional stem ReLU, then residual blocks x + branch(x) with `branch_relus` ReLUs inside, each block followed
    by a ReLU after the addition when `relu_after`."""

    def __init__(self, blocks: Sequence[tuple[int, bool]], stem: bool, width: int = 3):
        super().__init__()
        self.stem = nn.Sequential(nn.Linear(width, width), *([nn.ReLU()] if stem else []))
        self.branches = nn.ModuleList(
            nn.Sequential(*[m for _ in range(k) for m in (nn.Linear(width, width), nn.ReLU())],
                          nn.Linear(width, width)) for k, _ in blocks)
        self.after = nn.ModuleList(nn.ReLU() if relu else nn.Identity() for _, relu in blocks)
        self.kinds = ["trunk"] * stem + [kind for k, relu in blocks for kind in ["branch"] * k + ["trunk"] * relu]

    def forward(self, x: Tensor) -> Tensor:
        x = self.stem(x)
        for branch, after in zip(self.branches, self.after):
            x = after(x + branch(x))
        return x


def _resnet_kinds(model: nn.Module, residual: bool) -> list[str]:
    """"trunk" or "branch" for each ReLU of a CIFAR ResNet, in order (relu1 sits inside the branch)."""
    return ["branch" if residual and a.name.endswith("relu1") else "trunk" for a in paths.activation_layers(model)]


def _resnet_napl_cases() -> list[Case]:
    def judge_for(model: nn.Module, shape: tuple[int, ...]) -> Callable[[Any, tuple], Mismatch | None]:
        def judge(got: Any, args: tuple) -> Mismatch | None:
            (kinds,) = args
            n_trunk, n_branch = kinds.count("trunk"), kinds.count("branch")
            return _known(_number(got, "NAPL"), paths.napl(model, shape), {
                "every ReLU counted 1; a ReLU inside a branch is met only by the paths that enter the branch, half "
                "of them": float(len(kinds)),
                "every ReLU counted ½; a ReLU on the trunk (the stem, or after an addition) lies on every path":
                    len(kinds) / 2,
                "the trunk ReLUs are missing; each lies on every path and counts 1": n_branch / 2,
                "off by one": n_trunk + n_branch / 2 - 1})

        return judge

    cifar = (1, 3, 32, 32)
    nets = [("ResNet-20 (CIFAR)", cifar_resnet(20), _resnet_kinds(cifar_resnet(20), True), cifar),
            ("plain-20, its twin without shortcuts", cifar_resnet(20, plain=True),
             _resnet_kinds(cifar_resnet(20, plain=True), False), cifar)]
    for label, blocks, stem in (
            ("a stem ReLU, then 3 blocks with 2 ReLUs in each branch and none after the addition",
             ((2, False),) * 3, True),
            ("4 blocks with 1, 3, 2 and 1 ReLUs in the branch, ReLUs after some additions",
             ((1, True), (3, False), (2, True), (1, False)), False)):
        model = _ResidualMLP(blocks, stem)
        nets.append((label, model, model.kinds, (1, 3)))
    return [Case(label, (kinds,), judge_for(model, shape)) for label, model, kinds, shape in nets]


# ---------------------------------------------------------------------------------------------------------------------
# The registry
# ---------------------------------------------------------------------------------------------------------------------

_NB01, _NB02, _NB03 = "01_function_spaces", "02_prelu_linearization", "03_paths_and_napl"
EXERCISES: dict[str, Exercise] = {e.name: e for e in (
    Exercise("identity_block", _NB01, "identity_block_weights", "(W̄, b̄): float64 tensors of shapes (d, d), (d,)",
             "★ easy", "With W̄ = 0 the branch sees only b̄, whatever x is. Which b̄ makes relu(b̄) zero?",
             _identity_block_cases),
    Exercise("collision", _NB01, "colliding_inputs", "(x1, x2): two float64 tensors of shape (d,)", "★★ medium",
             "Choose the pre-activations first: two vectors z1 ≠ z2 that ReLU maps to the same output (they may "
             "differ only where both are negative). An invertible W then gives x = W⁻¹(z − b): torch.linalg.solve.",
             _collision_cases),
    Exercise("relu_wide_layer", _NB01, "relu_wide_layer", "(W1, b1, A, b2) of shapes (2d, d), (2d,), (d, 2d), (d,)",
             "★★ medium", "The top d units compute the branch relu(W̄x + b̄). The bottom d units compute "
             "relu(εx + 1) = εx + 1 while εx_i > −1; the read-out A = [I, I/ε] with b2 = −1/ε turns that back into x "
             "and adds it to the branch.", _relu_wide_layer_cases),
    Exercise("wide_layer", _NB01, "wide_layer", "(W1, b1, A, b2) of shapes (2d, d), (2d,), (d, 2d), (d,)",
             "★★★ hard", "φ(εx + c) ≈ φ(c) + ε·φ'(c)·x. Get φ(c) and φ'(c) from `phi` itself (torch.autograd.grad "
             "on a 0-dim tensor with requires_grad, or a central difference), then undo the affine part in the "
             "read-out: divide by ε·φ'(c) and subtract φ(c)/(ε·φ'(c)).", _wide_layer_cases),
    Exercise("channel_prelu", _NB02, "channel_prelu", "a tensor of the shape of x", "★ easy",
             "max(0, x) + α·min(0, x), with α lined up with dim 1 of x: alpha.reshape(1, -1, 1, …) has as many "
             "trailing 1s as x has dimensions after the channels.", _channel_prelu_cases),
    Exercise("l05_penalty", _NB02, "l05", "a 0-dim tensor that carries gradient to alpha", "★ easy",
             "Index the slopes that are not frozen (alpha[~frozen]) before the power, then sum |1 − α|^0.5 "
             "with torch operations so the gradient reaches alpha.", _l05_cases),
    Exercise("freeze", _NB02, "freeze_slopes", "(alpha, frozen): a float tensor and a bool tensor of alpha's shape",
             "★★ medium", "New candidates are the slopes with |α − 1| < tol or α ≥ 1 (the crossing rule). The "
             "frozen mask only grows (old | new), and every frozen slope holds exactly 1.", _freeze_cases),
    Exercise("slope_counts", _NB02, "slope_counts", "(channel_slopes, layer_slopes): two ints", "★★ medium",
             "Run the model once on torch.zeros(input_shape) with a forward hook on every nn.ReLU module: the hook "
             "sees the ReLU's output, whose dim 1 is its number of channels.", _slope_counts_cases),
    Exercise("fuse_block", _NB02, "fuse_block", "(kernel, bias) of shapes (C_out, C_in, 3, 3), (C_out,)", "★★★ hard",
             "Fold each BatchNorm (eval mode) into its branch: kernel·γ/√(σ² + ε), bias β − μ·γ/√(σ² + ε). Pad the "
             "1×1 kernel to the centre of a 3×3 one (nn.functional.pad(k, (1, 1, 1, 1))); the identity is the 3×3 Dirac kernel, "
             "1 at the centre of channel c → c, with its own BatchNorm. Then add the three kernels and the biases.",
             _fuse_block_cases),
    Exercise("merge_convs", _NB02, "merge_two_convs", "(kernel, bias) of shapes (C2, C0, k1 + k2 − 1, …), (C2,)",
             "★★★ hard", "W[c2, c0, u] = Σ over c1 and over taps i + j = u of W2[c2, c1, j]·W1[c1, c0, i]: "
             "nn.functional.conv_transpose2d(w2, w1) computes exactly this. The bias: b2 plus W2 applied to the constant b1, "
             "b2 + w2.sum((2, 3)) @ b1.", _merge_convs_cases),
    Exercise("plain_napl", _NB03, "plain_napl", "a float", "★ easy",
             "In layer l a path picks a channel uniformly, so it meets a nonlinearity with probability p_l. NAPL is "
             "the expected number of nonlinearities met.", _plain_napl_cases),
    Exercise("resnet_napl", _NB03, "resnet_napl", "a float", "★ easy",
             "A random walk takes each summand of an addition with probability ½. A ReLU on the trunk is on every "
             "path; a ReLU inside a branch is met only by the walks that enter the branch.", _resnet_napl_cases),
    Exercise("skip_apl_napl", _NB03, "skip_apl_napl", "(apl, napl): two floats", "★★ medium",
             "Count paths: the skip is 1 path of length 0; the branch has width^depth paths, each meeting depth "
             "ReLUs. APL weighs every path the same; NAPL gives the skip and the branch ½ each.", _skip_cases),
    Exercise("chain_histogram", _NB03, "chain_histogram", "a float64 tensor of shape (L + 1,)", "★★ medium",
             "Start from h = [1, 0, …, 0] (length L + 1). For each layer, h ← (1 − p)·h + p·shift(h), where "
             "shift moves every entry one place up (torch.roll on a vector whose last entry is 0).",
             _chain_histogram_cases),
)}
