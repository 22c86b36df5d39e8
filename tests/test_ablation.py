"""Tests for the ResNet-56 ablation's machinery (notebook 05): BN folding, slope counts, histograms, learned skips,
the resnet56 experiment config."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
from nets import randomize_bn
from torch import nn

from course_lib import experiments, linearize, models, paths, protocol, results


def test_fold_batchnorm_keeps_the_function_and_removes_every_bn():
    net = randomize_bn(models.cifar_resnet(20)).eval()
    x = torch.randn(4, 3, 32, 32)
    expected = net(x)
    folded = models.fold_batchnorm(net)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    torch.testing.assert_close(folded(x), expected, rtol=1e-4, atol=1e-4)
    assert "layer1.0.conv1.bias" in folded.state_dict()
    # BN had 2 parameters per channel, the folded conv has 1 bias per channel: 269,722 - (sum of BN channels)
    bn_channels = 16 + 6 * 16 + 6 * 32 + 6 * 64
    assert models.count_parameters(folded) == 269_722 - bn_channels


def test_slope_counts_of_resnet20_by_hand():
    counts = linearize.slope_counts(models.fold_batchnorm(models.cifar_resnet(20).eval()))
    # stem ReLU (16) + 3 stages x 3 blocks x 2 ReLUs of width 16/32/64
    assert counts["channel_slopes"] == 16 + 6 * 16 + 6 * 32 + 6 * 64 == 688
    assert counts["layer_slopes"] == 1 + 3 * 3 * 2 == 19
    assert counts["extra_slopes"] == 669
    assert counts["extra_fraction"] == pytest.approx(669 / counts["parameters"])


def test_slope_counts_of_repvgg_a2_match_the_paper_note():
    build, shape = models.linearized_networks()["RepVGG-A2 plain (ImageNet, notebook 06)"]
    counts = linearize.slope_counts(build(), shape)
    assert (counts["channel_slopes"], counts["layer_slopes"], counts["parameters"]) == (7808, 22, 25_499_944)
    assert 100 * counts["extra_fraction"] == pytest.approx(0.0305, abs=5e-5)


def test_resnet20_histogram_is_a_shifted_binomial_by_hand():
    # Stem ReLU and the 9 post-addition ReLUs lie on every path (+10); each of the 9 in-branch ReLUs is met with
    # probability 1/2: length = 10 + Binomial(9, 1/2), NAPL 14.5, std 1.5.
    net = linearize.to_prelu(models.fold_batchnorm(models.cifar_resnet(20).eval()), "channel")
    dist = paths.path_length_distribution(net)
    expected = torch.zeros(20, dtype=torch.float64)
    for k in range(10):
        expected[10 + k] = math.comb(9, k) / 2 ** 9
    torch.testing.assert_close(dist.double(), expected)
    assert paths.histogram_moments(dist) == pytest.approx((14.5, 1.5))


def test_histogram_moments_of_a_fixed_depth_net():
    assert paths.histogram_moments([0, 0, 0, 1.0]) == pytest.approx((3.0, 0.0))


def _linearized_plain_net(linear_per_layer: int, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    net = linearize.to_prelu(models.plain_cifar_net("A0", 10, 0.125), "channel")
    for _, m in linearize.prelu_modules(net):
        with torch.no_grad():
            m.alpha.uniform_(-0.3, 0.5)
        m.frozen[:min(linear_per_layer, m.num_channels)] = True
    return net.eval()


def test_learned_skips_add_up_to_the_next_layer_input():
    net = _linearized_plain_net(linear_per_layer=2)
    rows = linearize.learned_skips(net, torch.randn(3, 3, 32, 32))
    assert len(rows) == 21  # 22 PReLU layers, the last one feeds the pooling, not a conv
    assert all(r["max_error"] < 1e-4 for r in rows)
    assert all(r["linear_channels"] == 2 and 0 < r["skip_share"] < 1 for r in rows)


def test_learned_skips_vanish_without_linear_channels():
    rows = linearize.learned_skips(_linearized_plain_net(linear_per_layer=0), torch.randn(2, 3, 32, 32))
    assert all(r["skip_norm"] == 0 and r["skip_share"] == 0 for r in rows)


def test_resnet56_config_profiles_and_errors(tmp_path):
    cfg = experiments.cifar_config("cpu", network="resnet56", out_dir=str(tmp_path))
    assert cfg.network == "resnet56" and cfg.posttrain_lr == 1e-4 and len(cfg.seeds) >= 2
    assert experiments.cifar_config("cpu").network == "repvgg"
    with pytest.raises(ValueError, match="unknown network"):
        experiments.cifar_config("smoke", network="vgg16")
    with pytest.raises(ValueError, match="CIFAR-10 weights"):
        experiments.cifar_config("smoke", network="resnet56", dataset="cifar100")


def test_resnet56_smoke_post_training_end_to_end(data_dir, tmp_path):
    cfg = experiments.cifar_config("smoke", network="resnet56", out_dir=str(tmp_path), data_dir=str(data_dir),
                                   n_train=256, n_test=200, omegas=(0.1,))
    baseline = experiments.pretrain(cfg, progress=False)
    assert baseline["napl"] == pytest.approx(41.5) and baseline["test_accuracy"] > 0.5
    run = experiments.post_train(cfg, "layer", 0, omega=0.1, progress=False)
    assert run["slopes"] == 55 and run["channels"] == 2032 and run["depth_after_merge"] is None
    assert 0 <= run["napl"] <= 41.5 and len(run["nonlinear_fraction"]) == 55


def test_load_post_trained_explains_a_missing_run(tmp_path):
    cfg = experiments.cifar_config("smoke", out_dir=str(tmp_path))
    with pytest.raises(FileNotFoundError, match="post_train"):
        experiments.load_post_trained(cfg, "channel", 0, omega=0.1)


def test_a_stored_result_with_other_settings_is_not_reused(tmp_path):
    cfg = experiments.cifar_config("smoke", out_dir=str(tmp_path))
    stored = {"kind": "pretrain", "config": {**dataclasses.asdict(cfg), "pretrain_epochs": 99}}
    results.write_json_atomic(tmp_path / "pretrain" / "seed0" / "result.json", stored)
    with pytest.raises(ValueError, match="pretrain_epochs: stored 99 vs now 2"):
        experiments.pretrain(cfg)
    assert (tmp_path / "pretrain" / "seed0" / "result.json").exists()  # nothing lost
    other_grid = experiments.cifar_config("smoke", out_dir=str(tmp_path), omegas=(0.5,), seeds=(3,))
    results.write_json_atomic(tmp_path / "pretrain" / "seed0" / "result.json", {"config": dataclasses.asdict(cfg)})
    assert experiments.pretrain(other_grid)["config"]["pretrain_epochs"] == 2  # the grid is not a setting


def test_command_line_values_are_numbers_where_yaml_would_give_strings():
    assert protocol.parse_value("1e-4") == 1e-4
    assert protocol.parse_value("0.125") == 0.125 and protocol.parse_value("adamw") == "adamw"


def test_slope_counts_agree_with_to_prelu():
    net = models.plain_cifar_net("A0", 10, 0.25)
    counts = linearize.slope_counts(net)
    assert counts["channel_slopes"] == linearize.count_slopes(linearize.to_prelu(net, "channel"))
    assert counts["layer_slopes"] == linearize.count_slopes(linearize.to_prelu(net, "layer")) == 22
