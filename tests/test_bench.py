"""The benchmark runs end to end in a tiny configuration; both loops train with the same settings. No timing asserts."""

import json

import pytest
import torch

from course_lib import bench, train

pytestmark = [pytest.mark.slow, pytest.mark.data]


@pytest.fixture(autouse=True)
def offline_data(data_dir, monkeypatch):
    """The benchmark reads CIFAR-10 (here its 4,000-image lossless subset) from the offline data folder."""
    monkeypatch.setenv("COURSE_DATA_DIR", str(data_dir))


@pytest.fixture
def recorded(monkeypatch):
    """Record, for every loop, the optimiser config, the starting weights and the batches the network sees."""
    seen = {"optimizers": [], "batches": []}
    original = train.make_optimizer

    def make_optimizer(model, cfg):
        seen["optimizers"].append((cfg, {k: v.detach().clone() for k, v in model.state_dict().items()},
                                   [g["lr"] for g in original(model, cfg).param_groups]))
        return original(model, cfg)

    def with_hook(build):
        def build_and_watch():
            net = build()
            net.register_forward_pre_hook(lambda m, args: seen["batches"].append((m.training, args[0].shape[0])))
            return net
        return build_and_watch

    monkeypatch.setattr(train, "make_optimizer", make_optimizer)
    monkeypatch.setattr(bench, "NETWORKS", {k: with_hook(v) for k, v in bench.NETWORKS.items()})
    return seen


def test_bench_runs_end_to_end_and_writes_its_json(tmp_path, capsys, recorded):
    out = tmp_path / "bench.json"
    assert bench.main(["--quick", "--subset", "lossless", "--compile", "off", "--steps", "2", "--eval-images", "200",
                       "--posttrain-steps", "2", "--out", str(out), "--cache", str(tmp_path / "cifar")]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[-1].startswith("ratio: ") and float(lines[-1].split()[1]) > 0
    result = json.loads(out.read_text())
    assert set(result["nets"]) == set(bench.NETWORKS)
    for row in result["nets"].values():
        for loop in ("course", "textbook"):
            assert row[loop]["timed_steps"] == 2 and row[loop]["images_per_s"] > 0
            assert row["eval"][loop]["images_per_s"] > 0
        assert row["ratio"] == pytest.approx(row["course"]["images_per_s"] / row["textbook"]["images_per_s"])
    assert result["ratio"] == pytest.approx(min(row["ratio"] for row in result["nets"].values()))
    assert f"ratio: {result['ratio']:.2f}" == lines[-1]
    assert result["settings"]["batch_size"] == 128 and result["settings"]["eval_images"] == 200
    assert result["posttrain_epoch_cpu"]["extrapolated"] and result["posttrain_epoch_cpu"]["epoch_s"] > 0
    assert result["smoke_sweep_s"] is None  # --quick skips the sweep
    for key in ("git_commit", "torch", "device", "time_utc"):
        assert key in result["provenance"]
    assert "No GPU figures" in result["gpu_note"]


def test_textbook_and_course_loops_train_with_the_same_settings(tmp_path, recorded):
    bench.run_bench(steps=2, warmup=1, compile="off", eval_images=100, sweep=False, posttrain_steps=0,
                    subset="lossless", cache=tmp_path / "cifar", uncompiled=False, log=lambda line: None)
    optimizers = recorded["optimizers"]
    assert len(optimizers) == 2 * len(bench.NETWORKS)  # textbook then course, per network
    for (cfg_a, state_a, lrs_a), (cfg_b, state_b, lrs_b) in zip(optimizers[::2], optimizers[1::2]):
        assert cfg_a == cfg_b and lrs_a == lrs_b
        assert (cfg_a.optimizer, cfg_a.lr, cfg_a.momentum, cfg_a.nesterov, cfg_a.weight_decay, cfg_a.batch_size) == (
            "sgd", 0.1, 0.9, True, 5e-4, 128)
        assert state_a.keys() == state_b.keys()
        assert all(torch.equal(state_a[k], state_b[k].to(state_a[k].dtype)) for k in state_a)  # same start
    training_batches = {size for is_training, size in recorded["batches"] if is_training}
    assert training_batches == {128}  # every training step of both loops, both networks


def test_fit_still_stops_a_diverged_run_when_it_reads_losses_only_every_few_steps():
    """`train.fit` sums losses on the device and checks them every `_CHECK_EVERY` steps (no sync per step)."""
    from course_lib import data, models

    gen = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (128, 3, 32, 32), dtype=torch.uint8, generator=gen)
    loader = data.CifarLoader(images, torch.randint(0, 10, (128,), generator=gen), 2, train=True)
    calls = {"n": 0}

    def nan_from_step_3(model):
        calls["n"] += 1
        return torch.tensor(float("nan") if calls["n"] >= 3 else 0.0)

    history = train.fit(models.plain_cifar_net("A0", 10, 0.125), loader, None, train.TrainConfig(epochs=2, lr=0.01),
                        penalty=nan_from_step_3, progress=False)
    assert history["diverged"] and len(history["epochs"]) == 1
    assert calls["n"] == train._CHECK_EVERY  # stopped at the first check after the loss became NaN
    assert history["epochs"][0]["train_loss"] == 0.0  # no check had found finite sums yet
