"""The paper's ImageNet protocol: RepVGG-A2, 10 post-training epochs per ω, channel- vs layer-wise, under torchrun.

A package of three files, in reading order:

1. `folder.py`, ImageNet data: `check_imagefolder` (a clear `ImageNetNotFoundError` for a missing or malformed
   `IMAGENET_DIR`), the standard transforms, two JPEG readers and `measure_decode_speed`, and `ImageNetLoader`, a
   DataLoader wrapper with the interface `train.fit`/`train.evaluate` use (device batches, `set_epoch`, exact DDP
   evaluation). `make_smoke_imagefolder` writes a small ImageFolder of real, upscaled CIFAR-10 images so that the
   whole path runs in CI. ImageNet itself is never downloaded.
2. `checkpoints.py`, the start network: a checkpoint (path or https url, optional sha256) of RepVGG in training or
   deploy form, ours or with the official DingXiaoH/RepVGG key names, detected from its keys, loaded strictly and
   fused to the deploy form.
3. this file: `ImageNetConfig` (values per mode in `profiles`), `pretrain` (evaluate the checkpoint; or, in
   smoke/cpu without one, pre-train the small net briefly), `post_train`, `sweep` (on `course_lib.protocol`) and
   `main` (`python -m course_lib imagenet`). Results have the same JSON shape as the CIFAR protocol's. Cost: `count_macs`
   (FlopCounterMode) and `estimate_cost` (GPU hours from a measured throughput).

Paper: §4 of arXiv 2506.14386 (RepVGG-A2 on ImageNet, 10 post-training epochs). Ours (the paper is silent): the
optimiser and learning rates (AdamW as in the CIFAR protocol), the ω grid, augmentation, seeds, the smoke/cpu
profiles. Taught in notebook 06_imagenet_repvgg_a2. The RepVGG key names follow DingXiaoH/RepVGG (MIT); the code is
our own.
"""

from __future__ import annotations

import argparse
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn

from .. import config, linearize, models, paths, preflight, protocol, train
from ..errors import ConfigError
from ..protocol import PRETRAIN, defines, setting
from ..results import run_name_of
from .checkpoints import (
    CheckpointPickleError,
    checkpoint_format,
    from_official,
    load_checkpoint,
    start_network,
    to_official,
)
from .folder import (
    ENV_IMAGENET_DIR,
    READERS,
    ImageNetLoader,
    ImageNetNotFoundError,
    check_imagefolder,
    image_folder,
    make_smoke_imagefolder,
    measure_decode_speed,
    train_transform,
    val_transform,
)

__all__ = [
    # data (folder.py)
    "ENV_IMAGENET_DIR", "ImageNetNotFoundError", "check_imagefolder", "train_transform", "val_transform", "READERS",
    "measure_decode_speed", "image_folder", "ImageNetLoader", "make_smoke_imagefolder",
    # start network (checkpoints.py)
    "load_checkpoint", "checkpoint_format", "from_official", "to_official", "start_network", "CheckpointPickleError",
    # protocol, launching, cost (this file)
    "IMAGENET_TRAIN_IMAGES", "ImageNetConfig", "imagenet_config", "data_root", "pretrain", "post_train",
    "sweep", "cli_args", "torchrun_command", "run_command", "parse_args", "count_macs", "measure_throughput",
    "estimate_cost", "main",
]

IMAGENET_TRAIN_IMAGES = 1_281_167  # ILSVRC-2012 training images (val: 50,000)
_NO_CHECKPOINT = ("the ImageNet protocol starts from a pretrained network: give a checkpoint (a RepVGG {arch} state "
                  "dict, training or deploy form, ours or DingXiaoH/RepVGG's), or set pretrain_epochs > 0 to pre-train "
                  "a small one here (smoke/cpu only)")


