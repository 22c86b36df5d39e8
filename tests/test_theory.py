"""Tests for course_lib.theory: Proposition 1 and the injectivity argument (paper §6, notebook 01)."""

import math

import numpy as np
import pytest
import torch

from course_lib import theory

EPSILONS = [1e-1, 1e-2, 1e-3, 1e-4]


def _block(d: int = 6, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    W = torch.randn(d, d, generator=gen, dtype=torch.float64) / d**0.5
    b = torch.randn(d, generator=gen, dtype=torch.float64)
    return W, b


def _relu_layer(x: torch.Tensor, W: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.relu(W @ x + b)


def test_slopes_match_closed_forms():
    # φ'(c) comes from autograd in the library; check it against the textbook derivatives.
    gelu_slope = 0.5 * (1 + math.erf(1 / math.sqrt(2))) + math.exp(-0.5) / math.sqrt(2 * math.pi)  # Φ(1) + 1·pdf(1)
    expected = {"relu": (1.0, 1.0), "tanh": (0.0, 1.0), "softplus": (math.log(2), 0.5), "gelu": (None, gelu_slope)}
    for name, (phi_c, dphi_c) in expected.items():
        act = theory.PHIS[name]
        assert act.dphi_c == pytest.approx(dphi_c, abs=1e-15)
        if phi_c is not None:
            assert act.phi_c == pytest.approx(phi_c, abs=1e-15)
    assert theory.PHIS["gelu"].phi_c == pytest.approx(0.5 * (1 + math.erf(1 / math.sqrt(2))), abs=1e-15)


def test_unknown_phi_is_a_clear_error():
    with pytest.raises(ValueError, match="valid names.*gelu.*relu.*softplus.*tanh"):
        theory.prop1_max_error("sigmoid", 1e-2)
    with pytest.raises(ValueError, match="sigmoid"):
        theory.residual_as_wide_layer(*_block(), "sigmoid", 1e-2)
    with pytest.raises(ValueError, match="eps"):
        theory.residual_as_wide_layer(*_block(), "relu", 0.0)


def test_wide_layer_has_double_width_and_the_stated_weights():
    W, b = _block(d=5)
    wide = theory.residual_as_wide_layer(W, b, "softplus", 1e-2)
    assert wide.W1.shape == (10, 5) and wide.b1.shape == (10,)
    assert wide.A.shape == (5, 10) and wide.b2.shape == (5,)
    assert torch.equal(wide.W1[:5], W) and torch.equal(wide.b1[:5], b)
    assert torch.allclose(wide.A[:, 5:], torch.eye(5, dtype=torch.float64) / (1e-2 * 0.5))
    assert torch.allclose(wide.b2, torch.full((5,), -math.log(2) / (1e-2 * 0.5), dtype=torch.float64))


def test_relu_construction_is_exact_on_bounded_inputs():
    W, b = _block()
    x = 9.0 * (2 * torch.rand(500, 6, generator=torch.Generator().manual_seed(1), dtype=torch.float64) - 1)
    for eps in EPSILONS:
        assert eps * x.abs().max() < theory.PHIS["relu"].c  # the bounded domain of paper-notes §6.4 step 5
        wide = theory.residual_as_wide_layer(W, b, "relu", eps)
        assert (wide(x) - theory.residual_block(x, W, b, "relu")).abs().max() < 1e-9
        assert theory.prop1_max_error("relu", eps) < 1e-9


def test_relu_construction_fails_outside_the_bounded_domain():
    # Below x_i = -c/ε the carried unit relu(εx + 1) clips to 0, so x is no longer recovered.
    W, b = _block()
    x = torch.zeros(1, 6, dtype=torch.float64)
    x[0, 0] = -20.0
    wide = theory.residual_as_wide_layer(W, b, "relu", 1e-1)
    assert (wide(x) - theory.residual_block(x, W, b, "relu")).abs().max() > 1.0


def test_tanh_error_falls_like_eps_squared():
    errors = [theory.prop1_max_error("tanh", eps) for eps in EPSILONS]
    for big, small in zip(errors[1:], errors[2:]):
        assert 60 < big / small < 140


def test_softplus_and_gelu_errors_fall_like_eps():
    # Start at ε = 1e-2: at 1e-1 the largest inputs (|x| ≈ 8) are outside the Taylor regime for GELU.
    for phi in ("softplus", "gelu"):
        errors = [theory.prop1_max_error(phi, eps) for eps in EPSILONS]
        for big, small in zip(errors[1:], errors[2:]):
            assert 6 < big / small < 14


def test_construction_matches_an_independent_numpy_residual_block():
    # R computed in numpy from the formulas, not via course_lib, so the check of F is not circular.
    gelu = np.vectorize(lambda z: 0.5 * z * (1 + math.erf(z / math.sqrt(2))))
    numpy_phis = {"relu": lambda z: np.maximum(z, 0), "tanh": np.tanh, "softplus": lambda z: np.logaddexp(z, 0),
                  "gelu": gelu}
    # Tolerances at ε = 1e-2 for |x| ≤ 3: leading Taylor term ε·|φ''(c)|·x²/(2|φ'(c)|) (ε²·x³/3 for tanh), ×2.
    tolerances = {"relu": 1e-10, "tanh": 2e-3, "softplus": 5e-2, "gelu": 2e-2}
    rng = np.random.default_rng(0)
    W, b, x = rng.normal(size=(4, 4)) / 2, rng.normal(size=4), rng.uniform(-3, 3, size=(200, 4))
    for phi, fn in numpy_phis.items():
        expected = fn(x @ W.T + b) + x
        assert np.abs(theory.residual_block(torch.from_numpy(x), W, b, phi).numpy() - expected).max() < 1e-12
        F = theory.residual_as_wide_layer(torch.from_numpy(W), torch.from_numpy(b), phi, 1e-2)(torch.from_numpy(x))
        assert np.abs(F.numpy() - expected).max() < tolerances[phi]


def test_readout_weights_grow_like_one_over_eps():
    W, b = _block(d=3)
    for phi in theory.PHIS:
        costs = [theory.construction_cost(phi, eps, d=3) for eps in (1e-2, 1e-3)]
        assert costs[0]["width"] == 6 and costs[0]["extra_linear_layers"] == 1
        assert costs[1]["max_readout_weight"] / costs[0]["max_readout_weight"] == pytest.approx(10.0)
        wide = theory.residual_as_wide_layer(W, b, phi, 1e-2)
        assert wide.A.abs().max().item() == pytest.approx(costs[0]["max_readout_weight"])
        assert wide.b2.abs().max().item() == pytest.approx(costs[0]["max_readout_bias"])


def test_identity_residual_block_is_exact():
    W, b = theory.identity_residual_block(5)
    x = 100 * torch.randn(300, 5, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    assert torch.equal(theory.residual_block(x, W, b, "relu"), x)


@pytest.mark.parametrize("kind", ["invertible", "rank_deficient", "zero"])
def test_find_collision_for_invertible_and_singular_W(kind):
    W, b = _block(d=5, seed=3)
    if kind == "rank_deficient":
        W[:, -1] = W[:, 0] + W[:, 1]  # rank 4
    elif kind == "zero":
        W = theory.identity_residual_block(5)[0]
    x1, x2 = theory.find_collision(W, b)
    assert x1.dtype == x2.dtype == torch.float64
    assert (x1 - x2).norm() > 0.1
    assert (_relu_layer(x1, W, b) - _relu_layer(x2, W, b)).abs().max() < 1e-12


def test_find_collision_needs_a_square_W():
    with pytest.raises(ValueError, match="square"):
        theory.find_collision(torch.ones(3, 4), torch.zeros(3))


# ---------------------------------------------------------------------------------------------------------------------
# PReLU: α > 0 is injective, which breaks the premise of the argument above


def _prelu_layer(x: torch.Tensor, W: torch.Tensor, b: torch.Tensor, alpha: float) -> torch.Tensor:
    z = W @ x + b
    return torch.where(z >= 0, z, alpha * z)  # independent of theory.prelu


def test_prelu_is_relu_at_0_the_identity_at_1_and_matches_the_definition():
    x = torch.linspace(-3, 3, 601, dtype=torch.float64)
    assert torch.equal(theory.prelu(x, 0.0), torch.relu(x)) and torch.equal(theory.prelu(x, 1.0), x)
    torch.testing.assert_close(theory.prelu(x, 0.3), torch.clamp(x, min=0) + 0.3 * torch.clamp(x, max=0))


@pytest.mark.parametrize("alpha", [1e-3, 0.25, 1.0, 2.0])
def test_prelu_with_positive_slope_is_strictly_increasing_and_inverted_exactly(alpha):
    x = torch.linspace(-5, 5, 10_001, dtype=torch.float64)
    y = theory.prelu(x, alpha)
    assert bool((torch.diff(y) > 0).all())  # strictly monotone on a fine grid, hence injective there
    torch.testing.assert_close(theory.prelu_inverse(y, alpha), x, rtol=0, atol=1e-12)
    torch.testing.assert_close(theory.prelu_inverse(torch.tensor([-2.0, 3.0]), alpha),
                               torch.tensor([-2.0 / alpha, 3.0], dtype=torch.float64))  # y/α below 0


@pytest.mark.parametrize("alpha", [0.0, -0.5])
def test_prelu_without_positive_slope_has_no_inverse(alpha):
    with pytest.raises(ValueError, match="not injective"):
        theory.prelu_inverse(torch.zeros(3), alpha)


@pytest.mark.parametrize("alpha", [0.0, -0.5])
def test_find_collision_for_a_non_injective_prelu_layer(alpha):
    W, b = _block(d=5, seed=4)
    x1, x2 = theory.find_collision(W, b, alpha=alpha)
    assert (x1 - x2).norm() > 0.1
    assert (_prelu_layer(x1, W, b, alpha) - _prelu_layer(x2, W, b, alpha)).abs().max() < 1e-12


@pytest.mark.parametrize("alpha", [0.01, 0.5, 1.0])
def test_no_collision_for_an_injective_prelu_layer_and_the_layer_is_inverted(alpha):
    W, b = _block(d=5, seed=4)
    assert theory.find_collision(W, b, alpha=alpha) is None
    x = torch.randn(50, 5, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    y = torch.stack([_prelu_layer(row, W, b, alpha) for row in x])
    torch.testing.assert_close(theory.prelu_layer_inverse(y, W, b, alpha), x, rtol=0, atol=1e-10)
    W_singular = W.clone()
    W_singular[:, -1] = W[:, 0]  # a singular W collides already before φ, whatever α
    x1, x2 = theory.find_collision(W_singular, b, alpha=alpha)
    assert (_prelu_layer(x1, W_singular, b, alpha) - _prelu_layer(x2, W_singular, b, alpha)).abs().max() < 1e-12


def test_a_prelu_layer_with_slope_1_can_be_the_identity():
    x = torch.randn(20, 4, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    eye = torch.eye(4, dtype=torch.float64)
    torch.testing.assert_close(theory.prelu(x @ eye.T, 1.0), x, rtol=0, atol=0)
