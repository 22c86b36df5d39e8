"""The checkers of notebook 03_paths_and_napl: NAPL of a plain net and of a ResNet, APL and NAPL of a skip around a
branch, and the exact path-length histogram of a plain chain, against `course_lib.paths` on networks built here.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from .. import linearize, paths
from ..models import cifar_resnet
from .compare import (
    F64,
    Case,
    Mismatch,
    compare,
    differ,
    generator,
    known_mistake,
    read_items,
    read_number,
    read_tensor,
    show,
)

__all__ = ["plain_napl_cases", "resnet_napl_cases", "skip_cases", "chain_histogram_cases"]


def _plain_net(width: int, linear_channels: Sequence[int], seed: int) -> nn.Module:
    """A plain MLP of len(linear_channels) PReLU layers of `width` units, that many channels of each frozen linear."""
    layers = [m for _ in linear_channels for m in (nn.Linear(width, width), nn.ReLU())]
    net = linearize.to_prelu(nn.Sequential(*layers, nn.Linear(width, width)), "channel", (1, width))
    gen = generator(seed)
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


def plain_napl_cases() -> list[Case]:
    def judge_for(net: nn.Module, width: int) -> Callable[[Any, tuple], Mismatch | None]:
        def judge(got: Any, args: tuple) -> Mismatch | None:
            s, n = sum(args[0]), len(args[0])
            return known_mistake(read_number(got, "NAPL"), paths.napl(net, (1, width)), {
                "off by one (the read-out layer has no nonlinearity; NAPL counts nonlinear units only)": s + 1,
                "off by one": s - 1,
                "that is the mean of the fractions; a path meets layer l's nonlinearity with probability p_l, and "
                "these add up": s / n,
                "that counts the layers, not the share of nonlinear channels in each": float(n)})

        return judge

    return _fraction_cases(judge_for)


def chain_histogram_cases() -> list[Case]:
    def judge_for(net: nn.Module, width: int) -> Callable[[Any, tuple], Mismatch | None]:
        def judge(got: Any, args: tuple) -> Mismatch | None:
            (fractions,) = args
            exact = paths.path_length_distribution(net, (1, width))  # ends at its last nonzero entry
            expected = torch.cat([exact, torch.zeros(len(fractions) + 1 - len(exact), dtype=F64)])
            got = read_tensor(got, "the histogram")
            if got.shape != expected.shape:
                return Mismatch("the histogram has the wrong length: it needs one entry per length 0, 1, …, L",
                                f"{len(expected)} entries", f"{got.numel()} entries")
            if not differ(got, expected, atol=1e-9).any():
                return None
            if abs(got.sum().item() - 1) > 1e-9:
                return Mismatch(f"the histogram sums to {got.sum().item():.6g}, not 1: at each layer mix the "
                                "histogram with its shifted copy, (1 − p)·h + p·shift(h), instead of adding "
                                "p·shift(h) to it", show(expected), show(got))
            if not differ(got, expected.flip(0), atol=1e-9).any():
                return Mismatch("the histogram is reversed: entry k is the probability of meeting k nonlinear units",
                                show(expected), show(got))
            p, L = sum(fractions) / len(fractions), len(fractions)
            binomial = torch.tensor([math.comb(L, k) * p**k * (1 - p) ** (L - k) for k in range(L + 1)], dtype=F64)
            if not differ(got, binomial, atol=1e-9).any():
                return Mismatch("that is Binomial(L, p̄) with the mean fraction p̄; the layers have different p_l, "
                                "so the lengths are Poisson-binomial", show(expected), show(got))
            return compare(got, expected, "the histogram", atol=1e-9)

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


def skip_cases() -> list[Case]:
    def judge(got: Any, args: tuple) -> Mismatch | None:
        width, depth = args
        net = _SkipAround(width, depth)
        apl, napl = paths.apl(net, (1, 1)), paths.napl(net, (1, 1))
        got_apl, got_napl = (read_number(v, n) for v, n in zip(read_items(got, 2, "(apl, napl)"), ("APL", "NAPL")))
        if mismatch := known_mistake(got_apl, apl, {
                "your APL weighs the skip ½, as NAPL does; APL counts each of the w^depth + 1 paths once": napl,
                "that counts w·depth paths through the branch; a path picks one of w units in each of the depth "
                "layers, w^depth": depth * width * depth / (width * depth + 1)}):
            return Mismatch(f"APL: {mismatch.differed}", mismatch.expected, mismatch.got)
        if mismatch := known_mistake(got_napl, napl, {
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


def resnet_napl_cases() -> list[Case]:
    def judge_for(model: nn.Module, shape: tuple[int, ...]) -> Callable[[Any, tuple], Mismatch | None]:
        def judge(got: Any, args: tuple) -> Mismatch | None:
            (kinds,) = args
            n_trunk, n_branch = kinds.count("trunk"), kinds.count("branch")
            return known_mistake(read_number(got, "NAPL"), paths.napl(model, shape), {
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