# ---------------------------------------------------------------------------------------------------------------------
# Config and profiles
# ---------------------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ImageNetConfig(protocol.ProtocolConfig):
    """Everything that defines an ImageNet channel- vs layer-wise run (the shared fields are documented on
    `protocol.ProtocolConfig`; values per mode in `profiles.TABLES["imagenet"]`). Stored in every result file."""

    imagenet_dir: str | None = defines(PRETRAIN)  # ImageFolder root; None: $IMAGENET_DIR, else (smoke/cpu) generated
    checkpoint: str | None = defines(PRETRAIN)  # start network: path or https url; None (smoke/cpu): pre-train here
    checkpoint_sha256: str | None = defines(PRETRAIN)  # expected sha256 of the checkpoint file (None: not checked)
    arch: str = defines(PRETRAIN)  # RepVGG family member (A0 | A1 | A2), ImageNet strides
    width_mult: float = defines(PRETRAIN)  # multiplies every width (< 1 only in smoke/cpu)
    image_size: int = defines(PRETRAIN)  # training crop and evaluation centre crop, pixels
    n_classes: int | None = defines(PRETRAIN)  # keep the first n class folders (None: all)
    n_train_per_class: int | None = defines(PRETRAIN)  # training images per class (None: all)
    n_val_per_class: int | None = defines(PRETRAIN)  # validation images per class (None: all)
    generated_folder: tuple[int, int, int, int] = defines(PRETRAIN)  # without imagenet_dir: classes, train and val
    # images per class, size in px of the CIFAR-10 ImageFolder `make_smoke_imagefolder` writes (smoke/cpu only)
    reader: str = setting()  # JPEG decoding: "pil" | "torchvision" | "auto" (the faster, measured)
    num_workers: int = setting()  # DataLoader workers per process

    def problems(self) -> list[str]:
        found = super().problems()
        if self.reader != "auto" and self.reader not in READERS:
            found.append(f"unknown reader {self.reader!r}; choose auto or one of {list(READERS)}")
        return found

    def input_problems(self, need_start: bool = True) -> list[str]:
        """Every problem with the inputs, at once, before any work (`preflight`): the ImageNet folder (unless smoke/cpu
        generate one) and, when the start network is still to be made (`need_start`), the checkpoint."""
        checks = []
        if self.imagenet_dir is not None or self.mode == "full":
            checks.append(lambda: check_imagefolder(self.imagenet_dir))
        found = preflight.load_problems(*checks)
        if need_start and self.checkpoint is None and self.pretrain_epochs == 0:
            found.append(_NO_CHECKPOINT.format(arch=self.arch))
        elif need_start and self.checkpoint and not self.checkpoint.startswith(("https://", "http://")):
            path = Path(self.checkpoint).expanduser()
            if not path.is_file():
                found.append(f"checkpoint {path} {'is a folder, not a file' if path.is_dir() else 'not found'}: give "
                             "a RepVGG state dict file (checkpoint, --checkpoint, CHECKPOINT) or an https url")
        return found


def imagenet_config(mode: str = "auto", **overrides) -> ImageNetConfig:
    """The config of a run mode with overrides; `None` overrides mean "the mode's default".

    `imagenet_dir` defaults to `$IMAGENET_DIR`. The folder and the checkpoint are checked when first used (so a
    config, and the launch command built from it, exist before the data do).

    Raises:
        ConfigError: unknown mode, setting, granularity, layer scale or reader; a negative ω; no seeds.
    """
    overrides = {"imagenet_dir": os.environ.get(ENV_IMAGENET_DIR) or None, **{k: v for k, v in overrides.items()
                                                                             if v is not None}}
    return protocol.build_config(ImageNetConfig, "imagenet", mode, overrides)


# ---------------------------------------------------------------------------------------------------------------------
# Stages
# ---------------------------------------------------------------------------------------------------------------------

def data_root(cfg: ImageNetConfig) -> Path:
    """The checked ImageFolder root: `cfg.imagenet_dir`, or in smoke/cpu without one, the generated CIFAR folder."""
    if cfg.imagenet_dir is None and cfg.mode != "full":
        folder = Path(cfg.out_dir) / "imagefolder"
        if train.is_main_process():
            n_classes, per_train, per_val, size = cfg.generated_folder
            make_smoke_imagefolder(folder, n_classes, per_train, per_val, size, root=cfg.data_dir)
        protocol.wait_for_rank0()
        return check_imagefolder(folder)["root"]
    return check_imagefolder(cfg.imagenet_dir)["root"]


def _loaders(cfg: ImageNetConfig, seed: int, device: torch.device, channels_last: bool):
    rank, world, per_process = protocol.per_process_batch(cfg.batch_size)
    root = data_root(cfg)
    sets = [image_folder(root, split, cfg.image_size, train=split == "train", reader=cfg.reader,
                         n_classes=cfg.n_classes, per_class=per)
            for split, per in (("train", cfg.n_train_per_class), ("val", cfg.n_val_per_class))]
    common = dict(device=device, channels_last=channels_last, rank=rank, world_size=world,
                  num_workers=cfg.num_workers)
    return (ImageNetLoader(sets[0], per_process, train=True, seed=seed, **common),
            ImageNetLoader(sets[1], cfg.eval_batch_size, train=False, **common), len(sets[0].classes))


def _input_shape(cfg: ImageNetConfig) -> tuple[int, int, int, int]:
    return (1, 3, cfg.image_size, cfg.image_size)


