"""The training and evaluation loop: SGD-Nesterov with cosine decay, optional penalty and freezing, checkpoints, DDP.

One loop serves pre-training (cross-entropy) and post-training (cross-entropy + ω·L0.5, slopes frozen after every
step). Speed switches that do not change the maths (bf16 autocast where the hardware has it, channels_last,
torch.compile) are fields of `TrainConfig`. Progress uses `tqdm.auto` and is silent when not interactive.
Checkpoints are written atomically at the end of every epoch, so `fit` resumes an interrupted run where it stopped.
Under `torchrun` (`WORLD_SIZE > 1`) the model is wrapped in DistributedDataParallel; each rank reads its share of
every batch and rank 0 writes the files. Used by `course_lib.experiments`; taught in notebook 04.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from .data import CifarLoader
from .storage import write_atomic

__all__ = ["TrainConfig", "param_groups", "make_optimizer", "cosine_lr", "autocast", "evaluate", "fit",
           "init_distributed", "is_main_process", "save_checkpoint_atomic"]


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings of one training stage (ours where the paper is silent, see DESIGN.md)."""

    epochs: int  # passes over the training set
    optimizer: str = "sgd"  # "sgd" (Nesterov momentum) or "adamw" (decoupled weight decay)
    slope_lr_mult: float = 1.0  # learning rate of PReLU slopes relative to `lr` (ours; the paper is silent)
    lr: float = 0.1  # peak learning rate (per batch of `batch_size`), cosine-decayed to 0 over all steps
    schedule: str = "cosine"  # "cosine" (to 0 over all steps) or "constant" (e.g. while a controller steers)
    momentum: float = 0.9  # SGD momentum
    nesterov: bool = True  # Nesterov momentum
    weight_decay: float = 5e-4  # L2 on conv/linear weights only; never on BN, biases or PReLU slopes
    batch_size: int = 128  # images per optimisation step (summed over DDP ranks)
    eval_batch_size: int = 1000  # evaluation batch; large batches are free (no gradients)
    amp_bf16: bool = False  # bf16 autocast (only where native: CUDA, CPUs with AVX-512 BF16/AMX)
    channels_last: bool = False  # NHWC memory format
    compile: bool = False  # torch.compile the model
    compile_mode: str | None = None  # torch.compile mode: None is its default; e.g. "max-autotune-no-cudagraphs"


