"""Theory of §6 of the paper: residual blocks versus feedforward layers of the same width.

This module holds two things, both taught in notebook `01_function_spaces`:

* **Proposition 1** (paper §6, "a residual block is a wider feedforward layer"): the block R(x) = φ(W̄x + b̄) + x is
  rebuilt as one feedforward layer of width 2d plus a linear read-out, F(x) = A·φ(W₁x + b₁) + b₂. The construction
  is our reconstruction (paper-notes §6.4), since the paper's own was not readable. F is exact for ReLU on bounded
  inputs, and has error O(ε²) for tanh and O(ε) for softplus and GELU.
* **The injectivity argument** behind the main negative result (paper §6, "no equivalent reparameterization"): a
  residual block can be the identity, while a square layer x ↦ relu(Wx + b) always maps two distinct inputs to the
  same output. Its premise is a non-injective φ: PReLU_α with α > 0 is strictly increasing, hence injective, and a
  square layer with it and an invertible W is a bijection (`prelu_inverse`, `prelu_layer_inverse`). This is how
  linearization escapes the argument: a channel whose slope reaches α = 1 is a linear wire, a learned skip
  (notebook 02).

Symbols as in the paper: `W`, `b` are W̄, b̄ of the residual branch; `eps` is ε; `c` is the expansion point at which
φ is nearly linear. All numerics are float64, because the read-out weights grow like 1/ε.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "PHIS", "Activation", "WideLayer", "construction_cost", "find_collision", "get_phi", "identity_residual_block",
    "prelu", "prelu_inverse", "prelu_layer_inverse", "prop1_max_error", "residual_as_wide_layer", "residual_block",
]

_DTYPE = torch.float64


@dataclass(frozen=True)
class Activation:
    """A nonlinearity φ with the point c where the construction linearizes it."""

    name: str
    fn: Callable[[Tensor], Tensor]  # elementwise φ
    c: float  # expansion point; φ must be differentiable there with φ'(c) != 0
    phi_c: float  # φ(c)
    dphi_c: float  # φ'(c)


def _activation(name: str, fn: Callable[[Tensor], Tensor], c: float) -> Activation:
    """Fill in φ(c) and φ'(c) by autograd: exact up to rounding, unlike finite differences."""
    t = torch.tensor(c, dtype=_DTYPE, requires_grad=True)
    y = fn(t)
    (slope,) = torch.autograd.grad(y, t)
    return Activation(name=name, fn=fn, c=c, phi_c=y.item(), dphi_c=slope.item())


PHIS: dict[str, Activation] = {
    # c = 1 > 0 puts ReLU on its linear piece, so relu(εx + 1) = εx + 1 exactly while εx_i > -1.
    "relu": _activation("relu", torch.relu, 1.0),
    # tanh''(0) = 0, so the Taylor error starts at ε² (tanh(t) = t - t³/3 + ...).
    "tanh": _activation("tanh", torch.tanh, 0.0),
    # log(1 + e^z) written as logaddexp: F.softplus switches to z itself above z = 20, an error of ~2e-9.
    "softplus": _activation("softplus", lambda z: torch.logaddexp(z, torch.zeros_like(z)), 0.0),
    # Exact (erf) GELU; c = 1 as in paper-notes §6.4 (GELU'(0) = 1/2 would work too).
    "gelu": _activation("gelu", lambda z: F.gelu(z, approximate="none"), 1.0),
}


def get_phi(phi: str) -> Activation:
    """Look up a supported nonlinearity by name.

    Args:
        phi: one of "relu", "tanh", "softplus", "gelu".

    Returns:
        The `Activation` with its function, expansion point c, φ(c) and φ'(c).

    Raises:
        ValueError: if `phi` is not supported; the message lists the valid names.
    """
    if phi not in PHIS:
        raise ValueError(f"unknown phi {phi!r}; valid names are {sorted(PHIS)}")
    return PHIS[phi]


