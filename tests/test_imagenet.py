"""The ImageNet protocol (course_lib.imagenet) on a generated ImageFolder of real CIFAR-10 images.

The whole path runs here: folder checks, JPEG decoding, transforms, the DDP loader, checkpoints in every supported
form, post-training, result files, resume, torchrun with 2 processes on gloo. RepVGG-A2's fusion (train form equals
deploy form) is tested in tests/test_models.py::test_reparameterize_matches_train_form; its 25,499,944 deploy
parameters in tests/test_models.py::test_repvgg_a2_deploy_parameter_count.
"""

import json
import os
import subprocess
import sys

import pytest
import torch

from course_lib import imagenet, judging, models, results

SMOKE_RESULT_KEYS = {"kind", "config", "train_config", "granularity", "omega", "seed", "test_accuracy", "test_loss",
                     "diverged", "napl", "path_length_histogram", "nonlinear_fraction", "slopes", "frozen_slopes",
                     "linear_channels", "channels", "parameters", "depth_after_merge", "history", "wall_time_s",
                     "provenance", "target", "reached", "reached_step", "omega_trajectory", "test_accuracy_linearized",
                     "test_accuracy_recovered", "recovery_history", "slope_distribution"}
FAST = dict(amp_bf16=False, channels_last=False, compile=False, reader="torchvision")


@pytest.fixture
def folder(tmp_path, data_dir):
    """3 classes of upscaled CIFAR-10: 8 train and 5 val images each (15 val images: odd, for the DDP split)."""
    return imagenet.make_smoke_imagefolder(tmp_path / "folder", n_classes=3, per_class_train=8, per_class_val=5,
                                           size=40, root=data_dir)


# ---------------------------------------------------------------------------------------------------------------------
# Data


def test_smoke_imagefolder_holds_real_cifar_images(folder):
    info = imagenet.check_imagefolder(folder)
    assert info["classes"] == ["airplane", "automobile", "bird"]
    val = imagenet.image_folder(folder, "val", 32, train=False, reader="torchvision")
    assert len(val) == 15 and sorted(set(val.targets)) == [0, 1, 2]
    x, y = val[0]
    assert x.dtype == torch.uint8 and x.shape == (3, 32, 32) and y == 0
    assert x.float().std() > 10  # a real photo, not a constant image


def test_both_readers_decode_the_same_pixels(folder):
    path = imagenet.image_folder(folder, "train", 32, train=True, reader="pil").samples[0][0]
    from torchvision.transforms.v2.functional import pil_to_tensor

    pil = pil_to_tensor(imagenet.READERS["pil"](path)).float()
    tv = imagenet.READERS["torchvision"](path).float()
    assert pil.shape == tv.shape == (3, 40, 40) and (pil - tv).abs().mean() < 2  # both are libjpeg decodes
    speed = imagenet.measure_decode_speed(folder, n_images=8)
    assert set(speed) == {"pil", "torchvision"} and all(v > 0 for v in speed.values())


def test_ddp_eval_counts_every_val_image_exactly_once(folder):
    from torch.utils.data import DistributedSampler

    val = imagenet.image_folder(folder, "val", 32, train=False, reader="torchvision")
    labels = []
    for rank in range(2):
        loader = imagenet.ImageNetLoader(val, 4, train=False, rank=rank, world_size=2)
        labels += [y for _, ys in loader for y in ys.tolist()]
    assert sorted(labels) == sorted(val.targets)  # 15 images: 8 on rank 0, 7 on rank 1, none twice
    # DistributedSampler would pad rank 1 with a repeated image; train.evaluate's all-reduce would count it twice.
    assert sum(len(list(DistributedSampler(val, 2, r, shuffle=False))) for r in range(2)) == 16


