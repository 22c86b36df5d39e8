"""The GPU campaign in one command: the benchmark, then a CIFAR-10 channel- vs layer-wise sweep at GPU scale, several
runs at once on one GPU, within a time budget, with the GPU's utilisation and two targets judged (issue 19).

    python -m course_lib gpu-campaign --minutes 10                     # one CUDA GPU (`make gpu-campaign`)
    python -m course_lib gpu-campaign --minutes 10 --write-reference   # also data/reference/cifar10_gpu.json
    python -m course_lib gpu-campaign --device cpu --tiny --minutes 1  # the same code at tiny size on the CPU
    python -m course_lib gpu-campaign --pack-data DIR                  # a 56 MB copy of CIFAR-10 to carry along

1. Provenance: `gpuinfo.gpu_provenance` (versions, host, the GPU's name, memory and capability, CUDA, cuDNN, driver,
   `nvidia-smi`'s report).
2. The benchmark: `bench.run_bench` on the device (course loop against textbook loop, two networks), written to
   `<out>/bench.json` and reused by a later call on the same out dir.
3. The sweep: `experiments.cifar_config("full", ...)` with the sizes of `profiles.TABLES["gpu-campaign"]` (RepVGG-A0
   at full width, the targeted protocol of `protocol`/`targeting`, independent start networks), in `--workers`
   processes at once (`workers.run_until`): each seed's start network first, then that seed's runs as soon as it
   exists. A thread samples the GPU's utilisation every second meanwhile (`gpuinfo.UtilizationSampler`).
4. At the budget the workers are interrupted: every finished run is kept (its files are written atomically), an
   unfinished one resumes from its last epoch checkpoint at the next call on the same out dir, which skips every
   finished run and start network.
5. `<out>/campaign.json`, written atomically: provenance, data source, the benchmark, the sweep's progress and
   summary (`judging.summarize`), wall times, utilisation, and the targets with pass/fail: the course loop at least
   3x the textbook loop, the GPU busy at least 80% of the sweep's wall time (judged on CUDA only).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shlex
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

from . import bench, config, data, experiments, gpuinfo, judging, profiles, protocol, workers
from .errors import ConfigError
from .results import REFERENCE_DIR, read_json, run_name, write_json_atomic

__all__ = ["TABLE", "BENCH_TARGET", "BUSY_TARGET", "REFERENCE_NAME", "campaign_sizes", "sweep_config", "run_task",
           "run_campaign", "format_report", "main"]

TABLE = "gpu-campaign"  # its sizes in `profiles.TABLES`
BENCH_TARGET = 3.0  # the course loop at least this many times the textbook loop's training throughput
BUSY_TARGET = 80.0  # the GPU busy at least this percentage of the sweep's wall time
REFERENCE_NAME = "cifar10_gpu"  # data/reference/cifar10_gpu.json, with --write-reference
_GRACE_S = {"tiny": 10.0, "gpu": 30.0}  # seconds an interrupted worker has to exit


def campaign_sizes(tiny: bool) -> tuple[dict, dict]:
    """(ExperimentConfig overrides, the campaign's own settings) of the GPU-scale (`full`) or tiny (`smoke`) sizes."""
    sizes = profiles.sizes(TABLE, "smoke" if tiny else "full")
    fields = {f.name for f in dataclasses.fields(experiments.ExperimentConfig)}
    return {k: v for k, v in sizes.items() if k in fields}, {k: v for k, v in sizes.items() if k not in fields}


def sweep_config(out: Path, tiny: bool, device: torch.device, data_dir: str | None,
                 overrides: dict) -> experiments.ExperimentConfig:
    """The sweep's config: the `full` CIFAR profile with the campaign's sizes, then the caller's `--set` overrides."""
    sizes, _ = campaign_sizes(tiny)
    return experiments.cifar_config("full", **{**sizes, "out_dir": str(out / "sweep"), "device": str(device),
                                               "data_dir": data_dir, **overrides})


def run_task(kind: str, cfg: experiments.ExperimentConfig, seed: int, granularity: str | None = None,
             target: float | None = None) -> dict:
    """One task of a worker: a seed's start network (`pretrain`) or one targeted run (`post`); a short summary."""
    if kind == "pretrain":
        r = experiments.pretrain(cfg, seed, progress=False)
        return {"seed": seed, "test_accuracy": r["test_accuracy"], "wall_time_s": r["wall_time_s"]}
    r = experiments.post_train(cfg, granularity, seed, target=target, progress=False)
    return {"run": run_name(granularity, seed, target=target), "test_accuracy": r["test_accuracy"], "napl": r["napl"],
            "reached": r["reached"], "wall_time_s": r["wall_time_s"]}


def _start_key(seed: int) -> str:
    return f"start-seed{seed}"


def _tasks(cfg: experiments.ExperimentConfig) -> tuple[list[workers.Task], list[str], list[int]]:
    """The tasks still to do (start networks first), the runs already finished, the seeds whose start exists.

    Raises:
        StoredResultError: the out dir holds results made with other settings (nothing is overwritten).
    """
    starts = [s for s in cfg.seeds if protocol.stored_pretrain(cfg, s) is not None]
    finished, todo = [], []
    for g, s, _, t in protocol.grid(cfg):
        name = run_name(g, s, target=t)
        if protocol.stored_run(cfg, g, s, target=t) is not None:
            finished.append(name)
        else:
            todo.append(workers.Task(name, ("post", cfg, s, g, t), after=None if s in starts else _start_key(s)))
    seeds = sorted({task.args[2] for task in todo if task.after})  # those whose start network is still to make
    return [workers.Task(_start_key(s), ("pretrain", cfg, s)) for s in seeds] + todo, finished, starts


def _data_source(cfg: experiments.ExperimentConfig) -> dict:
    """Which CIFAR file or folder the sweep read, and whether it is a compact copy (JPEG bytes, near-exact pixels)."""
    path = data.locate_cifar(cfg.dataset, cfg.data_dir)
    return {"path": str(path) if path else None, "compact": bool(path and path.name in data.COMPACT_NAMES.values())}


def _threads_per_worker(n_workers: int) -> int:
    """CPU threads of each worker: `$OMP_NUM_THREADS` when set, else the cores shared out (at least 1)."""
    text = os.environ.get("OMP_NUM_THREADS", "").split(",")[0].strip()
    return int(text) if text.isdigit() and int(text) > 0 else max(1, (os.cpu_count() or 1) // n_workers)


def _bench(out: Path, device: torch.device, tiny: bool, settings: dict, data_dir: str | None) -> tuple[dict, bool]:
    """The benchmark's result and whether it was read back: `<out>/bench.json` when made for the same device kind and
    size, else a new `bench.run_bench` (course loop vs textbook loop, both networks, no sweep or post-training row)."""
    key = {"device": device.type, "tiny": tiny, "steps": settings["bench_steps"], "warmup": settings["bench_warmup"]}
    path = out / "bench.json"
    if path.exists() and read_json(path).get("campaign_key") == key:
        return read_json(path), True
    result = bench.run_bench(steps=settings["bench_steps"], warmup=settings["bench_warmup"], device=str(device),
                             compile=settings["bench_compile"], eval_images=settings["bench_eval_images"],
                             sweep=False, posttrain_steps=0, workers=0 if tiny else None, cache=out / "bench-cifar",
                             uncompiled=not tiny, data_dir=data_dir)
    result["campaign_key"] = key
    write_json_atomic(path, result)
    return result, False


def _bench_record(result: dict, reused: bool) -> dict:
    nets = {name: {"course_images_per_s": round(row["course"]["images_per_s"], 1),
                   "textbook_images_per_s": round(row["textbook"]["images_per_s"], 1),
                   "ratio": round(row["ratio"], 3), "compile_s": row["compile_s"]}
            for name, row in result["nets"].items()}
    return {"ratio": round(result["ratio"], 3), "nets": nets, "reused": reused, "settings": result["settings"],
            "train_config": result["train_config"], "file": "bench.json"}


def _targets(cuda: bool, ratio: float, busy: float | None) -> list[dict]:
    """The campaign's two targets with pass/fail; both are GPU targets, so on another device they are not judged."""
    note = None if cuda else "a GPU target: judged on CUDA only"
    return [{"name": f"course loop >= {BENCH_TARGET:g}x the textbook loop (training, the smaller of the two nets)",
             "measured": round(ratio, 3), "threshold": BENCH_TARGET, "passed": ratio >= BENCH_TARGET if cuda else None,
             "note": note},
            {"name": f"GPU busy >= {BUSY_TARGET:g}% of the sweep's wall time", "measured": busy,
             "threshold": BUSY_TARGET, "passed": (busy is not None and busy >= BUSY_TARGET) if cuda else None,
             "note": note if not cuda else None if busy is not None else "no utilisation sample could be read"}]


def run_campaign(minutes: float, out: str | Path, *, device: str = "auto", tiny: bool = False,
                 n_workers: int | None = None, data_dir: str | None = None, overrides: dict | None = None,
                 command: str = "", log: Callable[[str], None] = print) -> dict:
    """Run the campaign within `minutes` (see the module docstring) and return what `<out>/campaign.json` holds.

    Raises:
        ConfigError: no CUDA device without `tiny` on the CPU, a bad size or setting. DataNotFoundError: no CIFAR-10.
        StoredResultError: `out` holds results made with other settings.
    """
    began = time.time()
    if not minutes > 0:
        raise ConfigError(f"--minutes must be > 0, got {minutes}")
    deadline = began + 60 * minutes
    dev = config.select_device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("no CUDA GPU is available here; on a CPU run the tiny campaign: --device cpu --tiny")
    if dev.type != "cuda" and not tiny:
        raise ConfigError(f"the GPU-scale sweep needs a CUDA GPU (device is {dev}); on a CPU add --tiny "
                          "(the same code at tiny size)")
    out = Path(out)
    _, settings = campaign_sizes(tiny)
    cfg = sweep_config(out, tiny, dev, data_dir, overrides or {})
    experiments.check_data(cfg)  # missing or too few images: one clear error before any work
    tasks, finished_before, starts_before = _tasks(cfg)
    n_workers = n_workers or settings["workers"]
    if n_workers < 1:
        raise ConfigError(f"--workers must be >= 1, got {n_workers}")
    log(f"gpu-campaign on {dev}: {len(finished_before)} of {len(protocol.grid(cfg))} runs already finished, "
        f"{len(tasks)} tasks to do, {n_workers} workers, budget {minutes:g} min")

    bench_began = time.time()
    bench_result, reused = _bench(out, dev, tiny, settings, data_dir)
    bench_s = round(time.time() - bench_began, 1)
    if dev.type == "cuda":
        torch.cuda.empty_cache()  # the workers need the memory more than this process does
    log(f"bench: ratio {bench_result['ratio']:.2f} ({'read back' if reused else f'{bench_s} s'})")

    sweep_began = time.time()
    sampler = gpuinfo.UtilizationSampler(dev)
    sampler.start()
    threads = _threads_per_worker(n_workers)
    outcome = workers.run_until(run_task, tasks, n_workers, deadline, threads=threads,
                                grace_s=_GRACE_S["tiny" if tiny else "gpu"], log=lambda line: log(f"  {line}"))
    utilization = sampler.stop()
    sweep_s = round(time.time() - sweep_began, 1)

    starts, runs = protocol.load_results(cfg.out_dir)
    finished_now = [k for k in outcome.done if not k.startswith("start-seed")]
    result = {
        "about": "python -m course_lib gpu-campaign: bench + CIFAR-10 channel- vs layer-wise sweep on one GPU",
        "command": command, "device": str(dev), "tiny": tiny, "workers": n_workers, "threads_per_worker": threads,
        "budget_s": round(60 * minutes, 1), "wall_time_s": round(time.time() - began, 1),
        "stopped_at_budget": outcome.stopped == "deadline", "stop_reason": outcome.stopped or "finished",
        "provenance": gpuinfo.gpu_provenance(dev),
        "data": {"source": _data_source(cfg), "data_dir": cfg.data_dir},
        "bench": {**_bench_record(bench_result, reused), "wall_time_s": bench_s},
        "sweep": {
            "out_dir": cfg.out_dir, "config": dataclasses.asdict(cfg), "runs_total": len(protocol.grid(cfg)),
            "runs_finished": len(runs), "finished_before": len(finished_before), "finished_this_call": finished_now,
            "starts_total": len(cfg.seeds), "starts_finished": len(starts), "starts_before": len(starts_before),
            "failed": outcome.failed, "unfinished": outcome.unfinished, "wall_time_s": sweep_s,
            "gpu_utilization": utilization,
            "summary": judging.summarize(runs, starts) if runs else None,
        },
    }
    result["targets"] = _targets(dev.type == "cuda", bench_result["ratio"], utilization["mean_percent"])
    previous = out / "campaign.json"
    calls = read_json(previous).get("calls", []) if previous.exists() else []
    result["calls"] = calls + [{"time_utc": result["provenance"]["time_utc"], "wall_time_s": result["wall_time_s"],
                                "finished_this_call": len(finished_now), "stop_reason": result["stop_reason"]}]
    write_json_atomic(previous, result)
    return result


def format_report(result: dict, path: str | Path) -> str:
    """The campaign's own report: what ran, the two targets with PASS / FAIL (or why not judged), where the file is."""
    prov, sweep, b = result["provenance"], result["sweep"], result["bench"]
    gpu = prov.get("gpu") or "no GPU"
    versions = f"driver {prov['driver'] or 'n/a'}, CUDA {prov['torch_cuda']}, " if prov.get("gpu") else ""
    lines = [f"gpu-campaign on {result['device']} ({gpu}; {versions}torch {prov['torch']}): budget "
             f"{result['budget_s'] / 60:g} min, wall {result['wall_time_s']:.0f} s"]
    nets = ", ".join(f"{n} {r['course_images_per_s']:.0f} vs {r['textbook_images_per_s']:.0f} img/s"
                     for n, r in b["nets"].items())
    lines.append(f"  bench: course vs textbook loop: {nets}{' (read back)' if b['reused'] else ''}")
    util = sweep["gpu_utilization"]
    busy = f"GPU busy {util['mean_percent']:.0f}% ({util['samples']} samples)" if util["mean_percent"] is not None \
        else "GPU utilisation not measured"
    lines.append(f"  sweep: {sweep['runs_finished']} of {sweep['runs_total']} runs finished "
                 f"({len(sweep['finished_this_call'])} this call, {sweep['finished_before']} before), start networks "
                 f"{sweep['starts_finished']} of {sweep['starts_total']}, {result['workers']} workers, "
                 f"{sweep['wall_time_s']:.0f} s; {busy}")
    for target in result["targets"]:
        verdict = {True: "PASS", False: "FAIL", None: "not judged"}[target["passed"]]
        measured = "n/a" if target["measured"] is None else f"{target['measured']:g}"
        lines.append(f"  target: {target['name']}: {measured} -> {verdict}"
                     f"{' (' + target['note'] + ')' if target['note'] else ''}")
    if sweep["failed"]:
        lines.append(f"  FAILED: {', '.join(sweep['failed'])} (see {path})")
    if result["stop_reason"] != "finished":
        lines.append(f"  stopped ({result['stop_reason']}): {len(sweep['unfinished'])} tasks unfinished; the same "
                     "command again resumes them from their checkpoints")
    lines.append(f"  result: {path}")
    return "\n".join(lines)


def main(argv: list[str] | None = None, prog: str = "python -m course_lib gpu-campaign") -> int:
    """`python -m course_lib gpu-campaign [options]`; see `--help`."""
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="time budget, bench and sweep together")
    parser.add_argument("--device", default="auto", help="auto|cuda|cuda:N|cpu (cpu needs --tiny)")
    parser.add_argument("--tiny", action="store_true", help="tiny sizes: the same code in about a minute on a CPU")
    parser.add_argument("--workers", type=int, default=None, help="runs at once (default: 4 on a GPU, 2 tiny)")
    parser.add_argument("--out", default=None, help="folder (default runs/gpu_campaign or runs/gpu_campaign_tiny)")
    parser.add_argument("--data", default=None, help="folder searched first for CIFAR-10: cifar10.npz, "
                        "cifar-10-batches-py/ or a compact copy cifar10_jpeg.npz (default: COURSE_DATA_DIR, data/)")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                        help="ExperimentConfig fields of the sweep, e.g. width_mult=0.5 n_train=20000")
    parser.add_argument("--write-reference", action="store_true",
                        help=f"also write data/reference/{REFERENCE_NAME}.json (a GPU-scale run on CUDA only)")
    parser.add_argument("--pack-data", default=None, metavar="DIR",
                        help="only write a compact copy of CIFAR-10 (JPEG bytes, 56 MB) into DIR, then exit")
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parser.parse_args(argv)
    if args.pack_data:
        path = data.write_compact_cifar(args.pack_data, root=args.data)
        print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB); use it with --data {args.pack_data}")
        return 0
    if args.write_reference and (args.tiny or args.device == "cpu"):
        raise ConfigError("--write-reference stores a GPU-scale CUDA run; it cannot be combined with --tiny or --device "
                          "cpu")
    out = Path(args.out or ("runs/gpu_campaign_tiny" if args.tiny else "runs/gpu_campaign"))
    result = run_campaign(args.minutes, out, device=args.device, tiny=args.tiny, n_workers=args.workers,
                          data_dir=args.data, overrides=protocol.parse_overrides(args.set),
                          command=f"{prog} {shlex.join(argv)}".strip())
    path = out / "campaign.json"
    print(format_report(result, path))
    if args.write_reference:
        reference = write_json_atomic(REFERENCE_DIR / f"{REFERENCE_NAME}.json", result)
        print(f"  reference: {reference}")
    if result["stop_reason"] == "interrupted":
        return 130
    return 1 if result["sweep"]["failed"] else 0
