"""The paper's CIFAR protocol on top of `protocol`: pre-train, post-train (linearize), sweep.

1. `pretrain(cfg)`: train the plain net in RepVGG *training* form (three branches + BN), fuse it to its *deploy*
   form, a true feedforward net of 22 conv+ReLU layers (NAPL 22), and store it.
2. `post_train(cfg, granularity, omega, seed)`: ReLU -> PReLU (slopes at 0, so the net is unchanged), then train with
   cross-entropy + ω·L0.5, freezing slopes within 0.01 of 1 after every step (`protocol.linearize_and_record`); write
   one JSON with accuracy, NAPL, the path-length histogram, nonlinear fractions per layer, frozen counts, provenance.
3. `sweep(cfg)`: every (granularity, ω, seed) of the config; finished runs are skipped, an interrupted run resumes
   from its last epoch checkpoint. `judging.summarize` averages over seeds and measures the gap at matched NAPL.

Paper: §3 of arXiv 2506.14386 (post-training partial linearization, channel- vs layer-wise at matched NAPL).
Ours (the paper is silent): the CIFAR network (a RepVGG-A family plain net, narrowed by `width_mult` in the cpu
profile), the optimiser and learning rates, the epochs of pre-training, one ω grid for both variants (with the
layer-wise penalty weighted by channel count), seeds varying post-training only. All are fields of the config, their
values per run mode are in `profiles` (tables `cifar-repvgg` and `cifar-resnet56`), and they are written into every
result. Command line:

    python -m course_lib cifar --mode smoke|cpu|full --dataset cifar10|cifar100 --out DIR
    python -m course_lib cifar --network resnet56 --mode cpu     # notebook 05's ablation

The ablation of notebook 05 (`network="resnet56"`) runs the same protocol from the pretrained akamaster ResNet-56
instead of a plain net: its "pre-training" is a short fine-tune of those weights on the course's CIFAR-10 files, and
every ReLU, the post-addition ones included, becomes a PReLU. Its BN layers are folded into the convolutions first,
so that, as for the fused plain net, post-training trains exactly the function it evaluates.
"""

from __future__ import annotations

import argparse
import functools
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from . import config, data, judging, linearize, models, paths, preflight, protocol, targeting, train
from .errors import ConfigError
from .protocol import PRETRAIN, defines
from .results import run_name

__all__ = ["ExperimentConfig", "NETWORKS", "DATASETS", "cifar_config", "check_data", "pretrain", "post_train", "sweep",
           "load_post_trained", "main"]

DATASETS = ("cifar10", "cifar100")
NETWORKS = {"repvgg": "cifar-repvgg", "resnet56": "cifar-resnet56"}  # network -> its profile table


@dataclass(frozen=True)
class ExperimentConfig(protocol.ProtocolConfig):
    """Everything that defines a CIFAR channel- vs layer-wise experiment (the shared fields are documented on
    `protocol.ProtocolConfig`). Stored in every result file."""

    network: str = defines(PRETRAIN)  # "repvgg": plain net trained here; "resnet56": akamaster weights, fine-tuned
    dataset: str = defines(PRETRAIN)  # cifar10 | cifar100
    arch: str = defines(PRETRAIN)  # RepVGG family member of the plain net (A0 | A1 | A2)
    width_mult: float = defines(PRETRAIN)  # multiplies every width (ours: < 1 for the cpu profile)
    n_train: int | None = defines(PRETRAIN)  # training images used (None: all 50,000)
    n_test: int | None = defines(PRETRAIN)  # test images used (None: all 10,000)
    pretrain_seed: int = defines(PRETRAIN)  # seed of the start network (plus the run's seed with independent_starts)

    def problems(self) -> list[str]:
        found = super().problems()
        if self.network not in NETWORKS:
            found.append(f"unknown network {self.network!r}; choose one of {list(NETWORKS)}")
        if self.dataset not in DATASETS:
            found.append(f"unknown dataset {self.dataset!r}; choose one of {list(DATASETS)}")
        elif self.network != "repvgg" and self.dataset != "cifar10":
            found.append(f"the pretrained {self.network} weights are CIFAR-10 weights; use dataset='cifar10' with it")
        return found

    def input_problems(self, need_start: bool = True) -> list[str]:
        """Every missing or damaged input (the data; the pretrained ResNet when `need_start`), loaded now, before any
        work (`preflight`). The loaded splits are the ones the stages use (`_read_split` keeps them)."""
        return preflight.load_problems(
            lambda: _read_split(self.dataset, "train", self.data_dir, self.n_train),
            lambda: _read_split(self.dataset, "test", self.data_dir, self.n_test),
            *([lambda: models.load_pretrained_cifar_resnet(_resnet_depth(self), root=self.data_dir)]
              if need_start and self.network != "repvgg" else []))


