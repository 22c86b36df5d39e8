"""What the exercise checkers share: a hidden test case, what differed, and how answers are read and compared.

Part of `course_lib.exercises` (see its docstring): the checkers of each notebook build `Case`s whose judges use the
readers here (`read_tensor`, `read_items`, `read_number`) and the comparisons (`compare`, `known_mistake`). A reader
raises `Wrong` when what came back is unusable; `exercises.check` reports its `Mismatch`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

__all__ = ["F64", "Mismatch", "Wrong", "Case", "show", "fmt", "read_items", "read_tensor", "read_number", "differ",
           "worst_difference", "compare", "known_mistake", "generator", "randn", "vector_text"]

F64 = torch.float64


@dataclass(frozen=True)
class Mismatch:
    """What differed between the learner's answer and the reference, in words."""

    differed: str
    expected: str
    got: str


class Wrong(Exception):
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


def fmt(value: Any) -> str:
    """A number as the messages print it (6 significant digits)."""
    return f"{value:.6g}" if isinstance(value, float) else str(value)


def show(value: Any) -> str:
    """A short description of what came back."""
    if torch.is_tensor(value):
        if value.numel() <= 12:
            return f"tensor {[round(v, 6) for v in value.detach().double().flatten().tolist()]} of shape " \
                   f"{tuple(value.shape)}"
        return f"tensor of shape {tuple(value.shape)}, dtype {value.dtype}"
    if isinstance(value, (tuple, list)):
        return "(" + ", ".join(show(v) for v in value) + ")"
    return repr(value) if not isinstance(value, float) else fmt(value)


def read_items(value: Any, n: int, what: str) -> tuple:
    """`value` as a tuple of n items, else a `Wrong`."""
    if not isinstance(value, (tuple, list)) or len(value) != n:
        raise Wrong(Mismatch(f"expected {n} values {what}", f"a tuple {what}", show(value)))
    return tuple(value)


def read_tensor(value: Any, what: str, shape: tuple[int, ...] | None = None) -> Tensor:
    """`value` as a detached float64 CPU tensor of `shape`, else a `Wrong` that names `what`."""
    if not torch.is_tensor(value):
        try:
            value = torch.as_tensor(value, dtype=F64)
        except (TypeError, ValueError, RuntimeError):
            raise Wrong(Mismatch(f"{what} is not a tensor", f"a tensor of shape {shape}", show(value))) from None
    if shape is not None and tuple(value.shape) != tuple(shape):
        raise Wrong(Mismatch(f"{what} has the wrong shape", f"{what} of shape {tuple(shape)}",
                              f"{what} of shape {tuple(value.shape)}"))
    return value.detach().to("cpu", F64)


def read_number(value: Any, what: str) -> float:
    if torch.is_tensor(value) and value.numel() == 1:
        return float(value.detach())
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    raise Wrong(Mismatch(f"{what} is not a number", f"{what} as a float", show(value)))


def differ(got: Tensor, expected: Tensor, atol: float, rtol: float = 1e-7) -> Tensor:
    """Bool mask of the entries where `got` and `expected` differ (NaN counts as different)."""
    return ~((got - expected).abs() <= atol + rtol * expected.abs())


def worst_difference(got: Tensor, expected: Tensor, bad: Tensor, what: str, differed: str) -> Mismatch:
    """A `Mismatch` that shows the worst entry (NaN first)."""
    error = (got - expected).abs().nan_to_num(nan=math.inf) * bad
    index = tuple(int(i) for i in torch.unravel_index(error.flatten().argmax(), error.shape))
    at = f"{what}[{', '.join(map(str, index))}]" if index else what
    return Mismatch(differed, f"{at} = {fmt(float(expected[index]))}", f"{at} = {fmt(float(got[index]))}")


def compare(got: Tensor, expected: Tensor, what: str, atol: float = 1e-9, rtol: float = 1e-7,
             explain: Callable[[Tensor], str] | None = None) -> Mismatch | None:
    """None when `got` equals `expected` within tolerance, else a `Mismatch` naming how many entries differ."""
    expected = expected.detach().to("cpu", F64)
    got = read_tensor(got, what, tuple(expected.shape))
    bad = differ(got, expected, atol, rtol)
    if not bad.any():
        return None
    differed = f"{what} differs in {int(bad.sum())} of {bad.numel()} entries"
    return worst_difference(got, expected, bad, what, differed + (f", {explain(bad)}" if explain else ""))


def known_mistake(got: float, expected: float, mistakes: dict[str, float]) -> Mismatch | None:
    """None when `got` is `expected`; else a `Mismatch` that names the known mistake `got` matches, if any."""
    if math.isclose(got, expected, rel_tol=1e-9, abs_tol=1e-9):
        return None
    why = next((m for m, v in mistakes.items() if math.isclose(got, v, rel_tol=1e-9, abs_tol=1e-9)), None)
    return Mismatch(f"the value differs{f': {why}' if why else ''}", fmt(expected), fmt(got))


def generator(seed: int) -> torch.Generator:
    """A CPU generator with this seed: the hidden cases are the same on every machine."""
    return torch.Generator().manual_seed(seed)


def randn(*shape: int, seed: int) -> Tensor:
    """Seeded standard normal float64 values of `shape`."""
    return torch.randn(*shape, generator=generator(seed), dtype=F64)


def vector_text(t: Tensor) -> str:
    """A vector printed to 4 significant digits."""
    return "[" + ", ".join(f"{v:.4g}" for v in t.tolist()) + "]"