def residual_block(x: Tensor, W: Tensor, b: Tensor, phi: str) -> Tensor:
    """The residual block R(x) = φ(W̄x + b̄) + x, applied to a batch.

    Args:
        x: inputs, shape (n, d).
        W: W̄, shape (d, d).
        b: b̄, shape (d,).
        phi: name of the nonlinearity (see `PHIS`).

    Returns:
        R(x), float64, shape (n, d).

    Paper: §6, the residual block of Proposition 1.
    """
    fn = get_phi(phi).fn
    x, W, b = (torch.as_tensor(t, dtype=_DTYPE) for t in (x, W, b))
    return fn(x @ W.T + b) + x  # (n, d)


@dataclass(frozen=True, eq=False)
class WideLayer:
    """One feedforward layer of width 2d plus a linear read-out: F(x) = A·φ(W₁x + b₁) + b₂."""

    W1: Tensor  # (2d, d): [W̄; ε·I]
    b1: Tensor  # (2d,): [b̄; c·1]
    A: Tensor  # (d, 2d): [I, (ε·φ'(c))⁻¹·I], the read-out ("additional depth")
    b2: Tensor  # (d,): -φ(c)/(ε·φ'(c))·1
    phi: str

    def hidden(self, x: Tensor) -> Tensor:
        """The width-2d hidden layer h = φ(W₁x + b₁), shape (n, 2d) for x of shape (n, d)."""
        x = torch.as_tensor(x, dtype=_DTYPE)
        return get_phi(self.phi).fn(x @ self.W1.T + self.b1)

    def __call__(self, x: Tensor) -> Tensor:
        """F(x) = A·h + b₂, shape (n, d) for x of shape (n, d)."""
        return self.hidden(x) @ self.A.T + self.b2


def residual_as_wide_layer(W: Tensor, b: Tensor, phi: str, eps: float) -> WideLayer:
    """Rewrite the residual block φ(W̄x + b̄) + x as a width-2d layer plus a linear read-out.

    The top d units compute the residual branch φ(W̄x + b̄). The bottom d units compute φ(εx + c)
    = φ(c) + εφ'(c)x + O(ε²), and the read-out undoes the affine part to recover x.

    Args:
        W: W̄, shape (d, d).
        b: b̄, shape (d,).
        phi: name of the nonlinearity (see `PHIS`).
        eps: ε > 0; smaller is more accurate but needs read-out weights of size 1/ε.

    Returns:
        The `WideLayer` with float64 weights on the device of `W`.

    Raises:
        ValueError: for an unknown `phi`, a non-positive `eps` or shapes that do not match.

    Paper: Proposition 1 (§6); the explicit construction is ours (paper-notes §6.4).
    """
    act = get_phi(phi)
    if eps <= 0:
        raise ValueError(f"eps must be positive, got {eps}")
    W, b = torch.as_tensor(W, dtype=_DTYPE), torch.as_tensor(b, dtype=_DTYPE)
    d = W.shape[0]
    if W.shape != (d, d) or b.shape != (d,):
        raise ValueError(f"need W of shape (d, d) and b of shape (d,), got {tuple(W.shape)} and {tuple(b.shape)}")
    eye = torch.eye(d, dtype=_DTYPE, device=W.device)
    scale = 1.0 / (eps * act.dphi_c)
    return WideLayer(
        W1=torch.cat([W, eps * eye]),  # (2d, d)
        b1=torch.cat([b, torch.full((d,), act.c, dtype=_DTYPE, device=W.device)]),  # (2d,)
        A=torch.cat([eye, scale * eye], dim=1),  # (d, 2d)
        b2=torch.full((d,), -act.phi_c * scale, dtype=_DTYPE, device=W.device),  # (d,)
        phi=phi,
    )


def _random_block(d: int, n: int, seed: int) -> tuple[Tensor, Tensor, Tensor]:
    """Seeded W̄ ~ N(0, 1/d), b̄ ~ N(0, 1) and inputs x ~ 2·N(0, I) of shape (n, d)."""
    gen = torch.Generator().manual_seed(seed)
    W = torch.randn(d, d, generator=gen, dtype=_DTYPE) / d**0.5
    b = torch.randn(d, generator=gen, dtype=_DTYPE)
    x = 2.0 * torch.randn(n, d, generator=gen, dtype=_DTYPE)
    return W, b, x


