"""How fast is the course's loop? Training throughput against a textbook PyTorch loop, side by side (`make bench`).

Two loops train the same network from the same initial weights with the same batch (128), the same optimiser
(`train.make_optimizer` on the pre-training settings of `experiments`: SGD-Nesterov, lr 0.1 with cosine decay,
momentum 0.9, weight decay 5e-4 on conv/linear weights) and the same augmentation distribution (pad-4 random crop and
horizontal flip, then `data.NORMALIZATION`):

- **course**: `train.fit` itself (not a copy) on a `data.CifarLoader` cut to the first steps of an epoch: the data
  sit on the device as uint8 and are cropped and flipped as whole batches; the system knobs are those
  `config.system_knobs` picks for a `cpu`-profile pre-training run (15 epochs, 5,850 steps): bf16 autocast and
  channels_last where the hardware has them, torch.compile where it pays. When that includes compile, the loop is
  also timed without it (the "no compile" row: what a run too short for compile gets).
- **textbook**: torchvision's `CIFAR10` dataset, `RandomCrop(32, padding=4)`, `RandomHorizontalFlip`, `ToTensor`,
  `Normalize`, a `DataLoader` with `min(4, cpu count)` persistent workers (pinned memory on CUDA), an eager fp32
  model in NCHW and the usual `zero_grad / backward / step / loss.item()` loop.

Two networks: the plain CIFAR net of notebook 04's `cpu` profile (`plain_cifar_net("A0", 10, 0.125)`, the deploy
form) and ResNet-20, both with channel-wise PReLUs (`linearize.to_prelu`). Warm-up steps, which include
torch.compile's compilation, are not timed; the compile time is reported on its own. Evaluation throughput is
`train.evaluate` (batch 1000, the course's eval loader) against a textbook eval loop at the training batch (128),
each over the test set. Two end-to-end wall times complete the picture: one `smoke` sweep of notebook 04, and one
post-training epoch of the `cpu` profile (timed over its first steps and extrapolated to the 390 steps of an epoch).

The result is printed as a table, written atomically with provenance to `runs/bench/bench.json`, and the last line
is `ratio: X.XX`, the smaller of the two networks' course/textbook training throughput ratios.

    python -m course_lib bench                    # about 1-2 minutes on 2 CPU cores
    python -m course_lib bench --quick            # a few steps, no sweep: checks that everything runs
    python -m course_lib bench --compile on       # force torch.compile (off|on|auto) to see what it buys

On a GPU (`--device cuda`, untested here: no GPU figures exist yet) the same code runs with bf16 autocast,
channels_last and torch.compile (`--compile-mode max-autotune-no-cudagraphs` or `reduce-overhead` to try others),
the data on the GPU, pinned memory for the textbook loader, and timings synchronised with the device. Small CIFAR
nets leave most of a large GPU idle, so a sweep shares one GPU best as several processes, one run each. Start them
all at once: every run starts from one pre-trained checkpoint, which the first process makes while the others wait
for its lock (`<out>/pretrain/.lock`, see `course_lib.preflight`), then read it back:

    for run in channel:0.0005:0 layer:0.0005:0 channel:0.001:0 layer:0.001:0; do
        python -m course_lib cifar --mode full --one-run $run &
    done; wait

Each process holds the lock of its own run (a second process on the same run stops at once) and writes its own
result file; a later `python -m course_lib cifar --mode full` reads them back as finished runs and writes the
summary (a sweep started while `--one-run` processes work in the folder stops at once, and the other way round).
`python -m course_lib gpu-campaign` (`course_lib.campaign`) does all of this in one command within a time budget:
this benchmark on the GPU, then such a sweep in several worker processes. How many processes fit is a matter of GPU
memory and of the CPU cores that feed them (one process per core or two); `make bench ARGS="--device cuda"` measures
one of them.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import os
import pickle
import tempfile
import time
from collections.abc import Callable, Iterator
from itertools import islice
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from . import config, data, experiments, linearize, models, train
from .results import provenance, write_json_atomic

__all__ = ["NETWORKS", "bench_train_config", "textbook_cifar10", "textbook_loader", "course_train", "textbook_train",
           "course_evaluate", "textbook_evaluate", "run_bench", "main"]

# The two networks of the benchmark, built fresh (same seed, so both loops start from the same weights).
NETWORKS: dict[str, Callable[[], nn.Module]] = {
    "plain A0/8": lambda: linearize.to_prelu(models.plain_cifar_net("A0", 10, 0.125), "channel"),
    "resnet20": lambda: linearize.to_prelu(models.cifar_resnet(20), "channel"),
}
_STEPS_PER_EPOCH = 50_000 // 128  # CIFAR-10 training set at batch 128, drop_last
_GPU_NOTE = ("No GPU figures exist yet: the benchmark has only run on CPUs. On CUDA it uses bf16 autocast, "
             "channels_last and torch.compile; share one GPU between runs with several "
             "`python -m course_lib cifar --one-run G:W:S` processes.")


def bench_train_config(knobs: config.SystemKnobs, compile: bool | None = None,
                       compile_mode: str | None = None) -> train.TrainConfig:
    """The pre-training settings of the experiments (`cpu` profile) for one epoch, with `knobs` applied.

    Args:
        knobs: the system knobs of the device.
        compile: override of `knobs.compile` (None: keep it).
        compile_mode: torch.compile mode (None: torch's default).
    """
    tcfg = experiments.cifar_config("cpu").train_config("pretrain", knobs)
    return dataclasses.replace(tcfg, epochs=1, compile=knobs.compile if compile is None else compile,
                               compile_mode=compile_mode)


# ---------------------------------------------------------------------------------------------------------------------
# The textbook side: torchvision dataset + DataLoader + transforms
# ---------------------------------------------------------------------------------------------------------------------

def _local_cifar10_class():
    import torchvision

    class LocalCIFAR10(torchvision.datasets.CIFAR10):
        """torchvision's CIFAR10 without its MD5 check: our folder is written from the npz, not the official files."""

        train_list = [[f"data_batch_{i}", None] for i in range(1, 6)]
        test_list = [["test_batch", None]]
        meta = {"filename": "batches.meta", "key": "label_names", "md5": None}

    return LocalCIFAR10


def _write_torchvision_layout(folder: Path, splits: dict[str, tuple[torch.Tensor, torch.Tensor]]) -> None:
    """Write `cifar-10-batches-py` (5 training batches, test batch, meta) into `folder`, atomically by rename."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=".cifar-"))
    train_x, train_y = splits["train"]
    parts = torch.arange(len(train_y)).tensor_split(5)
    batches = {f"data_batch_{i + 1}": (train_x[p], train_y[p]) for i, p in enumerate(parts)}
    batches["test_batch"] = splits["test"]
    for name, (x, y) in batches.items():  # rows of 3072 uint8: 1024 R, 1024 G, 1024 B, as in the official files
        with open(tmp / name, "wb") as f:
            pickle.dump({"data": x.reshape(len(x), -1).numpy(), "labels": y.tolist()}, f)
    with open(tmp / "batches.meta", "wb") as f:
        pickle.dump({"label_names": list(data.CIFAR10_CLASSES)}, f)
    tmp.chmod(0o755)  # mkdtemp makes it private; the cache is meant to be shared like the results
    os.replace(tmp, folder)


def textbook_cifar10(cache: Path, splits: dict[str, tuple[torch.Tensor, torch.Tensor]], use_found: bool = True,
                     root: str | Path | None = None):
    """torchvision `CIFAR10` datasets (train with crop+flip, test plain) over a `cifar-10-batches-py` folder.

    The folder is the one `data.locate_cifar` finds (searching `root` first), when that is a torchvision folder, else
    one written once from `splits` into `cache` (reused while its image count matches).

    Returns:
        (train dataset, test dataset, the folder used).
    """
    from torchvision import transforms

    found = data.locate_cifar("cifar10", root) if use_found else None
    if found is not None and found.is_dir() and len(splits["train"][1]) == 50_000:
        root = found.parent
    else:
        root = cache / f"n{len(splits['train'][1])}"
        if not (root / "cifar-10-batches-py" / "batches.meta").exists():
            _write_torchvision_layout(root / "cifar-10-batches-py", splits)
    normalize = transforms.Normalize(*data.NORMALIZATION)
    augment = transforms.Compose([transforms.RandomCrop(32, padding=4), transforms.RandomHorizontalFlip(),
                                  transforms.ToTensor(), normalize])
    cls = _local_cifar10_class()
    return (cls(str(root), train=True, transform=augment, download=False),
            cls(str(root), train=False, transform=transforms.Compose([transforms.ToTensor(), normalize]),
                download=False), root / "cifar-10-batches-py")


def textbook_loader(dataset, batch_size: int, device: torch.device, train_split: bool,
                    num_workers: int | None = None) -> torch.utils.data.DataLoader:
    """A `DataLoader` as tutorials write it: `min(4, cpu count)` persistent workers, pinned memory on CUDA."""
    workers = min(4, os.cpu_count() or 1) if num_workers is None else num_workers
    return torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=train_split, drop_last=train_split,
                                       num_workers=workers, persistent_workers=workers > 0,
                                       pin_memory=device.type == "cuda")


def _forever(loader) -> Iterator:
    while True:
        yield from loader


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def textbook_train(model: nn.Module, batches: Iterator, cfg: train.TrainConfig, device: torch.device, steps: int,
                   warmup: int) -> dict:
    """The textbook loop: eager fp32, NCHW, batches copied to the device, `loss.item()` every step.

    Uses the same optimiser and schedule as `train.fit` (`train.make_optimizer`, cosine over the steps run).

    Returns:
        {"images_per_s", "step_ms", "timed_steps", "warmup_steps", "warmup_s"}.
    """
    model.to(device).train()
    optimizer = train.make_optimizer(model, cfg)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: train.cosine_lr(s, warmup + steps))
    running_loss = 0.0
    begin = time.perf_counter()
    for step in range(warmup + steps):
        if step == warmup:
            _sync(device)
            start = time.perf_counter()
        x, y = next(batches)
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        optimizer.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        optimizer.step()
        scheduler.step()
        running_loss += loss.item()
    _sync(device)
    return _timing(steps, warmup, cfg.batch_size, start - begin, time.perf_counter() - start)


def _timing(steps: int, warmup: int, batch: int, warmup_s: float, elapsed: float) -> dict:
    return {"images_per_s": steps * batch / elapsed, "step_ms": 1000 * elapsed / steps, "timed_steps": steps,
            "warmup_steps": warmup, "warmup_s": warmup_s}


# ---------------------------------------------------------------------------------------------------------------------
# The course side: train.fit itself on a loader cut to its first steps
# ---------------------------------------------------------------------------------------------------------------------

class _FirstSteps:
    """The first `steps` batches of each epoch of a `CifarLoader`, with the interface `train.fit` uses."""

    def __init__(self, loader: data.CifarLoader, steps: int):
        self.loader, self.steps, self.device = loader, min(steps, len(loader)), loader.device

    def set_epoch(self, epoch: int) -> None:
        self.loader.set_epoch(epoch)

    def __len__(self) -> int:
        return self.steps

    def __iter__(self) -> Iterator:
        return islice(iter(self.loader), self.steps)


class _StepClock:
    """An `after_step` hook for `train.fit` that notes the time after the warm-up and after the last step.

    It reads the clock (and synchronises a GPU) only twice, so the loop it times keeps its own pace.
    """

    def __init__(self, device: torch.device, warmup: int, total: int,
                 then: Callable[[nn.Module, torch.optim.Optimizer], None] | None = None):
        self.device, self.warmup, self.total, self.then = device, warmup, total, then
        self.step, self.begin, self.marks = 0, time.perf_counter(), {}

    def __call__(self, model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
        if self.then is not None:
            self.then(model, optimizer)
        self.step += 1
        if self.step in (self.warmup, self.total):
            _sync(self.device)
            self.marks[self.step] = time.perf_counter()


def course_train(model: nn.Module, loader: data.CifarLoader, cfg: train.TrainConfig, steps: int, warmup: int, *,
                 penalty: Callable[[nn.Module], torch.Tensor] | None = None,
                 after_step: Callable[[nn.Module, torch.optim.Optimizer], None] | None = None) -> dict:
    """Time `train.fit` over the first `warmup + steps` batches of one epoch; only the last `steps` are timed.

    Returns:
        {"images_per_s", "step_ms", "timed_steps", "warmup_steps", "warmup_s"}; `warmup_s` runs from the call of
        `fit` to the end of the warm-up, compilation included.
    """
    if warmup < 1:
        raise ValueError("the course loop needs at least one warm-up step (it marks the start of the clock)")
    clock = _StepClock(loader.device, warmup, warmup + steps, after_step)
    train.fit(model, _FirstSteps(loader, warmup + steps), None, cfg, penalty=penalty, after_step=clock,
              progress=False)
    if len(clock.marks) < 2:
        raise RuntimeError(f"the training loop stopped after {clock.step} of {warmup + steps} steps")
    timed = clock.marks[warmup + steps] - clock.marks[warmup]
    return _timing(steps, warmup, loader.batch_size, clock.marks[warmup] - clock.begin, timed)


# ---------------------------------------------------------------------------------------------------------------------
# Evaluation
# ---------------------------------------------------------------------------------------------------------------------

def course_evaluate(model: nn.Module, loader: data.CifarLoader, cfg: train.TrainConfig) -> dict:
    """Time one `train.evaluate` pass (the course's eval loader), after one untimed batch of the same shape."""
    first = data.CifarLoader(loader.images[:loader.batch_size], loader.labels[:loader.batch_size],
                             loader.batch_size, train=False, device=loader.device, channels_last=loader.channels_last)
    train.evaluate(model, first, cfg.amp_bf16)  # warm-up: the CPU libraries prepare their kernels per shape
    _sync(loader.device)
    start = time.perf_counter()
    result = train.evaluate(model, loader, cfg.amp_bf16)
    _sync(loader.device)
    elapsed = time.perf_counter() - start
    return {"images_per_s": result["n"] / elapsed, "time_s": elapsed, "batch_size": loader.batch_size,
            "accuracy": result["accuracy"]}


@torch.no_grad()
def textbook_evaluate(model: nn.Module, loader: torch.utils.data.DataLoader, device: torch.device) -> dict:
    """Time one textbook eval pass; the clock starts when the first batch has arrived (workers started) and the
    model has seen one untimed batch (as `course_evaluate`)."""
    model.eval()
    batches = iter(loader)
    first = next(batches)
    model(first[0].to(device))
    _sync(device)
    start = time.perf_counter()
    correct = count = 0
    for x, y in _chain(first, batches):
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        correct += (model(x).argmax(1) == y).sum().item()
        count += len(y)
    elapsed = time.perf_counter() - start
    model.train()
    return {"images_per_s": count / elapsed, "time_s": elapsed, "batch_size": loader.batch_size,
            "accuracy": correct / count}


def _chain(first, rest: Iterator) -> Iterator:
    yield first
    yield from rest


# ---------------------------------------------------------------------------------------------------------------------
# End-to-end wall times
# ---------------------------------------------------------------------------------------------------------------------

def smoke_sweep_seconds(device: torch.device) -> float:
    """Wall time of one `smoke` sweep of notebook 04 (pre-training and every post-training run) in a scratch folder."""
    with tempfile.TemporaryDirectory(prefix="bench-smoke-") as out:
        cfg = experiments.cifar_config("smoke", out_dir=out, device=str(device))
        start = time.perf_counter()
        experiments.sweep(cfg, progress=False)
        return time.perf_counter() - start


def posttrain_epoch(splits: dict, device: torch.device, steps: int, warmup: int) -> dict:
    """One post-training epoch of the `cpu` profile's net on the full training set, timed over `steps` steps.

    The same pieces as `experiments.post_train`: channel-wise PReLUs, the `cpu` profile's post-training config,
    ω·L0.5 and freezing after every step (ω = the profile's starting ω; a step costs the same for any ω). The weights
    are freshly initialised instead of pre-trained, which changes nothing in the cost of a step.
    """
    cfg = experiments.cifar_config("cpu")
    knobs = config.system_knobs(device, steps=cfg.posttrain_epochs * _STEPS_PER_EPOCH)
    tcfg = dataclasses.replace(cfg.train_config("posttrain", knobs), epochs=1)
    torch.manual_seed(0)
    net = linearize.to_prelu(models.plain_cifar_net(cfg.arch, 10, cfg.width_mult), "channel").to(device)
    omega = cfg.omega_start
    loader = data.CifarLoader(*splits["train"], cfg.batch_size, train=True, device=device, seed=0,
                              channels_last=tcfg.channels_last)
    timing = course_train(net, loader, tcfg, steps, warmup,
                          penalty=lambda m: omega * linearize.l05_penalty(m, layer_scale=cfg.layer_scale),
                          after_step=lambda m, opt: linearize.freeze_near_linear(m, cfg.freeze_tol, opt))
    steps_per_epoch = len(splits["train"][1]) // cfg.batch_size
    return {**timing, "steps_per_epoch": steps_per_epoch, "extrapolated": True,
            "epoch_s": timing["step_ms"] / 1000 * steps_per_epoch, "train_config": dataclasses.asdict(tcfg)}


# ---------------------------------------------------------------------------------------------------------------------
# The benchmark
# ---------------------------------------------------------------------------------------------------------------------

def run_bench(*, steps: int = 20, warmup: int = 3, device: str = "auto", compile: str = "auto",
              compile_mode: str | None = None, eval_images: int | None = None, sweep: bool = True,
              posttrain_steps: int = 20, subset: str | None = None, workers: int | None = None,
              cache: str | Path = "runs/bench/cifar", uncompiled: bool = True, data_dir: str | Path | None = None,
              log: Callable[[str], None] = print) -> dict:
    """Measure both loops on both networks, evaluation, and the two wall times; return the result dict.

    Args:
        steps: timed training steps per loop and network.
        warmup: untimed steps before them (compilation happens here).
        device: "auto", "cpu", "cuda", ...
        compile: "auto" (what `config.system_knobs` chooses for a `cpu`-profile pre-training run), "on" or "off".
        compile_mode: torch.compile mode (None: default).
        eval_images: test images per evaluation pass (None: all 10,000).
        sweep: time one `smoke` sweep of notebook 04 (the longest part).
        posttrain_steps: timed steps of the post-training epoch estimate (0: skip it).
        subset: None for the full CIFAR-10, "lossless" for the 4,000-image subset (tests).
        workers: DataLoader workers of the textbook loop (None: min(4, cpu count)).
        cache: folder for the torchvision layout written from the npz files.
        uncompiled: when the course loop compiles, also time it without compiling (reported, not in the ratio).
        data_dir: a folder searched first for CIFAR-10 (any form `data.load_cifar` reads, a compact copy too).
        log: where progress lines go.
    """
    dev = config.select_device(device)
    load_start = os.getloadavg()
    pre_steps = experiments.cifar_config("cpu").pretrain_epochs * _STEPS_PER_EPOCH  # what `auto` decides for
    knobs = config.system_knobs(dev, steps=pre_steps)
    tcfg = bench_train_config(knobs, {"auto": None, "on": True, "off": False}[compile], compile_mode)
    splits = {split: data.load_cifar("cifar10", split, root=data_dir, subset=subset) for split in ("train", "test")}
    if eval_images is not None:
        splits_eval = tuple(t[:eval_images] for t in splits["test"])
    else:
        splits_eval = splits["test"]
    tv_train, tv_test, tv_folder = textbook_cifar10(Path(cache), splits, use_found=subset is None, root=data_dir)
    if eval_images is not None:
        tv_test = torch.utils.data.Subset(tv_test, range(min(eval_images, len(tv_test))))
    tv_batches = _forever(textbook_loader(tv_train, tcfg.batch_size, dev, True, workers))
    tv_eval = textbook_loader(tv_test, tcfg.batch_size, dev, False, workers)
    course_loader = data.CifarLoader(*splits["train"], tcfg.batch_size, train=True, device=dev, seed=0,
                                     channels_last=tcfg.channels_last)
    course_eval = data.CifarLoader(*splits_eval, tcfg.eval_batch_size, train=False, device=dev,
                                   channels_last=tcfg.channels_last)
    log(f"device {dev}, {torch.get_num_threads()} threads, knobs {knobs}, compile={tcfg.compile}, "
        f"textbook workers {tv_eval.num_workers}, data {tv_folder}")
    nets = {}
    for name, build in NETWORKS.items():
        torch.manual_seed(0)
        start_net = build()
        row = {"parameters": models.count_parameters(start_net)}
        textbook_net = copy.deepcopy(start_net)
        row["textbook"] = textbook_train(textbook_net, tv_batches, tcfg, dev, steps, warmup)
        course_net = copy.deepcopy(start_net).to(dev)
        row["course"] = course_train(course_net, course_loader, tcfg, steps, warmup)
        row["compile_s"] = (max(0.0, row["course"]["warmup_s"] - warmup * row["course"]["step_ms"] / 1000)
                            if tcfg.compile else None)
        row["ratio"] = row["course"]["images_per_s"] / row["textbook"]["images_per_s"]
        if tcfg.compile and uncompiled:  # what a run too short for compile gets (a smoke run, today's experiments)
            eager = course_train(copy.deepcopy(start_net).to(dev), course_loader,
                                 dataclasses.replace(tcfg, compile=False), steps, warmup)
            row["course_uncompiled"] = {**eager, "ratio": eager["images_per_s"] / row["textbook"]["images_per_s"]}
        row["eval"] = {"textbook": textbook_evaluate(textbook_net, tv_eval, dev),
                       "course": course_evaluate(course_net, course_eval, tcfg)}
        row["eval"]["ratio"] = row["eval"]["course"]["images_per_s"] / row["eval"]["textbook"]["images_per_s"]
        nets[name] = row
        log(f"{name}: course {row['course']['images_per_s']:.0f} img/s, textbook "
            f"{row['textbook']['images_per_s']:.0f} img/s, ratio {row['ratio']:.2f}")
    result = {
        "about": "Training/eval throughput of the course's loop vs a textbook PyTorch loop; python -m course_lib bench",
        "settings": {"steps": steps, "warmup": warmup, "batch_size": tcfg.batch_size,
                     "course_eval_batch": tcfg.eval_batch_size, "textbook_eval_batch": tcfg.batch_size,
                     "eval_images": len(splits_eval[1]), "train_images": len(splits["train"][1]),
                     "textbook_workers": tv_eval.num_workers, "device": str(dev),
                     "torch_threads": torch.get_num_threads(), "textbook_data": str(tv_folder), "subset": subset},
        "knobs": dataclasses.asdict(knobs),
        "knobs_chosen_for_steps": pre_steps,
        "train_config": dataclasses.asdict(tcfg),
        "nets": nets,
        "ratio": min(row["ratio"] for row in nets.values()),
        "smoke_sweep_s": None,
        "posttrain_epoch_cpu": None,
    }
    if posttrain_steps > 0:
        log("timing a post-training epoch of the cpu profile ...")
        result["posttrain_epoch_cpu"] = posttrain_epoch(splits, dev, posttrain_steps, warmup)
    if sweep:
        log("timing one smoke sweep of notebook 04 ...")
        result["smoke_sweep_s"] = smoke_sweep_seconds(dev)
    result["load_average"] = {"start": load_start, "end": os.getloadavg()}
    result["gpu_note"] = _GPU_NOTE if dev.type != "cuda" else None
    result["provenance"] = provenance(dev)
    return result


def format_table(result: dict) -> str:
    """The benchmark as a plain-text table (what `main` prints)."""
    lines = [f"{'net':12s} {'loop':9s} {'train img/s':>11s} {'ms/step':>8s} {'eval img/s':>10s} {'eval batch':>10s}"]
    for name, row in result["nets"].items():
        for loop in ("textbook", "course"):
            t, e = row[loop], row["eval"][loop]
            lines.append(f"{name:12s} {loop:9s} {t['images_per_s']:11.0f} {t['step_ms']:8.1f} "
                         f"{e['images_per_s']:10.0f} {e['batch_size']:10d}")
        compiled = f", compile {row['compile_s']:.1f} s (not timed)" if row["compile_s"] is not None else ""
        lines.append(f"{name:12s} {'ratio':9s} {row['ratio']:11.2f} {'':8s} {row['eval']['ratio']:10.2f}{compiled}")
        if "course_uncompiled" in row:
            u = row["course_uncompiled"]
            lines.append(f"{name:12s} {'no compile':9s} {u['images_per_s']:11.0f} {u['step_ms']:8.1f} "
                         f"{'':10s} {'':10s} ratio {u['ratio']:.2f}")
    s = result["settings"]
    lines.append(f"({s['steps']} timed steps after {s['warmup']} warm-up steps, batch {s['batch_size']}, "
                 f"{s['torch_threads']} threads, {s['textbook_workers']} DataLoader workers, "
                 f"eval over {s['eval_images']} test images, device {s['device']})")
    post = result["posttrain_epoch_cpu"]
    if post is not None:
        lines.append(f"post-training epoch, cpu profile: {post['epoch_s']:.1f} s (extrapolated from "
                     f"{post['timed_steps']} of {post['steps_per_epoch']} steps, {post['step_ms']:.1f} ms/step)")
    if result["smoke_sweep_s"] is not None:
        lines.append(f"smoke sweep of notebook 04: {result['smoke_sweep_s']:.1f} s wall time")
    if result["gpu_note"]:
        lines.append(result["gpu_note"])
    return "\n".join(lines)


def main(argv: list[str] | None = None, prog: str = "python -m course_lib bench") -> int:
    """`python -m course_lib bench [options]`; see `--help`."""
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=20, help="timed training steps per loop and network")
    parser.add_argument("--warmup", type=int, default=3, help="untimed warm-up steps (compilation happens here)")
    parser.add_argument("--device", default="auto", help="auto|cpu|cuda|...")
    parser.add_argument("--compile", choices=("auto", "on", "off"), default="auto",
                        help="torch.compile of the course loop (auto: config.system_knobs decides)")
    parser.add_argument("--compile-mode", default=None, help="torch.compile mode, e.g. max-autotune-no-cudagraphs")
    parser.add_argument("--eval-images", type=int, default=None, help="test images per eval pass (default all)")
    parser.add_argument("--no-sweep", action="store_true", help="skip the smoke-sweep wall time")
    parser.add_argument("--posttrain-steps", type=int, default=20, help="timed post-training steps (0: skip)")
    parser.add_argument("--workers", type=int, default=None, help="textbook DataLoader workers (min(4, cpus))")
    parser.add_argument("--subset", default=None, help="lossless: the 4,000-image CIFAR-10 subset (for tests)")
    parser.add_argument("--quick", action="store_true",
                        help="a check that everything runs: at most 3 steps, 1 warm-up, 1,000 eval images, no sweep")
    parser.add_argument("--out", default="runs/bench/bench.json", help="result file")
    parser.add_argument("--cache", default=None, help="folder for the torchvision layout (default next to --out)")
    args = parser.parse_args(argv)
    if args.quick:
        args.steps, args.warmup, args.no_sweep = min(args.steps, 3), min(args.warmup, 1), True
        args.eval_images = args.eval_images or 1000
        args.posttrain_steps = min(args.posttrain_steps, 3)
    result = run_bench(steps=args.steps, warmup=args.warmup, device=args.device, compile=args.compile,
                       compile_mode=args.compile_mode, eval_images=args.eval_images, sweep=not args.no_sweep,
                       posttrain_steps=args.posttrain_steps, subset=args.subset, workers=args.workers,
                       cache=args.cache or Path(args.out).parent / "cifar", uncompiled=not args.quick)
    write_json_atomic(args.out, result)
    print(format_table(result))
    print(f"written to {args.out}")
    print(f"ratio: {result['ratio']:.2f}")
    return 0

