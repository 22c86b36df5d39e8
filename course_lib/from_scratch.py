"""The question the paper starts from: trained from scratch with the same recipe, does a ResNet beat its plain twin?

For every depth and seed of the config, `train_net` trains `models.cifar_resnet(depth)` and its plain twin
(`plain=True`: the same layers and parameter names, no shortcuts) with the same recipe: SGD with Nesterov momentum
0.9, peak learning rate 0.1 decayed by a cosine, weight decay 5e-4 on conv/linear weights, batch 128, pad-4 crop and
flip augmentation (`train.TrainConfig` defaults and `data.CifarLoader`, as in He et al. 2016 except for the cosine
schedule). A seed fixes the initialisation RNG state, the data order and every augmentation draw, so the ResNet and
the plain net of one seed see exactly the same batches: their accuracies are paired by seed. bf16 autocast and
channels_last are used where the machine has native bf16 (`config.system_knobs`, as in `experiments`); the maths is
the same either way.

Each trained net is stored as `<out_dir>/<net>-seed<s>/model.pt` (a plain state dict of `cifar_resnet(depth,
plain=...)`; net names `resnet20`, `plain20`, `resnet56`, ...) and `result.json` (test accuracy and loss, per-epoch
training loss and test accuracy, config, seed, wall time, provenance). A stored result made with the same defining
settings is reused, an interrupted net resumes from its epoch checkpoint (`train.fit`). `summarize` gives each net's
mean accuracy with a 95% t-interval and the ResNet - plain difference paired by seed (`judging.paired_interval`);
`reading` says it in one line per depth, with its scale. Sizes per run mode: `profiles.TABLES["from-scratch"]`.

    python -m course_lib from-scratch --mode smoke|cpu|full [--out DIR]

Taught at the opening of notebook 01. Ours, not the paper's: the paper sidesteps trainability (it linearizes an
already-trained plain net); this module measures the trainability gap it sidesteps.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from . import config, experiments, judging, locks, models, outdir, protocol, train
from .data import DataNotFoundError
from .protocol import PRETRAIN, defines, setting
from .results import REFERENCE_DIR, read_json, write_json_atomic

__all__ = ["FromScratchConfig", "REFERENCE", "from_scratch_config", "net_name", "nets", "train_net", "run",
           "load_results", "load_trained", "summarize", "reading", "export_reference", "reference_matches",
           "expected_time", "use_reference", "reference_results", "main"]

TABLE = "from-scratch"  # its profile table
REFERENCE = "from_scratch_cpu"  # data/reference/<REFERENCE>/: the stored cpu run
STAGE = PRETRAIN  # one stage: training from scratch (its fields are marked as defining `PRETRAIN`)


@dataclass(frozen=True)
class FromScratchConfig(protocol.MarkedConfig):
    """Everything that defines a from-scratch comparison; stored in every result file. Build it with
    `from_scratch_config(mode, **overrides)` (values from `profiles`)."""

    mode: str = setting()  # run mode this config was built for: smoke | cpu | full
    depths: tuple[int, ...] = setting()  # CIFAR ResNet depths 6n + 2; each trains a ResNet and its plain twin
    seeds: tuple[int, ...] = setting()  # one ResNet and one plain net per seed and depth, paired by seed
    dataset: str = defines(STAGE)  # cifar10 | cifar100
    epochs: int = defines(STAGE)  # passes over the training images
    n_train: int | None = defines(STAGE)  # training images (the first n; None: all 50,000)
    n_test: int | None = defines(STAGE)  # test images of the final accuracy (None: all 10,000)
    curve_n_test: int | None = defines(STAGE)  # test images of the per-epoch accuracy curve (the first n; None: n_test)
    batch_size: int = defines(STAGE)  # images per SGD step
    lr: float = defines(STAGE)  # peak learning rate, cosine-decayed to 0 over all steps
    momentum: float = defines(STAGE)  # Nesterov momentum
    weight_decay: float = defines(STAGE)  # on conv/linear weights only
    data_dir: str | None = defines(STAGE)  # extra folder searched first for the data
    eval_batch_size: int = setting()  # images per evaluation step (same result)
    out_dir: str = setting()  # where nets and results go
    device: str = setting()  # "auto" | "cpu" | "cuda" | ...
    amp_bf16: bool | None = setting()  # None: config.system_knobs decides for the device
    channels_last: bool | None = setting()  # None: config.system_knobs decides
    compile: bool | None = setting()  # None: config.system_knobs decides

    def problems(self) -> list[str]:
        """Everything wrong with this config, one sentence each (empty when it is valid)."""
        found = super().problems()
        if self.dataset not in experiments.DATASETS:
            found.append(f"unknown dataset {self.dataset!r}; choose one of {list(experiments.DATASETS)}")
        depths = self.depths if isinstance(self.depths, tuple) else ()
        bad = [d for d in depths if not isinstance(d, int) or d < 8 or (d - 2) % 6]
        if bad:
            found.append(f"unknown depth {bad[0]!r}: a CIFAR ResNet has depth 6n + 2 (8, 20, 32, 44, 56, 110)")
        if not depths or not self.seeds:
            found.append("give at least one depth and one seed")
        if not isinstance(self.epochs, int) or self.epochs < 1:
            found.append(f"epochs must be >= 1, got {self.epochs!r}")
        if not isinstance(self.lr, (int, float)) or not self.lr > 0:
            found.append(f"lr must be a number > 0, got {self.lr!r}")
        if isinstance(self.curve_n_test, int) and self.curve_n_test < 1:
            found.append(f"curve_n_test must be >= 1 (or null: n_test), got {self.curve_n_test!r}")
        return found


def from_scratch_config(mode: str = "auto", **overrides) -> FromScratchConfig:
    """The config of a run mode (`profiles.TABLES["from-scratch"]`), with overrides; None means "the mode's default".

    Raises:
        ConfigError: an unknown mode or setting name, an unknown depth, or any value the config's checks refuse.
    """
    return protocol.build_config(FromScratchConfig, TABLE, mode, overrides)


def net_name(depth: int, plain: bool) -> str:
    """`resnet20`, `plain20`, `resnet56`, ...: the folder and label of one network."""
    return f"{'plain' if plain else 'resnet'}{depth}"


def nets(cfg: FromScratchConfig) -> list[tuple[int, bool, int]]:
    """Every (depth, plain, seed) of the config, seed by seed, each ResNet just before its plain twin (an interrupted
    run has finished pairs)."""
    return [(d, plain, s) for s in cfg.seeds for d in cfg.depths for plain in (False, True)]


def _folder(cfg: FromScratchConfig, depth: int, plain: bool, seed: int) -> Path:
    return Path(cfg.out_dir) / f"{net_name(depth, plain)}-seed{seed}"


def _num_classes(cfg: FromScratchConfig) -> int:
    return 10 if cfg.dataset == "cifar10" else 100


class _EpochCurve:
    """`train.fit`'s `stop` hook that never stops: it evaluates the test accuracy after every epoch. Its state goes
    into fit's checkpoint (`stateful`), so a resumed run keeps the curve of the epochs before."""

    def __init__(self, net: torch.nn.Module, loader, steps_per_epoch: int, amp_bf16: bool):
        self.net, self.loader, self.steps_per_epoch, self.amp_bf16 = net, loader, steps_per_epoch, amp_bf16
        self.steps, self.accuracy = 0, []

    def __call__(self) -> bool:
        self.steps += 1
        if self.steps % self.steps_per_epoch == 0:
            self.accuracy.append(train.evaluate(self.net, self.loader, self.amp_bf16)["accuracy"])
        return False

    def state_dict(self) -> dict:
        return {"steps": self.steps, "accuracy": list(self.accuracy)}

    def load_state_dict(self, state: dict) -> None:
        self.steps, self.accuracy = state["steps"], list(state["accuracy"])