@preflight.pretrain_stage  # checks before any work; <start_dir>/.lock (other processes wait for it)
def pretrain(cfg: ImageNetConfig, seed: int = 0, progress: bool = True) -> dict:
    """The start of every run: load `cfg.checkpoint`, fuse it to the deploy form, evaluate it, store it.

    Without a checkpoint (smoke/cpu only) the training form is first pre-trained for `pretrain_epochs` on the
    folder and saved as `<out_dir>/pretrain/train_form.pt`, which then goes through the same checkpoint path.
    Skips the work when `<out_dir>/pretrain/result.json` exists (made with the same settings).

    Returns:
        The baseline: accuracies of the deploy (and training) form, NAPL, parameter counts, the checkpoint's form.

    Raises:
        ValueError: no checkpoint and `pretrain_epochs == 0` (the `full` profile needs a pretrained RepVGG-A2), or a
            stored baseline made with other settings.
        ImageNetNotFoundError: see `check_imagefolder`.
    """
    stored = protocol.stored_pretrain(cfg, seed)
    if stored is not None:
        return stored
    out = protocol.start_dir(cfg, seed)
    if cfg.checkpoint is None and cfg.pretrain_epochs == 0:
        raise ConfigError(_NO_CHECKPOINT.format(arch=cfg.arch))
    device, knobs = protocol.device_and_knobs(cfg)
    tcfg = cfg.train_config(PRETRAIN, knobs)
    config.seed_everything(0)
    train_loader, val_loader, n_classes = _loaders(cfg, 0, device, tcfg.channels_last)
    start, history, source = time.time(), None, cfg.checkpoint
    if source is None:
        net = models.repvgg(cfg.arch, n_classes, cifar=False, width_mult=cfg.width_mult).to(device)
        history = train.fit(net, train_loader, None, tcfg, checkpoint=out / "checkpoint.pt", progress=progress,
                            desc="pre-train")
        source = out / "train_form.pt"
        if train.is_main_process():
            train.save_checkpoint_atomic(source, {"model": net.cpu().state_dict()})
        protocol.wait_for_rank0()
    deploy, train_form, form = start_network(load_checkpoint(source, cfg.checkpoint_sha256), cfg.arch,
                                             cfg.width_mult)
    if deploy.linear.out_features < n_classes:
        raise ConfigError(f"the checkpoint {source} has {deploy.linear.out_features} outputs but the folder "
                          f"{n_classes} classes: give a checkpoint trained on these classes, or set n_classes")
    train_eval = train.evaluate(train_form.to(device), val_loader, tcfg.amp_bf16) if train_form is not None else None
    deploy_eval = train.evaluate(deploy.to(device), val_loader, tcfg.amp_bf16)
    result = protocol.stage_record(
        "pretrain", cfg, tcfg, start, device, seed=seed, checkpoint=str(source), checkpoint_form=form,
        test_accuracy_train_form=train_eval["accuracy"] if train_eval else None,
        test_accuracy=deploy_eval["accuracy"], test_loss=deploy_eval["loss"], test_images=deploy_eval["n"],
        napl=paths.napl(deploy.cpu(), _input_shape(cfg)),
        parameters_train_form=models.count_parameters(train_form) if train_form is not None else None,
        parameters_deploy=models.count_parameters(deploy), widths=models.repvgg_widths(cfg.arch, cfg.width_mult),
        history=history)
    return protocol.store_start_network(cfg, deploy, result, seed)


def _load_deploy(cfg: ImageNetConfig) -> nn.Module:
    state = torch.load(Path(cfg.out_dir) / "pretrain" / "deploy.pt", map_location="cpu", weights_only=True)["model"]
    return start_network(state, cfg.arch, cfg.width_mult)[0]


@preflight.posttrain_stage  # checks before any work; <out_dir>/runs/<run>.lock
def post_train(cfg: ImageNetConfig, granularity: str, seed: int, *, omega: float | None = None,
               target: float | None = None, progress: bool = True) -> dict:
    """Linearize the start network with one (granularity, ω, seed); write `<out_dir>/runs/<run_name>.json`.

    The CIFAR protocol's post-training (`protocol.linearize_and_record`) on ImageNet loaders: ReLU -> PReLU (slopes at 0), cross-entropy + ω·L0.5,
    slopes within `freeze_tol` of 1 frozen after every step. Needs `pretrain(cfg)`. Skips a finished run; resumes an
    interrupted one from its epoch checkpoint. Rank 0 writes.

    Returns:
        The result, with the keys of `protocol.linearize_and_record` (test_accuracy is top-1 on the val folder).
    """
    stored = protocol.stored_run(cfg, granularity, seed, omega, target)
    if stored is not None:
        return stored
    device, knobs = protocol.device_and_knobs(cfg)
    tcfg = cfg.train_config("posttrain", knobs)
    config.seed_everything(seed)
    shape = _input_shape(cfg)
    net = linearize.to_prelu(_load_deploy(cfg), granularity, input_shape=shape).to(device)
    train_loader, val_loader, _ = _loaders(cfg, seed, device, tcfg.channels_last)
    return protocol.linearize_and_record(cfg, net, train_loader, val_loader, tcfg, granularity, seed, device,
                                         omega=omega, target=target, input_shape=shape, progress=progress)


