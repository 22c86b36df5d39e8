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

from . import config, judging, linearize, models, outdir, paths, profiles, settings, targeting, train
from .errors import ConfigError, StoredResultError
from .results import REFERENCE_DIR, git_commit, provenance, read_json, run_name, run_name_of, write_json_atomic

__all__ = ["PRETRAIN", "POSTTRAIN", "STAGES", "defines", "setting", "MarkedConfig", "ProtocolConfig", "build_config", "parse_value",
           "parse_overrides", "parse_one_run", "reuse_if_same", "start_dir", "start_seed", "stored_pretrain", "stored_run", "device_and_knobs",
           "per_process_batch", "stage_record", "store_start_network", "linearize_and_record", "wait_for_rank0",
           "grid", "plan", "sweep", "load_results", "export_reference", "reference_summary", "reference_wall_time", "reference_matches",
           "use_reference", "copy_missing"]

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


class MarkedConfig:
    """The base of every config built from a profile table (`build_config`): each dataclass field is marked with the
    stage it defines (`defines`) or as a `setting()`, and every problem of a config is reported together, as one
    `errors.ConfigError`, when it is made. Subclasses add their checks to `problems`."""

    mode: str  # the run mode the config was built for (every subclass has this field)

    def __post_init__(self) -> None:
        unmarked = [f.name for f in dataclasses.fields(self) if "defines" not in f.metadata]
        if unmarked:
            raise TypeError(f"{type(self).__name__} fields {unmarked} have no mark: declare each with "
                            "protocol.defines(stage) or protocol.setting()")
        problems = self.problems()
        if problems:
            raise ConfigError(problems)

    def problems(self) -> list[str]:
        """Everything wrong with this config, one sentence each (empty when it is valid): here the run mode and every
        field's type, range and duplicates (`settings.value_problems`)."""
        found = []
        if self.mode not in profiles.MODES:
            found.append(f"unknown run mode {self.mode!r}; use one of {', '.join(profiles.MODES)}")
        return found + settings.value_problems(self)

    @classmethod
    def defining(cls, stage: str) -> tuple[str, ...]:
        """The fields that define `stage`'s results: those marked with it or with an earlier stage."""
        stages = STAGES[:STAGES.index(stage) + 1]
        return tuple(f.name for f in dataclasses.fields(cls) if f.metadata["defines"] in stages)


@dataclass(frozen=True)
class ProtocolConfig(MarkedConfig):
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
    omegas: tuple[float, ...] = setting()  # the sweep's fixed-ω runs, both variants (a run's ω is in its name)
    targets: tuple[float, ...] = setting()  # the sweep's target-NAPL runs, both variants (see `targeting`)
    omega_start: float = defines(POSTTRAIN)  # ω at the start of a targeted run
    omega_growth: float = defines(POSTTRAIN)  # a targeted run multiplies ω by this every `control_every` steps
    control_every: int = defines(POSTTRAIN)  # steps between two raises of ω while NAPL is above the target
    target_tol: float = defines(POSTTRAIN)  # a targeted run has reached its target when |NAPL − target| <= this
    recovery_epochs: int = defines(POSTTRAIN)  # after linearization: epochs with the penalty off, slopes fixed
    granularities: tuple[str, ...] = setting()  # variants the sweep runs
    seeds: tuple[int, ...] = setting()  # seeds the sweep runs: each its own start network when independent_starts
    independent_starts: bool = defines(PRETRAIN)  # True: seed s pre-trains (fine-tunes) its own start network
    layer_scale: str = defines(POSTTRAIN)  # weight of a layer-wise slope in L0.5 (see linearize.l05_penalty)
    freeze_tol: float = defines(POSTTRAIN)  # |α−1| < tol freezes a slope at 1 (paper: 0.01)
    out_dir: str = setting()  # where results and checkpoints go
    device: str = setting()  # "auto" | "cpu" | "cuda" | ...
    data_dir: str | None = defines(PRETRAIN)  # extra folder searched first for the data (other files, other results)
    amp_bf16: bool | None = setting()  # None: config.system_knobs decides for the device
    channels_last: bool | None = setting()  # None: config.system_knobs decides
    compile: bool | None = setting()  # None: config.system_knobs decides
    save_models: bool = setting()  # keep each post-trained net's weights next to its JSON

    def problems(self) -> list[str]:
        """Everything wrong with this config, one sentence each (empty when it is valid). Protocols add theirs."""
        found = super().problems()
        if any(not isinstance(w, (int, float)) or not math.isfinite(w) or w < 0 for w in self.omegas):
            found.append(f"omega must be a finite number >= 0, got {self.omegas}")
        if any(not isinstance(t, (int, float)) or not math.isfinite(t) or t < 0 for t in self.targets):
            found.append(f"a target NAPL must be a finite number >= 0, got {self.targets}")
        if not self.omegas and not self.targets:
            found.append("give at least one ω (omegas) or one target NAPL (targets)")
        if self.omega_start <= 0 or self.omega_growth < 1 or self.control_every < 1 or self.recovery_epochs < 0:
            found.append("need omega_start > 0, omega_growth >= 1, control_every >= 1 and recovery_epochs >= 0")
        unknown = [g for g in self.granularities if g not in linearize.GRANULARITIES]
        if unknown:
            found.append(f"unknown granularity {unknown[0]!r}; choose one of {list(linearize.GRANULARITIES)}")
        if not self.seeds:
            found.append("at least one seed is needed")
        if self.layer_scale not in linearize.LAYER_SCALES:
            found.append(f"unknown layer_scale {self.layer_scale!r}; choose one of {list(linearize.LAYER_SCALES)}")
        return found

    def train_config(self, stage: str, knobs: config.SystemKnobs, schedule: str = "cosine") -> train.TrainConfig:
        """The `TrainConfig` of `stage` with the system knobs this config leaves at None resolved from `knobs`."""
        if stage == PRETRAIN:
            settings = {"epochs": self.pretrain_epochs, "lr": self.pretrain_lr}
        else:
            settings = {"epochs": self.posttrain_epochs, "lr": self.posttrain_lr,
                        "optimizer": self.posttrain_optimizer, "slope_lr_mult": self.slope_lr_mult}
        settings["schedule"] = schedule

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