def _stored(cfg: FromScratchConfig, depth: int, plain: bool, seed: int) -> dict | None:
    path = _folder(cfg, depth, plain, seed) / "result.json"
    return protocol.reuse_if_same(read_json(path), cfg, STAGE) if path.exists() else None


def train_net(cfg: FromScratchConfig, depth: int, plain: bool, seed: int, progress: bool = True) -> dict:
    """Train one network from scratch (or read back its stored result) and write `model.pt` and `result.json`.

    Returns:
        The result: test accuracy and loss on `n_test` images, the per-epoch curve (training loss, test accuracy on
        the first `curve_n_test` test images, learning rate), parameter count, training history, wall time,
        provenance.

    Raises:
        StoredResultError: the folder holds a result made with other settings (nothing is overwritten).
    """
    stored = _stored(cfg, depth, plain, seed)
    if stored is not None:
        return stored
    folder, name = _folder(cfg, depth, plain, seed), net_name(depth, plain)
    steps_per_epoch = (cfg.n_train or 50_000) // cfg.batch_size
    device, knobs = protocol.device_and_knobs(cfg, cfg.epochs * steps_per_epoch)
    tcfg = train.TrainConfig(epochs=cfg.epochs, lr=cfg.lr, momentum=cfg.momentum, nesterov=True,
                             weight_decay=cfg.weight_decay, batch_size=cfg.batch_size,
                             eval_batch_size=cfg.eval_batch_size,
                             **{k: getattr(knobs, k) if getattr(cfg, k) is None else getattr(cfg, k)
                                for k in ("amp_bf16", "channels_last", "compile")})
    config.seed_everything(seed)  # same seed: same initial weights for both twins (same parameters, same order)
    net = models.cifar_resnet(depth, _num_classes(cfg), plain=plain).to(device)
    train_loader, test_loader = experiments._loaders(cfg, seed, device, tcfg.channels_last)
    curve_loader = test_loader
    if cfg.curve_n_test is not None and cfg.curve_n_test < len(test_loader.labels):
        curve_loader = type(test_loader)(test_loader.images[:cfg.curve_n_test], test_loader.labels[:cfg.curve_n_test],
                                         cfg.eval_batch_size, train=False, device=device,
                                         channels_last=tcfg.channels_last)
    curve = _EpochCurve(net, curve_loader, len(train_loader), tcfg.amp_bf16)
    start = time.time()
    history = train.fit(net, train_loader, test_loader, tcfg, checkpoint=folder / "checkpoint.pt", progress=progress,
                        desc=f"{name} seed {seed}", stop=curve, stateful={"curve": curve})
    epochs = [{"epoch": e["epoch"], "train_loss": e["train_loss"], "test_accuracy": a, "lr": e["lr"]}
              for e, a in zip(history["epochs"], curve.accuracy)]
    result = protocol.stage_record(
        "from_scratch", cfg, tcfg, start, device, net=name, depth=depth, plain=plain, seed=seed,
        test_accuracy=history["test"]["accuracy"], test_loss=history["test"]["loss"], n_test=history["test"]["n"],
        curve_n_test=len(curve_loader.labels), curve=epochs, diverged=history["diverged"],
        parameters=models.count_parameters(net), train_time_s=round(history["train_time_s"], 1), history=history)
    state = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
    train.save_checkpoint_atomic(folder / "model.pt", state)  # the weights first: result.json marks a finished net
    write_json_atomic(folder / "result.json", result)
    (folder / "checkpoint.pt").unlink(missing_ok=True)
    return result


