"""The paper's CIFAR protocol as functions of a config: pre-train, post-train (linearize), sweep, summarise.

1. `pretrain(cfg)`: train the plain net in RepVGG *training* form (three branches + BN), fuse it to its *deploy*
   form, a true feedforward net of 22 conv+ReLU layers (NAPL 22), and store it.
2. `post_train(cfg, granularity, omega, seed)`: ReLU -> PReLU (slopes at 0, so the net is unchanged), then train with
   cross-entropy + ω·L0.5, freezing slopes within 0.01 of 1 after every step; write one JSON with accuracy, NAPL,
   the path-length histogram, nonlinear fractions per layer, frozen counts, provenance.
3. `sweep(cfg)`: every (granularity, ω, seed) of the config; finished runs are skipped, an interrupted run resumes
   from its last epoch checkpoint. `summarize` averages over seeds and measures the gap at matched NAPL.

Paper: §3 of arXiv 2506.14386 (post-training partial linearization, channel- vs layer-wise at matched NAPL).
Ours (the paper is silent): the CIFAR network (a RepVGG-A family plain net, narrowed by `width_mult` in the cpu
profile), the optimiser and learning rates, the epochs of pre-training, one ω grid for both variants (with the
layer-wise penalty weighted by channel count), seeds varying post-training only. All are fields of the config and
are written into every result. Command line:

    python -m course_lib.experiments cifar --mode smoke|cpu|full --dataset cifar10|cifar100 --out DIR
    python -m course_lib.experiments cifar --network resnet56 --mode cpu     # notebook 05's ablation
    python -m course_lib.experiments imagenet ...                           # notebook 06 (course_lib.imagenet)

The ablation of notebook 05 (`network="resnet56"`) runs the same protocol from the pretrained akamaster ResNet-56
instead of a plain net: its "pre-training" is a short fine-tune of those weights on the course's CIFAR-10 files, and
every ReLU, the post-addition ones included, becomes a PReLU. Its BN layers are folded into the convolutions first,
so that, as for the fused plain net, post-training trains exactly the function it evaluates.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import math
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from . import config, data, linearize, models, paths, train
from .results import git_commit, provenance, read_json, write_json_atomic

__all__ = ["ExperimentConfig", "PROFILES", "RESNET56_PROFILES", "cifar_config", "pretrain", "post_train", "sweep",
           "summarize", "run_name", "load_results", "load_post_trained", "export_reference", "matched_pair",
           "mean_gap", "verdict", "main", "linearize_and_record", "reuse_if_same", "wait_for_rank0",
           "stage_train_config", "stored_run"]

git_commit()  # fix the recorded commit to the code imported now (results.git_commit is cached)

DATASETS = ("cifar10", "cifar100")
NETWORKS = ("repvgg", "resnet56", "resnet20")  # the plain RepVGG-style net, or a pretrained CIFAR ResNet


@dataclass(frozen=True)
class ExperimentConfig:
    """Everything that defines a CIFAR channel- vs layer-wise experiment. Stored in every result file."""

    mode: str  # run mode this config was built for: smoke | cpu | full
    network: str = "repvgg"  # "repvgg": plain net trained here; "resnet56"/"resnet20": akamaster weights, fine-tuned
    dataset: str = "cifar10"  # cifar10 | cifar100
    arch: str = "A0"  # RepVGG family member of the plain net (A0 | A1 | A2)
    width_mult: float = 1.0  # multiplies every width (ours: < 1 for the cpu profile)
    n_train: int | None = None  # training images used (None: all 50,000)
    n_test: int | None = None  # test images used (None: all 10,000)
    batch_size: int = 128  # images per step, both stages
    eval_batch_size: int = 1000  # images per evaluation step (a systems setting: same result, less memory when small)
    pretrain_epochs: int = 200  # pre-training epochs (chenyaofo's CIFAR RepVGG recipe uses 200); fine-tune for ResNets
    pretrain_lr: float = 0.1  # peak learning rate of pre-training (cosine to 0)
    posttrain_epochs: int = 60  # post-training epochs (paper: 60 on CIFAR-100)
    posttrain_lr: float = 1e-3  # peak learning rate of post-training (cosine to 0); ours
    posttrain_optimizer: str = "adamw"  # ours: SGD at any rate that moves the slopes destabilises the BN-free net
    slope_lr_mult: float = 10.0  # slopes learn 10x faster than weights in post-training (ours)
    weight_decay: float = 5e-4  # on conv/linear weights only, both stages
    omegas: tuple[float, ...] = (0.005, 0.015, 0.04, 0.1)  # ω grid, used for both variants
    granularities: tuple[str, ...] = ("channel", "layer")  # variants to run
    seeds: tuple[int, ...] = (0, 1, 2)  # post-training seeds (data order, augmentation)
    pretrain_seed: int = 0  # one pre-trained net is the common start of every run
    layer_scale: str = "channels"  # weight of a layer-wise slope in L0.5 (see linearize.l05_penalty)
    freeze_tol: float = 0.01  # |α−1| < tol freezes a slope at 1 (paper: 0.01)
    out_dir: str = "runs/04_cifar"  # where results and checkpoints go
    device: str = "auto"  # "auto" | "cpu" | "cuda" | ...
    data_dir: str | None = None  # extra folder searched first for CIFAR
    amp_bf16: bool | None = None  # None: config.system_knobs decides for the device
    channels_last: bool | None = None  # None: config.system_knobs decides
    compile: bool | None = None  # None: config.system_knobs decides
    save_models: bool = True  # keep each post-trained net's weights next to its JSON

    def train_config(self, stage: str, knobs: config.SystemKnobs) -> train.TrainConfig:
        """The `TrainConfig` of `stage` ("pretrain" or "posttrain") with this config's system knobs resolved."""
        return stage_train_config(self, stage, knobs)