def test_train_loader_gives_equal_full_batches_on_every_rank(folder):
    data = imagenet.image_folder(folder, "train", 32, train=True, reader="torchvision")  # 24 images
    loaders = [imagenet.ImageNetLoader(data, 4, train=True, rank=r, world_size=2, seed=1) for r in range(2)]
    assert [len(loader) for loader in loaders] == [3, 3]
    x, y = next(iter(loaders[0]))
    assert x.dtype == torch.float32 and x.shape == (4, 3, 32, 32) and abs(x.mean()) < 3
    with pytest.raises(ValueError, match="no full batch"):
        imagenet.ImageNetLoader(data, 64, train=True, rank=0, world_size=1)
    assert len(imagenet.ImageNetLoader(data, 4, train=True)) == 6  # not under torchrun: rank 0 of 1


def _touch(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"jpeg")


@pytest.mark.parametrize("case, message", [
    ("unset", "IMAGENET_DIR"),
    ("missing", "does not exist"),
    ("no_val", "val is missing"),
    ("flat_val", "valprep"),
    ("no_class_folders", "no class folders"),
    ("different_classes", "differ"),
    ("empty_class", "hold no images"),
])
def test_missing_or_malformed_imagenet_dir_is_a_clear_error(tmp_path, monkeypatch, case, message):
    monkeypatch.delenv(imagenet.ENV_IMAGENET_DIR, raising=False)
    root = tmp_path / "imagenet"
    layout = {
        "no_val": ["train/n01/a.JPEG"],
        "flat_val": ["train/n01/a.JPEG", "val/ILSVRC2012_val_00000001.JPEG"],
        "no_class_folders": ["train/a.txt", "val/n01/a.JPEG"],
        "different_classes": ["train/n01/a.JPEG", "train/n02/b.JPEG", "val/n01/c.JPEG", "val/n03/d.JPEG"],
        "empty_class": ["train/n01/a.JPEG", "train/n02/readme.txt", "val/n01/c.JPEG", "val/n02/d.JPEG"],
    }.get(case, [])
    for name in layout:
        _touch(root / name)
    with pytest.raises(imagenet.ImageNetNotFoundError, match=message) as error:
        imagenet.check_imagefolder(None if case == "unset" else root)
    assert isinstance(error.value, FileNotFoundError)  # one family with the course's other data errors


def test_full_mode_without_imagenet_dir_fails_on_first_read(tmp_path, monkeypatch):
    monkeypatch.delenv(imagenet.ENV_IMAGENET_DIR, raising=False)
    cfg = imagenet.imagenet_config("full", checkpoint="x.pt", out_dir=str(tmp_path))
    with pytest.raises(imagenet.ImageNetNotFoundError, match="IMAGENET_DIR"):
        imagenet.data_root(cfg)


# ---------------------------------------------------------------------------------------------------------------------
# Config and command line


@pytest.mark.parametrize("overrides, message", [
    (dict(learning_rate=0.1), "unknown setting"),
    (dict(granularities=("neuron",)), "unknown granularity"),
    (dict(omegas=(-1.0,)), "omega must be"),
    (dict(reader="opencv"), "unknown reader"),
    (dict(seeds=()), "at least one seed"),
])
def test_bad_settings_are_clear_errors(overrides, message):
    with pytest.raises(ValueError, match=message):
        imagenet.imagenet_config("smoke", **overrides)


def test_unknown_mode_and_full_without_checkpoint_are_errors(capsys, tmp_path):
    with pytest.raises(ValueError, match="valid modes"):
        imagenet.imagenet_config("quick")
    with pytest.raises(ValueError, match="give a checkpoint"):
        imagenet.pretrain(imagenet.imagenet_config("full", out_dir=str(tmp_path)))
    for argv, message in [(["--mode", "quick"], "valid modes"), (["--set", "lr=1"], "unknown setting"),
                          (["--set", "lr"], "KEY=VALUE")]:
        with pytest.raises(SystemExit):
            imagenet.main(argv)
        assert message in capsys.readouterr().err


def test_command_line_arguments_rebuild_the_config():
    cfg = imagenet.imagenet_config("smoke", omegas=(0.5,), posttrain_lr=1e-5, granularities=("layer",),
                                   data_dir="/x/y", channels_last=False, out_dir="o")
    rebuilt, _ = imagenet.parse_args(imagenet.cli_args(cfg))
    assert rebuilt == cfg


