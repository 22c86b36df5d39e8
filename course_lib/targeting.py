"""Post-training to a target NAPL: one controller for both variants, so that they are compared at exactly matched NAPL.

With a fixed ω the two variants end wherever the penalty takes them, and comparing them "at matched NAPL" means
interpolating one curve between ω points. Here a run is given a *target* NAPL instead, and `NaplController` steers it:

- NAPL is linear in the layers' nonlinear fractions, NAPL = Σ_l w_l·p_l, where w_l is the probability that a random
  path (the normalized measure of `paths`) passes through PReLU layer l: 1 for every layer of a plain net; ½ inside a
  residual branch and 1 after an addition in a ResNet. `napl_weights` measures the w_l once from the network's graph,
  so the controller can read NAPL after every step without tracing the graph again.
- While NAPL is above the target, ω is multiplied by `growth` every `every` steps (it starts at `omega_start`).
- Slopes freeze as in `linearize.freeze_near_linear` (|α − 1| < tol, or past 1), but only as long as NAPL stays at or
  above `target - tol_napl`: the slopes closest to 1 go first. Once NAPL is within `tol_napl` of the target, ω is
  switched off and no slope freezes any more: the linearization phase ends there.

Both variants use the same rule with the same settings; the layer-wise variant moves in steps of whole layers (w_l),
the channel-wise one in steps of single channels (w_l / C_l). The controller records ω after every change. Ours: the
paper matches NAPL by sweeping ω; it does not say how.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from . import linearize, paths

__all__ = ["napl_weights", "fast_napl", "NaplController", "slope_distribution"]


@torch.no_grad()
def napl_weights(model: nn.Module, input_shape: tuple[int, ...] = (1, 3, 32, 32)) -> list[float]:
    """w_l for every `LinearizablePReLU` of `model` (in `linearize.prelu_modules` order): the NAPL the network would
    have with layer l fully nonlinear and every other PReLU linear. The frozen masks are restored afterwards."""
    modules = [m for _, m in linearize.prelu_modules(model)]
    saved = [m.frozen.clone() for m in modules]
    read = paths.napl_reader(model, input_shape)
    weights = []
    try:
        for i in range(len(modules)):
            for j, m in enumerate(modules):
                m.frozen.fill_(j != i)
            weights.append(read())
    finally:
        for m, mask in zip(modules, saved):
            m.frozen.copy_(mask)
    return weights


@torch.no_grad()
def fast_napl(model: nn.Module, weights: list[float]) -> float:
    """NAPL from the frozen masks and `napl_weights`: Σ_l w_l · (nonlinear channels of l) / C_l."""
    fractions = [m.nonlinear_mask().double().mean() for _, m in linearize.prelu_modules(model)]
    if not fractions:
        return 0.0
    values = torch.stack(fractions).tolist()  # one read from the device, not one per layer (a GPU waits for each)
    return sum(w * p for w, p in zip(weights, values))


class NaplController:
    """Adapts ω and gates freezing so that a run lands within `tol_napl` of `target` (see the module docstring).

    Use `penalty(model)` as the loss term and `after_step(model, optimizer)` after every optimiser step;
    `reached` says when the linearization phase is over. `state_dict`/`load_state_dict` make it resumable.
    """

    def __init__(self, weights: list[float], target: float, omega_start: float, growth: float = 1.1,
                 every: int = 10, tol_napl: float = 0.15, freeze_tol: float = 0.01, layer_scale: str = "channels"):
        if not weights:
            raise ValueError("the network has no PReLU to linearize")
        if omega_start <= 0 or growth < 1 or every < 1:
            raise ValueError(f"need omega_start > 0, growth >= 1 and every >= 1, got {omega_start}, {growth}, {every}")
        self.weights, self.target, self.growth, self.every = list(weights), float(target), growth, every
        self.tol_napl, self.freeze_tol, self.layer_scale = tol_napl, freeze_tol, layer_scale
        self.omega, self.step, self.napl = float(omega_start), 0, math.inf
        self.reached, self.reached_step = False, None
        self.trajectory: list[tuple[int, float]] = [(0, self.omega)]  # (step, ω from that step on)

    def penalty(self, model: nn.Module) -> torch.Tensor:
        """ω·L0.5 with the current ω (0 once the target is reached)."""
        return self.omega * linearize.l05_penalty(model, layer_scale=self.layer_scale)

    @torch.no_grad()
    def after_step(self, model: nn.Module, optimizer: torch.optim.Optimizer | None = None) -> None:
        """Freeze the slopes that may freeze, read NAPL, and raise or switch off ω."""
        self.step += 1
        if self.reached:  # the linearization phase is over: nothing freezes any more
            return
        self._freeze_down_to(model, self.target - self.tol_napl, optimizer)
        self.napl = fast_napl(model, self.weights)
        if self.napl <= self.target + self.tol_napl:
            self.reached, self.reached_step, self.omega = True, self.step, 0.0
            self.trajectory.append((self.step, 0.0))
        elif self.step % self.every == 0:
            self.omega *= self.growth
            self.trajectory.append((self.step, self.omega))

    def _freeze_down_to(self, model: nn.Module, floor: float, optimizer) -> None:
        """Freeze candidate slopes, closest to 1 first, while NAPL stays >= floor."""
        modules = [m for _, m in linearize.prelu_modules(model)]
        napl = fast_napl(model, self.weights)
        candidates = []  # (distance to 1, module index, slope index)
        for i, m in enumerate(modules):
            index = linearize.freeze_candidates(m, self.freeze_tol).nonzero().flatten()
            distances = (m.alpha[index] - 1).abs().tolist()  # one read per layer, not one per candidate slope
            candidates += [(d, i, k) for d, k in zip(distances, index.tolist())]
        chosen = {i: torch.zeros_like(m.frozen) for i, m in enumerate(modules)}
        for _, i, k in sorted(candidates):
            m = modules[i]
            drop = self.weights[i] * (1.0 if m.granularity == "layer" else 1.0 / m.num_channels)
            if napl - drop >= floor - 1e-9:
                chosen[i][k] = True
                napl -= drop
        for i, m in enumerate(modules):
            if chosen[i].any():
                linearize.freeze_mask(m, chosen[i], optimizer)

    def state_dict(self) -> dict:
        return {k: getattr(self, k) for k in ("omega", "step", "napl", "reached", "reached_step", "trajectory")}

    def load_state_dict(self, state: dict) -> None:
        for k, v in state.items():
            setattr(self, k, [tuple(p) for p in v] if k == "trajectory" else v)


@torch.no_grad()
def slope_distribution(model: nn.Module) -> dict:
    """How linear the units counted as nonlinear are: the unfrozen slopes' distances |1 − α| to the identity.

    Returns {"unfrozen": number of unfrozen slopes, "within_0.1": how many of them have |1 − α| < 0.1,
    "histogram": counts of |1 − α| in the bins [0, .1), [.1, .25), [.25, .5), [.5, .75), [.75, 1), [1, ∞),
    "bins": the bin edges}. A layer-wise slope counts once.
    """
    distances = torch.cat([(m.alpha[~m.frozen] - 1).abs().flatten().double().cpu()
                           for _, m in linearize.prelu_modules(model)] or [torch.zeros(0, dtype=torch.float64)])
    edges = [0.0, 0.1, 0.25, 0.5, 0.75, 1.0, math.inf]
    counts = [int(((distances >= a) & (distances < b)).sum()) for a, b in zip(edges, edges[1:])]
    return {"unfrozen": int(distances.numel()), "within_0.1": counts[0], "histogram": counts,
            "bins": [0.0, 0.1, 0.25, 0.5, 0.75, 1.0, "inf"]}