def prop1_max_error(phi: str, eps: float, d: int = 8, n: int = 1000, seed: int = 0) -> float:
    """Largest deviation max |R(x) - F(x)| of the Proposition 1 construction on random data.

    Args:
        phi: name of the nonlinearity (see `PHIS`).
        eps: ε of the construction.
        d: width of the residual block.
        n: number of inputs.
        seed: seed for W̄, b̄ and the inputs.

    Returns:
        The max-abs error over all n·d outputs.

    Raises:
        ValueError: for an unknown `phi` or a non-positive `eps`.

    Ours: W̄ ~ N(0, 1/d), b̄ ~ N(0, 1), x ~ 2·N(0, I), as in the table of paper-notes §6.4.
    """
    W, b, x = _random_block(d, n, seed)
    wide = residual_as_wide_layer(W, b, phi, eps)
    return (residual_block(x, W, b, phi) - wide(x)).abs().max().item()


def construction_cost(phi: str, eps: float, d: int) -> dict[str, float]:
    """What Proposition 1 pays to turn a width-d residual block into a feedforward layer.

    Args:
        phi: name of the nonlinearity (see `PHIS`).
        eps: ε of the construction.
        d: width of the residual block.

    Returns:
        `width` (2d), `extra_linear_layers` (1, the read-out; in a chain it folds into the next layer),
        `max_readout_weight` (max(1, 1/(ε·|φ'(c)|)), the largest entry of A) and
        `max_readout_bias` (|φ(c)|/(ε·|φ'(c)|), the largest entry of |b₂|).

    Raises:
        ValueError: for an unknown `phi` or a non-positive `eps`.

    Paper: Proposition 1 (§6), "double the width and additional depth".
    """
    act = get_phi(phi)
    if eps <= 0:
        raise ValueError(f"eps must be positive, got {eps}")
    scale = 1.0 / (eps * abs(act.dphi_c))
    return {
        "width": 2 * d,
        "extra_linear_layers": 1,
        "max_readout_weight": max(1.0, scale),
        "max_readout_bias": abs(act.phi_c) * scale,
    }


def identity_residual_block(d: int) -> tuple[Tensor, Tensor]:
    """Weights that make the ReLU residual block relu(W̄x + b̄) + x the identity.

    With W̄ = 0 the branch sees only b̄; any b̄ ≤ 0 gives relu(b̄) = 0, so the branch adds exactly 0 for every x.
    A ResNet can therefore realise an injective map, which a same-width feedforward net cannot (`find_collision`).

    Args:
        d: width of the block.

    Returns:
        (W̄, b̄) = (zeros (d, d), -1·ones (d,)), float64.

    Paper: §6, main negative result (proof step 1 in paper-notes §6.2).
    """
    return torch.zeros(d, d, dtype=_DTYPE), -torch.ones(d, dtype=_DTYPE)


