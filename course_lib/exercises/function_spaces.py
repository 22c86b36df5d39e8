"""The checkers of notebook 01_function_spaces: the identity residual block, colliding inputs of a square ReLU layer,
and the Proposition 1 construction for ReLU and for a smooth φ, against `course_lib.theory`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from .. import theory
from .compare import F64, Case, Mismatch, Wrong, compare, generator, randn, read_items, read_tensor, vector_text

__all__ = ["identity_block_cases", "collision_cases", "relu_wide_layer_cases", "wide_layer_cases"]


def identity_block_cases() -> list[Case]:
    def judge(got: Any, args: tuple) -> Mismatch | None:
        (d,) = args
        W, b = read_items(got, 2, "(W̄, b̄)")
        W, b = read_tensor(W, "W̄", (d, d)), read_tensor(b, "b̄", (d,))
        x = torch.cat([100 * randn(50, d, seed=d), randn(50, d, seed=d + 1)])  # (100, d), large and small
        added = theory.residual_block(x, W, b, "relu") - x  # what the branch adds, (100, d)
        gap = added.abs().max().item()
        if gap <= 1e-12:
            return None
        k = int(added.abs().amax(1).argmax())
        why = ("the branch adds the same nonzero vector for every x, relu(b̄); it is 0 only when b̄ ≤ 0"
               if (added - added[0]).abs().max() <= 1e-12 else
               "what the branch adds depends on x: with any nonzero entry in W̄, some inputs get through the ReLU")
        return Mismatch(f"R(x) = relu(W̄x + b̄) + x is not x: {why}", "R(x) − x = 0 for every x",
                        f"max |R(x) − x| = {gap:.4g}, e.g. at x = {vector_text(x[k])}")

    return [Case(f"d = {d}", (d,), judge) for d in (1, 3, 8)]


def collision_cases() -> list[Case]:
    def judge(got: Any, args: tuple) -> Mismatch | None:
        W, b = (read_tensor(a, "W") for a in args)
        d = W.shape[0]
        x1, x2 = read_items(got, 2, "(x1, x2)")
        x1, x2 = read_tensor(x1, "x1", (d,)), read_tensor(x2, "x2", (d,))
        if (x1 - x2).norm() <= 1e-6 * max(1.0, x1.norm().item()):
            return Mismatch("x1 and x2 are the same input", "two different inputs with the same output",
                            f"x1 = {vector_text(x1)}, x2 = {vector_text(x2)}")
        z1, z2 = x1 @ W.T + b, x2 @ W.T + b  # pre-activations (d,)
        bad = (torch.relu(z1) - torch.relu(z2)).abs() > 1e-9 * (1 + max(z1.abs().max(), z2.abs().max()))
        if not bad.any():
            return None
        k = int(bad.nonzero()[0])
        return Mismatch(f"the outputs differ in coordinate {k}, where the pre-activations are Wx1 + b = {z1[k]:.4g} "
                        f"and Wx2 + b = {z2[k]:.4g}: ReLU keeps a difference unless both are ≤ 0",
                        "relu(Wx1 + b) = relu(Wx2 + b)",
                        f"relu(Wx1 + b) = {vector_text(torch.relu(z1))}, relu(Wx2 + b) = {vector_text(torch.relu(z2))}")

    cases = []
    for d, seed, shift in ((2, 0, 0.0), (3, 1, 0.0), (5, 2, 0.0), (4, 3, 3.0)):
        W, b = randn(d, d, seed=seed), randn(d, seed=seed + 10) + shift
        bias = "a bias b" if shift == 0 else f"a bias b ≈ +{shift:g} in every coordinate"
        cases.append(Case(f"a random invertible {d}x{d} W and {bias}", (W, b), judge))
    return cases


_WIDE_SHAPES = {"W1": lambda d: (2 * d, d), "b1": lambda d: (2 * d,), "A": lambda d: (d, 2 * d), "b2": lambda d: (d,)}


def _wide_matrices(got: Any, d: int) -> dict[str, Tensor]:
    """The learner's (W1, b1, A, b2), checked for shape: the hidden layer has width 2d."""
    values = read_items(got, 4, "(W1, b1, A, b2)")
    out = {}
    for (name, shape), value in zip(_WIDE_SHAPES.items(), values):
        try:
            out[name] = read_tensor(value, name, shape(d))
        except Wrong as wrong:
            m = wrong.mismatch
            raise Wrong(Mismatch(f"{m.differed} (the hidden layer has width 2d = {2 * d})", m.expected, m.got)) \
                from None
    return out


def relu_wide_layer_cases() -> list[Case]:
    def judge(got: Any, args: tuple) -> Mismatch | None:
        W, b, eps = args
        d = W.shape[0]
        m = _wide_matrices(got, d)
        x = (2 * torch.rand(400, d, generator=generator(d), dtype=F64) - 1) * (0.9 / eps)  # |x_i| < 0.9/ε
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
                        "F(x) = R(x) up to rounding",
                        f"max |F(x) − R(x)| = {error[k]:.4g} at x = {vector_text(x[k])}")

    cases = []
    for d, eps, seed in ((2, 0.1, 0), (4, 0.01, 1), (3, 0.5, 2)):
        W, b = randn(d, d, seed=seed) / d**0.5, randn(d, seed=seed + 10)
        cases.append(Case(f"d = {d}, ε = {eps}", (W, b, eps), judge))
    return cases


_WIDE_FORMULAS = {"W1": "W1 stacks W̄ on top of ε·I", "b1": "b1 stacks b̄ on top of c·1",
                  "A": "A = [I, I/(ε·φ'(c))]", "b2": "b2 = −φ(c)/(ε·φ'(c))·1"}


def wide_layer_cases() -> list[Case]:
    def judge_for(name: str) -> Callable[[Any, tuple], Mismatch | None]:
        def judge(got: Any, args: tuple) -> Mismatch | None:
            W, b, eps, _, _ = args
            act, ref = theory.PHIS[name], theory.residual_as_wide_layer(W, b, name, eps)
            m = _wide_matrices(got, W.shape[0])
            for part, formula in _WIDE_FORMULAS.items():
                if mismatch := compare(m[part], getattr(ref, part), part, atol=1e-8 / eps, rtol=1e-6):
                    return Mismatch(f"{mismatch.differed} ({formula}; here φ(c) = {act.phi_c:.6g} and φ'(c) = "
                                    f"{act.dphi_c:.6g})", mismatch.expected, mismatch.got)
            return None

        return judge

    cases = []
    for i, (name, eps) in enumerate((("relu", 0.1), ("softplus", 0.1), ("tanh", 0.01), ("gelu", 0.05))):
        W, b, act = randn(3, 3, seed=i) / 3**0.5, randn(3, seed=i + 10), theory.PHIS[name]
        cases.append(Case(f"φ = {name}, c = {act.c:g}, ε = {eps}, d = 3", (W, b, eps, act.fn, act.c),
                          judge_for(name)))
    return cases