def parse_one_run(text: str) -> tuple[str, int, float | None, float | None]:
    """`--one-run GRANULARITY:KNOB:SEED` as (granularity, seed, omega, target); KNOB is `omega<ω>`, `target<NAPL>`
    or a bare number (a fixed ω).

    Raises:
        ConfigError: not three parts, the knob or the seed not a number, an unknown granularity, a negative ω
            or target.
    """
    try:
        granularity, knob, seed = text.split(":")
        target = float(knob.removeprefix("target")) if knob.startswith("target") else None
        omega = None if target is not None else float(knob.removeprefix("omega"))
        run = granularity, int(seed), omega, target
    except ValueError:
        raise ConfigError(f"--one-run expects GRANULARITY:KNOB:SEED, e.g. channel:target4:0 or layer:omega0.01:1, "
                          f"got {text!r}") from None
    value = omega if target is None else target
    if granularity not in linearize.GRANULARITIES or not math.isfinite(value) or value < 0:  # before any work
        raise ConfigError(f"--one-run {text!r}: the granularity must be one of {list(linearize.GRANULARITIES)} and "
                          "omega or target a finite number >= 0")
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


def start_dir(cfg: ProtocolConfig, seed: int) -> Path:
    """Where the start network of `seed`'s runs is stored: `<out_dir>/pretrain/seed<s>/` with independent starts,
    else the one shared `<out_dir>/pretrain/`."""
    out = Path(cfg.out_dir) / "pretrain"
    return out / f"seed{seed}" if cfg.independent_starts else out


def start_seed(cfg: ProtocolConfig, seed: int) -> int:
    """The seed that pre-trains (or fine-tunes) the start network of `seed`'s runs."""
    base = getattr(cfg, "pretrain_seed", 0)
    return base + seed if cfg.independent_starts else base


def stored_pretrain(cfg: ProtocolConfig, seed: int = 0) -> dict | None:
    """The stored start network's result for `seed` (checked with `reuse_if_same`), or None when there is none."""
    path = start_dir(cfg, seed) / "result.json"
    return reuse_if_same(read_json(path), cfg, PRETRAIN) if path.exists() else None


def stored_run(cfg: ProtocolConfig, granularity: str, seed: int, omega: float | None = None,
               target: float | None = None) -> dict | None:
    """Check a post-training run's arguments; return its stored result when it exists (made with the same settings,
    see `reuse_if_same`), else None.

    Raises:
        ConfigError: an unknown granularity, a negative or non-finite ω or target, or not exactly one of them.
        StoredResultError: a stored run made with other settings.
    """
    if granularity not in linearize.GRANULARITIES:
        raise ConfigError(f"unknown granularity {granularity!r}; choose one of {list(linearize.GRANULARITIES)}")
    if (omega is None) == (target is None):
        raise ConfigError(f"a run has either a fixed omega or a target NAPL, got omega={omega}, target={target}")
    value = omega if target is None else target
    if not math.isfinite(value) or value < 0:
        raise ConfigError(f"{'omega' if target is None else 'target'} must be a finite number >= 0, got {value}")
    path = Path(cfg.out_dir) / "runs" / f"{run_name(granularity, seed, omega, target)}.json"
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