@preflight.holds_folder  # every check before any work, then <out_dir>/.lock for the whole sweep
def sweep(cfg: ImageNetConfig, progress: bool = True) -> list[dict]:
    """`pretrain`, then `post_train` every (granularity, ω, seed); `<out_dir>/summary.json` after every run.

    Interrupt it and call it again: finished runs are read back, the unfinished one resumes from its last epoch.
    """
    return protocol.sweep(cfg, pretrain, post_train, progress=progress)


# ---------------------------------------------------------------------------------------------------------------------
# Launching and cost
# ---------------------------------------------------------------------------------------------------------------------

_FLAGS = {"imagenet_dir": "--imagenet-dir", "checkpoint": "--checkpoint", "checkpoint_sha256": "--checkpoint-sha256",
          "out_dir": "--out", "omegas": "--omegas", "seeds": "--seeds", "granularities": "--granularities",
          "num_workers": "--workers"}


def cli_args(cfg: ImageNetConfig) -> list[str]:
    """Command-line arguments that rebuild `cfg` in `main` (only what differs from the mode's profile)."""
    import json

    default = asdict(imagenet_config(cfg.mode, imagenet_dir=cfg.imagenet_dir))
    args, extra = ["--mode", cfg.mode], []
    for key, value in asdict(cfg).items():
        if key == "mode" or value == default[key]:
            continue
        if key in _FLAGS:
            args += [_FLAGS[key], *(str(v) for v in value)] if isinstance(value, (tuple, list)) else [
                _FLAGS[key], str(value)]
        else:
            extra.append(f"{key}={json.dumps(list(value) if isinstance(value, tuple) else value)}")
    if cfg.imagenet_dir and "--imagenet-dir" not in args:  # $IMAGENET_DIR may not reach other nodes
        args += ["--imagenet-dir", cfg.imagenet_dir]
    return args + (["--set", *extra] if extra else [])


def torchrun_command(nproc_per_node: int, nnodes: int = 1, args: list[str] | None = None,
                     rdzv_endpoint: str = "$MASTER_ADDR:29500", launcher: list[str] | None = None) -> list[str]:
    """The torchrun command line for this protocol: `--standalone` on one node, a c10d rendezvous on several.

    `launcher` replaces the word `torchrun`, e.g. `[sys.executable, "-m", "torch.distributed.run"]`.
    """
    nodes = (["--standalone"] if nnodes == 1 else
             [f"--nnodes={nnodes}", "--rdzv-backend=c10d", f"--rdzv-endpoint={rdzv_endpoint}", "--rdzv-id=imagenet06"])
    return [*(launcher or ["torchrun"]), *nodes, f"--nproc-per-node={nproc_per_node}", "-m", "course_lib",
            "imagenet", *(args or [])]


def run_command(command: list[str], env: dict | None = None) -> int:
    """Run `command`, printing its output line by line as it comes (in a notebook too); returns the exit status."""
    import subprocess

    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          env={**os.environ, **(env or {})}) as proc:
        for line in proc.stdout:
            print(line, end="", flush=True)
    return proc.returncode


def count_macs(model: nn.Module, image_size: int = 224) -> int:
    """Multiply-accumulates of one forward pass on a (1, 3, size, size) image, from `FlopCounterMode` (FLOPs / 2).

    RepVGG's paper reports these as "FLOPs": 5.12 G for A2 at 224 px.
    """
    from torch.utils.flop_counter import FlopCounterMode

    param = next(model.parameters())
    was_training = model.training
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model.eval()(torch.zeros(1, 3, image_size, image_size, device=param.device, dtype=param.dtype))
    model.train(was_training)
    return counter.get_total_flops() // 2


