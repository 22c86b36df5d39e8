"""The `full` profiles' code path, end to end on the CPU, with only the sizes overridden (issue 19, part 2).

A `full` run on a GPU takes branches that `smoke` and `cpu` never take: torch.compile, channels_last and bf16 autocast
together, the paper's networks at full width (RepVGG-A2, ResNet-56 with a fine-tune, RepVGG-A2 from an ImageNet
checkpoint), the recovery phase of a compiled run (its slopes `requires_grad_(False)`, so the graph is compiled
again), the controller's `stop`/`stateful` hooks around a compiled module, DataLoader workers for ImageNet. Each test
below builds the profile with `cifar_config("full", ...)` / `imagenet_config("full", ...)`, forces the three knobs on
(the CPU can run all of them; on an AVX2-only CPU bf16 is emulated, slower but the same branch), and overrides only
sizes (images, epochs, batch, one target or ω, one seed, one granularity), plus where files go. The first assertion
of each test checks that nothing else differs from the profile.

Cost: compiling a graph with inductor on the CPU takes 30-130 s with a cold cache on a busy 2-core machine (5-15 s
warm, `/tmp/torchinductor_<user>`); the three tests together took 7.3 min with a cold cache and 45-90 s with a warm
one there (measured while other jobs ran). The tests compile 7 graphs in all: per CIFAR test the pre-training network, the
linearization and the recovery graph (3 each), one for ImageNet (fixed ω, no recovery phase in its profile). The
images are few (16 CIFAR images, one step an epoch; 32-px ImageNet-like images), because RepVGG-A2 at full width
costs about 2 s per training step of 16 CIFAR images on one core. Inductor compiles in this process
(`compile_threads=1`): no pool of compile workers competes with other work for the cores.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch

from course_lib import experiments, imagenet, models

pytestmark = [pytest.mark.slow, pytest.mark.data]

KNOBS = dict(compile=True, channels_last=True, amp_bf16=True)
# One step an epoch: 16 training images at batch 16; 16 test images in one evaluation batch.
CIFAR_SIZES = dict(n_train=16, n_test=16, batch_size=16, eval_batch_size=16, pretrain_epochs=1, posttrain_epochs=1,
                   recovery_epochs=1, seeds=(0,))


@pytest.fixture(autouse=True)
def _compile_in_process():
    import torch._inductor.config as inductor_config

    with inductor_config.patch(compile_threads=1):
        yield


def _changed(cfg, profile) -> set[str]:
    new, old = dataclasses.asdict(cfg), dataclasses.asdict(profile)
    return {k for k in new if new[k] != old[k]}


def _only_sizes_differ(cfg, profile, overrides: dict) -> None:
    assert _changed(cfg, profile) == {k for k, v in overrides.items() if v != getattr(profile, k)}
    assert cfg.mode == "full"


def _check_run(result: dict, recovered: bool) -> None:
    assert result["train_config"]["compile"] and result["train_config"]["channels_last"]
    assert result["train_config"]["amp_bf16"]
    assert not result["diverged"] and 0 <= result["test_accuracy"] <= 1
    assert result["provenance"]["device"] == "cpu"
    assert (result["recovery_history"] is not None) == recovered
    if recovered:  # the controller's stop hook ended phase 1 at its first step; phase 2 ran its epoch
        assert result["reached_step"] == 1 and result["history"]["stopped_at"] == {"epoch": 1, "step": 1}
        assert len(result["recovery_history"]["epochs"]) == 1
        assert result["test_accuracy"] == result["test_accuracy_recovered"]


def _cifar_full(tmp_path: Path, data_dir: Path, network: str, granularity: str, target: float):
    profile = experiments.cifar_config("full", network=network)
    overrides = dict(CIFAR_SIZES, network=network, targets=(target,), granularities=(granularity,),
                     out_dir=str(tmp_path), data_dir=str(data_dir), device="cpu", **KNOBS)
    cfg = experiments.cifar_config("full", **overrides)
    _only_sizes_differ(cfg, profile, overrides)
    (result,) = experiments.sweep(cfg, progress=False)
    start = json.loads((tmp_path / "pretrain" / "seed0" / "result.json").read_text())
    assert start["train_config"]["compile"] and len(start["history"]["epochs"]) == 1
    _check_run(result, recovered=True)
    assert result["reached"] and result["granularity"] == granularity
    assert (tmp_path / "summary.json").exists()
    assert not list((tmp_path / "runs").glob("*.pt"))  # no checkpoint left behind, no weights (save_models=False)
    return cfg, start, result


def test_cifar_plain_repvgg_a2_full_profile(tmp_path, data_dir):
    # Target 22 = the NAPL of the 22-layer plain net: reached at the first step, so the recovery phase runs too.
    cfg, start, result = _cifar_full(tmp_path, data_dir, "repvgg", "channel", 22.0)
    assert cfg.arch == "A2" and cfg.width_mult == 1.0
    assert start["widths"] == models.repvgg_widths("A2") and start["napl"] == 22
    assert result["slopes"] == result["channels"] == 7808  # RepVGG-A2: 64 + 2·96 + 4·192 + 14·384 + 1408
    assert result["depth_after_merge"]["conv"] == 22  # nothing linear yet


def test_cifar_resnet56_full_profile(tmp_path, data_dir):
    # ResNet-56 has 55 activations, so its NAPL is at most 55: that target is reached at the first step.
    cfg, start, result = _cifar_full(tmp_path, data_dir, "resnet56", "layer", 55.0)
    assert cfg.network == "resnet56" and cfg.pretrain_epochs == 1  # the fine-tune of the akamaster weights ran
    assert start["test_accuracy_before_finetune"] is not None
    assert result["slopes"] == 55 and "napl_without_post_addition" in result


def test_imagenet_repvgg_a2_full_profile(tmp_path, data_dir):
    folder = imagenet.make_smoke_imagefolder(tmp_path / "folder", n_classes=2, per_class_train=8, per_class_val=4,
                                             size=32, root=data_dir)
    torch.manual_seed(0)
    checkpoint = tmp_path / "repvgg_a2.pt"  # a training-form A2 with ImageNet's 1000 outputs, as a user gives one
    torch.save({"model": models.repvgg("A2", 1000).state_dict()}, checkpoint)
    profile = imagenet.imagenet_config("full", imagenet_dir=str(folder), checkpoint=str(checkpoint))
    overrides = dict(imagenet_dir=str(folder), checkpoint=str(checkpoint), image_size=32, batch_size=16,
                     eval_batch_size=8, posttrain_epochs=1, omegas=(0.01,), seeds=(0,), granularities=("channel",),
                     num_workers=2,  # DataLoader worker processes, as on a GPU machine (profile: 8)
                     out_dir=str(tmp_path / "run"), device="cpu", **KNOBS)
    cfg = imagenet.imagenet_config("full", **overrides)
    _only_sizes_differ(cfg, profile, overrides)
    assert cfg.arch == "A2" and cfg.width_mult == 1.0 and cfg.recovery_epochs == 0
    (result,) = imagenet.sweep(cfg, progress=False)
    start = json.loads((tmp_path / "run" / "pretrain" / "result.json").read_text())
    assert start["checkpoint_form"] == "train" and start["test_images"] == 8 and start["napl"] == 22
    _check_run(result, recovered=False)
    assert result["omega"] == 0.01 and result["history"]["test"]["n"] == 8
    assert result["slopes"] == result["channels"] == 7808
