"""The from-scratch comparison (`course_lib.from_scratch`): smoke training end to end, reuse and resume, the summary's
intervals against an independent computation, the stored reference, bad input."""

from __future__ import annotations

import json
import math

import pytest
import torch

from course_lib import cli, config, from_scratch, models, train
from course_lib.errors import CourseError, StoredResultError


def _cfg(tmp_path, data_dir, **overrides):
    return from_scratch.from_scratch_config("smoke", out_dir=str(tmp_path / "out"), data_dir=str(data_dir),
                                            **overrides)


def _no_training(*args, **kwargs):
    raise AssertionError("a stored net was trained again")


def test_smoke_trains_both_twins_end_to_end(tmp_path, data_dir):
    cfg = _cfg(tmp_path, data_dir)
    summary = from_scratch.summarize(from_scratch.run(cfg, progress=False))
    assert sorted(summary["nets"]) == ["plain8", "resnet8"]
    for depth, plain, seed in from_scratch.nets(cfg):
        folder = tmp_path / "out" / f"{from_scratch.net_name(depth, plain)}-seed{seed}"
        result = json.loads((folder / "result.json").read_text())
        assert result["net"] == from_scratch.net_name(depth, plain) and result["seed"] == seed
        assert result["n_test"] == cfg.n_test and len(result["curve"]) == cfg.epochs
        assert {"train_loss", "test_accuracy", "lr"} <= set(result["curve"][0])
        assert result["provenance"]["git_commit"] is not None and result["wall_time_s"] >= 0
        assert not (folder / "checkpoint.pt").exists()
        # model.pt is a plain state dict of cifar_resnet(depth, plain=...) and gives the stored accuracy back
        state = torch.load(folder / "model.pt", map_location="cpu", weights_only=True)
        models.cifar_resnet(depth, plain=plain).load_state_dict(state)
        net = from_scratch.load_trained(cfg.out_dir, depth, plain, seed)
        loader = from_scratch.experiments._loaders(cfg, seed, torch.device("cpu"), False)[1]
        again = train.evaluate(net, loader, result["train_config"]["amp_bf16"])
        assert again["accuracy"] == pytest.approx(result["test_accuracy"], abs=2 / cfg.n_test)
    stored = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert stored["gaps"][0]["seeds"] == list(cfg.seeds)
    text = from_scratch.reading(summary)
    assert "Depth 8" in text and "smoke mode" in text and "judges nothing" in text and "4 nets" in text


def test_twins_of_one_seed_start_from_the_same_weights():
    config.seed_everything(3)
    resnet = models.cifar_resnet(20).state_dict()
    config.seed_everything(3)
    plain = models.cifar_resnet(20, plain=True).state_dict()
    assert resnet.keys() == plain.keys() and all(torch.equal(resnet[k], plain[k]) for k in resnet)


def test_a_finished_net_is_reused_and_other_settings_are_refused(tmp_path, data_dir, monkeypatch):
    cfg = _cfg(tmp_path, data_dir, seeds=(0,))
    first = from_scratch.run(cfg, progress=False)
    monkeypatch.setattr(train, "fit", _no_training)
    assert from_scratch.run(cfg, progress=False) == json.loads(json.dumps(first))  # read back, not retrained
    with pytest.raises(StoredResultError, match="epochs"):
        from_scratch.run(_cfg(tmp_path, data_dir, seeds=(0,), epochs=2), progress=False)


def test_an_interrupted_net_resumes_where_it_stopped(tmp_path, data_dir, monkeypatch):
    cfg = _cfg(tmp_path, data_dir, seeds=(0,), epochs=2, depths=(8,))
    whole = from_scratch.train_net(_cfg(tmp_path / "whole", data_dir, seeds=(0,), epochs=2), 8, False, 0,
                                   progress=False)
    original = from_scratch._EpochCurve.__call__

    def interrupt_in_epoch_2(self):
        if self.steps == self.steps_per_epoch + 1:
            raise KeyboardInterrupt
        return original(self)

    monkeypatch.setattr(from_scratch._EpochCurve, "__call__", interrupt_in_epoch_2)
    with pytest.raises(KeyboardInterrupt):
        from_scratch.train_net(cfg, 8, False, 0, progress=False)
    assert (tmp_path / "out" / "resnet8-seed0" / "checkpoint.pt").exists()
    monkeypatch.setattr(from_scratch._EpochCurve, "__call__", original)
    resumed = from_scratch.train_net(cfg, 8, False, 0, progress=False)
    assert resumed["history"]["resumed_from_epoch"] == 1 and len(resumed["curve"]) == 2
    assert [e["test_accuracy"] for e in resumed["curve"]] == [e["test_accuracy"] for e in whole["curve"]]
    assert resumed["test_accuracy"] == pytest.approx(whole["test_accuracy"], abs=1e-9)