def param_groups(model: nn.Module, weight_decay: float, lr: float = 0.1, scale_slopes: bool = True,
                 slope_lr_mult: float = 1.0) -> list[dict]:
    """Optimiser groups: conv/linear weights with weight decay; BN and biases without; PReLU slopes without.

    Slopes (parameters named `alpha`) learn at `slope_lr_mult * lr`. With `scale_slopes`, a slope whose module has
    an `lr_scale` (a layer-wise `LinearizablePReLU`: 1/C) is further multiplied by it (see
    `LinearizablePReLU.lr_scale`).
    """
    scaled = {id(m.alpha): m.lr_scale for m in model.modules()
              if scale_slopes and hasattr(m, "lr_scale") and hasattr(m, "alpha")}
    decay, no_decay, slopes, groups = [], [], [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        if scaled.get(id(p), 1.0) != 1.0:
            groups.append({"params": [p], "weight_decay": 0.0, "lr": lr * slope_lr_mult * scaled[id(p)]})
        elif name.endswith("alpha"):
            slopes.append(p)
        elif p.ndim > 1:
            decay.append(p)
        else:
            no_decay.append(p)
    return [{"params": decay, "weight_decay": weight_decay, "lr": lr},
            {"params": no_decay, "weight_decay": 0.0, "lr": lr},
            {"params": slopes, "weight_decay": 0.0, "lr": lr * slope_lr_mult}, *groups]


def make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """SGD (Nesterov) or AdamW over `param_groups`.

    AdamW normalises every parameter's step, so a tied layer-wise slope already moves like one of its channels:
    the `lr_scale` of layer-wise slopes is applied for SGD only.
    """
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(param_groups(model, cfg.weight_decay, cfg.lr, True, cfg.slope_lr_mult), lr=cfg.lr, momentum=cfg.momentum,
                               nesterov=cfg.nesterov)
    if cfg.optimizer == "adamw":
        groups = param_groups(model, cfg.weight_decay, cfg.lr, scale_slopes=False, slope_lr_mult=cfg.slope_lr_mult)
        return torch.optim.AdamW(groups, lr=cfg.lr, betas=(cfg.momentum, 0.999))
    raise ValueError(f"unknown optimizer {cfg.optimizer!r}; choose sgd or adamw")


def cosine_lr(step: int, total_steps: int) -> float:
    """Multiplier of the peak learning rate at `step`: ½(1 + cos(π·step/total)), from 1 down to 0."""
    return 0.5 * (1.0 + math.cos(math.pi * min(step, total_steps) / max(1, total_steps)))


def autocast(device: torch.device, enabled: bool) -> contextlib.AbstractContextManager:
    """bf16 autocast on `device` when `enabled`, else a no-op."""
    if not enabled:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


# ---------------------------------------------------------------------------------------------------------------------
# Distributed helpers (torchrun sets RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT)
# ---------------------------------------------------------------------------------------------------------------------

def init_distributed() -> tuple[int, int]:
    """Join the process group when launched by torchrun; returns (rank, world_size), (0, 1) otherwise."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size == 1:
        return 0, 1
    if not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group(backend)
    return dist.get_rank(), dist.get_world_size()


def is_main_process() -> bool:
    """True on rank 0 (and when not distributed): the process that writes files."""
    return not dist.is_initialized() or dist.get_rank() == 0


def _all_reduce_sum(values: list[float], device: torch.device) -> list[float]:
    if not dist.is_initialized():
        return values
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()


# ---------------------------------------------------------------------------------------------------------------------
# Evaluation and checkpoints
# ---------------------------------------------------------------------------------------------------------------------

@torch.no_grad()
def evaluate(model: nn.Module, loader: CifarLoader, amp_bf16: bool = False) -> dict[str, float]:
    """Top-1 accuracy and mean cross-entropy over one exact pass of `loader` (all ranks combined)."""
    was_training = model.training
    model.eval()
    correct = loss_sum = count = 0.0
    for x, y in loader:
        with autocast(loader.device, amp_bf16):
            logits = model(x)
        loss_sum += F.cross_entropy(logits.float(), y, reduction="sum").item()
        correct += (logits.argmax(1) == y).sum().item()
        count += len(y)
    model.train(was_training)
    correct, loss_sum, count = _all_reduce_sum([correct, loss_sum, count], loader.device)
    return {"accuracy": correct / count, "loss": loss_sum / count, "n": int(count)}


def save_checkpoint_atomic(path: Path, state: dict) -> None:
    """`torch.save` to a temporary file in the same folder, then rename (never a half-written checkpoint).

    Raises:
        StorageError: the disk is full or the folder not writable; names the file and the free space, and the
            previous checkpoint is untouched (see `storage.write_atomic`).
    """
    write_atomic(path, lambda f: torch.save(state, f))


# ---------------------------------------------------------------------------------------------------------------------
# The loop
# ---------------------------------------------------------------------------------------------------------------------

_CHECK_EVERY = 25  # steps between two reads of the loss sums (host syncs) inside an epoch


def _record_if_finite(sums: torch.Tensor, finite: list[float]) -> bool:
    """Copy the device sums (loss, penalty) into `finite` and return True if they are finite; else leave it."""
    values = sums.tolist()  # the one host sync
    if not all(math.isfinite(v) for v in values):
        return False
    finite[:] = values
    return True


def fit(
    model: nn.Module,
    train_loader: CifarLoader,
    test_loader: CifarLoader | None,
    cfg: TrainConfig,
    *,
    penalty: Callable[[nn.Module], torch.Tensor] | None = None,
    after_step: Callable[[nn.Module, torch.optim.Optimizer], None] | None = None,
    checkpoint: str | Path | None = None,
    progress: bool = True,
    desc: str = "train",
    stop: Callable[[], bool] | None = None,
    stateful: dict | None = None,
) -> dict:
    """Train `model` in place for `cfg.epochs` epochs and return its history.

    Args:
        model: the network (on the loader's device); wrapped in DDP when the process group is initialised.
        train_loader: a training `CifarLoader` (its batch size is the per-rank batch).
        test_loader: evaluated after the last epoch (and never used for any choice), or None.
        cfg: optimisation settings.
        penalty: extra loss term computed on the unwrapped model, e.g. ω·L0.5 (post-training).
        after_step: called after every optimiser step, e.g. freezing near-linear slopes.
        checkpoint: a file to write after every epoch and to resume from when it exists.
        progress: show a tqdm bar (silent anyway when not interactive).
        desc: label of the progress bar.
        stop: asked after every step (after `after_step`); True ends training there, e.g. when a target NAPL is
            reached. The history then says where in "stopped_at" ({"epoch", "step"}); otherwise it is None.
        stateful: objects with `state_dict()`/`load_state_dict()` (e.g. a `targeting.NaplController`) saved in the
            checkpoint next to the model and restored on resume.

    Returns:
        {"epochs": [{"epoch", "train_loss", "penalty", "lr", "time_s"}, ...], "test": {...} or None,
         "train_time_s": seconds of training, "resumed_from_epoch": int, "diverged": True if the loss became
         non-finite (training stopped within `_CHECK_EVERY` steps of it; losses are read from the device only
         that often, so a GPU is not made to wait every step)}
    """
    from tqdm.auto import tqdm

    device = train_loader.device
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = make_optimizer(model, cfg)
    steps_per_epoch = len(train_loader)
    total = cfg.epochs * steps_per_epoch
    if cfg.schedule not in ("cosine", "constant"):
        raise ValueError(f"unknown schedule {cfg.schedule!r}; choose cosine or constant")
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, (lambda s: cosine_lr(s, total)) if cfg.schedule == "cosine" else (lambda s: 1.0))
    history: dict = {"epochs": [], "test": None, "train_time_s": 0.0, "resumed_from_epoch": 0, "diverged": False,
                     "stopped_at": None}
    start_epoch = 0
    ckpt = Path(checkpoint) if checkpoint else None
    if ckpt is not None and ckpt.exists():
        state = torch.load(ckpt, map_location=device, weights_only=False)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        start_epoch, history = state["epoch"], state["history"]
        history["resumed_from_epoch"] = start_epoch
        for name, obj in (stateful or {}).items():
            obj.load_state_dict(state["stateful"][name])

    ddp = dist.is_initialized()
    net = nn.parallel.DistributedDataParallel(model) if ddp else model
    if cfg.compile:
        net = torch.compile(net, mode=cfg.compile_mode)
    net.train()
    for epoch in range(start_epoch, cfg.epochs):
        train_loader.set_epoch(epoch)
        start = time.time()
        # Sums stay on the device: reading a loss (`.item()`) waits for the GPU, so we read them only every
        # _CHECK_EVERY steps and at the end of the epoch. A non-finite loss makes the sum non-finite, so a diverged
        # run still stops (at most _CHECK_EVERY - 1 steps later, when its weights are already non-finite).
        sums = torch.zeros(2, device=device)  # (loss, penalty) summed over this epoch's steps
        finite = [0.0, 0.0]  # the sums at the last check that found them finite
        bar = tqdm(train_loader, desc=f"{desc} epoch {epoch + 1}/{cfg.epochs}", leave=False,
                   disable=not progress or None if is_main_process() else True, mininterval=2.0)
        steps_done = 0
        for step, (x, y) in enumerate(bar, 1):
            steps_done = step
            with autocast(device, cfg.amp_bf16):
                logits = net(x)
            loss = F.cross_entropy(logits.float(), y)
            if penalty is not None:
                extra = penalty(model)
                sums[1] += extra.detach()
                loss = loss + extra
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            if after_step is not None:
                after_step(model, optimizer)
            sums[0] += loss.detach()
            if step % _CHECK_EVERY == 0 and not _record_if_finite(sums, finite):
                history["diverged"] = True  # a diverged run stops here and says so in its history
                break
            if stop is not None and stop():
                history["stopped_at"] = {"epoch": epoch + 1, "step": step}
                break
        if not history["diverged"] and not _record_if_finite(sums, finite):
            history["diverged"] = True
        history["epochs"].append({
            "epoch": epoch + 1,
            "train_loss": finite[0] / max(1, steps_done),
            "penalty": finite[1] / max(1, steps_done),
            "lr": scheduler.get_last_lr()[0],
            "time_s": round(time.time() - start, 2),
        })
        history["train_time_s"] += time.time() - start
        if history["diverged"] or history["stopped_at"]:
            break
        if ckpt is not None and is_main_process():
            save_checkpoint_atomic(ckpt, {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                                          "scheduler": scheduler.state_dict(), "epoch": epoch + 1,
                                          "history": history, "config": asdict(cfg),
                                          "stateful": {k: v.state_dict() for k, v in (stateful or {}).items()}})
    if test_loader is not None:
        history["test"] = evaluate(model, test_loader, cfg.amp_bf16)
    return history
