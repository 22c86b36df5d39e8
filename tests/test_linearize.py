"""Tests for course_lib.linearize: PReLU slopes, the L0.5 penalty, freezing and merging (paper §3, notebook 02)."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from course_lib import linearize, models
from course_lib.linearize import LinearizablePReLU


def _plain_net(widths: list[int], strides: list[int] | None = None, bn: bool = False, seed: int = 0) -> nn.Module:
    """A small PlainConvNet: 3x3 convs (padding 1) with random weights and biases, each followed by [BN,] ReLU."""
    torch.manual_seed(seed)
    strides = strides or [1] * len(widths)
    layers: list[nn.Module] = []
    in_ch = 3
    for width, stride in zip(widths, strides):
        conv = nn.Conv2d(in_ch, width, 3, stride=stride, padding=1, bias=not bn)
        layers.append(conv)
        if bn:
            norm = nn.BatchNorm2d(width)
            with torch.no_grad():  # non-trivial running statistics and affine parameters
                norm.running_mean.normal_()
                norm.running_var.uniform_(0.5, 2.0)
                norm.weight.normal_()
                norm.bias.normal_()
            layers.append(norm)
        else:
            with torch.no_grad():
                conv.bias.normal_()
        layers.append(nn.ReLU())
        in_ch = width
    return models.PlainConvNet(nn.Sequential(*layers), nn.Linear(in_ch, 10)).eval()


def _set_alpha(prelu: LinearizablePReLU, values) -> None:
    with torch.no_grad():
        prelu.alpha.copy_(torch.as_tensor(values, dtype=prelu.alpha.dtype).expand_as(prelu.alpha))


# ---------------------------------------------------------------------------------------------------------------------
# The activation
# ---------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("granularity", ["channel", "layer"])
@pytest.mark.parametrize("shape", [(5, 4), (2, 4, 7), (2, 4, 3, 3)])
def test_prelu_alpha_zero_is_relu(granularity, shape):
    x = torch.randn(shape, generator=torch.Generator().manual_seed(0))
    prelu = LinearizablePReLU(4, granularity)
    assert (prelu.alpha == 0).all() and prelu.alpha.shape == ((4,) if granularity == "channel" else (1,))
    assert torch.equal(prelu(x), torch.relu(x))


@pytest.mark.parametrize("granularity", ["channel", "layer"])
def test_prelu_alpha_one_is_identity(granularity):
    x = torch.randn(2, 4, 3, 3, generator=torch.Generator().manual_seed(0))
    prelu = LinearizablePReLU(4, granularity)
    _set_alpha(prelu, 1.0)
    assert torch.equal(prelu(x), x)
    assert not prelu.nonlinear_mask().any()


def test_frozen_slope_is_exactly_one_with_zero_grad():
    x = torch.randn(2, 4, 3, 3, generator=torch.Generator().manual_seed(0))
    prelu = LinearizablePReLU(4, "channel")
    _set_alpha(prelu, [0.3, 0.3, 0.3, 0.3])
    prelu.frozen[:2] = True  # the parameter still holds 0.3, the forward must use 1
    out = prelu(x)
    assert torch.equal(out[:, :2], x[:, :2])
    out.sum().backward()
    assert (prelu.alpha.grad[:2] == 0).all() and (prelu.alpha.grad[2:] != 0).all()
    assert prelu.nonlinear_mask().tolist() == [False, False, True, True]


# ---------------------------------------------------------------------------------------------------------------------
# ReLU -> PReLU
# ---------------------------------------------------------------------------------------------------------------------


def _resnet20():
    torch.manual_seed(0)
    return models.cifar_resnet(20).eval()


def _plain_a0():
    torch.manual_seed(0)
    return models.plain_cifar_net("A0", width_mult=0.125).eval()


@pytest.mark.parametrize("build", [_resnet20, _plain_a0], ids=["resnet20", "plain_a0"])
@pytest.mark.parametrize("granularity", ["channel", "layer"])
def test_to_prelu_preserves_function(build, granularity):
    model = build()
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    prelu_model = linearize.to_prelu(model, granularity)
    assert not any(isinstance(m, nn.ReLU) for m in prelu_model.modules())
    with torch.no_grad():
        assert torch.equal(prelu_model(x), model(x))  # exactly: 0 difference


def test_to_prelu_leaves_original_untouched():
    model = _resnet20().train()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    prelu_model = linearize.to_prelu(model, "channel")
    assert model.training and prelu_model.training  # the eval-mode probe pass restores the flag
    assert sum(isinstance(m, nn.ReLU) for m in model.modules()) == 19
    assert not any(isinstance(m, LinearizablePReLU) for m in model.modules())
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())


def test_to_prelu_channel_counts_resnet20():
    prelu_model = linearize.to_prelu(_resnet20(), "channel")
    counts = {name: m.num_channels for name, m in linearize.prelu_modules(prelu_model)}
    assert counts["relu"] == 16
    for stage, width in (("layer1", 16), ("layer2", 32), ("layer3", 64)):
        for i in range(3):
            assert counts[f"{stage}.{i}.relu1"] == counts[f"{stage}.{i}.relu2"] == width
    assert linearize.count_slopes(prelu_model) == 16 + 6 * (16 + 32 + 64)  # 688, by hand


def test_layerwise_has_one_slope_per_layer():
    prelu_model = linearize.to_prelu(_plain_a0(), "layer")
    prelus = linearize.prelu_modules(prelu_model)
    assert len(prelus) == 22  # RepVGG-A0 deploy form: 22 conv+ReLU layers
    assert all(m.alpha.shape == (1,) and m.granularity == "layer" for _, m in prelus)
    assert linearize.count_slopes(prelu_model) == 22
    assert linearize.slope_parameters(prelu_model) == [m.alpha for _, m in prelus]


def test_unknown_granularity_is_a_clear_error():
    with pytest.raises(ValueError, match=r"'pixel'.*\['channel', 'layer'\]"):
        linearize.to_prelu(_plain_net([4]), "pixel")
    with pytest.raises(ValueError, match="channel"):
        LinearizablePReLU(4, "pixel")


# ---------------------------------------------------------------------------------------------------------------------
# Penalty and freezing
# ---------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("granularity", ["channel", "layer"])
@pytest.mark.parametrize("layer_scale", ["channels", "one"])
def test_l05_penalty_matches_hand_computation(granularity, layer_scale):
    model = linearize.to_prelu(_plain_net([4, 6, 5]), granularity)
    gen = torch.Generator().manual_seed(2)
    expected = 0.0
    for i, (_, m) in enumerate(linearize.prelu_modules(model)):
        _set_alpha(m, torch.rand(m.alpha.shape, generator=gen) * 2.5 - 0.5)  # on both sides of 1
        if granularity == "channel" or i == 1:
            m.frozen[0] = True  # excluded from the penalty
        weight = m.num_channels if (granularity == "layer" and layer_scale == "channels") else 1
        expected += sum(weight * math.sqrt(abs(1 - a))
                        for a, f in zip(m.alpha.tolist(), m.frozen.tolist()) if not f)
    penalty = linearize.l05_penalty(model, layer_scale)
    assert penalty.dim() == 0 and penalty.requires_grad
    assert penalty.item() == pytest.approx(expected, rel=1e-6)


def test_frozen_slopes_are_excluded_from_penalty():
    model = linearize.to_prelu(_plain_net([4]), "channel")
    prelu = linearize.prelu_modules(model)[0][1]
    _set_alpha(prelu, [0.2, 0.5, 0.995, -1.0])
    before = linearize.l05_penalty(model).item()
    assert linearize.freeze_near_linear(model) == 1
    assert before - linearize.l05_penalty(model).item() == pytest.approx(math.sqrt(0.005), rel=1e-4)


def test_layer_scale_channels_equalizes_layer_and_channel_penalty():
    base = _plain_net([4, 6, 8])
    nets = {g: linearize.to_prelu(base, g) for g in ("channel", "layer")}
    for net in nets.values():
        for _, m in linearize.prelu_modules(net):
            _set_alpha(m, 0.3)
    penalty = {g: linearize.l05_penalty(net, "channels") for g, net in nets.items()}
    assert penalty["layer"].item() == pytest.approx(penalty["channel"].item(), rel=1e-6)
    assert penalty["channel"].item() == pytest.approx(18 * math.sqrt(0.7), rel=1e-6)  # 4 + 6 + 8 channels
    for p in penalty.values():
        p.backward()
    for (_, mc), (_, ml) in zip(linearize.prelu_modules(nets["channel"]), linearize.prelu_modules(nets["layer"])):
        assert ml.alpha.grad.item() == pytest.approx(mc.alpha.grad.sum().item(), rel=1e-6)  # same total push
    assert linearize.l05_penalty(nets["layer"], "one").item() == pytest.approx(3 * math.sqrt(0.7), rel=1e-6)


def test_penalty_gradient_is_finite_at_alpha_one():
    model = linearize.to_prelu(_plain_net([4]), "channel")
    prelu = linearize.prelu_modules(model)[0][1]
    _set_alpha(prelu, [1.0, 0.5, 1.0, 2.0])  # exactly 1 but not frozen: d|1-α|^0.5/dα is infinite there
    linearize.l05_penalty(model).backward()
    assert torch.isfinite(prelu.alpha.grad).all()
    assert prelu.alpha.grad[0] == 0


def test_penalty_is_zero_with_grad_when_nothing_to_penalize():
    model = linearize.to_prelu(_plain_net([4]), "layer")
    _set_alpha(linearize.prelu_modules(model)[0][1], 1.0)
    linearize.freeze_near_linear(model)
    for net in (model, _plain_net([4])):  # all slopes frozen; no PReLU at all
        penalty = linearize.l05_penalty(net)
        assert penalty.item() == 0.0 and penalty.requires_grad
        penalty.backward()


def test_freeze_snaps_to_one_and_returns_new_count():
    model = linearize.to_prelu(_plain_net([6]), "channel")
    prelu = linearize.prelu_modules(model)[0][1]
    _set_alpha(prelu, [0.995, 1.009, 1.02, 0.5, 0.98, 1.0])
    assert linearize.freeze_near_linear(model, tol=0.01, freeze_crossing=False) == 3
    assert prelu.frozen.tolist() == [True, True, False, False, False, True]
    assert prelu.alpha.tolist()[:2] == [1.0, 1.0] and prelu.alpha[2].item() == pytest.approx(1.02)
    assert linearize.freeze_near_linear(model, tol=0.01, freeze_crossing=False) == 0  # nothing new
    _set_alpha(prelu, 0.0)  # drift far away: the mask only grows and frozen slopes are re-snapped
    assert linearize.freeze_near_linear(model) == 0
    assert prelu.frozen.sum() == 3 and prelu.alpha.tolist() == [1.0, 1.0, 0.0, 0.0, 0.0, 1.0]


def test_a_slope_that_stepped_past_one_is_frozen_by_default():
    model = linearize.to_prelu(_plain_net([4]), "channel")
    prelu = linearize.prelu_modules(model)[0][1]
    _set_alpha(prelu, [1.3, 0.5, 0.98, 0.999])
    assert linearize.freeze_near_linear(model, tol=0.01) == 2
    assert prelu.frozen.tolist() == [True, False, False, True] and prelu.alpha[0].item() == 1.0


def _sgd_setup(slope_weight_decay: float):
    model = linearize.to_prelu(_plain_net([4, 4]), "channel").train()
    slopes = linearize.slope_parameters(model)
    others = [p for p in model.parameters() if all(p is not s for s in slopes)]
    opt = torch.optim.SGD([{"params": others, "weight_decay": 5e-4},
                           {"params": slopes, "weight_decay": slope_weight_decay}], lr=0.1, momentum=0.9)
    gen = torch.Generator().manual_seed(3)
    x, y = torch.randn(8, 3, 8, 8, generator=gen), torch.randint(0, 10, (8,), generator=gen)

    def step():
        opt.zero_grad()
        (F.cross_entropy(model(x), y) + 0.1 * linearize.l05_penalty(model)).backward()
        opt.step()

    for _ in range(3):  # build up momentum on every slope before freezing
        step()
    prelu = linearize.prelu_modules(model)[0][1]
    with torch.no_grad():
        prelu.alpha[:2] = 0.995
    return model, opt, step, prelu


@pytest.mark.parametrize("slope_weight_decay", [0.0, 5e-4])
def test_frozen_slopes_unmoved_by_sgd_momentum_and_weight_decay(slope_weight_decay):
    model, opt, step, prelu = _sgd_setup(slope_weight_decay)
    assert linearize.freeze_near_linear(model, optimizer=opt) == 2
    start = prelu.alpha.detach().clone()
    for _ in range(20):
        step()
        if slope_weight_decay == 0:  # the training-code setup: no gradient, no momentum, no decay on frozen slopes
            assert prelu.alpha[:2].tolist() == [1.0, 1.0]
        linearize.freeze_near_linear(model, optimizer=opt)  # with decay on slopes, this re-snaps them
        assert prelu.alpha[:2].tolist() == [1.0, 1.0]
    assert (prelu.alpha[2:] != start[2:]).all()  # the unfrozen slopes did train


def test_stale_momentum_moves_frozen_slopes_unless_optimizer_is_given():
    # Control for the test above: without zeroing the momentum buffer, the next step moves a frozen slope.
    model, opt, step, prelu = _sgd_setup(0.0)
    linearize.freeze_near_linear(model)
    step()
    assert prelu.alpha[:2].ne(1.0).all()


def test_nonlinear_fraction_values():
    model = linearize.to_prelu(_plain_net([4, 6, 5]), "channel")
    (n0, m0), (n1, m1), (n2, m2) = linearize.prelu_modules(model)
    _set_alpha(m0, [1.0, 0.0, 0.0, 0.0])
    _set_alpha(m1, 1.0)
    linearize.freeze_near_linear(model)
    assert linearize.nonlinear_fraction(model) == {n0: 0.75, n1: 0.0, n2: 1.0}
    assert list(linearize.nonlinear_fraction(model)) == ["features.1", "features.3", "features.5"]


# ---------------------------------------------------------------------------------------------------------------------
# Merging
# ---------------------------------------------------------------------------------------------------------------------


def _rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).abs().max() / b.abs().max()).item()


def test_merge_linear_fewer_convs_and_equal_interior():
    # conv-act0-conv-act1-conv-act2-conv-act3 with act1 and act2 fully linear: the last three convs become one 7x7.
    model = linearize.to_prelu(_plain_net([6, 8, 5, 7]), "channel")
    acts = [m for _, m in linearize.prelu_modules(model)]
    _set_alpha(acts[0], [1.0, 0.2, 1.0, -0.3, 0.5, 1.0])  # partially linear: must be kept
    _set_alpha(acts[1], 1.0)
    _set_alpha(acts[2], 1.0)
    _set_alpha(acts[3], 0.4)
    linearize.freeze_near_linear(model)
    state = {k: v.clone() for k, v in model.state_dict().items()}

    merged = linearize.merge_linear(model)
    assert isinstance(merged, models.PlainConvNet)
    assert linearize.layer_counts(model) == {"conv": 4, "nonlinear": 2}
    assert linearize.layer_counts(merged) == {"conv": 2, "nonlinear": 2}
    kinds = [type(m) for m in merged.features]
    assert kinds == [nn.Conv2d, LinearizablePReLU, nn.Conv2d, LinearizablePReLU]
    assert merged.features[2].kernel_size == (7, 7) and merged.features[2].padding == (3, 3)

    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        ref, out = model.features(x), merged.features(x)  # (2, 7, 32, 32) each
    assert out.shape == ref.shape
    # Stride-1 net: only the lost intermediate zero-paddings (of convs 2..4, 1 pixel each) contaminate the border,
    # and each spreads by at most the padding of the later convs, so cropping their sum (3) leaves exact pixels.
    crop = sum(m.padding[0] for m in model.features if isinstance(m, nn.Conv2d)) - model.features[0].padding[0]
    interior = (..., slice(crop, -crop), slice(crop, -crop))
    assert _rel_err(out[interior], ref[interior]) < 1e-5
    assert _rel_err(out, ref) > 1e-3  # the border really differs (documented); a sanity check of the crop test
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())  # original untouched


@pytest.mark.parametrize("k1,s1,p1,k2,s2,p2", [(3, 1, 1, 3, 2, 1), (3, 2, 1, 3, 1, 1), (3, 2, 1, 3, 2, 1),
                                               (1, 1, 0, 3, 1, 1), (3, 1, 0, 5, 2, 2)])
def test_merge_composes_kernel_stride_padding(k1, s1, p1, k2, s2, p2):
    torch.manual_seed(5)
    first, second = nn.Conv2d(3, 5, k1, s1, p1), nn.Conv2d(5, 4, k2, s2, p2)
    model = models.PlainConvNet(nn.Sequential(first, nn.Identity(), second), nn.Linear(4, 10))
    merged = linearize.merge_linear(model).features
    assert len(merged) == 1
    conv = merged[0]
    assert conv.kernel_size[0] == k1 + (k2 - 1) * s1
    assert conv.stride[0] == s1 * s2 and conv.padding[0] == p1 + p2 * s1
    x = torch.randn(2, 3, 17, 17, generator=torch.Generator().manual_seed(6))
    with torch.no_grad():
        ref, out = model.features(x), conv(x)
    assert out.shape == ref.shape
    # Exact outputs o: every intermediate position o·s2 − p2 + j (j < k2) lies inside the first conv's output.
    h1 = (17 + 2 * p1 - k1) // s1 + 1
    valid = [o for o in range(ref.shape[-1]) if o * s2 - p2 >= 0 and o * s2 - p2 + k2 - 1 <= h1 - 1]
    idx = torch.tensor(valid)
    assert _rel_err(out[..., idx, :][..., idx], ref[..., idx, :][..., idx]) < 1e-5


def test_merge_is_exact_without_intermediate_padding():
    torch.manual_seed(7)
    model = models.PlainConvNet(nn.Sequential(nn.Conv2d(3, 5, 3, 1, 1), nn.Identity(), nn.Conv2d(5, 4, 3, 1, 0),
                                              nn.ReLU()), nn.Linear(4, 10))
    merged = linearize.merge_linear(model)
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(8))
    with torch.no_grad():
        assert _rel_err(merged(x), model(x)) < 1e-5


def test_merge_linear_folds_batchnorm_exactly():
    model = _plain_net([5, 6], bn=True)
    merged = linearize.merge_linear(model)
    assert [type(m) for m in merged.features] == [nn.Conv2d, nn.ReLU, nn.Conv2d, nn.ReLU]
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(9))
    with torch.no_grad():  # no merge happened, so the whole map (borders included) matches eval mode
        assert _rel_err(merged.features(x), model.features(x)) < 1e-5
        assert _rel_err(merged(x), model(x)) < 1e-5


def test_merge_keeps_partially_linear_activation():
    model = linearize.to_prelu(_plain_net([4, 4]), "channel")
    _set_alpha(linearize.prelu_modules(model)[0][1], [1.0, 1.0, 1.0, 0.0])
    linearize.freeze_near_linear(model)
    merged = linearize.merge_linear(model)
    assert linearize.layer_counts(merged)["conv"] == 2
    x = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(10))
    with torch.no_grad():
        assert _rel_err(merged(x), model(x)) < 1e-6


def test_random_freezing_helpers_give_the_requested_linear_share():
    from course_lib import paths

    model = linearize.freeze_random_channels(linearize.to_prelu(_plain_net([8, 8]), "channel"), 0.25, seed=1)
    assert all(abs(f - 0.75) < 1e-9 for f in linearize.nonlinear_fraction(model).values())
    layered = linearize.freeze_random_layers(linearize.to_prelu(_plain_net([8, 8]), "layer"), 1, seed=1)
    assert sorted(linearize.nonlinear_fraction(layered).values()) == [0.0, 1.0]
    assert paths.napl(layered) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="channel-wise"):
        linearize.freeze_random_channels(linearize.to_prelu(_plain_net([8]), "layer"), 0.5)