@torch.no_grad()
def measure_throughput(model: nn.Module, image_size: int = 224, batch_size: int = 8, steps: int = 3,
                       device: torch.device | str = "cpu", amp_bf16: bool = False,
                       channels_last: bool = False) -> float:
    """Measured forward (inference) images per second of `model` on `device`, after one warm-up batch.

    The model is moved to `device` (and to channels_last when asked) in place and left in eval mode.
    """
    device = torch.device(device)
    layout = torch.channels_last if channels_last else torch.contiguous_format
    model = model.eval().to(device, memory_format=layout)
    x = torch.randn(batch_size, 3, image_size, image_size, device=device).contiguous(memory_format=layout)
    with train.autocast(device, amp_bf16):
        model(x)
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(steps):
            model(x)
        if device.type == "cuda":
            torch.cuda.synchronize()
    return batch_size * steps / (time.perf_counter() - start)


def estimate_cost(cfg: ImageNetConfig, forward_images_per_s: float, n_train: int = IMAGENET_TRAIN_IMAGES,
                  n_val: int = 50_000) -> dict:
    """Device hours of a sweep, estimated from a measured forward throughput.

    Training an image costs about 3 forward passes (forward + backward); evaluation 1.

    Returns:
        {"runs", "train_images", "forward_equivalents", "hours"}: an estimate, not a measurement (data loading,
        communication and the baseline evaluation are ignored).
    """
    runs = len(cfg.granularities) * len(cfg.omegas) * len(cfg.seeds)
    train_images = n_train * cfg.posttrain_epochs * runs
    forwards = 3 * train_images + n_val * runs
    return {"runs": runs, "train_images": train_images, "forward_equivalents": forwards,
            "hours": forwards / forward_images_per_s / 3600}


# ---------------------------------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------------------------------

def parse_args(argv: list[str], prog: str = "python -m course_lib imagenet"
               ) -> tuple[ImageNetConfig, argparse.Namespace]:
    """The config and options of a command line (see `main`); a bad setting exits with one clear message."""
    parser = argparse.ArgumentParser(prog=prog,
                                     description="RepVGG-A2 channel- vs layer-wise linearization on ImageNet "
                                                 "(course_lib.imagenet). Run it under torchrun for several GPUs.")
    parser.add_argument("--mode", default="auto", help="auto|smoke|cpu|full")
    parser.add_argument("--imagenet-dir", default=None, help=f"ImageFolder root (default ${ENV_IMAGENET_DIR})")
    parser.add_argument("--checkpoint", default=None, help="RepVGG state dict: path or https url")
    parser.add_argument("--checkpoint-sha256", default=None)
    parser.add_argument("--out", default=None, help="output folder (default runs/06_imagenet_<mode>)")
    parser.add_argument("--omegas", type=float, nargs="*", default=None)
    parser.add_argument("--seeds", type=int, nargs="*", default=None)
    parser.add_argument("--granularities", nargs="*", default=None, help="channel and/or layer")
    parser.add_argument("--workers", type=int, default=None, help="DataLoader workers per process")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="other ImageNetConfig fields")
    parser.add_argument("--one-run", default=None, metavar="GRANULARITY:KNOB:SEED",
                        help="only the baseline (if needed) and this one post-training run")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    try:
        overrides = protocol.parse_overrides(args.set)
        flags = dict(imagenet_dir=args.imagenet_dir, checkpoint=args.checkpoint,
                     checkpoint_sha256=args.checkpoint_sha256, omegas=args.omegas, seeds=args.seeds,
                     granularities=args.granularities, num_workers=args.workers, out_dir=args.out)
        cfg = imagenet_config(args.mode, **{**flags, **overrides})  # `--set seeds=...` too, not a TypeError
    except ValueError as exc:
        parser.error(str(exc))
    return cfg, args


def main(argv: list[str] | None = None, prog: str = "python -m course_lib imagenet") -> int:
    """`python -m course_lib imagenet [options]` (also under torchrun); see `--help`."""
    import sys

    cfg, args = parse_args(sys.argv[1:] if argv is None else list(argv), prog)
    progress = not args.no_progress
    if args.one_run:
        granularity, seed, omega, target = protocol.parse_one_run(args.one_run)
        pretrain(cfg, seed, progress=progress)
        results = [post_train(cfg, granularity, seed, omega=omega, target=target, progress=progress)]
    else:
        results = sweep(cfg, progress=progress)
    if train.is_main_process():
        for r in results:
            print(f"{run_name_of(r)}: top-1 {r['test_accuracy']:.4f}, "
                  f"NAPL {r['napl']:.2f}, {r['history']['test']['n']} val images")
        print(f"results in {cfg.out_dir}")
    if dist.is_initialized():
        dist.destroy_process_group()
    return 0