def run(cfg: FromScratchConfig, progress: bool = True) -> list[dict]:
    """Train (or read back) every net of `cfg` (`nets`), rewriting `<out_dir>/summary.json` after each; returns their
    results (`summarize` them). Interrupt it at any time and call it again: finished nets are read back, the
    unfinished one resumes.

    Raises:
        DataNotFoundError / ConfigError: no CIFAR data, or fewer images than asked for (before any work).
        InUseError: another live process is running in the same out dir.
        StoredResultError: the out dir holds results made with other settings.
    """
    from tqdm.auto import tqdm

    experiments.check_data(cfg)
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with locks.hold(out / ".lock", "a from-scratch comparison", advice="Wait for it, or choose another out dir."):
        results = []
        for depth, plain, seed in tqdm(nets(cfg), desc="from scratch", disable=not progress or None):
            results.append(train_net(cfg, depth, plain, seed, progress=progress))
            write_json_atomic(out / "summary.json", summarize(results))
    return results


def load_results(out_dir: str | Path) -> list[dict]:
    """Every finished net's result under `out_dir` (`<net>-seed<s>/result.json`), sorted by folder."""
    return [read_json(p) for p in sorted(Path(out_dir).glob("*-seed*/result.json"))]


def load_trained(out_dir: str | Path, depth: int, plain: bool, seed: int) -> torch.nn.Module:
    """A trained net of a finished run, on the CPU, in eval mode.

    Raises:
        DataNotFoundError: its `model.pt` is not there; says which command makes it.
    """
    path = Path(out_dir) / f"{net_name(depth, plain)}-seed{seed}" / "model.pt"
    if not path.exists():
        raise DataNotFoundError(f"no trained net at {path}: run `python -m course_lib from-scratch --mode cpu "
                                f"--out {out_dir}` first (the stored reference keeps only the JSON files)")
    net = models.cifar_resnet(depth, plain=plain)
    models.pretrained.load_state_dict_strict(net, torch.load(path, map_location="cpu", weights_only=True))
    return net.eval()