def find_collision(W: Tensor, b: Tensor, seed: int = 0, alpha: float = 0.0) -> tuple[Tensor, Tensor] | None:
    """Two distinct inputs that the square layer x ↦ φ(Wx + b) maps to the same output, φ = ReLU (or PReLU_α).

    * W singular: x₂ = x₁ + v with v a unit null vector of W (from the SVD), so the pre-activations already agree.
    * W invertible: pick pre-activations z₁, z₂ that differ only in coordinate 0, where both are negative (-1, -2),
      and whose other coordinates are positive; ReLU sends both to the same vector. Then x = W⁻¹(z - b). For a
      PReLU with α < 0 the pair at coordinate 0 is (1, 1/α), both sent to 1.
    * W invertible and α > 0: there is none. PReLU_α is then strictly increasing, so the layer is a bijection with
      inverse `prelu_layer_inverse`; None is returned.

    The outputs agree up to the rounding of the solve (about cond(W)·1e-16).

    Args:
        W: square weight matrix, shape (d, d).
        b: bias, shape (d,).
        seed: seed for the free choices (x₁, or the positive coordinates of z).
        alpha: slope of φ = PReLU_α on negative inputs; 0 (the default) is ReLU.

    Returns:
        (x₁, x₂), float64, each of shape (d,), with x₁ != x₂, on the device of `W` (the free choices are drawn on the
        CPU, so they do not depend on the device); None when W is invertible and α > 0.

    Raises:
        ValueError: if W is not square or b does not have shape (d,).

    Paper: §6, main negative result (proof step 2 in paper-notes §6.2); the PReLU case is ours.
    """
    W, b = torch.as_tensor(W, dtype=_DTYPE), torch.as_tensor(b, dtype=_DTYPE)
    if W.ndim != 2 or W.shape[0] != W.shape[1]:
        raise ValueError(f"W must be square, got shape {tuple(W.shape)}")
    d = W.shape[0]
    if b.shape != (d,):
        raise ValueError(f"b must have shape ({d},), got {tuple(b.shape)}")
    gen = torch.Generator().manual_seed(seed)
    _, s, Vh = torch.linalg.svd(W)  # s descending, (d,)
    # Same rank tolerance as torch.linalg.matrix_rank; s[0] = 0 (W = 0) counts as singular too.
    if s[-1] <= s[0] * d * torch.finfo(_DTYPE).eps:
        x1 = torch.randn(d, generator=gen, dtype=_DTYPE).to(W.device)
        return x1, x1 + Vh[-1]  # W·Vh[-1] ≈ 0
    if alpha > 0:
        return None  # PReLU_α is injective and W invertible: the layer is a bijection (prelu_layer_inverse)
    z = (1.0 + torch.rand(d, generator=gen, dtype=_DTYPE)).to(W.device)  # (d,) positive coordinates in [1, 2)
    z1, z2 = z.clone(), z.clone()
    z1[0], z2[0] = (-1.0, -2.0) if alpha == 0 else (1.0, 1.0 / alpha)  # relu: both to 0; α < 0: both to 1
    x1 = torch.linalg.solve(W, z1 - b)
    x2 = torch.linalg.solve(W, z2 - b)
    return x1, x2


def prelu(x: Tensor, alpha: float) -> Tensor:
    """PReLU_α(x) = max(0, x) + α·min(0, x), elementwise, in float64 (torch's own `F.prelu` with one slope).

    α = 0 is ReLU and α = 1 the identity (notebook 02).
    """
    x = torch.as_tensor(x, dtype=_DTYPE)
    slope = torch.tensor([alpha], dtype=_DTYPE, device=x.device)
    return F.prelu(x.reshape(-1, 1), slope).reshape(x.shape)


def prelu_inverse(y: Tensor, alpha: float) -> Tensor:
    """The inverse of PReLU_α for α > 0: y where y ≥ 0 and y/α where y < 0, elementwise, in float64.

    For α > 0 PReLU_α is strictly increasing (slope 1 above 0, α below, continuous at 0) and onto ℝ, so it is a
    bijection and this is its inverse: prelu_inverse(prelu(x, α), α) = x for every x.

    Raises:
        ValueError: for α ≤ 0, where PReLU_α is not injective: α = 0 (ReLU) sends every x ≤ 0 to 0, and α < 0 sends
            1 and 1/α to 1, so no inverse exists (`find_collision` builds such a pair for a whole layer).

    Paper: §6 (the premise of the main negative result is a non-injective φ); the PReLU case is ours.
    """
    if alpha <= 0:
        raise ValueError(f"PReLU with slope alpha = {alpha} is not injective (alpha = 0 is ReLU), so it has no "
                         "inverse; any alpha > 0 has one")
    y = torch.as_tensor(y, dtype=_DTYPE)
    return torch.where(y >= 0, y, y / alpha)


def prelu_layer_inverse(y: Tensor, W: Tensor, b: Tensor, alpha: float) -> Tensor:
    """The input x of the square layer y = PReLU_α(Wx + b) (rows of y, shape (n, d) or (d,)), for invertible W and
    α > 0: x = W⁻¹(PReLU_α⁻¹(y) − b). With α = 1, W = I and b = 0 the layer is the identity, the map that a residual
    block gets for free and a ReLU layer can never be.

    Raises:
        ValueError: for α ≤ 0 (see `prelu_inverse`).
    """
    W, b = torch.as_tensor(W, dtype=_DTYPE), torch.as_tensor(b, dtype=_DTYPE)
    z = prelu_inverse(y, alpha) - b  # (n, d) pre-activations Wx
    return torch.linalg.solve(W, z.T).T if z.ndim == 2 else torch.linalg.solve(W, z)