def store_start_network(cfg: ProtocolConfig, deploy: torch.nn.Module, result: dict, seed: int = 0) -> dict:
    """Write the pre-training stage of `seed` (`deploy.pt` and `result.json` in `start_dir`) from rank 0, remove its
    epoch checkpoint, and let the other ranks wait for the files. Returns `result`."""
    out = start_dir(cfg, seed)
    if train.is_main_process():
        state = {k: v.detach().cpu() for k, v in deploy.state_dict().items()}
        train.save_checkpoint_atomic(out / "deploy.pt", {"model": state, "config": asdict(cfg)})
        write_json_atomic(out / "result.json", result)
        (out / "checkpoint.pt").unlink(missing_ok=True)
    wait_for_rank0()
    return result


def _linearize(cfg: ProtocolConfig, net: torch.nn.Module, train_loader, test_loader, tcfg: train.TrainConfig,
               omega: float | None, target: float | None, input_shape: tuple[int, ...], checkpoint: Path,
               progress: bool, desc: str) -> tuple[dict, targeting.NaplController | None]:
    """Phase 1: train with CE + ω·L0.5 and freezing, for a fixed ω (all `posttrain_epochs`) or steered to a target
    (at a constant learning rate, ending when the target is reached)."""
    if target is None:
        def penalty(model):
            return omega * linearize.l05_penalty(model, layer_scale=cfg.layer_scale)

        def freeze(model, optimizer):
            linearize.freeze_near_linear(model, cfg.freeze_tol, optimizer)

        history = train.fit(net, train_loader, test_loader, tcfg, penalty=penalty, after_step=freeze,
                            checkpoint=checkpoint, progress=progress, desc=desc)
        return history, None
    controller = targeting.NaplController(
        targeting.napl_weights(net, input_shape), target, cfg.omega_start, cfg.omega_growth, cfg.control_every,
        cfg.target_tol, cfg.freeze_tol, cfg.layer_scale)
    history = train.fit(net, train_loader, test_loader, dataclasses.replace(tcfg, schedule="constant"),
                        penalty=controller.penalty, after_step=controller.after_step,
                        stop=lambda: controller.reached, stateful={"controller": controller},
                        checkpoint=checkpoint, progress=progress, desc=desc)
    return history, controller