def _fake(net: str, seed: int, accuracy: float) -> dict:
    depth, plain = int(net.removeprefix("plain").removeprefix("resnet")), net.startswith("plain")
    return {"net": net, "depth": depth, "plain": plain, "seed": seed, "test_accuracy": accuracy, "wall_time_s": 1.0,
            "curve": [{"epoch": 1, "train_loss": 1.0, "test_accuracy": accuracy, "lr": 0.0}],
            "config": {"mode": "cpu", "dataset": "cifar10", "n_train": 10_000, "n_test": None, "epochs": 15}}


def test_the_summary_intervals_match_a_hand_computation():
    from scipy import stats

    resnet, plain = [0.80, 0.83, 0.81], [0.75, 0.79, 0.78]
    results = [_fake("resnet20", s, a) for s, a in enumerate(resnet)] + [_fake("plain20", s, a)
                                                                         for s, a in enumerate(plain)]
    summary = from_scratch.summarize(results)

    def t_interval(values):
        n, mean = len(values), sum(values) / len(values)
        sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
        half = stats.t.ppf(0.975, n - 1) * sd / math.sqrt(n)
        return mean - half, mean + half

    for name, values in (("resnet20", resnet), ("plain20", plain)):
        got = summary["nets"][name]["accuracy"]
        assert (got["low"], got["high"]) == pytest.approx(t_interval(values), abs=1e-12)
    diffs = [r - p for r, p in zip(resnet, plain)]  # 0.05, 0.04, 0.03: mean 0.04, sd 0.01
    gap = summary["gaps"][0]["gap"]
    assert gap["mean"] == pytest.approx(0.04) and (gap["low"], gap["high"]) == pytest.approx(t_interval(diffs))
    half = stats.t.ppf(0.975, 2) * 0.01 / math.sqrt(3)  # 4.303 * 0.01 / 1.732 = 0.0248
    assert gap["low"] == pytest.approx(0.04 - half) and summary["gaps"][0]["clear"] == 1
    text = from_scratch.reading(summary)
    assert "ResNet - plain +4.00" in text and "clearly ahead" in text and "10,000 training images" in text
    assert "6 nets" in text and "cpu mode" in text
    # Unpaired seeds do not count, and an interval that holds 0 says so
    extra = [_fake("resnet20", 2, 0.70), *results[3:], _fake("plain20", 7, 0.9)]
    mixed = from_scratch.summarize(results[:2] + extra)
    assert mixed["gaps"][0]["seeds"] == [0, 1, 2] and mixed["gaps"][0]["clear"] == 0
    assert "holds 0" in from_scratch.reading(mixed)


def test_the_reference_is_exported_and_read_back_without_training(tmp_path, data_dir, monkeypatch):
    cfg = _cfg(tmp_path, data_dir, seeds=(0,))
    from_scratch.run(cfg, progress=False)
    ref = from_scratch.export_reference(cfg.out_dir, "fs_test", reference_dir=tmp_path / "ref")
    assert sorted(p.name for p in ref.rglob("*") if p.is_file()) == ["result.json", "result.json", "summary.json"]
    fresh = _cfg(tmp_path / "fresh", data_dir, seeds=(0,))
    assert from_scratch.reference_matches(fresh, "fs_test", tmp_path / "ref")
    assert not from_scratch.reference_matches(_cfg(tmp_path, data_dir, seeds=(0, 1)), "fs_test", tmp_path / "ref")
    assert not from_scratch.reference_matches(_cfg(tmp_path, data_dir, seeds=(0,), epochs=2), "fs_test",
                                              tmp_path / "ref")
    assert from_scratch.use_reference(fresh, "fs_test", tmp_path / "ref")
    monkeypatch.setattr(train, "fit", _no_training)
    assert {r["net"] for r in from_scratch.run(fresh, progress=False)} == {"resnet8", "plain8"}