def summarize(results: list[dict]) -> dict:
    """Per net (e.g. `resnet20`): its seeds, accuracies and mean with a 95% t-interval (`judging.paired_interval`
    of the accuracies: the one-sample t-interval); per depth: the ResNet - plain difference of test accuracy, paired
    by seed, with its 95% interval, and `judging.clarity` of it. Diverged nets are listed and left out."""
    ok = [r for r in results if not r.get("diverged")]
    per_net = {}
    for depth, plain in sorted({(r["depth"], r["plain"]) for r in ok}):
        name = net_name(depth, plain)
        group = sorted((r for r in ok if r["net"] == name), key=lambda r: r["seed"])
        per_net[name] = {"depth": depth, "plain": plain, "seeds": [r["seed"] for r in group],
                         "accuracy": judging.paired_interval(r["test_accuracy"] for r in group),
                         "train_loss_final": [r["curve"][-1]["train_loss"] if r["curve"] else None for r in group]}
    gaps = []
    for depth in sorted({r["depth"] for r in ok}):
        by = {(r["plain"], r["seed"]): r for r in ok if r["depth"] == depth}
        seeds = sorted(s for plain, s in by if not plain and (True, s) in by)
        interval = judging.paired_interval(by[(False, s)]["test_accuracy"] - by[(True, s)]["test_accuracy"]
                                           for s in seeds)
        gaps.append({"depth": depth, "seeds": seeds, "gap": interval, "clear": judging.clarity(interval)})
    return {"kind": "from_scratch_summary", "config": ok[0]["config"] if ok else None, "nets": per_net, "gaps": gaps,
            "n_nets": len(results), "diverged": [f"{r['net']}-seed{r['seed']}" for r in results if r.get("diverged")],
            "wall_time_s": round(sum(r["wall_time_s"] for r in results), 1)}


def _points(interval: dict) -> str:
    if interval["low"] is None:
        return f"{100 * interval['mean']:+.2f} (one pair: no interval)"
    return f"{100 * interval['mean']:+.2f} [{100 * interval['low']:+.2f}, {100 * interval['high']:+.2f}]"


def _accuracy(name: str, interval: dict) -> str:
    if interval["low"] is None:
        return f"{name} {100 * interval['mean']:.2f}%"
    return f"{name} {100 * interval['mean']:.2f}% [{100 * interval['low']:.2f}, {100 * interval['high']:.2f}]"


def reading(summary: dict) -> str:
    """The summary in words, one line per depth: scale (depth, epochs, images, nets, mode), each net's accuracy
    with its 95% interval, the paired gap and whether its interval excludes 0. Every number comes from `summary`."""
    cfg = summary.get("config")
    if not cfg:
        return "No finished nets: nothing to read."
    images = f"{cfg['n_train']:,}" if cfg.get("n_train") else "all 50,000"
    tests = f"{cfg['n_test']:,}" if cfg.get("n_test") else "all 10,000"
    words = {1: "the interval excludes 0: the ResNet is clearly ahead",
             -1: "the interval excludes 0: the plain net is clearly ahead",
             0: "the interval holds 0: no clear gap at this scale"}
    lines = []
    for g in summary["gaps"]:
        d = g["depth"]
        accs = "; ".join(_accuracy(n, summary["nets"][n]["accuracy"])
                         for n in (net_name(d, False), net_name(d, True)) if n in summary["nets"])
        verdict = words[g["clear"]] if g["gap"]["low"] is not None else "one pair: no interval"
        if not judging.can_judge(cfg["mode"]):
            verdict += " (smoke mode tests the code and judges nothing)"
        lines.append(f"Depth {d}, {cfg['dataset']} ({images} training images, {tests} test images), {cfg['epochs']} "
                     f"epoch(s), {len(g['seeds'])} seed(s) = {2 * len(g['seeds'])} nets trained from scratch, "
                     f"{cfg['mode']} mode: {accs}; ResNet - plain {_points(g['gap'])} accuracy points, paired by "
                     f"seed (95% interval; per seed {', '.join(f'{100 * d:+.2f}' for d in g['gap']['diffs'])}): "
                     f"{verdict}.")
    if summary.get("diverged"):
        lines.append(f"Diverged (left out): {', '.join(summary['diverged'])}.")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------------------------
