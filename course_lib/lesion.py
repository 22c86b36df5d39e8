"""Lesion study: delete parts of a trained network at test time and measure what is left of its accuracy.

Veit, Wilber & Belongie (2016, "Residual networks behave like ensembles of relatively shallow networks", §4) deleted
single residual blocks of a trained ResNet at test time (branch removed, shortcut kept): accuracy barely moved, and
it fell smoothly as more random blocks went; deleting a layer of a plain VGG destroyed it. This module holds those
lesions, the same lesions on the plain nets that post-training linearization extracts (arXiv 2506.14386, §3), and the
curves: accuracy of the intact net, of every single deletion, and of k random deletions. Taught in notebook 05.

The lesions (a *unit* is what one lesion deletes; `lesion_units` lists them in forward order):

- `"block"`, on a `CifarResNet` (residual, or its plain twin `plain=True`): unit i is the i-th `BasicBlock`. Deleted,
  the block outputs `shortcut(x)` of its input: the identity, or at a widening block the option-A map (every second
  pixel, zero-padded channels). In a residual net that is the block with its branch removed, exactly: the block
  computes relu(branch(x) + shortcut(x)), its input is a ReLU output (>= 0), so with the branch gone
  relu(shortcut(x)) = shortcut(x). In the plain twin there is no shortcut to keep: the same map replaces the block,
  so its two conv layers are simply gone.
- `"nonlinear"`, on a `PlainConvNet` (the deploy/linearized plain net of the CIFAR experiment): unit i is the i-th
  layer (a conv and the modules after it up to the next conv: its activation). Deleted, the layer's *nonlinear*
  channels output 0 (a `LinearizablePReLU` channel whose effective slope is not exactly 1; every channel of an
  `nn.ReLU`), its *linear* channels (slope exactly 1) still pass their pre-activation. The analogue of removing a
  residual branch: only the linear "skip" channels pass (`linearize.learned_skips`). In a layer-wise net this zeroes
  a nonlinear layer entirely and leaves a linear layer unchanged.
- `"layer"`, on a `PlainConvNet`: the layer (conv + activation) is replaced by the identity. Only layers that keep the
  shape qualify: a conv with as many output as input channels, stride 1, dilation·(kernel − 1) = 2·padding (the
  3x3, padding-1 convs inside a RepVGG stage; not the first layer of a stage, which widens and downsamples).

Speed (exact maths): the lesion sets are grouped by their first deleted unit. For each batch the intact net runs once;
at unit i its activation (the intact prefix) is reused by every set whose first deletion is i, which then runs only
the rest of the net. Sets that repeat are evaluated once. fp32, large eval batches, channels_last memory format.

Ours: the random k-sets are drawn without replacement within a set, independently per draw, from a generator seeded
with (seed, k), so each k is reproducible on its own.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from torch import nn

from . import judging
from .data import CifarLoader
from .errors import ConfigError
from .linearize import LinearizablePReLU
from .models.cifar_resnet import CifarResNet
from .models.repvgg import PlainConvNet

__all__ = ["KINDS", "lesion_units", "lesioned_forward", "random_lesions", "lesion_accuracies", "draw_summary",
           "lesion_curve", "retained_share", "paired_drop"]

Kind = Literal["block", "nonlinear", "layer"]
KINDS: dict[str, type] = {"block": CifarResNet, "nonlinear": PlainConvNet, "layer": PlainConvNet}


# ---------------------------------------------------------------------------------------------------------------------
# The network as a chain of steps, each with its intact and (where deletable) lesioned form
# ---------------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Step:
    name: str
    intact: Callable[[torch.Tensor], torch.Tensor]
    lesioned: Callable[[torch.Tensor], torch.Tensor] | None  # None: not a unit of this kind


def _check_kind(model: nn.Module, kind: str) -> None:
    if kind not in KINDS:
        raise ConfigError(f"unknown lesion kind {kind!r}; choose one of {list(KINDS)}")
    if not isinstance(model, KINDS[kind]):
        raise ConfigError(f"the {kind!r} lesion needs a {KINDS[kind].__name__}, got a {type(model).__name__}; "
                          "use 'block' for a CifarResNet and 'nonlinear' or 'layer' for a PlainConvNet")


def _resnet_steps(model: CifarResNet) -> list[_Step]:
    steps = [_Step("stem", lambda x: model.relu(model.bn1(model.conv1(x))), None)]
    for stage in ("layer1", "layer2", "layer3"):
        for i, block in enumerate(getattr(model, stage)):
            steps.append(_Step(f"{stage}.{i}", block, block.shortcut))  # deleted: the shortcut map alone
    steps.append(_Step("head", lambda x: model.linear(torch.flatten(model.pool(x), 1)), None))
    return steps


def _layers(features: nn.Sequential) -> list[tuple[str, list[nn.Module]]]:
    """`features` split into layers: each Conv2d with the modules after it up to the next Conv2d."""
    groups: list[tuple[str, list[nn.Module]]] = []
    for index, module in enumerate(features):
        if isinstance(module, nn.Conv2d) or not groups:
            groups.append((f"features.{index}", []))
        groups[-1][1].append(module)
    return groups


def _linear_channels(modules: list[nn.Module]) -> torch.Tensor | None:
    """Bool (C,) of the channels the layer's activation leaves linear, or None when the layer has no activation."""
    act = next((m for m in reversed(modules) if isinstance(m, (LinearizablePReLU, nn.ReLU))), None)
    if act is None:
        return None
    if isinstance(act, nn.ReLU):
        conv = modules[0]
        return torch.zeros(conv.out_channels, dtype=torch.bool)  # a ReLU channel is never linear
    return ~act.nonlinear_mask()