def test_torchrun_command_for_one_and_several_nodes():
    one = imagenet.torchrun_command(8, 1, ["--mode", "full"])
    assert one[:3] == ["torchrun", "--standalone", "--nproc-per-node=8"]
    assert one[-5:] == ["-m", "course_lib", "imagenet", "--mode", "full"]
    assert "--nnodes=2" in imagenet.torchrun_command(8, 2) and "--standalone" not in imagenet.torchrun_command(8, 2)


# ---------------------------------------------------------------------------------------------------------------------
# Checkpoints


def _small_trained_looking_net():
    torch.manual_seed(0)
    net = models.repvgg("A0", 5, cifar=False, width_mult=0.125).eval()
    gen = torch.Generator().manual_seed(0)
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):  # non-trivial BN statistics, as after training
            m.running_mean.copy_(torch.rand(m.num_features, generator=gen) - 0.5)
            m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
    return net


def _official_deploy(net):
    """Our deploy form renamed to DingXiaoH/RepVGG's deploy keys (stage0.rbr_reparam.*, stage1.0.rbr_reparam.*)."""
    names = [n.replace("stage0.0", "stage0") for n, m in net.named_modules() if isinstance(m, models.RepVGGBlock)]
    deploy = models.repvgg_deploy(net).state_dict()
    out = {k: v for k, v in deploy.items() if k.startswith("linear.")}
    for i, name in enumerate(names):
        out[f"{name}.rbr_reparam.weight"] = deploy[f"features.{2 * i}.weight"]
        out[f"{name}.rbr_reparam.bias"] = deploy[f"features.{2 * i}.bias"]
    return out


def test_official_key_names_map_to_ours():
    ours = models.repvgg("A0", 10, width_mult=0.125).state_dict()
    official = imagenet.to_official(ours)
    for key in ("stage0.rbr_dense.conv.weight", "stage0.rbr_dense.bn.running_var", "stage0.rbr_1x1.bn.weight",
                "stage1.1.rbr_identity.weight", "stage4.0.rbr_1x1.conv.weight", "linear.bias"):
        assert key in official
    assert imagenet.from_official(official).keys() == ours.keys()


@pytest.mark.parametrize("form", ["train", "deploy", "official_train", "official_deploy"])
def test_every_checkpoint_form_is_detected_and_gives_the_same_network(tmp_path, form):
    net = _small_trained_looking_net()
    state = {"train": lambda: net.state_dict(), "deploy": lambda: models.repvgg_deploy(net).state_dict(),
             "official_train": lambda: imagenet.to_official(net.state_dict()),
             "official_deploy": lambda: _official_deploy(net)}[form]()
    path = tmp_path / "ckpt.pt"
    wrapped = {"state_dict": {f"module.{k}": v for k, v in state.items()}} if form.startswith("official") else {
        "model": state}  # the wrappers both sides use
    torch.save(wrapped, path)
    loaded = imagenet.load_checkpoint(path)
    assert imagenet.checkpoint_format(loaded) == form
    deploy, train_form, detected = imagenet.start_network(loaded, "A0", 0.125)
    assert detected == form and (train_form is None) == form.endswith("deploy")
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        ref, out = net(x), deploy(x)
    assert (out - ref).abs().max() / ref.abs().max() < 1e-5


def test_checkpoint_errors_are_clear(tmp_path):
    net = _small_trained_looking_net()
    with pytest.raises(ValueError, match="not a RepVGG checkpoint"):
        imagenet.checkpoint_format({"conv1.weight": torch.zeros(1)})
    with pytest.raises(RuntimeError, match="shape mismatches"):
        imagenet.start_network(net.state_dict(), "A0", 0.25)  # wrong width
    torch.save(net.state_dict(), tmp_path / "a.pt")
    with pytest.raises(RuntimeError, match="sha256"):
        imagenet.load_checkpoint(tmp_path / "a.pt", sha256="0" * 64)
    with pytest.raises(FileNotFoundError, match="not found"):
        imagenet.load_checkpoint(tmp_path / "missing.pt")


