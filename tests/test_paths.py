"""Tests for course_lib.paths: exact path-length histograms, NAPL and APL (notebook 03_paths_and_napl)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from course_lib import paths
from course_lib.models import cifar_resnet, repvgg, repvgg_deploy


class _StandInPReLU(nn.Module):
    """Channel-wise PReLU exposing `nonlinear_mask()` like course_lib.linearize's (alpha = 1 is linear)."""

    def __init__(self, alpha: torch.Tensor):
        super().__init__()
        self.alpha = nn.Parameter(alpha.clone().float())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.alpha.reshape(1, -1, *([1] * (x.dim() - 2)))
        return torch.where(x >= 0, x, a * x)

    def nonlinear_mask(self) -> torch.Tensor:
        return self.alpha.detach() != 1


def _prelu_with(num_channels: int, num_nonlinear: int, generator: torch.Generator) -> _StandInPReLU:
    """A stand-in PReLU whose `num_nonlinear` randomly chosen channels have slope 0, the rest slope 1."""
    alpha = torch.ones(num_channels)
    alpha[torch.randperm(num_channels, generator=generator)[:num_nonlinear]] = 0.0
    return _StandInPReLU(alpha)


class _Fig1Net(nn.Module):
    """2211.17180 Fig. 1: a skip around 4 fully connected ReLU layers of width 4, from one input to one output."""

    def __init__(self):
        super().__init__()
        self.branch = nn.Sequential(
            nn.Linear(1, 4), nn.ReLU(), nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 4), nn.ReLU(),
            nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.branch(x)


class _ResidualChain(nn.Module):
    """n blocks x + Linear(ReLU(Linear(x))): one nonlinearity per branch, none on the skip."""

    def __init__(self, n: int, width: int = 3):
        super().__init__()
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.Linear(width, width), nn.ReLU(), nn.Linear(width, width)) for _ in range(n))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = x + block(x)
        return x


class _SkipNet(nn.Module):
    """Two residual blocks around partially linear stand-in PReLUs (widths 6), for the Monte-Carlo check."""

    def __init__(self, acts: list[_StandInPReLU]):
        super().__init__()
        self.inp, self.head = nn.Linear(4, 6), nn.Linear(6, 3)
        self.f1, self.f2, self.g1, self.g2, self.g3 = (nn.Linear(6, 6) for _ in range(5))
        self.act0, self.act1, self.act2, self.act3, self.act4 = acts

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.act0(self.inp(x))
        h = h + self.f2(self.act1(self.f1(h)))
        h = self.act2(h)
        h = h + self.g3(self.act4(self.g2(self.act3(self.g1(h)))))
        return self.head(h)


@pytest.fixture(scope="module")
def repvgg_a2_forms() -> tuple[nn.Module, nn.Module]:
    torch.manual_seed(0)
    train_form = repvgg("A2", 1000).eval()
    return train_form, repvgg_deploy(train_form)


def test_fig1_example_has_257_paths_napl_2_and_apl_1024_over_257():
    net = _Fig1Net()
    counts = paths.path_counts(net, (1, 1))
    # 4^4 = 256 paths through the branch meet 4 ReLUs; the skip is 1 path with none (paper-notes §2.2).
    torch.testing.assert_close(counts, torch.tensor([1.0, 0, 0, 0, 256], dtype=torch.float64))
    assert paths.napl(net, (1, 1)) == pytest.approx(2.0, abs=1e-12)
    assert paths.apl(net, (1, 1)) == pytest.approx(1024 / 257, abs=1e-12)


@pytest.mark.parametrize("n", range(1, 9))
def test_napl_of_residual_chain_is_binomial(n):
    dist = paths.path_length_distribution(_ResidualChain(n), (1, 3))
    expected = torch.tensor([math.comb(n, k) / 2**n for k in range(n + 1)], dtype=torch.float64)
    torch.testing.assert_close(dist, expected, rtol=0, atol=1e-12)