def _keeps_shape(conv: nn.Module) -> bool:
    if not isinstance(conv, nn.Conv2d) or conv.in_channels != conv.out_channels or isinstance(conv.padding, str):
        return False
    return all(s == 1 and d * (k - 1) == 2 * p for s, d, k, p in
               zip(conv.stride, conv.dilation, conv.kernel_size, conv.padding))


def _run(modules: list[nn.Module]) -> Callable[[torch.Tensor], torch.Tensor]:
    def forward(x: torch.Tensor) -> torch.Tensor:
        for m in modules:
            x = m(x)
        return x
    return forward


def _zero_nonlinear(modules: list[nn.Module], linear: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
    run = _run(modules)
    if bool(linear.all()):
        return run  # a fully linear layer: the lesion changes nothing
    keep = linear.reshape(1, -1, 1, 1)  # (1, C, 1, 1)

    def forward(x: torch.Tensor) -> torch.Tensor:
        out = run(x)  # (N, C, H, W)
        return torch.where(keep.to(out.device), out, torch.zeros((), dtype=out.dtype, device=out.device))
    return forward


def _plain_steps(model: PlainConvNet, kind: str) -> list[_Step]:
    steps = []
    for name, modules in _layers(model.features):
        lesioned = None
        if kind == "nonlinear":
            linear = _linear_channels(modules)
            lesioned = None if linear is None else _zero_nonlinear(modules, linear)
        elif _keeps_shape(modules[0]):
            lesioned = _identity
        steps.append(_Step(name, _run(modules), lesioned))
    steps.append(_Step("head", lambda x: model.linear(torch.flatten(model.pool(x), 1)), None))
    return steps


def _identity(x: torch.Tensor) -> torch.Tensor:
    return x


def _steps(model: nn.Module, kind: str) -> list[_Step]:
    _check_kind(model, kind)
    return _resnet_steps(model) if kind == "block" else _plain_steps(model, kind)


def _unit_steps(steps: list[_Step]) -> list[int]:
    return [i for i, s in enumerate(steps) if s.lesioned is not None]


# ---------------------------------------------------------------------------------------------------------------------
# One lesioned forward pass
# ---------------------------------------------------------------------------------------------------------------------


def lesion_units(model: nn.Module, kind: Kind) -> list[str]:
    """Names of the units that the `kind` lesion can delete, in forward order (their indices are what a lesion set
    holds): `layer1.0` ... for a CifarResNet's blocks, `features.<i>` (the index of the layer's conv) for a
    PlainConvNet's layers.

    Raises:
        ConfigError: an unknown kind, or a kind that does not fit the network.
    """
    steps = _steps(model, kind)
    return [steps[i].name for i in _unit_steps(steps)]


def _check_set(deleted: Iterable[int], n_units: int) -> frozenset[int]:
    chosen = frozenset(int(i) for i in deleted)
    bad = sorted(i for i in chosen if not 0 <= i < n_units)
    if bad:
        raise ConfigError(f"lesion indices {bad} are out of range: the network has {n_units} units (0..{n_units - 1})")
    return chosen


def _run_from(steps: list[_Step], units: list[int], h: torch.Tensor, start: int, deleted: frozenset[int]) -> torch.Tensor:
    """Run `steps[start:]` on `h`, with the units in `deleted` (unit indices) in their lesioned form."""
    deleted_steps = {units[i] for i in deleted}
    for i in range(start, len(steps)):
        h = steps[i].lesioned(h) if i in deleted_steps else steps[i].intact(h)
    return h


@torch.no_grad()
def lesioned_forward(model: nn.Module, x: torch.Tensor, deleted: Iterable[int], kind: Kind) -> torch.Tensor:
    """Logits of `model` on `x` with the units `deleted` (indices into `lesion_units(model, kind)`) lesioned.

    With nothing deleted the same modules run in the same order as `model(x)`, so the logits are bit-identical.

    Args:
        model: a CifarResNet (kind "block") or a PlainConvNet ("nonlinear", "layer"), in eval mode.
        x: normalised images (N, 3, 32, 32), on the model's device and dtype.
        deleted: unit indices to lesion (any order, repeats ignored).
        kind: which lesion (see the module docstring).

    Returns:
        Logits (N, classes).

    Raises:
        ConfigError: a wrong kind for the network, or an index out of range.
    """
    steps = _steps(model, kind)
    units = _unit_steps(steps)
    return _run_from(steps, units, x, 0, _check_set(deleted, len(units)))


# ---------------------------------------------------------------------------------------------------------------------
# Many lesions on a test set, with the intact prefix reused
# ---------------------------------------------------------------------------------------------------------------------


def random_lesions(n_units: int, k: int, draws: int, seed: int = 0) -> list[tuple[int, ...]]:
    """`draws` random sets of `k` distinct unit indices out of `n_units`, each sorted, reproducible from (seed, k).

    Ours: each draw is independent (two draws can repeat a set); the generator is numpy's default seeded with
    [seed, k], so the sets of one k do not depend on which other k are drawn.
    """
    if not 0 <= k <= n_units:
        raise ConfigError(f"cannot delete {k} of {n_units} units; choose k between 0 and {n_units}")
    rng = np.random.default_rng([seed, k])
    return [tuple(sorted(int(i) for i in rng.choice(n_units, size=k, replace=False))) for _ in range(draws)]


@torch.no_grad()
def lesion_accuracies(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, lesions: Sequence[Iterable[int]],
                      kind: Kind, *, batch_size: int = 500, channels_last: bool = True, device: str = "cpu",
                      progress: bool = False) -> dict:
    """Test accuracy of the intact `model` and of each lesion set, in one pass over the images.

    For every batch the intact net runs once, and each set starts from the intact activation before its first deleted
    unit (exact: those steps are the same ops on the same batch). Repeated sets are evaluated once.

    Args:
        model: a CifarResNet or PlainConvNet (left untouched: a copy is evaluated, in eval mode, fp32).
        images: uint8 (N, 3, 32, 32); labels: int64 (N,). Normalised as every loader of the course does.
        lesions: lesion sets, each an iterable of unit indices (an empty set is the intact net).
        kind: "block", "nonlinear" or "layer".
        batch_size: images per batch (memory grows with it; the accuracies do not depend on it beyond float rounding
            of the convolutions).
        channels_last: evaluate in NHWC memory format (a CPU speed-up; same maths).
        device: where to evaluate.
        progress: show a tqdm bar over the batches (silent anyway when not interactive).

    Returns:
        {"intact": accuracy, "accuracies": one accuracy per set of `lesions`, in order, "n_images": N,
         "unique_sets": how many distinct sets were evaluated}.
    """
    from tqdm.auto import tqdm

    net = copy.deepcopy(model).float().to(device).eval()
    if channels_last:
        net = net.to(memory_format=torch.channels_last)
    steps = _steps(net, kind)
    units = _unit_steps(steps)
    sets = [_check_set(s, len(units)) for s in lesions]
    unique = sorted(set(sets), key=lambda s: (min(s, default=-1), sorted(s)))
    by_start: dict[int, list[int]] = {}  # step index -> positions in `unique` of the sets first deleted there
    for j, s in enumerate(unique):
        by_start.setdefault(units[min(s)] if s else len(steps), []).append(j)
    correct = torch.zeros(len(unique), dtype=torch.long)
    intact = 0
    loader = CifarLoader(images, labels, batch_size, train=False, device=device, channels_last=channels_last)
    for x, y in tqdm(loader, desc=f"lesions ({kind})", disable=not progress or None, leave=False):
        h = x
        for i, step in enumerate(steps):
            for j in by_start.get(i, []):
                correct[j] += (_run_from(steps, units, h, i, unique[j]).argmax(1) == y).sum().item()
            h = step.intact(h)
        hits = (h.argmax(1) == y).sum().item()
        intact += hits
        for j in by_start.get(len(steps), []):  # the empty set: the intact logits
            correct[j] += hits
    n = len(labels)
    accuracy = {s: correct[j].item() / n for j, s in enumerate(unique)}
    return {"intact": intact / n, "accuracies": [accuracy[s] for s in sets], "n_images": n,
            "unique_sets": len(unique)}


def draw_summary(accuracies: Sequence[float]) -> dict:
    """Spread of the accuracies of random draws: {"median", "min", "max", "mean", "low", "high", "n"}, where low and
    high bound the 95% Student-t interval of the mean over draws (`judging.paired_interval`; None for one draw)."""
    values = np.asarray(accuracies, dtype=float)
    interval = judging.paired_interval(values.tolist())
    return {"median": float(np.median(values)), "min": float(values.min()), "max": float(values.max()),
            "mean": interval["mean"], "low": interval["low"], "high": interval["high"], "n": interval["n"]}


def lesion_curve(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, kind: Kind, *, max_k: int = 10,
                 draws: int = 20, seed: int = 0, batch_size: int = 500, channels_last: bool = True,
                 device: str = "cpu", progress: bool = False) -> dict:
    """Veit's two measurements: every single deletion, and k random deletions for k = 1..K.

    Args:
        model, images, labels, kind, batch_size, channels_last, device, progress: as in `lesion_accuracies`.
        max_k: the largest k; capped at the number of units (K = min(max_k, units)).
        draws: random sets per k (D), from `random_lesions(units, k, draws, seed)`.
        seed: seed of the draws.

    Returns:
        {"kind", "units": unit names, "intact": accuracy, "single": {"accuracies": one per unit, "median", "min",
         "worst_unit", "mean_drop": intact minus the mean single accuracy}, "random": [{"k", "sets", "accuracies",
         **draw_summary}, ...] for k = 1..K, "n_images", "draws", "seed", "unique_sets"}.
    """
    names = lesion_units(model, kind)
    n_units = len(names)
    top = min(max_k, n_units)
    singles = [(i,) for i in range(n_units)]
    random_sets = {k: random_lesions(n_units, k, draws, seed) for k in range(1, top + 1)}
    everything = singles + [s for k in random_sets for s in random_sets[k]]
    measured = lesion_accuracies(model, images, labels, everything, kind, batch_size=batch_size,
                                 channels_last=channels_last, device=device, progress=progress)
    accs = measured["accuracies"]
    single = accs[:n_units]
    worst = int(np.argmin(single)) if single else None
    curve, offset = [], n_units
    for k, sets in random_sets.items():
        part = accs[offset:offset + len(sets)]
        offset += len(sets)
        curve.append({"k": k, "sets": [list(s) for s in sets], "accuracies": part, **draw_summary(part)})
    return {"kind": kind, "units": names, "intact": measured["intact"],
            "single": {"accuracies": single, "median": float(np.median(single)) if single else None,
                       "min": min(single) if single else None, "worst_unit": names[worst] if single else None,
                       "mean_drop": measured["intact"] - float(np.mean(single)) if single else None},
            "random": curve, "n_images": measured["n_images"], "draws": draws, "seed": seed,
            "unique_sets": measured["unique_sets"]}


def retained_share(curve: Mapping, chance: float = 0.1) -> float:
    """Mean over the single deletions of (accuracy − chance) / (intact − chance): the share of the net's margin above
    chance that survives one lesion (1: no loss, 0: chance). Ours: it compares nets whose intact accuracies differ,
    where a raw drop cannot (a net nearer chance has less room to fall). `chance` is 1 / classes.

    Raises:
        ConfigError: the intact net is not above chance (the share is undefined).
    """
    margin = curve["intact"] - chance
    if margin <= 0:
        raise ConfigError(f"the intact accuracy {curve['intact']:.4f} is not above chance {chance}: no share to keep")
    single = curve["single"]["accuracies"]
    return float(np.mean([(a - chance) / margin for a in single]))


def paired_drop(first: Sequence[Mapping], second: Sequence[Mapping], key: str = "mean_drop") -> dict:
    """Paired difference first − second of a curve statistic over independent nets (one curve each, paired by
    position, e.g. by seed): `judging.paired_interval` of the differences (mean and 95% interval). `key` is a field
    of `single` ("mean_drop", "median", "min") or "retained_share" (`retained_share` at chance 0.1)."""
    if len(first) != len(second):
        raise ConfigError(f"paired curves need as many nets on each side, got {len(first)} and {len(second)}")

    def value(curve: Mapping) -> float:
        return retained_share(curve) if key == "retained_share" else curve["single"][key]

    return judging.paired_interval([value(a) - value(b) for a, b in zip(first, second)])
