"""The GPU campaign (`python -m course_lib gpu-campaign`, course_lib.campaign) at tiny size on the CPU: its result
file and provenance, that it stops at its budget and that a second call resumes without recomputing finished runs;
its parts on their own: the worker processes' deadline (`workers.run_until`), the utilisation sampler with a stand-in
`nvidia-smi`, and the one-line errors of bad options."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from course_lib import campaign, cli, data, gpuinfo, workers

# ---------------------------------------------------------------------------------------------------------------------
# The parts


def test_workers_keep_order_and_dependencies_and_stop_at_the_deadline():
    tasks = [workers.Task("quick", (0.01,)), workers.Task("after-quick", (0.01,), after="quick"),
             workers.Task("long", (120.0,)), workers.Task("bad", (-1.0,)),
             workers.Task("after-bad", (0.01,), after="bad")]
    began = time.time()
    outcome = workers.run_until(time.sleep, tasks, workers=2, deadline=began + 5, grace_s=10, log=lambda _: None)
    elapsed = time.time() - began
    assert set(outcome.done) == {"quick", "after-quick"}
    assert outcome.failed["bad"].startswith("ValueError") and outcome.failed["after-bad"] == "not run: bad failed"
    assert outcome.unfinished == ["long"] and outcome.stopped == "deadline"
    assert elapsed < 5 + 5  # the sleeping worker was interrupted at the deadline, not killed after the grace


def test_utilization_sampler_averages_what_nvidia_smi_says(tmp_path):
    fake = tmp_path / "nvidia-smi"
    fake.write_text("#!/bin/sh\necho 87\n")
    fake.chmod(0o755)
    sampler = gpuinfo.UtilizationSampler(None, interval_s=0.05, command=str(fake), gpu="0")
    sampler.start()
    time.sleep(0.6)
    result = sampler.stop()
    assert result["samples"] >= 3 and result["mean_percent"] == 87.0 and result["method"] == "nvidia-smi"
    idle = gpuinfo.UtilizationSampler("cpu", interval_s=0.05)
    idle.start()
    time.sleep(0.2)
    assert idle.stop()["mean_percent"] is None  # no GPU: nothing to sample, and nothing invented


def test_provenance_names_the_gpu_fields_also_without_a_gpu():
    info = gpuinfo.gpu_provenance("cpu")
    assert {"git_commit", "torch", "python", "device", "gpu_properties", "torch_cuda", "cudnn", "driver",
            "nvidia_smi"} <= set(info)
    assert info["device"] == "cpu" and info["gpu_properties"] is None and info["torch_cuda"] == torch.version.cuda


def test_targets_are_judged_on_cuda_only():
    judged = campaign._targets(True, 3.5, 85.0), campaign._targets(True, 2.9, None), campaign._targets(False, 9, 99)
    assert [[t["passed"] for t in targets] for targets in judged] == [[True, True], [False, False], [None, None]]
    assert judged[1][1]["note"] == "no utilisation sample could be read"  # a FAIL that says why


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message given where there is no GPU")
def test_bad_options_are_one_line_errors(capsys, tmp_path, data_dir):
    compact = data.write_compact_cifar(tmp_path / "data", n_train=384, n_test=100, root=data_dir).parent
    tiny = ["gpu-campaign", "--device", "cpu", "--tiny", "--out", str(tmp_path / "out"), "--data", str(compact)]
    for argv, message in [(["gpu-campaign", "--minutes", "1"], "needs a CUDA GPU"),
                          ([*tiny, "--write-reference"], "--write-reference stores a GPU-scale CUDA run"),
                          ([*tiny, "--minutes", "0"], "--minutes must be > 0"),
                          ([*tiny, "--set", "bogus=1"], "unknown setting(s) ['bogus']"),
                          ([*tiny, "--set", "n_train=1000"], "holds 384 cifar10 train images")]:
        assert cli.main(argv) == 2, argv
        err = capsys.readouterr().err
        assert err.startswith("error: ") and message in err and "Traceback" not in err, err
    assert not (tmp_path / "out").exists()  # refused before any work


def test_campaign_sizes_split_sweep_fields_from_campaign_settings():
    sweep, settings = campaign.campaign_sizes(tiny=False)
    assert sweep["arch"] == "A0" and sweep["width_mult"] == 1.0 and sweep["n_train"] is None  # RepVGG-A0, full width
    assert set(settings) == {"bench_steps", "bench_warmup", "bench_eval_images", "bench_compile", "workers"}
    tiny, _ = campaign.campaign_sizes(tiny=True)
    cfg = campaign.sweep_config(Path("o"), True, torch.device("cpu"), None, {})
    assert cfg.mode == "full" and cfg.n_train == tiny["n_train"] and cfg.targets == tiny["targets"]


# ---------------------------------------------------------------------------------------------------------------------
# The campaign itself, twice


@pytest.mark.slow
@pytest.mark.data
def test_tiny_campaign_stops_at_its_budget_then_resumes(tmp_path, data_dir):
    # A compact copy (JPEG bytes) of 384 train and 100 test images: the tiny sizes' n_train and n_test exactly.
    compact = data.write_compact_cifar(tmp_path / "data", n_train=384, n_test=100, root=data_dir).parent
    out = tmp_path / "campaign"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}

    def call(minutes: float) -> tuple[subprocess.CompletedProcess, dict]:
        proc = subprocess.run([sys.executable, "-m", "course_lib", "gpu-campaign", "--device", "cpu", "--tiny",
                               "--minutes", str(minutes), "--out", str(out), "--data", str(compact)],
                              capture_output=True, text=True, env=env, timeout=420)
        assert proc.returncode == 0, proc.stderr[-3000:]
        return proc, json.loads((out / "campaign.json").read_text())

    began = time.time()
    # 36 s, the bench included: on an idle 2-core machine about half of the 60 tiny runs finish in it (measured: 26 in
    # a 30 s budget), under load fewer; either way some finish and some are left for the second call
    proc, first = call(0.6)
    assert time.time() - began < 36 + 10 + 90  # the budget, the workers' grace, starting and ending the process
    assert first["wall_time_s"] <= 36 + 10 + 5
    assert first["stopped_at_budget"] and first["sweep"]["unfinished"]  # 60 runs are more than 36 s of work
    prov = first["provenance"]
    assert prov["device"] == "cpu" and prov["torch"] == torch.__version__ and "git_commit" in prov
    assert {"gpu_properties", "driver", "nvidia_smi", "torch_cuda", "cudnn"} <= set(prov)
    assert first["data"]["source"] == {"path": str(compact / data.COMPACT_NAMES["cifar10"]), "compact": True}
    assert first["bench"]["ratio"] > 0 and not first["bench"]["reused"] and set(first["bench"]["nets"]) == {
        "plain A0/8", "resnet20"}
    assert [t["passed"] for t in first["targets"]] == [None, None]  # GPU targets: not judged on the CPU
    assert "target: course loop >= 3x" in proc.stdout and "stopped (deadline)" in proc.stdout
    runs = out / "sweep" / "runs"
    finished = {p.name: p.stat().st_mtime_ns for p in runs.glob("*.json")}
    assert len(finished) == first["sweep"]["runs_finished"] == len(first["sweep"]["finished_this_call"]) >= 1
    assert not list(out.rglob("*.tmp*"))  # nothing half-written, no temporary file left by the interrupted workers
    for path in out.rglob("*.json"):
        json.loads(path.read_text())

    _, second = call(0.5)
    assert second["bench"]["reused"] and second["sweep"]["finished_before"] == len(finished)
    assert {p: (runs / p).stat().st_mtime_ns for p in finished} == finished  # finished runs were not recomputed
    assert not set(second["sweep"]["finished_this_call"]) & {p.removesuffix(".json") for p in finished}
    assert second["sweep"]["runs_finished"] == len(finished) + len(second["sweep"]["finished_this_call"])
    assert [c["stop_reason"] for c in second["calls"]][:1] == ["deadline"] and len(second["calls"]) == 2
