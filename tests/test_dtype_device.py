"""Fusion, BN folding, PReLU conversion, merging, learned skips, slope counts and paths keep the model's dtype/device.

Each operation runs on float64 models (CIFAR ResNet-20, a narrow CIFAR RepVGG-A0, its fused plain net, a PReLU net):
every floating parameter and buffer must stay float64, the forward pass must run, and the result must agree with the
unfused network (to 1e-10 relative in float64) and with the float32 computation. Fusion, BN folding and `to_prelu` also
run on the meta device (shapes only). The last section checks the clear error for a checkpoint that holds pickled
Python objects besides its weights (the official RepVGG training script's format). Small inputs keep it fast.
"""

import argparse
import copy
import shlex

import pytest
import torch
from nets import randomize_bn
from torch import nn

from course_lib import linearize, models, paths, theory
from course_lib.data import DataCorruptError
from course_lib.imagenet.checkpoints import CheckpointPickleError, load_checkpoint

SHAPE = (1, 3, 16, 16)  # probe shape: channel counts do not depend on the spatial size


def _repvgg() -> models.RepVGG:
    torch.manual_seed(0)
    return randomize_bn(models.repvgg("A0", 10, cifar=True, width_mult=0.125)).eval()


def _resnet() -> models.CifarResNet:
    torch.manual_seed(0)
    return randomize_bn(models.cifar_resnet(20)).eval()


def _input(dtype: torch.dtype = torch.float64) -> torch.Tensor:
    return torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(1)).to(dtype)


def _assert_float64(net: nn.Module) -> None:
    floating = {n: t.dtype for n, t in [*net.named_parameters(), *net.named_buffers()] if t.is_floating_point()}
    assert floating and set(floating.values()) == {torch.float64}, floating


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).abs().max() / b.abs().max()).item()


def _shapes(net: nn.Module) -> dict[str, tuple[int, ...]]:
    return {n: tuple(t.shape) for n, t in [*net.named_parameters(), *net.named_buffers()]}


# ---------------------------------------------------------------------------------------------------------------------
# float64


def test_repvgg_fusion_keeps_float64_and_matches_the_training_form():
    net32 = _repvgg()
    net64 = copy.deepcopy(net32).double()
    deploy64 = models.repvgg_deploy(net64)
    _assert_float64(deploy64)
    x = _input()
    with torch.no_grad():
        out, ref = deploy64(x), net64(x)
        out32 = models.repvgg_deploy(net32)(x.float())
    assert out.dtype == torch.float64
    assert _rel(out, ref) < 1e-10  # fused equals unfused to float64 rounding
    assert 0 < _rel(out32.double(), out) < 1e-4  # the float32 fusion is the same function, rounded to float32


def test_fold_batchnorm_keeps_float64_and_matches_the_bn_network():
    net64 = _resnet().double()
    x = _input()
    with torch.no_grad():
        ref = net64(x)
        folded = models.fold_batchnorm(copy.deepcopy(net64))
        out = folded(x)
        out32 = models.fold_batchnorm(_resnet())(x.float())
    _assert_float64(folded)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    assert _rel(out, ref) < 1e-10
    assert 0 < _rel(out32.double(), out) < 1e-4


@pytest.mark.parametrize("granularity", ["channel", "layer"])
def test_to_prelu_keeps_float64_and_the_function(granularity):
    resnet = models.fold_batchnorm(_resnet().double())
    plain = models.repvgg_deploy(_repvgg().double())
    x = _input()
    for net in (resnet, plain):
        prelu = linearize.to_prelu(net, granularity, SHAPE)
        _assert_float64(prelu)
        modules = [m for _, m in linearize.prelu_modules(prelu)]
        assert modules and all(m.frozen.dtype == torch.bool for m in modules)
        with torch.no_grad():
            assert torch.equal(prelu(x), net(x))  # alpha = 0 is exactly ReLU, in float64 too
        assert linearize.count_slopes(prelu) == linearize.slope_counts(net, SHAPE)[f"{granularity}_slopes"]
    standalone = linearize.LinearizablePReLU(4, granularity, dtype=torch.float64)
    assert standalone.alpha.dtype == torch.float64 and standalone.frozen.dtype == torch.bool