def test_the_stored_cpu_reference_matches_the_cpu_profile():
    cfg = from_scratch.from_scratch_config("cpu", out_dir="unused")
    assert from_scratch.reference_matches(cfg), "data/reference/from_scratch_cpu/ is missing or out of date"
    summary = from_scratch.summarize(from_scratch.reference_results())
    assert summary["nets"].keys() == {"resnet20", "plain20"} and summary["gaps"][0]["seeds"] == [0, 1, 2]
    stored = json.loads((from_scratch.REFERENCE_DIR / from_scratch.REFERENCE / "summary.json").read_text())
    assert stored["gaps"] == json.loads(json.dumps(summary["gaps"]))
    assert all("+dirty" not in r["provenance"]["git_commit"] for r in from_scratch.reference_results())
    assert from_scratch.expected_time(cfg, True).startswith("seconds")
    assert from_scratch.expected_time(cfg, False).startswith("6 nets to train (the stored from_scratch_cpu run took")




@pytest.mark.slow
def test_notebook_01_in_cpu_mode_shows_the_stored_reference(tmp_path, monkeypatch, data_dir):
    import papermill

    monkeypatch.setenv("COURSE_WIDGETS", "0")
    out = tmp_path / "01.ipynb"
    papermill.execute_notebook("notebooks/01_function_spaces.ipynb", str(out), kernel_name="python3", cwd="notebooks",
                               parameters={"RUN_MODE": "cpu", "OUT_DIR": str(tmp_path / "scratch")},
                               progress_bar=False)
    text = json.dumps(json.loads(out.read_text())["cells"])
    assert "section 0: seconds: the stored reference matches these settings" in text and "ResNet - plain" in text
    assert not list((tmp_path / "scratch").rglob("*.pt"))  # nothing was trained


@pytest.mark.parametrize("argv, fragment", [
    (["--mode", "fast"], "unknown run mode 'fast'"),
    (["--mode", "smoke", "--depths", "21"], "unknown depth 21"),
    (["--mode", "smoke", "--set", "epochs=0"], "epochs must be >= 1"),
])
def test_bad_input_is_one_clear_error(argv, fragment, capsys, tmp_path):
    assert cli.main(["from-scratch", *argv, "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and fragment in err and "\n" not in err
    assert not (tmp_path / "out").exists()


def test_bad_input_raises_a_course_error():
    with pytest.raises(CourseError, match="unknown depth 21"):
        from_scratch.from_scratch_config("smoke", depths=(21,))
    with pytest.raises(CourseError, match="unknown run mode"):
        from_scratch.from_scratch_config("fast")


@pytest.mark.parametrize("mode", ["smoke", "cpu", "full"])
def test_the_profile_sets_exactly_the_fields_of_the_config(mode):
    import dataclasses

    from course_lib import profiles

    fields = {f.name for f in dataclasses.fields(from_scratch.FromScratchConfig)} - {"mode"}
    assert set(profiles.sizes("from-scratch", mode)) == fields
    cfg = from_scratch.from_scratch_config(mode)
    assert (cfg.lr, cfg.momentum, cfg.weight_decay, cfg.batch_size) == (0.1, 0.9, 5e-4, 128)  # He et al.'s recipe


def test_the_figure_draws_every_net_gap_and_curve():
    import matplotlib

    matplotlib.use("Agg")
    from course_lib import viz

    results = [_fake(net, s, a) for net, accs in (("resnet20", (0.8, 0.82)), ("plain20", (0.7, 0.75)))
               for s, a in enumerate(accs)]
    summary = from_scratch.summarize(results)
    fig = viz.plot_from_scratch({"this run": (summary, results), "reference": (summary, results)})
    accuracy, gap, loss = fig.axes
    assert len(accuracy.get_xticks()) == 4 and len(loss.get_lines()) == 4 and loss.get_legend() is not None
    assert 100 * summary["gaps"][0]["gap"]["mean"] in [line.get_ydata()[0] for line in gap.get_lines()]
