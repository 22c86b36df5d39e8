"""The CIFAR protocol end to end on real data (smoke sizes), resume, torchrun, and clear config errors."""

import json
import os
import shutil
import subprocess
import sys

import pytest
import torch

from course_lib import experiments, judging, results, train

SMALL = dict(n_train=256, n_test=200, amp_bf16=False, channels_last=False, compile=False)


def test_smoke_sweep_end_to_end(tmp_path, data_dir):
    # 16 steps an epoch, up to 2 epochs to reach the target: enough for both variants in smoke
    cfg = experiments.cifar_config("smoke", out_dir=str(tmp_path), data_dir=str(data_dir), posttrain_epochs=2,
                                   **{**SMALL, "n_train": 2048})
    results = experiments.sweep(cfg, progress=False)
    assert len(results) == len(cfg.granularities) * (len(cfg.omegas) + len(cfg.targets)) * len(cfg.seeds)
    for r in results:
        assert r["reached"] and abs(r["napl"] - r["target"]) <= cfg.target_tol  # both variants land on the target
        assert r["test_accuracy"] == r["test_accuracy_recovered"] and r["recovery_history"]["epochs"]
        assert r["slope_distribution"]["unfrozen"] == r["slopes"] - r["frozen_slopes"]
        assert 0 <= r["test_accuracy"] <= 1 and 0 <= r["napl"] <= 22 + 1e-9
        assert abs(sum(r["path_length_histogram"]) - 1) < 1e-9
        assert r["provenance"]["torch"] == torch.__version__ and "git_commit" in r["provenance"]
        assert len(r["nonlinear_fraction"]) == 22
    channel = next(r for r in results if r["granularity"] == "channel")
    layer = next(r for r in results if r["granularity"] == "layer")
    assert channel["slopes"] == channel["channels"] and layer["slopes"] == 22
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["baseline"]["napl"] == 22 and set(summary["curves"]) == {"channel", "layer"}
    assert [g["target"] for g in summary["paired_gaps"]] == list(cfg.targets)


def test_interrupted_sweep_resumes_without_recomputing(tmp_path, data_dir, monkeypatch):
    common = dict(data_dir=str(data_dir), posttrain_epochs=2, omegas=(0.3,), targets=(), recovery_epochs=0, **SMALL)
    reference = experiments.sweep(experiments.cifar_config("smoke", out_dir=str(tmp_path / "a"), **common),
                                  progress=False)
    cfg = experiments.cifar_config("smoke", out_dir=str(tmp_path / "b"), **common)
    experiments.pretrain(cfg, progress=False)
    shutil.rmtree(tmp_path / "b" / "pretrain")
    shutil.copytree(tmp_path / "a" / "pretrain", tmp_path / "b" / "pretrain")  # the same start, as in the paper

    original, calls = train.save_checkpoint_atomic, []

    def crash_in_second_run(path, state):
        original(path, state)
        calls.append(path.name)
        if sum(".ckpt." in c for c in calls) == 3:  # run 1 saved 2 epochs; run 2 saved its first epoch
            raise KeyboardInterrupt

    monkeypatch.setattr(train, "save_checkpoint_atomic", crash_in_second_run)
    with pytest.raises(KeyboardInterrupt):
        experiments.sweep(cfg, progress=False)
    monkeypatch.setattr(train, "save_checkpoint_atomic", original)
    first = tmp_path / "b" / "runs" / f"{results.run_name('channel', 0, omega=0.3)}.json"
    stamp = first.stat().st_mtime_ns
    resumed = experiments.sweep(cfg, progress=False)
    assert first.stat().st_mtime_ns == stamp  # finished run read back, not recomputed
    assert resumed[1]["history"]["resumed_from_epoch"] == 1
    for a, b in zip(reference, resumed):
        assert a["test_accuracy"] == pytest.approx(b["test_accuracy"], abs=1e-9)
        assert a["napl"] == pytest.approx(b["napl"], abs=1e-9)


@pytest.mark.slow
def test_torchrun_two_processes_agree_with_one(tmp_path, data_dir):
    # SGD keeps the comparison exact up to float summation order (AdamW's normalised steps amplify that noise).
    common = ["--mode", "smoke", "--set", "n_train=256", "n_test=200", "amp_bf16=false", "channels_last=false",
              f"data_dir={data_dir}", "posttrain_epochs=2", "posttrain_optimizer=sgd", "slope_lr_mult=1"]
    single, multi = tmp_path / "single", tmp_path / "multi"
    run = "channel:0.3:0"
    assert experiments.main(["--out", str(single), "--one-run", run, *common]) == 0
    shutil.copytree(single / "pretrain", multi / "pretrain")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           "-m", "course_lib", "cifar", "--out", str(multi), "--one-run", run, *common],
                          capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    name = results.run_name("channel", 0, omega=0.3)
    a = json.loads((single / "runs" / f"{name}.json").read_text())
    b = json.loads((multi / "runs" / f"{name}.json").read_text())
    assert a["test_accuracy"] == pytest.approx(b["test_accuracy"], abs=0.01)
    assert a["napl"] == pytest.approx(b["napl"], abs=0.05)
    wa = torch.load(single / "runs" / f"{name}.pt", weights_only=True)["model"]
    wb = torch.load(multi / "runs" / f"{name}.pt", weights_only=True)["model"]
    for key in wa:
        assert torch.allclose(wa[key].float(), wb[key].float(), atol=1e-4), key


@pytest.mark.parametrize("overrides, message", [
    (dict(dataset="mnist"), "unknown dataset"),
    (dict(granularities=("neuron",)), "unknown granularity"),
    (dict(omegas=(0.1, -1.0)), "omega must be"),
    (dict(learning_rate=0.1), "unknown setting"),
    (dict(seeds=()), "at least one seed"),
])
def test_bad_config_values_are_clear_errors(overrides, message):
    with pytest.raises(ValueError, match=message):
        experiments.cifar_config("smoke", **overrides)


def test_unknown_mode_and_bad_post_train_arguments(tmp_path):
    with pytest.raises(ValueError, match="valid modes"):
        experiments.cifar_config("quick")
    cfg = experiments.cifar_config("smoke", out_dir=str(tmp_path))
    with pytest.raises(ValueError, match="unknown granularity"):
        experiments.post_train(cfg, "block", 0, omega=0.1)
    with pytest.raises(ValueError, match="omega"):
        experiments.post_train(cfg, "channel", 0, omega=-0.1)
    with pytest.raises(ValueError, match="either a fixed omega or a target"):
        experiments.post_train(cfg, "channel", 0, omega=0.1, target=4.0)


def test_diverged_runs_are_named_and_left_out():
    runs = [{"granularity": "channel", "omega": 1.0, "seed": 0, "napl": 3.0, "test_accuracy": 0.1, "diverged": True,
             "config": {}},
            {"granularity": "channel", "omega": 0.1, "seed": 0, "napl": 9.0, "test_accuracy": 0.7, "config": {}}]
    summary = judging.summarize(runs)
    assert summary["diverged_runs"] == ["channel-omega1-seed0"] and len(summary["curves"]["channel"]) == 1