# ---------------------------------------------------------------------------------------------------------------------
# Cost


def test_repvgg_a2_forward_is_5_1_giga_macs():
    deploy = models.repvgg_deploy(models.repvgg("A2", 1000).eval())
    macs = imagenet.count_macs(deploy, 224)
    assert macs == pytest.approx(5.12e9, rel=0.02)  # RepVGG paper, Table: A2 5.12 GFLOPs (multiply-adds)


def test_cost_estimate_counts_runs_and_passes():
    cfg = imagenet.imagenet_config("full", checkpoint="x.pt")
    cost = imagenet.estimate_cost(cfg, forward_images_per_s=1000.0)
    assert cost["runs"] == 2 * 9 * 3 and cost["train_images"] == imagenet.IMAGENET_TRAIN_IMAGES * 10 * 54
    assert cost["hours"] == pytest.approx((3 * cost["train_images"] + 50_000 * 54) / 1000 / 3600)


# ---------------------------------------------------------------------------------------------------------------------
# The protocol end to end


def test_smoke_sweep_end_to_end_then_resume_skips_finished_runs(tmp_path, data_dir):
    cfg = imagenet.imagenet_config("smoke", out_dir=str(tmp_path), data_dir=str(data_dir), **FAST)
    results = imagenet.sweep(cfg, progress=False)
    assert len(results) == len(cfg.granularities) * len(cfg.omegas) * len(cfg.seeds)
    baseline = json.loads((tmp_path / "pretrain" / "result.json").read_text())
    assert baseline["checkpoint_form"] == "train" and baseline["napl"] == 22 and baseline["test_images"] == 64
    assert baseline["test_accuracy"] == pytest.approx(baseline["test_accuracy_train_form"], abs=1 / 64)
    for r in results:
        assert set(r) == SMOKE_RESULT_KEYS and r["kind"] == "post_train"
        assert 0 <= r["test_accuracy"] <= 1 and 0 <= r["napl"] <= 22 + 1e-9
        assert abs(sum(r["path_length_histogram"]) - 1) < 1e-9 and len(r["nonlinear_fraction"]) == 22
        assert r["history"]["test"]["n"] == 4 * 16
        assert r["config"]["image_size"] == 64 and r["provenance"]["torch"] == torch.__version__
    layer = next(r for r in results if r["granularity"] == "layer")
    assert layer["slopes"] == 22
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert set(summary["curves"]) == {"channel", "layer"} and summary["baseline"]["napl"] == 22
    stamps = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "runs").glob("*.json")}
    again = imagenet.sweep(cfg, progress=False)
    assert {p.name: p.stat().st_mtime_ns for p in (tmp_path / "runs").glob("*.json")} == stamps
    assert [r["test_accuracy"] for r in again] == [r["test_accuracy"] for r in results]
    assert judging.summarize(again, baseline)["n_runs"] == len(results)
    other = imagenet.imagenet_config("smoke", out_dir=str(tmp_path), data_dir=str(data_dir), **FAST, image_size=48)
    with pytest.raises(ValueError, match="image_size: stored 64 vs now 48"):
        imagenet.sweep(other, progress=False)  # a stale result is never reused silently


@pytest.mark.slow
def test_torchrun_two_processes_on_gloo(tmp_path, data_dir):
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "COURSE_DATA_DIR": str(data_dir)}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           "-m", "course_lib", "imagenet", "--mode", "smoke", "--out", str(out),
                           "--omegas", "0.1", "--granularities", "channel", "--no-progress",
                           "--set", "amp_bf16=false", "channels_last=false", "reader=torchvision"],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((out / "runs" / f"{results.run_name('channel', 0, omega=0.1)}.json").read_text())
    assert result["history"]["test"]["n"] == 4 * 16  # every val image once over the 2 ranks, none padded in
    assert result["napl"] < 22  # slopes moved and froze under DDP
    assert "64 val images" in proc.stdout