def test_plain_net_with_partial_layers_is_poisson_binomial():
    g = torch.Generator().manual_seed(0)
    width, kept = 8, [8, 3, 0, 5, 1, 6, 2]  # nonlinear channels per layer; layer 3 fully linearized
    layers: list[nn.Module] = [nn.Linear(3, width)]
    for n in kept:
        layers += [_prelu_with(width, n, g), nn.Linear(width, width)]
    net = nn.Sequential(*layers)
    p = np.array(kept) / width
    expected = np.array([1.0])
    for p_l in p:  # independent Bernoulli(p_l) per layer
        expected = np.convolve(expected, [1.0 - p_l, p_l])
    expected = np.trim_zeros(expected, "b")  # the linear layer makes length 7 impossible; the histogram ends at 6
    dist = paths.path_length_distribution(net, (1, 3))
    np.testing.assert_allclose(dist.numpy(), expected, rtol=0, atol=1e-12)
    assert paths.napl(net, (1, 3)) == pytest.approx(p.sum(), abs=1e-12)


def test_napl_of_repvgg_a2_is_22_in_train_and_deploy_form(repvgg_a2_forms):
    train_form, deploy_form = repvgg_a2_forms
    for model in (train_form, deploy_form):
        dist = paths.path_length_distribution(model, (1, 3, 32, 32))
        assert len(dist) == 23 and dist[22] == pytest.approx(1.0)  # every path meets all 22 ReLUs
        assert paths.napl(model, (1, 3, 32, 32)) == pytest.approx(22.0, abs=1e-12)


@pytest.mark.parametrize(
    ("depth", "plain", "expected"),
    [
        (20, False, 1 + 9 * 1.5),  # stem ReLU, then per block: in-branch ReLU w.p. 1/2, post-addition ReLU always
        (56, False, 1 + 27 * 1.5),
        (56, True, 55.0),  # 1 + 27 * 2: every path meets every ReLU
    ],
)
def test_napl_of_cifar_resnets(depth, plain, expected):
    assert paths.napl(cifar_resnet(depth, plain=plain), (1, 3, 32, 32)) == pytest.approx(expected, abs=1e-12)


def test_nonlinear_mask_modules_replacing_relus_are_counted():
    model = cifar_resnet(20)
    infos = {info.name: info for info in paths.activation_layers(model)}
    assert len(infos) == 19 and all(info.nonlinear_fraction == 1.0 for info in infos.values())
    for name, info in infos.items():  # linearize the in-branch ReLUs, keep stem and post-addition ones as ReLU
        parent, _, attr = name.rpartition(".")
        alpha = torch.full((info.num_channels,), 1.0 if attr == "relu1" else 0.0)
        setattr(model.get_submodule(parent), attr, _StandInPReLU(alpha))
    assert paths.napl(model) == pytest.approx(1 + 9 * 1.0, abs=1e-12)


def test_torch_prelu_counts_channels_whose_slope_is_not_one():
    net = nn.Sequential(nn.Linear(2, 4), nn.PReLU(4), nn.Linear(4, 4), nn.PReLU(1, init=1.0), nn.Linear(4, 4))
    with torch.no_grad():
        net[1].weight.copy_(torch.tensor([1.0, 0.25, 1.0, 0.0]))
    assert [info.nonlinear_fraction for info in paths.activation_layers(net, (1, 2))] == [0.5, 0.0]
    assert paths.napl(net, (1, 2)) == pytest.approx(0.5)


def test_three_summand_addition_weighs_each_summand_one_third():
    class ThreeWay(nn.Module):
        def __init__(self):
            super().__init__()
            self.f = nn.Sequential(nn.Linear(3, 3), nn.ReLU())
            self.g = nn.Sequential(nn.Linear(3, 3), nn.ReLU(), nn.Linear(3, 3), nn.ReLU())

        def forward(self, x):
            return x + self.f(x) + self.g(x)

    torch.testing.assert_close(paths.path_length_distribution(ThreeWay(), (1, 3)),
                               torch.full((3,), 1 / 3, dtype=torch.float64))