# The stored reference (result files only, no weights)
# ---------------------------------------------------------------------------------------------------------------------

def export_reference(out_dir: str | Path, name: str = REFERENCE, reference_dir: str | Path = REFERENCE_DIR) -> Path:
    """Store a finished run as a reference, `<reference_dir>/<name>/`: every `<net>-seed<s>/result.json` (no weights)
    and `summary.json`."""
    dest = Path(reference_dir) / name
    results = load_results(out_dir)
    for r in results:
        write_json_atomic(dest / f"{r['net']}-seed{r['seed']}" / "result.json", r)
    write_json_atomic(dest / "summary.json", summarize(results))
    return dest


def reference_results(name: str = REFERENCE, reference_dir: str | Path = REFERENCE_DIR) -> list[dict]:
    """The result files of the stored reference `name` (empty when there is none)."""
    return load_results(Path(reference_dir) / name)


def reference_matches(cfg: FromScratchConfig, name: str = REFERENCE, reference_dir: str | Path = REFERENCE_DIR) -> bool:
    """Whether the stored reference `name` holds every net of `cfg`, each made with its defining settings."""
    stored = {(r["depth"], r["plain"], r["seed"]): r for r in reference_results(name, reference_dir)}
    return all(key in stored and outdir.same_settings(stored[key], cfg, STAGE) for key in nets(cfg))


def expected_time(cfg: FromScratchConfig, stored: bool, name: str = REFERENCE,
                  reference_dir: str | Path = REFERENCE_DIR) -> str:
    """What `run(cfg)` will take, in words, for a notebook's banner: seconds when the stored reference was copied in
    (`stored`), else the number of nets to train and what the stored reference took."""
    if stored:
        return "seconds: the stored reference matches these settings"
    if cfg.mode == "smoke":
        return "~20 s: tiny nets"
    took = sum(r["wall_time_s"] for r in reference_results(name, reference_dir)) / 60
    return f"{len(nets(cfg))} nets to train (the stored {name} run took {took:.0f} min on one CPU thread)"


def use_reference(cfg: FromScratchConfig, name: str = REFERENCE, reference_dir: str | Path = REFERENCE_DIR) -> bool:
    """Copy the stored reference's result files into `cfg.out_dir` when it matches `cfg` (`reference_matches`), so
    that `run(cfg)` reads every net back in seconds instead of training it; files already there are kept. Returns
    whether it did. (Only the JSON files: `load_trained` needs a run that kept its weights.)"""
    if not reference_matches(cfg, name, reference_dir):
        return False
    protocol.copy_missing(Path(reference_dir) / name, Path(cfg.out_dir), ("*-seed*/result.json",))
    return True


# ---------------------------------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------------------------------

def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    """`python -m course_lib from-scratch --mode cpu [--out DIR] [--depths 20 56] [--seeds 0 1 2] [--set K=V ...]`:
    train every net, print the reading; `--export NAME` also stores the result files under data/reference/NAME/."""
    parser = argparse.ArgumentParser(prog=prog, description="A CIFAR ResNet and its plain twin trained from scratch "
                                                            "with the same recipe (notebook 01)")
    parser.add_argument("--mode", default="auto", help="smoke | cpu | full | auto (default)")
    parser.add_argument("--out", default=None, help="out dir (default: the mode's, runs/from_scratch_<mode>)")
    parser.add_argument("--depths", type=int, nargs="+", default=None, help="depths 6n + 2 (default: the mode's)")
    parser.add_argument("--seeds", type=int, nargs="+", default=None, help="seeds (default: the mode's)")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="any other config field")
    parser.add_argument("--export", default=None, metavar="NAME", help="store the result files as a reference")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)
    overrides = {**protocol.parse_overrides(args.set), **{k: v for k, v in (
        ("depths", args.depths), ("seeds", args.seeds), ("out_dir", args.out)) if v is not None}}
    cfg = from_scratch_config(args.mode, **overrides)
    summary = summarize(run(cfg, progress=not args.quiet))
    print(reading(summary))
    print(f"results: {cfg.out_dir}  (wall time of the nets: {summary['wall_time_s']:.0f} s)")
    if args.export:
        print(f"reference stored in {export_reference(cfg.out_dir, args.export)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