def linearize_and_record(cfg: ProtocolConfig, net: torch.nn.Module, train_loader, test_loader,
                         tcfg: train.TrainConfig, granularity: str, seed: int, device: torch.device, *,
                         omega: float | None = None, target: float | None = None,
                         input_shape: tuple[int, ...] = (1, 3, 32, 32), progress: bool = True,
                         extra: Callable[[torch.nn.Module], dict] | None = None) -> dict:
    """The post-training of every protocol once its network (already with PReLUs) and loaders exist.

    Phase 1 linearizes (fixed ω, or steered to a target NAPL by `targeting.NaplController`); phase 2, the recovery
    control, trains `cfg.recovery_epochs` more epochs with the penalty off and every slope fixed (NAPL unchanged),
    the same for both variants (a targeted run that missed its target skips it). Both phases resume after an
    interruption. Writes `<cfg.out_dir>/runs/<run_name>.json` (and the weights when `cfg.save_models`) from rank 0 and
    returns the result: accuracy after linearization and after recovery, NAPL, the path-length histogram, per-layer
    nonlinear fractions, how linear the unfrozen slopes are, slope and frozen counts, the ω trajectory, conv depth
    after merging linear layers (plain nets), both histories, wall time, provenance, and whatever `extra(net)` adds.
    """
    runs = Path(cfg.out_dir) / "runs"
    name = run_name(granularity, seed, omega, target)
    start = time.time()
    phase1 = runs / f"{name}.linearized.pt"
    if phase1.exists():  # an interrupted run whose linearization had finished
        state = torch.load(phase1, map_location=device, weights_only=False)
        net.load_state_dict(state["model"])
        history, trajectory, reached_step = state["history"], state["trajectory"], state["reached_step"]
    else:
        history, controller = _linearize(cfg, net, train_loader, test_loader, tcfg, omega, target, input_shape,
                                         runs / f"{name}.ckpt.pt", progress, name)
        trajectory = controller.trajectory if controller else [(0, omega)]
        reached_step = controller.reached_step if controller else None
        if train.is_main_process():
            train.save_checkpoint_atomic(phase1, {"model": net.state_dict(), "history": history,
                                                  "trajectory": trajectory, "reached_step": reached_step})
            (runs / f"{name}.ckpt.pt").unlink(missing_ok=True)
        wait_for_rank0()
    reached = target is None or reached_step is not None
    recovery = None
    if reached and cfg.recovery_epochs > 0 and not history["diverged"]:
        for _, m in linearize.prelu_modules(net):
            m.alpha.requires_grad_(False)  # every slope fixed: the linear units stay linear, NAPL is unchanged
        recovery = train.fit(net, train_loader, test_loader, dataclasses.replace(tcfg, epochs=cfg.recovery_epochs),
                             checkpoint=runs / f"{name}.recovery.ckpt.pt", progress=progress,
                             desc=f"{name} recovery")
    net = net.cpu().eval()
    prelus = linearize.prelu_modules(net)
    plain = isinstance(net, models.PlainConvNet)  # merging linear layers is defined for plain nets only
    linearized = history["test"]["accuracy"]
    recovered = recovery["test"]["accuracy"] if recovery else None
    result = stage_record(
        "post_train", cfg, tcfg, start, device, granularity=granularity, omega=omega, target=target, seed=seed,
        reached=reached, reached_step=reached_step, omega_trajectory=trajectory,
        test_accuracy=recovered if recovered is not None else linearized, test_accuracy_linearized=linearized,
        test_accuracy_recovered=recovered, test_loss=(recovery or history)["test"]["loss"],
        diverged=history["diverged"] or bool(recovery and recovery["diverged"]),
        napl=paths.napl(net, input_shape),
        path_length_histogram=paths.path_length_distribution(net, input_shape).tolist(),
        nonlinear_fraction=linearize.nonlinear_fraction(net), slope_distribution=targeting.slope_distribution(net),
        slopes=linearize.count_slopes(net), frozen_slopes=int(sum(m.frozen.sum().item() for _, m in prelus)),
        linear_channels=int(sum((~m.nonlinear_mask()).sum().item() for _, m in prelus)),
        channels=int(sum(m.num_channels for _, m in prelus)), parameters=models.count_parameters(net),
        depth_after_merge=linearize.layer_counts(linearize.merge_linear(net)) if plain else None, history=history,
        recovery_history=recovery, **(extra(net) if extra else {}))
    if train.is_main_process():
        if cfg.save_models:
            train.save_checkpoint_atomic(runs / f"{name}.pt", {"model": net.state_dict(), "granularity": granularity})
        write_json_atomic(runs / f"{name}.json", result)
        for leftover in (phase1, runs / f"{name}.recovery.ckpt.pt"):
            leftover.unlink(missing_ok=True)
    wait_for_rank0()
    return result