def stage_train_config(cfg, stage: str, knobs: config.SystemKnobs) -> train.TrainConfig:
    """The `TrainConfig` of `stage` ("pretrain" or "posttrain") of any protocol's config (CIFAR or ImageNet): its
    optimisation settings, with the system knobs it leaves at None resolved from `knobs`."""
    if stage == "pretrain":
        settings = {"epochs": cfg.pretrain_epochs, "lr": cfg.pretrain_lr}
    else:
        settings = {"epochs": cfg.posttrain_epochs, "lr": cfg.posttrain_lr, "optimizer": cfg.posttrain_optimizer,
                    "slope_lr_mult": cfg.slope_lr_mult}

    def pick(value, default):
        return default if value is None else value

    return train.TrainConfig(**settings, weight_decay=cfg.weight_decay, batch_size=cfg.batch_size,
                             eval_batch_size=cfg.eval_batch_size, amp_bf16=pick(cfg.amp_bf16, knobs.amp_bf16),
                             channels_last=pick(cfg.channels_last, knobs.channels_last),
                             compile=pick(cfg.compile, knobs.compile))


# What each mode runs. `cpu` fits about an hour on 2 CPU cores; `full` is the paper-scale protocol on a GPU.
PROFILES: dict[str, dict] = {
    # smoke exercises the code path, not the science: slopes learn 100x faster so that some freeze in 32 steps.
    "smoke": dict(arch="A0", width_mult=0.125, n_train=4096, n_test=1000, pretrain_epochs=2, posttrain_epochs=1,
                  slope_lr_mult=100.0, omegas=(0.01, 0.1), seeds=(0,)),
    "cpu": dict(arch="A0", width_mult=0.125, pretrain_epochs=15, posttrain_epochs=3,
                omegas=(0.005, 0.015, 0.04, 0.1), seeds=(0, 1)),
    "full": dict(arch="A2", width_mult=1.0, pretrain_epochs=200, posttrain_epochs=60,
                 omegas=(0.0005, 0.001, 0.002, 0.004, 0.008, 0.015, 0.03, 0.06, 0.12), seeds=(0, 1, 2),
                 save_models=False),
}


# The ablation of notebook 05 from the pretrained ResNet-56. Its "pre-training" fine-tunes the akamaster weights
# (trained on the original PNG CIFAR-10) on the course's files with SGD at a small learning rate, then folds BN.
# Post-training uses AdamW at 1e-4 for the weights (measured here: at 1e-3 the pretrained ResNet-56 falls to chance
# within 16 steps even with ω = 0; at 1e-4 it keeps its accuracy) and slopes at 1e-2 as in notebook 04 (x100).
# `cpu` fits about 45 min on 2 idle CPU cores (a training step of ResNet-56 costs ~6x one of the A0/8 plain net), hence a
# 15k-image training subset and 1 post-training epoch with slopes at 4e-2 (under the cosine schedule a slope moves
# at most about half of lr x steps: 2.4 here); smoke moves slopes at 0.2 so that some freeze in its 32 steps of
# batch 32 (small batches keep notebook 05 under Binder's 1.5 GB: ResNet-56 activations of a batch of 128 take ~0.6 GB).
RESNET56_PROFILES: dict[str, dict] = {
    "smoke": dict(network="resnet56", n_train=1024, n_test=500, batch_size=32, eval_batch_size=100,
                  pretrain_epochs=0, posttrain_epochs=1,
                  posttrain_lr=1e-4, slope_lr_mult=2000.0, omegas=(0.01, 0.1), seeds=(0,),
                  out_dir="runs/05_resnet56"),
    "cpu": dict(network="resnet56", n_train=15360, pretrain_epochs=1, pretrain_lr=0.01, posttrain_epochs=1,
                posttrain_lr=1e-4, slope_lr_mult=400.0, omegas=(0.002, 0.006, 0.06), seeds=(0, 1),
                out_dir="runs/05_resnet56"),
    "full": dict(network="resnet56", pretrain_epochs=10, pretrain_lr=0.01, posttrain_epochs=60,
                 posttrain_lr=1e-4, slope_lr_mult=100.0,
                 omegas=(0.0005, 0.001, 0.002, 0.004, 0.008, 0.015, 0.03, 0.06, 0.12), seeds=(0, 1, 2),
                 save_models=False, out_dir="runs/05_resnet56"),
}