def test_channel_concatenation_mixes_in_proportion_to_channels():
    class Cat(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 6, 1)

        def forward(self, x):
            return torch.cat([x, torch.relu(self.conv(x))], dim=1)  # 3 linear channels, 6 nonlinear ones

    torch.testing.assert_close(paths.path_length_distribution(Cat(), (1, 3, 4, 4)),
                               torch.tensor([1 / 3, 2 / 3], dtype=torch.float64))


def test_monte_carlo_random_walk_agrees_with_exact_napl():
    g = torch.Generator().manual_seed(1)
    acts = [_prelu_with(6, n, g) for n in (2, 3, 5, 1, 4)]
    masks = [a.nonlinear_mask().numpy() for a in acts]
    rng = np.random.default_rng(0)
    walks = 20_000

    def through_linear() -> np.ndarray:  # backward through a dense layer: a uniformly random input channel
        return rng.integers(0, 6, walks)

    # Walk backward from the output: a summand of each addition w.p. 1/2, channels uniformly; skips keep the channel.
    c = through_linear()  # head
    branch = rng.random(walks) < 0.5  # second block
    c_branch = through_linear()  # g3
    length = np.where(branch, masks[4][c_branch], 0).astype(float)
    c_branch = through_linear()  # g2
    length += np.where(branch, masks[3][c_branch], 0)
    c = np.where(branch, through_linear(), c)  # g1
    length += masks[2][c]
    branch = rng.random(walks) < 0.5  # first block
    c_branch = through_linear()  # f2
    length += np.where(branch, masks[1][c_branch], 0)
    c = np.where(branch, through_linear(), c)  # f1
    length += masks[0][c]

    exact = paths.napl(_SkipNet(acts), (1, 4))
    assert exact == pytest.approx(2 / 6 + 0.5 * 3 / 6 + 5 / 6 + 0.5 * (1 / 6 + 4 / 6))  # sum of p_l, halved in branches
    assert abs(length.mean() - exact) < 3 * length.std(ddof=1) / math.sqrt(walks)


@pytest.mark.parametrize("normalized", [True, False])
def test_distribution_sums_to_one(normalized):
    g = torch.Generator().manual_seed(2)
    for model, shape in [(cifar_resnet(20), (1, 3, 32, 32)), (_ResidualChain(5), (1, 3)),
                         (_SkipNet([_prelu_with(6, n, g) for n in (1, 2, 3, 4, 5)]), (1, 4))]:
        dist = paths.path_length_distribution(model, shape, normalized=normalized)
        assert dist.dtype == torch.float64 and dist.dim() == 1
        assert float(dist.sum()) == pytest.approx(1.0, abs=1e-12) and bool((dist >= 0).all())