def test_prelu_net_in_float64_matches_float32():
    prelu32 = linearize.to_prelu(models.repvgg_deploy(_repvgg()), "channel", SHAPE, alpha_init=0.25)
    linearize.freeze_random_channels(prelu32, 0.5, seed=0)
    prelu64 = copy.deepcopy(prelu32).double()
    _assert_float64(prelu64)
    x = _input()
    with torch.no_grad():
        out64, out32 = prelu64(x), prelu32(x.float())
    assert out64.dtype == torch.float64 and 0 < _rel(out32.double(), out64) < 1e-4
    penalty = linearize.l05_penalty(prelu64)
    assert penalty.dtype == torch.float64 and penalty.requires_grad
    assert linearize.l05_penalty(models.cifar_resnet(20).double()).dtype == torch.float64  # no slopes: a zero


def test_merge_linear_keeps_float64_and_rounds_to_the_float32_merge():
    prelu32 = linearize.to_prelu(models.repvgg_deploy(_repvgg()), "channel", SHAPE)
    prelu64 = copy.deepcopy(prelu32).double()
    for net in (prelu32, prelu64):  # two non-adjacent linear layers: each merge composes two original convs
        for i in (1, 4):
            prelu = linearize.prelu_modules(net)[i][1]
            prelu.frozen[:] = True
            prelu.alpha.data[:] = 1.0
    merged32, merged64 = linearize.merge_linear(prelu32), linearize.merge_linear(prelu64)
    _assert_float64(merged64)
    depth = linearize.layer_counts(prelu64)["conv"]
    assert linearize.layer_counts(merged64)["conv"] == depth - 2
    # Merging composes in float64 either way: the float32 merge is the float64 one, rounded.
    state32, state64 = merged32.state_dict(), merged64.state_dict()
    assert state32.keys() == state64.keys()
    assert all(torch.equal(state32[k], state64[k].to(state32[k].dtype)) for k in state32)
    with torch.no_grad():
        assert merged64(_input()).dtype == torch.float64


def test_learned_skips_run_in_the_models_dtype():
    prelu32 = linearize.to_prelu(models.repvgg_deploy(_repvgg()), "channel", SHAPE)
    linearize.freeze_random_channels(prelu32, 0.5, seed=0)
    prelu64 = copy.deepcopy(prelu32).double()
    skips64 = linearize.learned_skips(prelu64, _input(torch.float32))  # a float32 batch is cast to the model's dtype
    skips32 = linearize.learned_skips(prelu32, _input(torch.float32))
    assert len(skips64) == len(skips32) > 0
    for a, b in zip(skips64, skips32):
        assert a["linear_channels"] == b["linear_channels"] > 0
        assert a["max_error"] <= 1e-10 * (a["skip_norm"] + a["branch_norm"])
        assert a["skip_share"] == pytest.approx(b["skip_share"], rel=1e-4)


def test_slope_counts_and_paths_do_not_depend_on_the_dtype():
    prelu32 = linearize.to_prelu(models.fold_batchnorm(_resnet()), "channel", SHAPE)
    linearize.freeze_random_channels(prelu32, 0.5, seed=0)
    for net32 in (_resnet(), models.repvgg_deploy(_repvgg()), prelu32):
        net64 = copy.deepcopy(net32).double()
        assert linearize.slope_counts(net64, SHAPE) == linearize.slope_counts(net32, SHAPE)
        assert paths.napl(net64, SHAPE) == paths.napl(net32, SHAPE)
        assert paths.activation_layers(net64, SHAPE) == paths.activation_layers(net32, SHAPE)
        for fn in (paths.path_length_distribution, paths.path_counts):
            d64, d32 = fn(net64, SHAPE), fn(net32, SHAPE)
            assert d64.dtype == d32.dtype == torch.float64 and torch.equal(d64, d32)
        _assert_float64(net64)  # the probes leave the model as it was