def cifar_config(mode: str = "auto", **overrides) -> ExperimentConfig:
    """Build the experiment config of a run mode, with overrides; `None` overrides mean "the mode's default".

    `network="resnet56"` selects the ablation's profiles (`RESNET56_PROFILES`), otherwise `PROFILES` apply.

    Raises:
        ValueError: unknown mode, network, dataset, granularity or override name, a negative ω, or no seeds.
    """
    mode = config.resolve_mode(mode)
    valid = {f.name for f in dataclasses.fields(ExperimentConfig)} - {"mode"}
    unknown = sorted(set(overrides) - valid)
    if unknown:
        raise ValueError(f"unknown experiment setting(s) {unknown}; valid settings are {sorted(valid)}")
    network = overrides.get("network") or "repvgg"
    if network not in NETWORKS:
        raise ValueError(f"unknown network {network!r}; choose one of {list(NETWORKS)}")
    profile = RESNET56_PROFILES[mode] if network.startswith("resnet") else PROFILES[mode]
    values = {**profile, **{k: v for k, v in overrides.items() if v is not None}}
    for key in ("omegas", "seeds", "granularities"):
        if key in values:
            values[key] = tuple(values[key])
    cfg = ExperimentConfig(mode=mode, **values)
    if cfg.dataset not in DATASETS:
        raise ValueError(f"unknown dataset {cfg.dataset!r}; choose one of {list(DATASETS)}")
    if cfg.network != "repvgg" and cfg.dataset != "cifar10":
        raise ValueError(f"the pretrained {cfg.network} weights are CIFAR-10 weights; use dataset='cifar10' with it")
    if any(not math.isfinite(w) or w < 0 for w in cfg.omegas):
        raise ValueError(f"omega must be a finite number >= 0, got {cfg.omegas}")
    for g in cfg.granularities:
        if g not in linearize.GRANULARITIES:
            raise ValueError(f"unknown granularity {g!r}; choose one of {list(linearize.GRANULARITIES)}")
    if not cfg.seeds:
        raise ValueError("at least one seed is needed")
    return cfg


# ---------------------------------------------------------------------------------------------------------------------
# Data and stages
# ---------------------------------------------------------------------------------------------------------------------