def cifar_config(mode: str = "auto", **overrides) -> ExperimentConfig:
    """Build the experiment config of a run mode, with overrides; `None` overrides mean "the mode's default".

    `network` selects the profile table (`profiles.TABLES["cifar-repvgg"]` or `["cifar-resnet56"]`).

    Raises:
        ConfigError: unknown mode, network, dataset, granularity or setting name, a negative ω, or no seeds.
    """
    network = overrides.get("network") or "repvgg"
    if network not in NETWORKS:
        raise ConfigError(f"unknown network {network!r}; choose one of {list(NETWORKS)}")
    return protocol.build_config(ExperimentConfig, NETWORKS[network], mode, overrides)


# ---------------------------------------------------------------------------------------------------------------------
# Data and stages
# ---------------------------------------------------------------------------------------------------------------------

_SPLIT_SIZES = {"train": 50_000, "test": 10_000}  # CIFAR-10 and CIFAR-100 alike


@functools.lru_cache(maxsize=4)
def _read_split(dataset: str, split: str, data_dir: str | None, n: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    """One read per process: every run of a sweep uses the same split (loaders never modify it). Only the first `n`
    images are kept (a copy), so a small run does not hold the whole training set in memory.

    Raises:
        ConfigError: the data found hold fewer images than asked for (`n`, or the whole split when `n` is None),
            e.g. a compact copy of part of CIFAR (`data.write_compact_cifar`): a run never silently uses fewer.
    """
    images, labels = data.load_cifar(dataset, split, root=data_dir)
    wanted = _SPLIT_SIZES[split] if n is None else n
    if len(labels) < wanted:
        field = "n_train" if split == "train" else "n_test"
        raise ConfigError(f"{data.locate_cifar(dataset, data_dir)} holds {len(labels)} {dataset} {split} images, "
                          f"the config asks for {wanted} ({field}={n}); set {field} <= {len(labels)} or give the "
                          "whole dataset")
    return (images, labels) if n is None or n >= len(labels) else (images[:n].clone(), labels[:n].clone())


def check_data(cfg: ExperimentConfig) -> None:
    """Read the CIFAR splits `cfg` uses (once per process), so that missing or too few images fail with their clear
    error before any work starts.

    Raises:
        DataNotFoundError: no CIFAR found. ConfigError: fewer images than `n_train`/`n_test` ask for.
    """
    for split, n in (("train", cfg.n_train), ("test", cfg.n_test)):
        _read_split(cfg.dataset, split, cfg.data_dir, n)


def _loaders(cfg: ExperimentConfig, seed: int, device: torch.device, channels_last: bool):
    rank, world, per_process = protocol.per_process_batch(cfg.batch_size)
    (train_x, train_y) = _read_split(cfg.dataset, "train", cfg.data_dir, cfg.n_train)
    (test_x, test_y) = _read_split(cfg.dataset, "test", cfg.data_dir, cfg.n_test)
    common = dict(device=device, channels_last=channels_last, rank=rank, world_size=world)
    return (data.CifarLoader(train_x, train_y, per_process, train=True, seed=seed, **common),
            data.CifarLoader(test_x, test_y, cfg.eval_batch_size, train=False, **common))


def _num_classes(cfg: ExperimentConfig) -> int:
    return 10 if cfg.dataset == "cifar10" else 100


def _steps(cfg: ExperimentConfig, stage: str) -> int:
    epochs = cfg.pretrain_epochs if stage == PRETRAIN else cfg.posttrain_epochs
    return epochs * ((cfg.n_train or 50_000) // cfg.batch_size)


def _resnet_depth(cfg: ExperimentConfig) -> int:
    return int(cfg.network.removeprefix("resnet"))


@preflight.pretrain_stage  # checks before any work; <start_dir>/.lock (other processes wait for it)
def pretrain(cfg: ExperimentConfig, seed: int = 0, progress: bool = True) -> dict:
    """Pre-train the start network of `seed`'s runs: the plain net in RepVGG training form, fused to its deploy form.

    For `network="resnet56"` the start is the pretrained akamaster ResNet instead, fine-tuned for `pretrain_epochs`
    epochs (0: used as it is), then its BN folded into the convolutions. With `independent_starts` each seed has its
    own start (`protocol.start_seed`), stored in `protocol.start_dir`; the work is skipped when its `result.json`
    exists and resumes from the epoch checkpoint otherwise.

    Returns:
        The pre-training result: accuracies of the training and deploy forms, NAPL, parameter counts, provenance.

    Raises:
        StoredResultError: the out dir holds a pre-training made with other settings (nothing is overwritten).
    """
    stored = protocol.stored_pretrain(cfg, seed)
    if stored is not None:
        return stored
    out, start_seed = protocol.start_dir(cfg, seed), protocol.start_seed(cfg, seed)
    device, knobs = protocol.device_and_knobs(cfg, _steps(cfg, PRETRAIN))
    tcfg = cfg.train_config(PRETRAIN, knobs)
    config.seed_everything(start_seed)
    resnet = cfg.network != "repvgg"
    if resnet:
        net = models.load_pretrained_cifar_resnet(_resnet_depth(cfg), root=cfg.data_dir).to(device)
    else:
        net = models.repvgg(cfg.arch, _num_classes(cfg), cifar=True, width_mult=cfg.width_mult).to(device)
    train_loader, test_loader = _loaders(cfg, start_seed, device, tcfg.channels_last)
    start = time.time()
    before = train.evaluate(net, test_loader, tcfg.amp_bf16) if resnet else None
    history = train.fit(net, train_loader, test_loader, tcfg, checkpoint=out / "checkpoint.pt", progress=progress,
                        desc="fine-tune" if resnet else "pre-train")
    # The deploy form has no BN: post-training then trains exactly the function it evaluates (ours, both networks).
    deploy = models.fold_batchnorm(net.eval()) if resnet else models.repvgg_deploy(net.eval())
    deploy_eval = train.evaluate(deploy, test_loader, tcfg.amp_bf16)
    result = protocol.stage_record(
        "pretrain", cfg, tcfg, start, device, seed=seed, start_seed=start_seed,
        test_accuracy_train_form=history["test"]["accuracy"],
        test_accuracy=deploy_eval["accuracy"], test_loss=deploy_eval["loss"], napl=paths.napl(deploy),
        parameters_train_form=models.count_parameters(net), parameters_deploy=models.count_parameters(deploy),
        widths=[16, 32, 64] if resnet else models.repvgg_widths(cfg.arch, cfg.width_mult),
        test_accuracy_before_finetune=before["accuracy"] if before else None, history=history)
    return protocol.store_start_network(cfg, deploy, result, seed)


def _load_deploy(cfg: ExperimentConfig, device: torch.device, seed: int) -> torch.nn.Module:
    if cfg.network == "repvgg":
        net = models.plain_cifar_net(cfg.arch, _num_classes(cfg), cfg.width_mult)
    else:
        net = models.fold_batchnorm(models.cifar_resnet(_resnet_depth(cfg), _num_classes(cfg)).eval())
    state = torch.load(protocol.start_dir(cfg, seed) / "deploy.pt", map_location="cpu", weights_only=True)
    models.pretrained.load_state_dict_strict(net, state["model"])
    return net.to(device)


@preflight.posttrain_stage  # checks before any work; <out_dir>/runs/<run>.lock
def post_train(cfg: ExperimentConfig, granularity: str, seed: int, *, omega: float | None = None,
               target: float | None = None, progress: bool = True) -> dict:
    """Linearize the start network of `seed` with a fixed ω or to a target NAPL, recover, write its result JSON.

    Needs `pretrain(cfg, seed)` to have run. Skips the work when the result exists; resumes an interrupted run.

    Returns:
        The result (see `protocol.linearize_and_record`).
    """
    stored = protocol.stored_run(cfg, granularity, seed, omega, target)
    if stored is not None:
        return stored
    device, knobs = protocol.device_and_knobs(cfg, _steps(cfg, "posttrain"))
    tcfg = cfg.train_config("posttrain", knobs)
    config.seed_everything(seed)
    net = linearize.to_prelu(_load_deploy(cfg, device, seed), granularity)
    train_loader, test_loader = _loaders(cfg, seed, device, tcfg.channels_last)
    extra = _napl_without_post_addition if cfg.network != "repvgg" else None
    return protocol.linearize_and_record(cfg, net, train_loader, test_loader, tcfg, granularity, seed, device,
                                         omega=omega, target=target, progress=progress, extra=extra)


def _napl_without_post_addition(net: torch.nn.Module) -> dict:
    """A ResNet's NAPL in the other convention, with the activations after each addition (`relu2`) counted linear.

    The paper's convention is unknown; the course counts every activation where it sits (targets use that NAPL).
    """
    weights = targeting.napl_weights(net)
    post = [w * m.nonlinear_mask().double().mean().item()
            for w, (name, m) in zip(weights, linearize.prelu_modules(net)) if name.endswith("relu2")]
    return {"napl_without_post_addition": targeting.fast_napl(net, weights) - sum(post)}


def load_post_trained(cfg: ExperimentConfig, granularity: str, seed: int, omega: float | None = None,
                      target: float | None = None) -> torch.nn.Module:
    """The linearized network of a finished post-training run (saved when `cfg.save_models`), on the CPU, in eval mode.

    Raises:
        FileNotFoundError: when the run has not been made or its weights were not kept; says which command makes it.
    """
    path = Path(cfg.out_dir) / "runs" / f"{run_name(granularity, seed, omega, target)}.pt"
    if not path.exists():
        raise data.DataNotFoundError(f"no saved network at {path}: run experiments.post_train(cfg, {granularity!r}, "
                                     f"{seed}, omega={omega!r}, target={target!r}) with save_models=True first")
    net = linearize.to_prelu(_load_deploy(cfg, torch.device("cpu"), seed), granularity)
    state = torch.load(path, map_location="cpu", weights_only=True)
    models.pretrained.load_state_dict_strict(net, state["model"])
    return net.eval()


@preflight.holds_folder  # every check before any work, then <out_dir>/.lock for the whole sweep
def sweep(cfg: ExperimentConfig, progress: bool = True) -> list[dict]:
    """Pre-train (or reuse), then post-train every (granularity, ω, seed); returns the post-training results.

    Interrupt it at any time and call it again: finished runs are read back, the unfinished one resumes from its
    last epoch. A summary (`judging.summarize`) is written to `<out_dir>/summary.json` after every run.
    """
    return protocol.sweep(cfg, pretrain, post_train, progress=progress)


# ---------------------------------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------------------------------

def main(argv: list[str] | None = None, prog: str = "python -m course_lib cifar") -> int:
    """`python -m course_lib cifar [options]` (also under torchrun); see `--help`."""
    parser = argparse.ArgumentParser(prog=prog, description="Channel- vs layer-wise linearization on CIFAR: the plain "
                                     "net of notebook 04 or the ResNet-56 ablation of notebook 05.")
    parser.add_argument("--mode", default="auto", help="auto|smoke|cpu|full")
    parser.add_argument("--dataset", default="cifar10", help="cifar10|cifar100")
    parser.add_argument("--network", default="repvgg", help="repvgg (notebook 04) | resnet56 (notebook 05's ablation)")
    parser.add_argument("--out", default=None, help="output folder (default runs/04_cifar_<mode> or "
                                                    "runs/05_resnet56_<mode>)")
    parser.add_argument("--omegas", type=float, nargs="*", default=None)
    parser.add_argument("--seeds", type=int, nargs="*", default=None)
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                        help="other ExperimentConfig fields, e.g. width_mult=0.25 posttrain_epochs=5")
    parser.add_argument("--targets", type=float, nargs="*", default=None, help="target NAPL values")
    parser.add_argument("--one-run", default=None, metavar="GRANULARITY:KNOB:SEED",
                        help="only this run (and its start network), e.g. channel:target4:0 or layer:omega0.01:1")
    args = parser.parse_args(sys.argv[1:] if argv is None else list(argv))
    mode = config.resolve_mode(args.mode)
    default_out = f"runs/04_cifar_{mode}" if args.network == "repvgg" else f"runs/05_{args.network}_{mode}"
    flags = dict(dataset=args.dataset, network=args.network, omegas=args.omegas, targets=args.targets,
                 seeds=args.seeds, out_dir=args.out or default_out)
    cfg = cifar_config(mode, **{**flags, **protocol.parse_overrides(args.set)})  # `--set seeds=...` works too
    if args.one_run:
        granularity, seed, omega, target = protocol.parse_one_run(args.one_run)
        pretrain(cfg, seed)
        result = post_train(cfg, granularity, seed, omega=omega, target=target)
        if train.is_main_process():
            print(f"{run_name(granularity, seed, omega, target)}: accuracy {result['test_accuracy']:.4f}, "
                  f"NAPL {result['napl']:.2f}")
        return 0
    results = sweep(cfg)
    if train.is_main_process():
        print(f"{len(results)} runs in {cfg.out_dir}")
        print(judging.verdict(judging.summarize(results, protocol.load_results(cfg.out_dir)[0])))
    return 0