# ---------------------------------------------------------------------------------------------------------------------
# meta device


def test_fusion_folding_and_prelu_work_on_the_meta_device():
    meta = torch.device("meta")
    x = torch.empty(2, 3, 16, 16, device=meta)
    deploy = models.repvgg_deploy(models.repvgg("A0", 10, cifar=True, width_mult=0.125).eval().to(meta))
    folded = models.fold_batchnorm(models.cifar_resnet(20).eval().to(meta))
    prelu = linearize.to_prelu(folded, "channel", SHAPE)
    cpu = {"deploy": models.plain_cifar_net("A0", 10, 0.125),
           "folded": models.fold_batchnorm(models.cifar_resnet(20).eval())}
    cpu["prelu"] = linearize.to_prelu(cpu["folded"], "channel", SHAPE)
    for name, net in (("deploy", deploy), ("folded", folded), ("prelu", prelu)):
        assert {t.device for t in [*net.parameters(), *net.buffers()]} == {meta}, name
        assert _shapes(net) == _shapes(cpu[name]), name
        out = net(x)
        assert out.device == meta and out.shape == (2, 10), name
    assert linearize.slope_counts(deploy, SHAPE) == linearize.slope_counts(cpu["deploy"], SHAPE)
    assert paths.napl(deploy, SHAPE) == paths.napl(cpu["deploy"], SHAPE) == 22  # ReLU-only nets: shapes suffice


def test_residual_as_wide_layer_follows_the_device_of_its_weights():
    W, b = torch.empty(4, 4, device="meta"), torch.empty(4, device="meta")
    wide = theory.residual_as_wide_layer(W, b, "relu", 0.1)
    assert all(t.device.type == "meta" and t.dtype == torch.float64 for t in (wide.W1, wide.b1, wide.A, wide.b2))
    assert wide.W1.shape == (8, 4) and wide.A.shape == (4, 8)


# ---------------------------------------------------------------------------------------------------------------------
# A checkpoint with pickled objects besides the weights (the official RepVGG training script stores its config)


def test_checkpoint_with_a_pickled_config_gives_one_clear_error_and_a_working_command(tmp_path):
    state = models.repvgg("A0", 5, width_mult=0.125).state_dict()
    path = tmp_path / "official.pth"
    torch.save({"model": state, "config": argparse.Namespace(arch="RepVGG-A0", epochs=120)}, path)
    with pytest.raises(CheckpointPickleError) as info:
        load_checkpoint(path)
    message = str(info.value)
    assert isinstance(info.value, ValueError)
    assert str(path) in message and "pickled Python objects besides the weights" in message
    assert "argparse.Namespace" in message and "if you trust the file" in message.lower()
    # The one-liner in the message extracts the state dict, and the result loads safely.
    (line,) = [ln.strip() for ln in message.splitlines() if ln.strip().startswith("python -c")]
    program, flag, code = shlex.split(line)
    assert (program, flag) == ("python", "-c") and "weights_only=False" in code
    exec(code, {})  # what the user runs, in this process (the file is ours, so trusted)
    extracted = tmp_path / "official.state_dict.pt"
    assert str(extracted) in message
    loaded = load_checkpoint(extracted)
    assert loaded.keys() == state.keys() and all(torch.equal(loaded[k], state[k]) for k in state)
    damaged = tmp_path / "damaged.pt"
    damaged.write_bytes(b"\x80\x02garbage" * 10)  # not a refused object: a damaged file, said so (not the pickle hint)
    with pytest.raises(DataCorruptError, match="does not read as a PyTorch file"):
        load_checkpoint(damaged)