def wait_for_rank0() -> None:
    """Under torchrun, the other ranks wait until rank 0 has written the files they read next."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.barrier()


# ---------------------------------------------------------------------------------------------------------------------
# Sweeps and their files
# ---------------------------------------------------------------------------------------------------------------------

def grid(cfg: ProtocolConfig) -> list[tuple[str, int, float | None, float | None]]:
    """Every run of a sweep as (granularity, seed, omega, target): the targets first, then the fixed ω."""
    runs = [(g, s, None, t) for t in cfg.targets for s in cfg.seeds for g in cfg.granularities]
    return runs + [(g, s, w, None) for w in cfg.omegas for s in cfg.seeds for g in cfg.granularities]


def plan(cfg: ProtocolConfig) -> dict:
    """What a sweep of `cfg` will train: start networks, post-training runs and an upper bound on the passes over the
    training set (each run linearizes at most `posttrain_epochs`, then recovers for `recovery_epochs`)."""
    starts = len(cfg.seeds) if cfg.independent_starts else 1
    runs = len(grid(cfg))
    return {"starts": starts, "runs": runs, "pretrain_epochs": cfg.pretrain_epochs,
            "max_epochs_per_run": cfg.posttrain_epochs + cfg.recovery_epochs,
            "max_passes": starts * cfg.pretrain_epochs + runs * (cfg.posttrain_epochs + cfg.recovery_epochs)}


def sweep(cfg: ProtocolConfig, pretrain: Callable[..., dict], post_train: Callable[..., dict],
          progress: bool = True) -> list[dict]:
    """`pretrain(cfg, seed)` (or its stored result) for every start network, then `post_train(cfg, g, seed,
    omega=…, target=…)` for every run of `grid(cfg)`; `<out_dir>/summary.json` (`judging.summarize` of every run
    stored there with these settings, not only this call's) is rewritten after every run by rank 0.

    Interrupt it at any time and call it again: finished runs are read back, the unfinished one resumes. Only rank 0
    shows the progress bar.
    """
    from tqdm.auto import tqdm

    seeds = cfg.seeds if cfg.independent_starts else cfg.seeds[:1]
    baselines = [pretrain(cfg, seed, progress=progress) for seed in seeds]
    results = []
    for g, s, w, t in tqdm(grid(cfg), desc="sweep",
                           disable=True if not train.is_main_process() else not progress or None):
        results.append(post_train(cfg, g, s, omega=w, target=t, progress=progress))
        if train.is_main_process():
            # every run of the folder made with these settings, not only this call's grid (a summary never shrinks)
            write_json_atomic(Path(cfg.out_dir) / "summary.json", judging.summarize(outdir.matching_runs(cfg), baselines))
    return results


def load_results(out_dir: str | Path) -> tuple[list[dict], list[dict]]:
    """Read back a sweep folder: (the start networks' results, the post-training results)."""
    out = Path(out_dir)
    starts = sorted((out / "pretrain").glob("result.json")) + sorted((out / "pretrain").glob("seed*/result.json"))
    return [read_json(p) for p in starts], [read_json(p) for p in sorted((out / "runs").glob("*.json"))]


def export_reference(out_dir: str | Path, name: str, reference_dir: str | Path = REFERENCE_DIR) -> Path:
    """Store a finished sweep as a reference, `<reference_dir>/<name>/`: every start's and every run's result file
    (no weights) and its summary. Notebooks show it, and `use_reference` seeds an out dir from it."""
    starts, runs = load_results(out_dir)
    dest = Path(reference_dir) / name
    for result in starts:
        folder = "pretrain" if not result["config"].get("independent_starts") else f"pretrain/seed{result['seed']}"
        write_json_atomic(dest / folder / "result.json", result)
    for result in runs:
        write_json_atomic(dest / "runs" / f"{run_name_of(result)}.json", result)
    write_json_atomic(dest / "summary.json", judging.summarize(runs, starts))
    return dest


def reference_summary(name: str, reference_dir: str | Path = REFERENCE_DIR) -> tuple[dict, list[dict]] | None:
    """(summary, runs) of the stored reference sweep `name`, or None when there is none."""
    starts, runs = load_results(Path(reference_dir) / name)
    return (judging.summarize(runs, starts), runs) if runs else None


def reference_wall_time(name: str, reference_dir: str | Path = REFERENCE_DIR) -> float | None:
    """Seconds the stored reference `name` took to compute (its starts and runs together), or None without one."""
    starts, runs = load_results(Path(reference_dir) / name)
    return sum(r["wall_time_s"] for r in starts + runs) if runs else None


def reference_matches(cfg: ProtocolConfig, name: str, reference_dir: str | Path = REFERENCE_DIR) -> bool:
    """Whether the stored reference `name` was made with the settings of `cfg` (every field that defines a result)
    and covers every run of its sweep."""
    starts, runs = load_results(Path(reference_dir) / name)
    if not starts or not runs:
        return False
    try:
        reuse_if_same(runs[0], cfg, POSTTRAIN)
    except StoredResultError:
        return False
    stored = {run_name_of(r) for r in runs}
    return all(run_name(g, s, w, t) in stored for g, s, w, t in grid(cfg))


def use_reference(cfg: ProtocolConfig, name: str, reference_dir: str | Path = REFERENCE_DIR) -> bool:
    """Copy the stored reference `name` into `cfg.out_dir` when it matches `cfg` (`reference_matches`), so that a
    sweep there reads every result back in seconds instead of computing it; files already there are kept.
    Returns whether it did."""
    if not reference_matches(cfg, name, reference_dir):
        return False
    source = Path(reference_dir) / name
    copy_missing(source, Path(cfg.out_dir), ("**/result.json", "runs/*.json"))
    return True


def copy_missing(source: Path, out: Path, patterns: tuple[str, ...]) -> None:
    """Copy every JSON file of `source` matching one of the glob `patterns` to the same place under `out`, unless a
    file is there already (a stored reference seeding an out dir: what is there is kept)."""
    for pattern in patterns:
        for path in source.glob(pattern):
            target = out / path.relative_to(source)
            if not target.exists():
                write_json_atomic(target, read_json(path))