@functools.lru_cache(maxsize=4)
def _read_split(dataset: str, split: str, data_dir: str | None, n: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    """One read per process: every run of a sweep uses the same split (loaders never modify it). Only the first `n`
    images are kept (a copy), so a small run does not hold the whole training set in memory."""
    images, labels = data.load_cifar(dataset, split, root=data_dir)
    return (images, labels) if n is None or n >= len(labels) else (images[:n].clone(), labels[:n].clone())


def _splits(cfg: ExperimentConfig) -> tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
    return (_read_split(cfg.dataset, "train", cfg.data_dir, cfg.n_train),
            _read_split(cfg.dataset, "test", cfg.data_dir, cfg.n_test))


def _loaders(cfg: ExperimentConfig, seed: int, device: torch.device, channels_last: bool):
    (train_x, train_y), (test_x, test_y) = _splits(cfg)
    rank, world = train.init_distributed()
    if cfg.batch_size % world:
        raise ValueError(f"batch_size {cfg.batch_size} is not divisible by the {world} processes")
    common = dict(device=device, channels_last=channels_last, rank=rank, world_size=world)
    return (data.CifarLoader(train_x, train_y, cfg.batch_size // world, train=True, seed=seed, **common),
            data.CifarLoader(test_x, test_y, cfg.eval_batch_size, train=False, **common))


def _num_classes(cfg: ExperimentConfig) -> int:
    return 10 if cfg.dataset == "cifar10" else 100


def _context(cfg: ExperimentConfig, stage: str) -> tuple[torch.device, config.SystemKnobs]:
    """The device and the system knobs of a stage; the knobs know the stage's number of steps (compile on the CPU
    pays only for long runs, see `config.system_knobs`)."""
    device = config.select_device(cfg.device)
    if device.type == "cuda" and train.init_distributed()[1] > 1:
        device = torch.device("cuda", torch.cuda.current_device())
    epochs = cfg.pretrain_epochs if stage == "pretrain" else cfg.posttrain_epochs
    steps = epochs * ((cfg.n_train or 50_000) // cfg.batch_size)
    return device, config.system_knobs(device, steps=steps)


# The fields that define a stored result: a finished stage is reused only when they are unchanged.
_PRETRAIN_FIELDS = ("network", "dataset", "arch", "width_mult", "n_train", "n_test", "batch_size", "pretrain_epochs",
                    "pretrain_lr", "weight_decay", "pretrain_seed")
_POSTTRAIN_FIELDS = ("posttrain_epochs", "posttrain_lr", "posttrain_optimizer", "slope_lr_mult", "layer_scale",
                     "freeze_tol")


def reuse_if_same(stored: dict, cfg, fields: tuple[str, ...]) -> dict:
    """Return a stored result if it was made with the same `fields` as `cfg` (a config dataclass); otherwise raise
    one error that says what differs, overwriting nothing. Used by every protocol (CIFAR and ImageNet)."""
    import json

    old, new = stored.get("config", {}), json.loads(json.dumps(asdict(cfg)))  # tuples as the file holds them
    differ = {f: (old.get(f), new[f]) for f in fields if old.get(f, new[f]) != new[f]}
    if differ:
        listing = ", ".join(f"{f}: stored {a!r} vs now {b!r}" for f, (a, b) in differ.items())
        raise ValueError(f"{cfg.out_dir} holds a {stored.get('kind', 'result')} made with other settings ({listing}). "
                         "Nothing was overwritten: choose another out_dir (OUT_DIR in the notebooks) or delete that "
                         "folder to start again.")
    return stored


def _resnet_depth(cfg: ExperimentConfig) -> int:
    return int(cfg.network.removeprefix("resnet"))


def pretrain(cfg: ExperimentConfig, progress: bool = True) -> dict:
    """Pre-train the plain net in RepVGG training form, fuse it to the deploy form, save both results.

    For `network="resnet56"` (or "resnet20") the start is the pretrained akamaster ResNet instead, fine-tuned for
    `pretrain_epochs` epochs (0: used as it is); the network is stored unchanged in form (it keeps its BN layers).
    Skips the work when `<out_dir>/pretrain/result.json` exists and resumes from the epoch checkpoint otherwise.

    Returns:
        The pre-training result: accuracies of the training and deploy forms, NAPL, parameter counts, provenance.
    """
    out = Path(cfg.out_dir) / "pretrain"
    if (out / "result.json").exists():
        return reuse_if_same(read_json(out / "result.json"), cfg, _PRETRAIN_FIELDS)
    device, knobs = _context(cfg, "pretrain")
    tcfg = cfg.train_config("pretrain", knobs)
    config.seed_everything(cfg.pretrain_seed)
    resnet = cfg.network != "repvgg"
    if resnet:
        net = models.load_pretrained_cifar_resnet(_resnet_depth(cfg), root=cfg.data_dir).to(device)
    else:
        net = models.repvgg(cfg.arch, _num_classes(cfg), cifar=True, width_mult=cfg.width_mult).to(device)
    train_loader, test_loader = _loaders(cfg, cfg.pretrain_seed, device, tcfg.channels_last)
    start = time.time()
    before = train.evaluate(net, test_loader, tcfg.amp_bf16) if resnet else None
    history = train.fit(net, train_loader, test_loader, tcfg, checkpoint=out / "checkpoint.pt", progress=progress,
                        desc="fine-tune" if resnet else "pre-train")
    # The deploy form has no BN: post-training then trains exactly the function it evaluates (ours, both networks).
    deploy = models.fold_batchnorm(net.eval()) if resnet else models.repvgg_deploy(net.eval())
    deploy_eval = train.evaluate(deploy, test_loader, tcfg.amp_bf16)
    result = {
        "kind": "pretrain",
        "config": asdict(cfg),
        "train_config": asdict(tcfg),
        "test_accuracy_train_form": history["test"]["accuracy"],
        "test_accuracy": deploy_eval["accuracy"],
        "test_loss": deploy_eval["loss"],
        "napl": paths.napl(deploy),
        "parameters_train_form": models.count_parameters(net),
        "parameters_deploy": models.count_parameters(deploy),
        "widths": [16, 32, 64] if resnet else models.repvgg_widths(cfg.arch, cfg.width_mult),
        "test_accuracy_before_finetune": before["accuracy"] if before else None,
        "history": history,
        "wall_time_s": round(time.time() - start, 1),
        "provenance": provenance(device),
    }
    if train.is_main_process():
        train.save_checkpoint_atomic(out / "deploy.pt", {"model": deploy.state_dict(), "config": asdict(cfg)})
        write_json_atomic(out / "result.json", result)
        (out / "checkpoint.pt").unlink(missing_ok=True)
    wait_for_rank0()
    return result


def _load_deploy(cfg: ExperimentConfig, device: torch.device) -> torch.nn.Module:
    if cfg.network == "repvgg":
        net = models.plain_cifar_net(cfg.arch, _num_classes(cfg), cfg.width_mult)
    else:
        net = models.fold_batchnorm(models.cifar_resnet(_resnet_depth(cfg), _num_classes(cfg)).eval())
    state = torch.load(Path(cfg.out_dir) / "pretrain" / "deploy.pt", map_location="cpu", weights_only=True)
    models.pretrained.load_state_dict_strict(net, state["model"])
    return net.to(device)


def run_name(granularity: str, omega: float, seed: int) -> str:
    """File stem of one post-training run, e.g. `channel-omega0.03-seed1`."""
    return f"{granularity}-omega{omega:g}-seed{seed}"


def post_train(cfg: ExperimentConfig, granularity: str, omega: float, seed: int, progress: bool = True) -> dict:
    """Linearize the pre-trained deploy net with one (granularity, ω, seed) and write its result JSON.

    Needs `pretrain(cfg)` to have run. Skips the work when the result exists; resumes from the run's checkpoint.

    Returns:
        The result: test accuracy and loss, NAPL, path-length histogram, per-layer nonlinear fractions, slope and
        frozen counts, parameter count, conv depth after merging linear layers, history, wall time, provenance.
    """
    stored = stored_run(cfg, granularity, omega, seed, _PRETRAIN_FIELDS + _POSTTRAIN_FIELDS)
    if stored is not None:
        return stored
    device, knobs = _context(cfg, "posttrain")
    tcfg = cfg.train_config("posttrain", knobs)
    config.seed_everything(seed)
    net = linearize.to_prelu(_load_deploy(cfg, device), granularity)
    train_loader, test_loader = _loaders(cfg, seed, device, tcfg.channels_last)
    return linearize_and_record(cfg, net, train_loader, test_loader, tcfg, granularity, omega, seed, device,
                                progress=progress)


def stored_run(cfg, granularity: str, omega: float, seed: int, fields: tuple[str, ...]) -> dict | None:
    """Check a post-training run's arguments; return its stored result when it exists (and was made with the same
    `fields` as `cfg`, see `reuse_if_same`), else None.

    Raises:
        ValueError: for an unknown granularity, a negative or non-finite ω, or a stored run with other settings.
    """
    if granularity not in linearize.GRANULARITIES:
        raise ValueError(f"unknown granularity {granularity!r}; choose one of {list(linearize.GRANULARITIES)}")
    if not math.isfinite(omega) or omega < 0:
        raise ValueError(f"omega must be a finite number >= 0, got {omega}")
    path = Path(cfg.out_dir) / "runs" / f"{run_name(granularity, omega, seed)}.json"
    return reuse_if_same(read_json(path), cfg, fields) if path.exists() else None


def linearize_and_record(cfg, net: torch.nn.Module, train_loader, test_loader, tcfg: train.TrainConfig,
                         granularity: str, omega: float, seed: int, device: torch.device,
                         input_shape: tuple[int, ...] = (1, 3, 32, 32), progress: bool = True) -> dict:
    """The post-training of every protocol (CIFAR and ImageNet) once its network and loaders exist.

    Trains `net` (already with PReLUs) with cross-entropy + ω·L0.5, freezing near-linear slopes after every step;
    writes `<cfg.out_dir>/runs/<run_name>.json` (and the weights when `cfg.save_models`) from rank 0 and returns the
    result. `cfg` is the protocol's config dataclass (it needs out_dir, layer_scale, freeze_tol, save_models).
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
    result = {
        "kind": "post_train",
        "config": asdict(cfg),
        "train_config": asdict(tcfg),
        "granularity": granularity,
        "omega": omega,
        "seed": seed,
        "test_accuracy": history["test"]["accuracy"],
        "test_loss": history["test"]["loss"],
        "diverged": history["diverged"],
        "napl": paths.napl(net, input_shape),
        "path_length_histogram": paths.path_length_distribution(net, input_shape).tolist(),
        "nonlinear_fraction": linearize.nonlinear_fraction(net),
        "slopes": linearize.count_slopes(net),
        "frozen_slopes": int(sum(m.frozen.sum().item() for _, m in prelus)),
        "linear_channels": int(sum((~m.nonlinear_mask()).sum().item() for _, m in prelus)),
        "channels": int(sum(m.num_channels for _, m in prelus)),
        "parameters": models.count_parameters(net),
        "depth_after_merge": linearize.layer_counts(linearize.merge_linear(net)) if plain else None,
        "history": history,
        "wall_time_s": round(time.time() - start, 1),
        "provenance": provenance(device),
    }
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


def load_post_trained(cfg: ExperimentConfig, granularity: str, omega: float, seed: int) -> torch.nn.Module:
    """The linearized network of a finished post-training run (saved when `cfg.save_models`), on the CPU, in eval mode.

    Raises:
        FileNotFoundError: when the run has not been made or its weights were not kept; says which command makes it.
    """
    path = Path(cfg.out_dir) / "runs" / f"{run_name(granularity, omega, seed)}.pt"
    if not path.exists():
        raise FileNotFoundError(f"no saved network at {path}: run experiments.post_train(cfg, {granularity!r}, "
                                f"{omega!r}, {seed}) with save_models=True first")
    net = linearize.to_prelu(_load_deploy(cfg, torch.device("cpu")), granularity)
    state = torch.load(path, map_location="cpu", weights_only=True)
    models.pretrained.load_state_dict_strict(net, state["model"])
    return net.eval()


def sweep(cfg: ExperimentConfig, progress: bool = True) -> list[dict]:
    """Pre-train (or reuse), then post-train every (granularity, ω, seed); returns the post-training results.

    Interrupt it at any time and call it again: finished runs are read back, the unfinished one resumes from its
    last epoch. A summary (see `summarize`) is written to `<out_dir>/summary.json` after every run.
    """
    from tqdm.auto import tqdm

    baseline = pretrain(cfg, progress=progress)
    grid = [(g, w, s) for g in cfg.granularities for w in cfg.omegas for s in cfg.seeds]
    results = []
    for g, w, s in tqdm(grid, desc="sweep", disable=not progress or None):
        results.append(post_train(cfg, g, w, s, progress=progress))
        if train.is_main_process():
            write_json_atomic(Path(cfg.out_dir) / "summary.json", summarize(results, baseline))
    return results


def load_results(out_dir: str | Path) -> tuple[dict | None, list[dict]]:
    """Read back a sweep: (pre-training result or None, list of post-training results)."""
    out = Path(out_dir)
    baseline = read_json(out / "pretrain" / "result.json") if (out / "pretrain" / "result.json").exists() else None
    return baseline, [read_json(p) for p in sorted((out / "runs").glob("*.json"))]


# ---------------------------------------------------------------------------------------------------------------------
# Summaries
# ---------------------------------------------------------------------------------------------------------------------

def _mean_std(values: list[float]) -> tuple[float, float]:
    t = torch.tensor(values, dtype=torch.float64)
    return t.mean().item(), (t.std().item() if len(values) > 1 else 0.0)


def summarize(results: list[dict], baseline: dict | None = None) -> dict:
    """Average over seeds per (granularity, ω) and compare the variants at matched NAPL.

    Runs whose loss became non-finite are listed under "diverged_runs" and left out of the means.
    The gap at a layer-wise point is the channel-wise accuracy linearly interpolated (in NAPL, between the mean
    points of the channel-wise curve, the unlinearized net included) minus the layer-wise accuracy. Positive gaps
    favour channel-wise (variable-depth) networks, as the paper reports.
    """
    diverged = [run_name(r["granularity"], r["omega"], r["seed"]) for r in results if r.get("diverged")]
    results = [r for r in results if not r.get("diverged")]  # reported by name, kept out of the means
    curves: dict[str, list[dict]] = {}
    for g in sorted({r["granularity"] for r in results}):
        points = []
        for w in sorted({r["omega"] for r in results if r["granularity"] == g}):
            group = [r for r in results if r["granularity"] == g and r["omega"] == w]
            acc, acc_std = _mean_std([r["test_accuracy"] for r in group])
            napl_mean, napl_std = _mean_std([r["napl"] for r in group])
            points.append({"omega": w, "n_seeds": len(group), "accuracy": acc, "accuracy_std": acc_std,
                           "napl": napl_mean, "napl_std": napl_std})
        curves[g] = points
    anchor = [{"napl": baseline["napl"], "accuracy": baseline["test_accuracy"], "accuracy_std": 0.0}] if baseline else []
    gaps = []
    if "channel" in curves and "layer" in curves:
        channel = sorted(anchor + curves["channel"], key=lambda p: p["napl"])
        xs = [p["napl"] for p in channel]
        for p in curves["layer"]:
            if xs and xs[0] <= p["napl"] <= xs[-1]:
                acc_channel = _interp(p["napl"], xs, [q["accuracy"] for q in channel])
                std_channel = _interp(p["napl"], xs, [q["accuracy_std"] for q in channel])
                gaps.append({"napl": p["napl"], "omega": p["omega"], "layer_accuracy": p["accuracy"],
                             "layer_accuracy_std": p["accuracy_std"], "channel_accuracy_interp": acc_channel,
                             "channel_accuracy_std_interp": std_channel, "gap": acc_channel - p["accuracy"]})
    return {"baseline": ({k: baseline[k] for k in ("test_accuracy", "test_accuracy_train_form", "napl",
                                                    "parameters_deploy")} if baseline else None),
            "config": results[0]["config"] if results else (baseline or {}).get("config"),
            "curves": curves, "gaps_at_matched_napl": gaps, "n_runs": len(results) + len(diverged),
            "diverged_runs": diverged}


def export_reference(out_dir: str | Path, path: str | Path) -> dict:
    """Write a compact, committed record of a finished sweep (summary, every run's numbers, provenance) to `path`.

    The notebooks overlay these files (`data/reference/<dataset>_<mode>.json`) on what a learner computes live.
    """
    baseline, runs = load_results(out_dir)
    keep = ("granularity", "omega", "seed", "test_accuracy", "test_loss", "diverged", "napl", "path_length_histogram",
            "nonlinear_fraction", "slopes", "frozen_slopes", "linear_channels", "channels", "parameters",
            "depth_after_merge", "wall_time_s")
    record = {
        "about": "Aggregated results of `python -m course_lib.experiments cifar` (see config); written by "
                 "experiments.export_reference.",
        "config": runs[0]["config"] if runs else baseline["config"],
        "pretrain": {k: v for k, v in baseline.items() if k not in ("history",)},
        "summary": summarize(runs, baseline),
        "runs": [{k: r.get(k) for k in keep} for r in runs],
        "total_wall_time_s": round(baseline["wall_time_s"] + sum(r["wall_time_s"] for r in runs), 1),
        "provenance": runs[-1]["provenance"] if runs else baseline["provenance"],
    }
    write_json_atomic(path, record)
    return record


def matched_pair(results: list[dict], max_napl: float = 21.5) -> tuple[dict, dict] | None:
    """The (channel-wise, layer-wise) runs closest in NAPL among linearized ones (NAPL < `max_napl`), or None."""
    ok = [r for r in results if not r.get("diverged") and r["napl"] < max_napl]
    pairs = [(c, l) for c in ok if c["granularity"] == "channel" for l in ok if l["granularity"] == "layer"]
    return min(pairs, key=lambda pair: (abs(pair[0]["napl"] - pair[1]["napl"]), pair[1]["napl"])) if pairs else None


def mean_gap(summary: dict, napl_min: float = 0.0, napl_max: float | None = None) -> float | None:
    """Mean gap at matched NAPL over the points with napl_min < NAPL < napl_max (default: below the unlinearized
    net's NAPL), or None when there is no such point. The paper's ablation reads: from a ResNet the gap "nearly
    vanishes for NAPL > 4", i.e. `mean_gap(resnet_summary, 4)` should be close to 0."""
    top = napl_max if napl_max is not None else (summary["baseline"]["napl"] - 0.5 if summary.get("baseline")
                                                 else math.inf)
    gaps = [g["gap"] for g in summary["gaps_at_matched_napl"] if napl_min < g["napl"] < top]
    return sum(gaps) / len(gaps) if gaps else None


def verdict(summary: dict) -> str:
    """A plain-language reading of a summary: NAPL reached, the gaps at matched NAPL, and how they compare with the
    paper's claim (channel-wise better at low NAPL). Every number comes from `summary`."""
    lines = []
    network = (summary.get("config") or {}).get("network", "repvgg")
    if summary.get("baseline"):
        name = "plain net" if network == "repvgg" else network
        lines.append(f"Unlinearized {name}: accuracy {summary['baseline']['test_accuracy']:.4f} at NAPL "
                     f"{summary['baseline']['napl']:.4g}.")
    for g, points in summary["curves"].items():
        if points:
            lowest = min(points, key=lambda p: p["napl"])
            lines.append(f"{g}-wise: NAPL down to {lowest['napl']:.2f} (ω={lowest['omega']:g}) with accuracy "
                         f"{lowest['accuracy']:.4f} ± {lowest['accuracy_std']:.4f}.")
    gaps = summary["gaps_at_matched_napl"]
    top = summary["baseline"]["napl"] - 0.5 if summary.get("baseline") else 21.5
    informative = [g for g in gaps if g["napl"] < top]
    if not informative:
        lines.append("No layer-wise run was linearized inside the channel-wise NAPL range, so there is no matched "
                     "comparison yet: the claim is not tested by this run (widen the ω grid or train longer).")
    else:
        seeds = min(p["n_seeds"] for points in summary["curves"].values() for p in points)
        if seeds < 2:
            best = max(informative, key=lambda g: g["gap"])
            lines.append(f"Channel-wise is ahead at {sum(g['gap'] > 0 for g in informative)} of "
                         f"{len(informative)} matched NAPL point(s) (largest gap {100 * best['gap']:+.2f} points at "
                         f"NAPL {best['napl']:.2f}), but with a single seed there is no spread to judge the gaps "
                         "by: not a test of the paper's claim.")
            return "\n".join(lines)
        clear = [g for g in informative if g["gap"] > g["layer_accuracy_std"] + g["channel_accuracy_std_interp"]]
        worse = [g for g in informative if -g["gap"] > g["layer_accuracy_std"] + g["channel_accuracy_std_interp"]]
        best = max(informative, key=lambda g: g["gap"])
        lines.append(f"At {len(informative)} matched NAPL point(s) below {top:g}, channel-wise is ahead at "
                     f"{sum(g['gap'] > 0 for g in informative)}, clearly (gap larger than the two seed stds "
                     f"together) at {len(clear)}, clearly behind at {len(worse)}; the largest gap is "
                     f"{100 * best['gap']:+.2f} points at NAPL {best['napl']:.2f}.")
        if network != "repvgg":  # the ablation: from a ResNet the paper expects the gap to nearly vanish (NAPL > 4)
            if not clear and not worse:
                lines.append("From a ResNet the paper expects the gap to nearly vanish above NAPL 4: it does here.")
            else:
                lines.append(f"From a ResNet the paper expects the gap to nearly vanish above NAPL 4: here it does "
                             f"not ({len(clear)} point(s) clearly ahead, {len(worse)} clearly behind).")
        elif clear and not worse:
            lines.append("This agrees with the paper: the variable-depth (channel-wise) networks generalise better "
                         "at matched NAPL.")
        elif worse and not clear:
            lines.append("This disagrees with the paper's claim at this scale.")
        else:
            lines.append("At this scale the comparison is inconclusive: the gaps are within the seed spread.")
    if summary.get("diverged_runs"):
        lines.append(f"Diverged runs (left out): {', '.join(summary['diverged_runs'])}.")
    return "\n".join(lines)


def _interp(x: float, xs: list[float], ys: list[float]) -> float:
    for (x0, y0), (x1, y1) in zip(zip(xs, ys), zip(xs[1:], ys[1:])):
        if x0 <= x <= x1:
            return y0 if x1 == x0 else y0 + (y1 - y0) * (x - x0) / (x1 - x0)
    return ys[-1]


# ---------------------------------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["imagenet"]:  # the ImageNet protocol has its own module and options
        from . import imagenet

        return imagenet.main(argv[1:])
    parser = argparse.ArgumentParser(prog="python -m course_lib.experiments",
                                     description="Run the paper's protocols (see the module docstring).")
    sub = parser.add_subparsers(dest="protocol", required=True)
    cifar = sub.add_parser("cifar", help="channel- vs layer-wise linearization on CIFAR (plain net or ResNet-56)")
    sub.add_parser("imagenet", help="RepVGG-A2 on ImageNet: see `python -m course_lib.experiments imagenet --help`")
    cifar.add_argument("--mode", default="auto", help="auto|smoke|cpu|full")
    cifar.add_argument("--dataset", default="cifar10", help="cifar10|cifar100")
    cifar.add_argument("--network", default="repvgg", help="repvgg (notebook 04) | resnet56 (notebook 05's ablation)")
    cifar.add_argument("--out", default=None, help="output folder (default runs/04_cifar_<mode>)")
    cifar.add_argument("--omegas", type=float, nargs="*", default=None)
    cifar.add_argument("--seeds", type=int, nargs="*", default=None)
    cifar.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                       help="other ExperimentConfig fields, e.g. width_mult=0.25 posttrain_epochs=5")
    cifar.add_argument("--one-run", default=None, metavar="GRANULARITY:OMEGA:SEED",
                       help="only pre-train (if needed) and this one post-training run")
    args = parser.parse_args(argv)
    overrides = {k: _parse_value(v) for k, v in (item.split("=", 1) for item in args.set)}
    mode = config.resolve_mode(args.mode)
    default_out = f"runs/04_cifar_{mode}" if args.network == "repvgg" else f"runs/05_{args.network}_{mode}"
    cfg = cifar_config(mode, dataset=args.dataset, network=args.network, omegas=args.omegas, seeds=args.seeds,
                       out_dir=args.out or default_out, **overrides)
    if args.one_run:
        granularity, omega, seed = args.one_run.split(":")
        pretrain(cfg)
        result = post_train(cfg, granularity, float(omega), int(seed))
        if train.is_main_process():
            print(f"{run_name(granularity, float(omega), int(seed))}: accuracy {result['test_accuracy']:.4f}, "
                  f"NAPL {result['napl']:.2f}")
        return 0
    results = sweep(cfg)
    if train.is_main_process():
        summary = summarize(results, pretrain(cfg))
        print(f"{len(results)} runs in {cfg.out_dir}; baseline accuracy {summary['baseline']['test_accuracy']:.4f}")
        for g, points in summary["curves"].items():
            for p in points:
                print(f"  {g:7s} ω={p['omega']:<8g} NAPL {p['napl']:6.2f}  accuracy {p['accuracy']:.4f}"
                      f" ± {p['accuracy_std']:.4f}")
    return 0


def _parse_value(text: str):
    """A `--set` value: JSON first (so 1e-4 is a number, which YAML 1.1 reads as a string), else YAML."""
    import json

    import yaml

    try:
        return json.loads(text)
    except ValueError:
        return yaml.safe_load(text)


if __name__ == "__main__":
    sys.exit(main())