def test_unsupported_multi_input_op_raises_a_clear_error():
    class Gated(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(3, 3)

        def forward(self, x):
            return x * torch.sigmoid(self.fc(x))

    with pytest.raises(NotImplementedError, match="mul.*combines 2 tensors"):
        paths.napl(Gated(), (1, 3))


def test_training_mode_and_bn_statistics_are_left_untouched():
    model = cifar_resnet(20).train()
    before = model.bn1.running_mean.clone()
    paths.napl(model, (1, 3, 32, 32))
    assert all(m.training for m in model.modules())
    torch.testing.assert_close(model.bn1.running_mean, before)


# ---------------------------------------------------------------------------------------------------------------------
# The convention at width changes (option-A shortcuts: subsample + zero-pad)


def _poisson_binomial(fixed: int, probabilities: list[float]) -> torch.Tensor:
    """Closed form: `fixed` nonlinearities on every path plus independent Bernoulli(p) ones."""
    h = torch.zeros(fixed + len(probabilities) + 1, dtype=torch.float64)
    h[fixed] = 1.0
    for p in probabilities:
        h = (1 - p) * h + p * torch.roll(h, 1)
    return h


@pytest.mark.parametrize("n", [1, 2, 3, 5, 9])
def test_option_a_resnet_napl_in_both_conventions(n):
    # depth 6n + 2: stem ReLU + 3n post-addition ReLUs on every path, and 3n in-branch ReLUs entered w.p. 1/2 ...
    depth = 6 * n + 2
    model = cifar_resnet(depth)
    assert paths.napl(model) == pytest.approx(1 + 3 * n + 3 * n / 2, abs=1e-12)
    assert paths.napl(model) == pytest.approx(3 * depth / 4 - 0.5, abs=1e-12)  # 14.5 (n = 3), 41.5 (n = 9)
    # ... except that with the channel-first walk the 2 widening blocks are entered w.p. 1/2 + 1/2 * 1/2 = 3/4: half
    # the output channels are zero-padded on the shortcut and reachable only through the branch.
    assert paths.napl(model, junction="channel") == pytest.approx(1 + 3 * n + (3 * n - 2) / 2 + 2 * 0.75, abs=1e-12)
    assert paths.napl(model, junction="channel") == pytest.approx(3 * depth / 4, abs=1e-12)  # 15.0, 42.0


def test_option_a_resnet_20_and_56_values():
    assert [paths.napl(cifar_resnet(d)) for d in (20, 56)] == pytest.approx([14.5, 41.5], abs=1e-12)
    assert [paths.napl(cifar_resnet(d), junction="channel") for d in (20, 56)] == pytest.approx([15.0, 42.0], abs=1e-12)


def test_option_a_resnet_20_histograms_are_poisson_binomial():
    model = cifar_resnet(20)  # 10 ReLUs on every path (stem + 9 post-addition); 9 in-branch ones
    torch.testing.assert_close(paths.path_length_distribution(model), _poisson_binomial(10, [0.5] * 9))
    torch.testing.assert_close(paths.path_length_distribution(model, junction="channel"),
                               _poisson_binomial(10, [0.5] * 7 + [0.75] * 2))


def test_channel_first_walk_monte_carlo_on_resnet_20():
    rng = np.random.default_rng(0)
    walks = 40_000
    # Backward from the head (dense: a uniform channel of the last block); blocks (in, out) of ResNet-20, last first.
    blocks = [(16, 16)] * 3 + [(16, 32)] + [(32, 32)] * 2 + [(32, 64)] + [(64, 64)] * 2
    c = rng.integers(0, 64, walks)
    length = np.ones(walks)  # the stem ReLU
    for c_in, c_out in reversed(blocks):
        length += 1  # relu2, after the addition
        pad = (c_out - c_in) // 2
        shortcut_live = (c >= pad) & (c < pad + c_in)  # zero-padded channels carry no path
        branch = ~shortcut_live | (rng.random(walks) < 0.5)
        length += branch  # relu1 inside the branch
        c = np.where(branch, rng.integers(0, c_in, walks), c - pad)  # conv1: a uniform input channel
    exact = paths.napl(cifar_resnet(20), junction="channel")
    assert abs(length.mean() - exact) < 4 * length.std(ddof=1) / math.sqrt(walks)


def test_conventions_agree_without_channel_padding():
    g = torch.Generator().manual_seed(3)
    for model, shape in [(cifar_resnet(20, plain=True), (1, 3, 32, 32)), (_ResidualChain(4), (1, 3)),
                         (_SkipNet([_prelu_with(6, n, g) for n in (1, 2, 3, 4, 5)]), (1, 4))]:
        torch.testing.assert_close(paths.path_length_distribution(model, shape, junction="channel"),
                                   paths.path_length_distribution(model, shape))


def test_channel_first_walk_weighs_a_concatenation_by_its_live_channels():
    class PadCat(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(4, 4, 1)

        def forward(self, x):  # 4 nonlinear channels next to 8 of which 4 carry x and 4 are zero padding
            padded = nn.functional.pad(x, (0, 0, 0, 0, 2, 2))
            return torch.cat([torch.relu(self.conv(x)), padded], dim=1)

    assert paths.napl(PadCat(), (1, 4, 2, 2)) == pytest.approx(4 / 12)  # in proportion to channels
    assert paths.napl(PadCat(), (1, 4, 2, 2), junction="channel") == pytest.approx(4 / 8)  # to live channels


def test_unknown_junction_is_a_config_error():
    from course_lib.errors import ConfigError

    with pytest.raises(ConfigError, match="junction"):
        paths.napl(cifar_resnet(20), junction="padded")
