"""What every protocol shares: the config base, stages and stored-result reuse, the post-training core, the sweep,
rank-0 coordination and the `--set` parser. The CIFAR protocol (`experiments`) and the ImageNet protocol
(`imagenet`) are built on this module, beside each other; neither imports the other.

A protocol has two stages. *pretrain* makes the start network (trains or loads it, fuses it to a deploy form with no
BN) and stores it under `<out_dir>/pretrain/`; *posttrain* linearizes a copy of it with one (granularity, ω, seed) and
writes `<out_dir>/runs/<run_name>.json`. Every field of a config is marked with the stage it defines
(`defines(PRETRAIN)`, `defines(POSTTRAIN)`) or as a `setting()` that leaves results unchanged (where files go, speed
switches, which grid a sweep covers). A stored stage is reused only when every field that defines it is unchanged,
so a new result-defining field cannot be forgotten: a field without a mark is refused when the config is made.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from . import config, judging, linearize, models, outdir, paths, profiles, settings, train
from .errors import ConfigError, StoredResultError
from .results import git_commit, provenance, read_json, run_name, write_json_atomic

__all__ = ["PRETRAIN", "POSTTRAIN", "STAGES", "defines", "setting", "ProtocolConfig", "build_config", "parse_value",
           "parse_overrides", "parse_one_run", "reuse_if_same", "stored_pretrain", "stored_run", "device_and_knobs",
           "per_process_batch", "stage_record", "store_start_network", "linearize_and_record", "wait_for_rank0",
           "sweep", "load_results", "export_reference"]

PRETRAIN, POSTTRAIN = "pretrain", "posttrain"
STAGES = (PRETRAIN, POSTTRAIN)  # a later stage depends on every field of the earlier ones


def defines(stage: str) -> dataclasses.Field:
    """Mark a config field as defining the results of `stage` (and of every later stage)."""
    if stage not in STAGES:
        raise ValueError(f"unknown stage {stage!r}; stages are {STAGES}")
    return dataclasses.field(metadata={"defines": stage})


def setting() -> dataclasses.Field:
    """Mark a config field as one that does not change any result (a place, a speed switch, a sweep's grid)."""
    return dataclasses.field(metadata={"defines": None})


@dataclass(frozen=True)
class ProtocolConfig:
    """The fields every protocol has, the stage each one defines, and the checks that apply to all protocols.

    Build configs with a protocol's builder (`experiments.cifar_config`, `imagenet.imagenet_config`): the values
    come from `profiles` (one table per protocol), then the caller's overrides. Stored in every result file.
    """

    mode: str = setting()  # run mode this config was built for: smoke | cpu | full
    batch_size: int = defines(PRETRAIN)  # images per step, summed over all processes, both stages
    eval_batch_size: int = setting()  # images per evaluation step (same result, less memory when small)
    pretrain_epochs: int = defines(PRETRAIN)  # pre-training (or fine-tuning) epochs
    pretrain_lr: float = defines(PRETRAIN)  # SGD-Nesterov peak learning rate of pre-training (cosine to 0)
    posttrain_epochs: int = defines(POSTTRAIN)  # post-training epochs
    posttrain_lr: float = defines(POSTTRAIN)  # peak learning rate of the weights in post-training (cosine to 0)
    posttrain_optimizer: str = defines(POSTTRAIN)  # "adamw" | "sgd"
    slope_lr_mult: float = defines(POSTTRAIN)  # slopes learn this many times faster than weights in post-training
    weight_decay: float = defines(PRETRAIN)  # on conv/linear weights only, both stages
    omegas: tuple[float, ...] = setting()  # the sweep's ω grid, used for both variants (a run's ω is in its name)
    granularities: tuple[str, ...] = setting()  # variants the sweep runs
    seeds: tuple[int, ...] = setting()  # post-training seeds the sweep runs (data order, augmentation)
    layer_scale: str = defines(POSTTRAIN)  # weight of a layer-wise slope in L0.5 (see linearize.l05_penalty)
    freeze_tol: float = defines(POSTTRAIN)  # |α−1| < tol freezes a slope at 1 (paper: 0.01)
    out_dir: str = setting()  # where results and checkpoints go
    device: str = setting()  # "auto" | "cpu" | "cuda" | ...
    data_dir: str | None = defines(PRETRAIN)  # extra folder searched first for the data (other files, other results)
    amp_bf16: bool | None = setting()  # None: config.system_knobs decides for the device
    channels_last: bool | None = setting()  # None: config.system_knobs decides
    compile: bool | None = setting()  # None: config.system_knobs decides
    save_models: bool = setting()  # keep each post-trained net's weights next to its JSON

    def __post_init__(self) -> None:
        unmarked = [f.name for f in dataclasses.fields(self) if "defines" not in f.metadata]
        if unmarked:
            raise TypeError(f"{type(self).__name__} fields {unmarked} have no mark: declare each with "
                            "protocol.defines(stage) or protocol.setting()")
        problems = self.problems()
        if problems:
            raise ConfigError(problems)

    def problems(self) -> list[str]:
        """Everything wrong with this config, one sentence each (empty when it is valid). Protocols add theirs."""
        found = []
        if self.mode not in profiles.MODES:
            found.append(f"unknown run mode {self.mode!r}; use one of {', '.join(profiles.MODES)}")
        if any(not isinstance(w, (int, float)) or not math.isfinite(w) or w < 0 for w in self.omegas):
            found.append(f"omega must be a finite number >= 0, got {self.omegas}")
        unknown = [g for g in self.granularities if g not in linearize.GRANULARITIES]
        if unknown:
            found.append(f"unknown granularity {unknown[0]!r}; choose one of {list(linearize.GRANULARITIES)}")
        if not self.seeds:
            found.append("at least one seed is needed")
        if self.layer_scale not in linearize.LAYER_SCALES:
            found.append(f"unknown layer_scale {self.layer_scale!r}; choose one of {list(linearize.LAYER_SCALES)}")
        found += settings.value_problems(self)  # types, ranges, duplicates of every field (course_lib/settings.py)
        return found

    @classmethod
    def defining(cls, stage: str) -> tuple[str, ...]:
        """The fields that define `stage`'s results: those marked with it or with an earlier stage."""
        stages = STAGES[:STAGES.index(stage) + 1]
        return tuple(f.name for f in dataclasses.fields(cls) if f.metadata["defines"] in stages)

    def train_config(self, stage: str, knobs: config.SystemKnobs) -> train.TrainConfig:
        """The `TrainConfig` of `stage` with the system knobs this config leaves at None resolved from `knobs`."""
        if stage == PRETRAIN:
            settings = {"epochs": self.pretrain_epochs, "lr": self.pretrain_lr}
        else:
            settings = {"epochs": self.posttrain_epochs, "lr": self.posttrain_lr,
                        "optimizer": self.posttrain_optimizer, "slope_lr_mult": self.slope_lr_mult}

        def pick(value, default):
            return default if value is None else value

        return train.TrainConfig(**settings, weight_decay=self.weight_decay, batch_size=self.batch_size,
                                 eval_batch_size=self.eval_batch_size, amp_bf16=pick(self.amp_bf16, knobs.amp_bf16),
                                 channels_last=pick(self.channels_last, knobs.channels_last),
                                 compile=pick(self.compile, knobs.compile))


def build_config(cls: type[ProtocolConfig], table: str, mode: str, overrides: dict) -> ProtocolConfig:
    """A config of class `cls` from profile `table` in run mode `mode`, with overrides (None means "the mode's
    default"). Every value is converted to its field's declared type (`settings.coerce`): text such as a papermill
    `-p SEEDS '[0, 1]'` is parsed, lists become tuples.

    Raises:
        ConfigError: an unknown mode or setting name, or any value the config's checks refuse.
    """
    mode = config.resolve_mode(mode)
    valid = {f.name for f in dataclasses.fields(cls)} - {"mode"}
    unknown = sorted(set(overrides) - valid)
    if unknown:
        raise ConfigError(f"unknown setting(s) {unknown}; valid settings are {sorted(valid)}")
    # Text (papermill -p, --set, YAML) becomes each field's declared type; what does not convert is reported by
    # the config's checks, all problems in one ConfigError (course_lib/settings.py).
    values = settings.coerce(cls, {**profiles.sizes(table, mode), **{k: v for k, v in overrides.items()
                                                                      if v is not None}})
    return cls(mode=mode, **values)


def parse_value(text: str):
    """A `--set` value: JSON first (so 1e-4 is a number, which YAML 1.1 reads as a string), else YAML."""
    import yaml

    try:
        return json.loads(text)
    except ValueError:
        return yaml.safe_load(text)


def parse_overrides(items: list[str]) -> dict:
    """`--set KEY=VALUE ...` as a dict of parsed values.

    Raises:
        ConfigError: an item without `=`.
    """
    bad = [item for item in items if "=" not in item]
    if bad:
        raise ConfigError(f"--set expects KEY=VALUE, got {bad}")
    return {k: parse_value(v) for k, v in (item.split("=", 1) for item in items)}


def parse_one_run(text: str) -> tuple[str, float, int]:
    """`--one-run GRANULARITY:OMEGA:SEED` as (granularity, ω, seed).

    Raises:
        ConfigError: not three parts, ω or the seed not a number, an unknown granularity, a negative ω.
    """
    parts = text.split(":")
    try:
        granularity, omega, seed = parts
        run = granularity, float(omega), int(seed)
    except ValueError:
        raise ConfigError(f"--one-run expects GRANULARITY:OMEGA:SEED, e.g. channel:0.01:0, got {text!r}") from None
    if granularity not in linearize.GRANULARITIES or not math.isfinite(run[1]) or run[1] < 0:  # before any work
        raise ConfigError(f"--one-run {text!r}: the granularity must be one of {list(linearize.GRANULARITIES)} and "
                          "omega a finite number >= 0")
    return run


# ---------------------------------------------------------------------------------------------------------------------
# Stages and stored results
# ---------------------------------------------------------------------------------------------------------------------

_NOT_RECORDED = "<not recorded>"


def reuse_if_same(stored: dict, cfg: ProtocolConfig, stage: str) -> dict:
    """Return a stored result of `stage` if every field that defines it is as in `cfg`; otherwise raise one error
    that says what differs, overwriting nothing. A field the stored result does not record counts as different.

    Raises:
        StoredResultError: the stored result was made with other settings.
    """
    old, new = stored.get("config", {}), json.loads(json.dumps(asdict(cfg)))  # tuples as the file holds them
    differ = {f: (old.get(f, _NOT_RECORDED), new[f]) for f in cfg.defining(stage)
              if old.get(f, _NOT_RECORDED) != new[f]}
    if differ:
        listing = ", ".join(f"{f}: stored {a!r} vs now {b!r}" for f, (a, b) in differ.items())
        raise StoredResultError(f"{cfg.out_dir} holds a {stored.get('kind', 'result')} made with other settings "
                                f"({listing}). Nothing was overwritten: choose another out_dir (OUT_DIR in the "
                                "notebooks) or delete that folder to start again.")
    return stored


def stored_pretrain(cfg: ProtocolConfig) -> dict | None:
    """The stored pre-training result of `cfg.out_dir` (checked with `reuse_if_same`), or None when there is none."""
    path = Path(cfg.out_dir) / "pretrain" / "result.json"
    return reuse_if_same(read_json(path), cfg, PRETRAIN) if path.exists() else None


def stored_run(cfg: ProtocolConfig, granularity: str, omega: float, seed: int) -> dict | None:
    """Check a post-training run's arguments; return its stored result when it exists (made with the same settings,
    see `reuse_if_same`), else None.

    Raises:
        ConfigError: an unknown granularity, a negative or non-finite ω.
        StoredResultError: a stored run made with other settings.
    """
    if granularity not in linearize.GRANULARITIES:
        raise ConfigError(f"unknown granularity {granularity!r}; choose one of {list(linearize.GRANULARITIES)}")
    if not math.isfinite(omega) or omega < 0:
        raise ConfigError(f"omega must be a finite number >= 0, got {omega}")
    path = Path(cfg.out_dir) / "runs" / f"{run_name(granularity, omega, seed)}.json"
    return reuse_if_same(read_json(path), cfg, POSTTRAIN) if path.exists() else None


def device_and_knobs(cfg: ProtocolConfig, steps: int | None = None) -> tuple[torch.device, config.SystemKnobs]:
    """The device and system knobs of a stage that starts now (`steps`: its optimisation steps, if known; compile on
    the CPU pays only for long runs, see `config.system_knobs`). Under torchrun each process takes its own GPU.

    Also fixes the git commit recorded in this process's results to the code that starts the stage.
    """
    git_commit()
    device = config.select_device(cfg.device)
    if device.type == "cuda" and train.init_distributed()[1] > 1:
        device = torch.device("cuda", torch.cuda.current_device())
    return device, config.system_knobs(device, steps=steps)


def per_process_batch(batch_size: int) -> tuple[int, int, int]:
    """(rank, world size, images per step per process) for a global `batch_size`.

    Raises:
        ConfigError: `batch_size` is not divisible by the number of processes.
    """
    rank, world = train.init_distributed()
    if batch_size % world:
        raise ConfigError(f"batch_size {batch_size} is not divisible by the {world} processes")
    return rank, world, batch_size // world


def stage_record(kind: str, cfg: ProtocolConfig, tcfg: train.TrainConfig, start: float, device: torch.device,
                 **values) -> dict:
    """A result record: kind, config, train config, `values`, wall time since `start`, provenance."""
    return {"kind": kind, "config": asdict(cfg), "train_config": asdict(tcfg), **values,
            "wall_time_s": round(time.time() - start, 1), "provenance": provenance(device)}


def store_start_network(cfg: ProtocolConfig, deploy: torch.nn.Module, result: dict) -> dict:
    """Write the pre-training stage (`deploy.pt` and `result.json` under `<out_dir>/pretrain/`) from rank 0, remove
    its epoch checkpoint, and let the other ranks wait for the files. Returns `result`."""
    out = Path(cfg.out_dir) / "pretrain"
    if train.is_main_process():
        state = {k: v.detach().cpu() for k, v in deploy.state_dict().items()}
        train.save_checkpoint_atomic(out / "deploy.pt", {"model": state, "config": asdict(cfg)})
        write_json_atomic(out / "result.json", result)
        (out / "checkpoint.pt").unlink(missing_ok=True)
    wait_for_rank0()
    return result


def linearize_and_record(cfg: ProtocolConfig, net: torch.nn.Module, train_loader, test_loader,
                         tcfg: train.TrainConfig, granularity: str, omega: float, seed: int, device: torch.device,
                         input_shape: tuple[int, ...] = (1, 3, 32, 32), progress: bool = True) -> dict:
    """The post-training of every protocol once its network (already with PReLUs) and loaders exist.

    Trains `net` with cross-entropy + ω·L0.5, freezing near-linear slopes after every step; writes
    `<cfg.out_dir>/runs/<run_name>.json` (and the weights when `cfg.save_models`) from rank 0 and returns the result:
    test accuracy and loss, NAPL, path-length histogram, per-layer nonlinear fractions, slope and frozen counts,
    parameter count, conv depth after merging linear layers (plain nets), history, wall time, provenance.
    """
    runs = Path(cfg.out_dir) / "runs"
    name = run_name(granularity, omega, seed)

    def penalty(model):
        return omega * linearize.l05_penalty(model, layer_scale=cfg.layer_scale)

    def freeze(model, optimizer):
        linearize.freeze_near_linear(model, cfg.freeze_tol, optimizer)

    start = time.time()
    history = train.fit(net, train_loader, test_loader, tcfg, penalty=penalty, after_step=freeze,
                        checkpoint=runs / f"{name}.ckpt.pt", progress=progress, desc=name)
    net = net.cpu().eval()
    prelus = linearize.prelu_modules(net)
    plain = isinstance(net, models.PlainConvNet)  # merging linear layers is defined for plain nets only
    result = stage_record(
        "post_train", cfg, tcfg, start, device, granularity=granularity, omega=omega, seed=seed,
        test_accuracy=history["test"]["accuracy"], test_loss=history["test"]["loss"], diverged=history["diverged"],
        napl=paths.napl(net, input_shape),
        path_length_histogram=paths.path_length_distribution(net, input_shape).tolist(),
        nonlinear_fraction=linearize.nonlinear_fraction(net), slopes=linearize.count_slopes(net),
        frozen_slopes=int(sum(m.frozen.sum().item() for _, m in prelus)),
        linear_channels=int(sum((~m.nonlinear_mask()).sum().item() for _, m in prelus)),
        channels=int(sum(m.num_channels for _, m in prelus)), parameters=models.count_parameters(net),
        depth_after_merge=linearize.layer_counts(linearize.merge_linear(net)) if plain else None, history=history)
    if train.is_main_process():
        if cfg.save_models:
            train.save_checkpoint_atomic(runs / f"{name}.pt", {"model": net.state_dict(), "granularity": granularity})
        write_json_atomic(runs / f"{name}.json", result)
        (runs / f"{name}.ckpt.pt").unlink(missing_ok=True)
    wait_for_rank0()
    return result


def wait_for_rank0() -> None:
    """Under torchrun, the other ranks wait until rank 0 has written the files they read next."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.barrier()


# ---------------------------------------------------------------------------------------------------------------------
# Sweeps and their files
# ---------------------------------------------------------------------------------------------------------------------

def sweep(cfg: ProtocolConfig, pretrain: Callable[..., dict], post_train: Callable[..., dict],
          progress: bool = True) -> list[dict]:
    """`pretrain(cfg)` (or its stored result), then `post_train(cfg, g, ω, seed)` for every (granularity, ω, seed)
    of `cfg`; `<out_dir>/summary.json` (`judging.summarize` of every run stored there with these settings) is
    rewritten after every run by rank 0.

    Interrupt it at any time and call it again: finished runs are read back, the unfinished one resumes from its
    last epoch. Only rank 0 shows the progress bar.
    """
    from tqdm.auto import tqdm

    baseline = pretrain(cfg, progress=progress)
    grid = [(g, w, s) for g in cfg.granularities for w in cfg.omegas for s in cfg.seeds]
    results = []
    for g, w, s in tqdm(grid, desc="sweep", disable=True if not train.is_main_process() else not progress or None):
        results.append(post_train(cfg, g, w, s, progress=progress))
        if train.is_main_process():
            # every run of the folder made with these settings, not only this call's grid (a summary never shrinks)
            summary = judging.summarize(outdir.matching_runs(cfg), baseline)
            write_json_atomic(Path(cfg.out_dir) / "summary.json", summary)
    return results


def load_results(out_dir: str | Path) -> tuple[dict | None, list[dict]]:
    """Read back a sweep folder: (pre-training result or None, list of post-training results)."""
    out = Path(out_dir)
    baseline = read_json(out / "pretrain" / "result.json") if (out / "pretrain" / "result.json").exists() else None
    return baseline, [read_json(p) for p in sorted((out / "runs").glob("*.json"))]


def export_reference(out_dir: str | Path, path: str | Path) -> dict:
    """Write a compact, committed record of a finished sweep (summary, every run's numbers, provenance) to `path`.

    The notebooks overlay these files (`data/reference/<name>.json`) on what a learner computes live.
    """
    baseline, runs = load_results(out_dir)
    keep = ("granularity", "omega", "seed", "test_accuracy", "test_loss", "diverged", "napl", "path_length_histogram",
            "nonlinear_fraction", "slopes", "frozen_slopes", "linear_channels", "channels", "parameters",
            "depth_after_merge", "wall_time_s")
    record = {
        "about": "Aggregated results of a `python -m course_lib cifar|imagenet` sweep (see config); written by "
                 "protocol.export_reference.",
        "config": runs[0]["config"] if runs else baseline["config"],
        "pretrain": {k: v for k, v in baseline.items() if k not in ("history",)},
        "summary": judging.summarize(runs, baseline),
        "runs": [{k: r.get(k) for k in keep} for r in runs],
        "total_wall_time_s": round(baseline["wall_time_s"] + sum(r["wall_time_s"] for r in runs), 1),
        "provenance": runs[-1]["provenance"] if runs else baseline["provenance"],
    }
    write_json_atomic(path, record)
    return record
