"""The lesion study of notebook 05 as stored results: Veit's lesions on three kinds of trained nets.

Parts (each writes `<out_dir>/<part>.json` with its config and provenance, `course_lib.lesion` does the maths):

- `resnet56`: the pretrained akamaster ResNet-56 on the 1,000 lossless CIFAR-10 test images (the checkpoint was
  trained on the original PNG images; this subset is exact): every single-block deletion and k random deletions,
  k = 1..K; then the intact net and every single deletion on the whole 10,000-image (JPEG-derived) test set.
- `extracted`: the plain nets of the CIFAR experiment (notebook 04's protocol) linearized channel- and layer-wise to
  one target NAPL, one pair per independent start network (seed): the "nonlinear" and "layer" lesions of
  `course_lib.lesion`, and the channel − layer difference of the mean single-lesion accuracy drop, paired by seed,
  with its 95% interval (`judging.paired_interval`). Needs the saved nets of
  `python -m course_lib cifar --mode cpu --targets 14 --out DIR` (notebook 04's `cpu` sweep, which has target 14,
  saves them in runs/04_cifar_cpu; `--cifar-dir DIR`).
- `twins`: a ResNet and its plain twin trained from scratch with the same recipe (`<dir>/resnet20-seed<s>/model.pt`
  and `<dir>/plain20-seed<s>/model.pt`, plain state dicts of `models.cifar_resnet(20, plain=False/True)`, made by the
  from-scratch comparison; `--scratch-dir DIR`): the same block deletions on both, paired by seed.

A part whose file holds the same settings is read back, not recomputed; inside a part each finished net is written at
once, so an interrupted part resumes with the next net. Sizes per run mode: `profiles.TABLES["lesion"]`.

    python -m course_lib lesion --mode smoke|cpu|full [--part resnet56|extracted|twins ...] [--out DIR]

Paper: Veit, Wilber & Belongie (2016), §4 (lesion study). Ours: the study of the extracted plain nets and the
from-scratch twins (no published study has them), and every size of the profile table.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import torch

from . import config, data, experiments, from_scratch, judging, lesion, models, profiles, protocol, settings
from .errors import ConfigError, NotReadyError
from .results import git_commit, provenance, read_json, repo_path, write_json_atomic

__all__ = ["PARTS", "LesionConfig", "lesion_config", "run_part", "part_path", "load_part", "reference", "scratch_pairs",
           "measured", "compare", "curve_table", "extracted_table", "mean_curve", "side_curves", "reading", "main"]

PARTS = ("resnet56", "extracted", "twins")
GRANULARITIES = ("channel", "layer")
PLAIN_KINDS = ("nonlinear", "layer")


@dataclass(frozen=True)
class LesionConfig:
    """Sizes and inputs of the lesion study (values per mode: `profiles.TABLES["lesion"]`); stored in every part."""

    mode: str
    max_k: int  # largest number of random deletions K (capped by the net's units)
    seed: int  # seed of the random lesion sets
    resnet56_draws: int  # random sets per k (D) for ResNet-56
    resnet56_n_images: int | None  # lossless test images (None: all 1,000)
    resnet56_full_test: bool  # also intact + single deletions on the whole 10,000-image test set
    extracted_draws: int  # D for the extracted plain nets
    extracted_n_images: int | None  # test images of the CIFAR experiment's split (None: all 10,000)
    extracted_target: float  # target NAPL of the extracted nets
    extracted_seeds: tuple[int, ...]  # independent start networks
    extracted_mode: str  # run mode of the CIFAR experiment that made them
    twins_depth: int  # depth of the from-scratch ResNet and plain twin
    twins_draws: int  # D for the twins
    twins_n_images: int | None  # JPEG-derived test images (None: all 10,000)
    batch_size: int  # eval batch (speed only)
    device: str  # "auto" (CUDA, MPS, else CPU) or a torch device string; evaluation is fp32 on any device
    cifar_dir: str  # out dir of the CIFAR experiment holding the extracted nets
    scratch_dir: str  # out dir of the from-scratch comparison holding the twins
    out_dir: str  # where the part files go
    data_dir: str | None  # CIFAR and checkpoint folder (None: the usual search)


# What defines a part's numbers (the rest only says where things are, or how fast they run).
_DEFINING = {
    "resnet56": ("max_k", "seed", "resnet56_draws", "resnet56_n_images", "resnet56_full_test"),
    "extracted": ("max_k", "seed", "extracted_draws", "extracted_n_images", "extracted_target", "extracted_seeds",
                  "extracted_mode"),
    "twins": ("max_k", "seed", "twins_depth", "twins_draws", "twins_n_images"),
}


def lesion_config(mode: str = "auto", **overrides) -> LesionConfig:
    """The lesion study's config of a run mode, with overrides (None means "the mode's default").

    Raises:
        ConfigError: an unknown mode or setting name.
    """
    mode = config.resolve_mode(mode)
    valid = {f.name for f in fields(LesionConfig)} - {"mode"}
    unknown = sorted(set(overrides) - valid)
    if unknown:
        raise ConfigError(f"unknown lesion setting(s) {unknown}; valid settings are {sorted(valid)}")
    values = {**profiles.sizes("lesion", mode), **{k: v for k, v in overrides.items() if v is not None}}
    for key in ("cifar_dir", "scratch_dir", "out_dir"):  # relative folders are inside the repository
        values[key] = str(repo_path(values[key])) if not Path(values[key]).is_absolute() else values[key]
    return LesionConfig(mode=mode, **settings.coerce(LesionConfig, values))


def _defining(cfg: LesionConfig | dict, part: str) -> dict:
    values = asdict(cfg) if isinstance(cfg, LesionConfig) else cfg
    return {k: list(v) if isinstance(v, (list, tuple)) else v for k, v in values.items() if k in _DEFINING[part]}


def _check_part(part: str) -> None:
    if part not in PARTS:
        raise ConfigError(f"unknown lesion part {part!r}; choose one of {list(PARTS)}")


# ---------------------------------------------------------------------------------------------------------------------
# Inputs
# ---------------------------------------------------------------------------------------------------------------------


def _test_images(cfg: LesionConfig, n: int | None, subset: str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    images, labels = data.load_cifar("cifar10", "test", root=cfg.data_dir, subset=subset)
    if n is not None and n < len(labels):
        return images[:n], labels[:n]
    return images, labels


def _extracted_config(cfg: LesionConfig) -> experiments.ExperimentConfig:
    return experiments.cifar_config(cfg.extracted_mode, targets=(cfg.extracted_target,), seeds=cfg.extracted_seeds,
                                    out_dir=cfg.cifar_dir, data_dir=cfg.data_dir)


def _run_json(ecfg: experiments.ExperimentConfig, granularity: str, seed: int, target: float) -> Path:
    from .results import run_name

    return Path(ecfg.out_dir) / "runs" / f"{run_name(granularity, seed, target=target)}.json"


def _missing_extracted(cfg: LesionConfig) -> list[str]:
    ecfg = _extracted_config(cfg)
    return [str(_run_json(ecfg, g, s, cfg.extracted_target).with_suffix(".pt"))
            for s in cfg.extracted_seeds for g in GRANULARITIES
            if not _run_json(ecfg, g, s, cfg.extracted_target).with_suffix(".pt").exists()]


def scratch_pairs(scratch_dir: str | Path, depth: int, mode: str = "cpu") -> list[int]:
    """Seeds s with both `resnet<depth>-seed<s>/model.pt` and `plain<depth>-seed<s>/model.pt` under `scratch_dir`,
    each finished (its `result.json` beside it: the from-scratch comparison writes it after the weights).

    Raises:
        NotReadyError: there is no such pair; says which command makes them.
    """
    folder = Path(scratch_dir)

    def seeds(prefix: str) -> set[int]:
        pattern = re.compile(rf"{prefix}{depth}-seed(\d+)$")
        return {int(m.group(1)) for p in folder.glob(f"{prefix}{depth}-seed*/model.pt")
                if (m := pattern.match(p.parent.name)) and (p.parent / "result.json").exists()}  # a finished net

    found = sorted(seeds("resnet") & seeds("plain"))
    if not found:
        raise NotReadyError(f"no trained ResNet-{depth} / plain-{depth} pair (resnet{depth}-seed<s>/model.pt and "
                            f"plain{depth}-seed<s>/model.pt) in {folder}: train them with the from-scratch "
                            f"comparison (`python -m course_lib from-scratch --mode {mode} --out {folder}`) or pass "
                            "--scratch-dir with the folder that holds them")
    return found


# ---------------------------------------------------------------------------------------------------------------------
# The parts
# ---------------------------------------------------------------------------------------------------------------------


def _curve(net: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor, kind: str, draws: int,
           cfg: LesionConfig, progress: bool, max_k: int | None = None) -> dict:
    start = time.time()
    curve = lesion.lesion_curve(net, images, labels, kind, max_k=cfg.max_k if max_k is None else max_k, draws=draws,
                                seed=cfg.seed, batch_size=cfg.batch_size, device=str(config.select_device(cfg.device)),
                                progress=progress)
    return {**curve, "wall_time_s": round(time.time() - start, 1)}


def _resnet56_entries(cfg: LesionConfig, progress: bool):
    net = models.load_pretrained_cifar_resnet(56, root=cfg.data_dir)
    yield "lossless", lambda: {"images": "lossless CIFAR-10 test subset", **_curve(
        net, *_test_images(cfg, cfg.resnet56_n_images, "lossless"), "block", cfg.resnet56_draws, cfg, progress)}
    if cfg.resnet56_full_test:
        yield "full_test", lambda: {"images": "CIFAR-10 test set (JPEG-derived)", **_curve(
            net, *_test_images(cfg, None), "block", 0, cfg, progress, max_k=0)}  # intact + single deletions


def _extracted_entries(cfg: LesionConfig, progress: bool):
    missing = _missing_extracted(cfg)
    if missing:
        raise NotReadyError(f"the extracted nets are not there ({len(missing)} missing, e.g. {missing[0]}): run "
                            f"`python -m course_lib cifar --mode {cfg.extracted_mode} --targets "
                            f"{cfg.extracted_target:g} --seeds {' '.join(map(str, cfg.extracted_seeds))} --out "
                            f"{cfg.cifar_dir}` first, or pass --cifar-dir with the folder that holds them")
    ecfg = _extracted_config(cfg)
    images, labels = _test_images(cfg, cfg.extracted_n_images)
    for seed in cfg.extracted_seeds:
        for granularity in GRANULARITIES:
            def measure(granularity=granularity, seed=seed) -> dict:
                net = experiments.load_post_trained(ecfg, granularity, seed, target=cfg.extracted_target)
                run = read_json(_run_json(ecfg, granularity, seed, cfg.extracted_target))
                return {"granularity": granularity, "seed": seed, "napl": run["napl"],
                        "test_accuracy_stored": run["test_accuracy"], "images": "CIFAR-10 test set (JPEG-derived)",
                        **{kind: _curve(net, images, labels, kind, cfg.extracted_draws, cfg, progress)
                           for kind in PLAIN_KINDS}}
            yield f"{granularity}-seed{seed}", measure


def _twins_entries(cfg: LesionConfig, progress: bool):
    seeds = scratch_pairs(cfg.scratch_dir, cfg.twins_depth, cfg.mode)
    images, labels = _test_images(cfg, cfg.twins_n_images)
    for seed in seeds:
        for plain in (False, True):
            def measure(plain=plain, seed=seed) -> dict:
                net = from_scratch.load_trained(cfg.scratch_dir, cfg.twins_depth, plain, seed)
                name = from_scratch.net_name(cfg.twins_depth, plain)
                trained = read_json(Path(cfg.scratch_dir) / f"{name}-seed{seed}" / "result.json")
                recipe = trained.get("config") or {}
                return {"net": name, "plain": plain, "seed": seed, "images": "CIFAR-10 test set (JPEG-derived)",
                        "trained": {"test_accuracy": trained.get("test_accuracy"), "n_test": trained.get("n_test"),
                                    "epochs": recipe.get("epochs"), "n_train": recipe.get("n_train"),
                                    "mode": recipe.get("mode")},
                        "block": _curve(net, images, labels, "block", cfg.twins_draws, cfg, progress)}
            yield f"{from_scratch.net_name(cfg.twins_depth, plain)}-seed{seed}", measure


_ENTRIES = {"resnet56": _resnet56_entries, "extracted": _extracted_entries, "twins": _twins_entries}


_STATISTICS = ("mean_drop", "retained_share")  # the paired statistics of a comparison (see `lesion.paired_drop`)
_CHANCE = 0.1  # CIFAR-10


def compare(record: dict) -> dict:
    """The paired differences of an `extracted` (channel − layer) or `twins` (plain − ResNet) part, per lesion kind,
    computed from its entries: for each statistic of `_STATISTICS` and the intact accuracy, the mean difference
    over the seeds with its 95% interval (`judging.paired_interval`); the retained share is None when a net is not
    above chance. Empty for `resnet56`.
    """
    entries = record["entries"]
    if record["part"] == "extracted":
        sides, kinds = ("channel", "layer"), PLAIN_KINDS
        side_of = lambda e: e["granularity"]  # noqa: E731
    elif record["part"] == "twins":
        sides, kinds = ("plain", "resnet"), ("block",)
        side_of = lambda e: "plain" if e["plain"] else "resnet"  # noqa: E731
    else:
        return {}
    seeds = sorted({e["seed"] for e in entries.values()} - {None})
    by = {(side_of(e), e["seed"]): e for e in entries.values()}
    seeds = [s for s in seeds if all((side, s) in by for side in sides)]  # complete pairs only
    out = {}
    for kind in kinds:
        first = [by[(sides[0], s)][kind] for s in seeds]
        second = [by[(sides[1], s)][kind] for s in seeds]
        above_chance = all(c["intact"] > _CHANCE for c in first + second)  # else the share is undefined
        out[kind] = {"first": sides[0], "second": sides[1], "seeds": seeds,
                     **{key: lesion.paired_drop(first, second, key) if key != "retained_share" or above_chance else None
                        for key in _STATISTICS},
                     "intact": judging.paired_interval([a["intact"] - b["intact"] for a, b in zip(first, second)])}
    return out


def part_path(cfg: LesionConfig, part: str) -> Path:
    """Where `run_part` writes `part`: `<out_dir>/<part>.json`."""
    return Path(cfg.out_dir) / f"{part}.json"


def run_part(cfg: LesionConfig, part: str, progress: bool = True) -> dict:
    """Measure one part (or read it back when its file holds the same settings and is complete), write its JSON.

    Each finished net is written at once (`"complete": false` until the last one), so an interrupted part resumes.

    Returns:
        {"part", "config", "entries": {name: curve(s) of one net}, "comparison": paired differences, "complete",
         "wall_time_s", "provenance"}.

    Raises:
        NotReadyError: the nets of the part are not there (says which command makes them). ConfigError: an unknown
        part. DataNotFoundError: no CIFAR data or checkpoint.
    """
    _check_part(part)
    path = part_path(cfg, part)
    stored = read_json(path) if path.exists() else None
    if stored is not None and _defining(stored["config"], part) != _defining(cfg, part):
        stored = None  # other settings: start the part again (the file is replaced when the first net is done)
    if stored is not None and stored.get("complete"):
        return stored
    entries = dict(stored["entries"]) if stored else {}
    wall = stored["wall_time_s"] if stored else 0.0
    device = config.select_device(cfg.device)
    for name, measure in _ENTRIES[part](cfg, progress):
        if name in entries:
            continue
        start = time.time()
        entries[name] = measure()
        wall += time.time() - start
        record = {"part": part, "config": asdict(cfg), "entries": entries, "comparison": {}, "complete": False,
                  "wall_time_s": round(wall, 1), "provenance": provenance(device)}
        write_json_atomic(path, record)
    record = {"part": part, "config": asdict(cfg), "entries": entries, "comparison": compare({"part": part, "entries": entries}),
              "complete": True, "wall_time_s": round(wall, 1), "provenance": provenance(device)}
    write_json_atomic(path, record)
    return read_json(path)  # as stored (tuples become lists), the same as a later call reads back


def load_part(path: str | Path) -> dict | None:
    """A part file, or None when there is none."""
    path = Path(path)
    return read_json(path) if path.exists() else None


def reference(part: str, mode: str = "cpu", cfg: LesionConfig | None = None) -> dict | None:
    """The stored reference `data/reference/lesion_<mode>/<part>.json` when it is complete and (given `cfg`) made
    with the same defining settings as `cfg`; else None."""
    _check_part(part)
    stored = load_part(repo_path(f"data/reference/lesion_{mode}") / f"{part}.json")
    if stored is None or not stored.get("complete"):
        return None
    if cfg is not None and _defining(stored["config"], part) != _defining(cfg, part):
        return None
    return stored


def measured(cfg: LesionConfig, part: str, recompute: bool = False, progress: bool = True) -> tuple[dict | None, str]:
    """What a notebook shows for `part`: the stored reference of `cfg.mode` when it was made with these settings
    (unless `recompute`), else the part measured now with `run_part` (read back when `cfg.out_dir` holds it).

    Returns:
        (record, note): the part's record, or None when its nets are not there, and one line saying which it is.
    """
    stored = None if recompute else reference(part, cfg.mode, cfg)
    if stored is not None:
        return stored, (f"{part}: the stored {cfg.mode} reference (data/reference/lesion_{cfg.mode}/{part}.json), "
                        f"computed in {stored['wall_time_s'] / 60:.0f} min")
    try:
        record = run_part(cfg, part, progress=progress)
    except NotReadyError as exc:
        return None, f"{part}: not measured in {cfg.mode} mode: {exc}"
    return record, f"{part}: measured in {cfg.mode} mode ({record['wall_time_s']:.0f} s of lesion evaluations)"


def extracted_table(record: dict) -> str:
    """One line per extracted net of an `extracted` record: NAPL, intact accuracy, and for both lesions the mean
    single-lesion drop and the mean accuracy with 2 random units deleted, in percent."""
    lines = [f"{'net':16s} {'NAPL':>5s} {'intact':>7s} {'mean single-lesion drop':>24s} "
             f"{'mean with k = 2 deleted':>24s}",
             f"{'':30s} {'nonlinear part':>14s} {'layer':>9s} {'nonlinear part':>14s} {'layer':>9s}"]
    for name, e in sorted(record["entries"].items(), key=lambda item: (item[1]["seed"], item[1]["granularity"])):
        k2 = {kind: next((p["mean"] for p in e[kind]["random"] if p["k"] == 2), float("nan")) for kind in PLAIN_KINDS}
        lines.append(f"{name:16s} {e['napl']:5.2f} {100 * e['nonlinear']['intact']:7.1f} "
                     f"{100 * e['nonlinear']['single']['mean_drop']:14.1f} {100 * e['layer']['single']['mean_drop']:9.1f}"
                     f" {100 * k2['nonlinear']:14.1f} {100 * k2['layer']:9.1f}")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------------------------
# Reading a part
# ---------------------------------------------------------------------------------------------------------------------


def curve_table(curves: dict[str, dict], ks: tuple[int, ...] = (1, 2, 4, 8, 10)) -> str:
    """The numbers of lesion curves as text: per label the intact accuracy, the median and worst single deletion,
    then for each k in `ks` (that the curve has) the median over draws, their range and the 95% interval of the
    mean. Accuracies in percent."""
    lines = []
    for label, c in curves.items():
        s = c["single"]
        lines.append(f"{label} ({c['n_images']:,} images, {len(c['units'])} units): intact {100 * c['intact']:.1f}; "
                     f"single deletions median {100 * s['median']:.1f}, worst {100 * s['min']:.1f} "
                     f"({s['worst_unit']}), mean drop {100 * s['mean_drop']:.1f} points")
        for p in (p for p in c["random"] if p["k"] in ks):
            interval = (f"mean {100 * p['mean']:.1f} [{100 * p['low']:.1f}, {100 * p['high']:.1f}]"
                        if p["low"] is not None else f"mean {100 * p['mean']:.1f} (one draw)")
            lines.append(f"    k = {p['k']:2d}: median {100 * p['median']:5.1f}, range [{100 * p['min']:.1f}, "
                         f"{100 * p['max']:.1f}], {interval} over {p['n']} draws")
    return "\n".join(lines)


def mean_curve(curves: list[dict]) -> dict:
    """The average of several nets' lesion curves (same units and k): intact, single-deletion accuracies and each k's
    median, min, max and mean averaged over the nets; low/high: the 95% interval of the mean over the *nets* (each
    net's mean over draws is one value). For plotting several independent nets as one curve."""
    n = len(curves)
    average = lambda values: sum(values) / n  # noqa: E731
    random = []
    for points in zip(*(c["random"] for c in curves)):
        interval = judging.paired_interval([p["mean"] for p in points])
        random.append({"k": points[0]["k"], **{key: average([p[key] for p in points]) for key in
                                               ("median", "min", "max")},
                       "mean": interval["mean"], "low": interval["low"], "high": interval["high"], "n": n})
    singles = [average(values) for values in zip(*(c["single"]["accuracies"] for c in curves))]
    return {"intact": average([c["intact"] for c in curves]), "single": {"accuracies": singles}, "random": random}


def side_curves(record: dict, kind: str) -> dict[str, dict]:
    """The `kind` lesion curves of an `extracted` or `twins` part averaged over the seeds of each side (`mean_curve`),
    labelled for a plot: {"channel-wise (mean of 3 nets)": ..., "layer-wise (...)": ...} or {"resnet20 (...)", ...}."""
    groups: dict[str, list[dict]] = {}
    for entry in record["entries"].values():
        side = f"{entry['granularity']}-wise" if record["part"] == "extracted" else entry["net"]
        groups.setdefault(side, []).append(entry[kind])
    return {f"{side} (mean of {len(curves)} nets)": mean_curve(curves) for side, curves in groups.items()}


def reading(record: dict) -> str:
    """The paired comparison of an `extracted` or `twins` part in words (`compare`), with 95% intervals and scale."""
    cfg = record["config"]
    words = {1: "the interval lies above 0", -1: "the interval lies below 0", 0: "the interval holds 0"}
    names = {"mean_drop": "mean single-lesion accuracy drop (points)",
             "retained_share": "share of the margin above chance kept by a single lesion (%)",
             "intact": "intact accuracy (points)"}
    lines = []
    for kind, comparison in compare(record).items():
        lines.append(f"{kind} lesion, {comparison['first']} minus {comparison['second']}, paired by seed "
                     f"({len(comparison['seeds'])} independent pair(s)), 95% intervals:")
        for key in ("intact", *_STATISTICS):
            interval = comparison[key]
            if interval is None:
                lines.append(f"    {names[key]}: undefined (a net is not above chance)")
                continue
            if interval["low"] is None:
                span, verdict = "", "one pair: no interval, nothing can be judged"
            else:
                span = f" [{100 * interval['low']:+.1f}, {100 * interval['high']:+.1f}]"
                verdict = words[judging.clarity(interval)]
            lines.append(f"    {names[key]}: {100 * interval['mean']:+.1f}{span}: {verdict}")
        # The prediction: the variable-depth side (channel-wise; the ResNet) keeps more of its margin above chance,
        # the statistic that compares nets whose intact accuracies differ. `first` is that side for extracted nets.
        sign = 1 if record["part"] == "extracted" else -1
        lines.append(f"    prediction '{comparison['first'] if sign == 1 else comparison['second']} keeps more of its "
                     f"margin above chance': "
                     f"{judging.prediction_reading(comparison['retained_share'], sign, record['config']['mode'])}")
    first = next(iter(record["entries"].values()))
    if record["part"] == "extracted":
        recipe = profiles.sizes("cifar-repvgg", cfg["extracted_mode"])  # the profile the nets were made with
        scale = (f"plain RepVGG-{recipe['arch']} nets at width ×{recipe['width_mult']:g} of the CIFAR experiment's "
                 f"{cfg['extracted_mode']} protocol ({recipe['n_train'] or 50_000:,} training images, "
                 f"{recipe['pretrain_epochs']} pre-training epochs), target NAPL {cfg['extracted_target']:g}, "
                 f"{len(cfg['extracted_seeds'])} independent start net(s), {first['nonlinear']['n_images']:,} test "
                 "images")
    else:
        trained = first.get("trained") or {}
        recipe = (f" ({trained['epochs']} epochs on {trained['n_train'] or 50_000:,} training images)"
                  if trained.get("epochs") else "")
        scale = (f"ResNet-{cfg['twins_depth']} and plain-{cfg['twins_depth']} trained from scratch{recipe}, "
                 f"{first['block']['n_images']:,} test images")
    return "\n".join(lines + [f"Scale: {scale}, {record['config']['mode']} mode."])


# ---------------------------------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------------------------------


def _curves(entry: dict) -> list[tuple[str, dict]]:
    """(kind, curve) of one entry: the entry itself for ResNet-56, its lesions for an extracted net or a twin."""
    if "single" in entry:
        return [(entry["kind"], entry)]
    return [(kind, entry[kind]) for kind in ("block", *PLAIN_KINDS) if kind in entry]


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    """`python -m course_lib lesion`: measure the parts asked for, print one line per net."""
    parser = argparse.ArgumentParser(prog=prog, description="Veit's lesion study (notebook 05): delete blocks or layers "
                                     "of trained nets at test time; ResNet-56, extracted plain nets, from-scratch twins.")
    parser.add_argument("--mode", default="auto", help="auto|smoke|cpu|full")
    parser.add_argument("--part", nargs="*", default=None, choices=PARTS, help="parts to run (default: all three)")
    parser.add_argument("--out", default=None, help="output folder (default runs/lesion_<mode>)")
    parser.add_argument("--cifar-dir", default=None, help="out dir of the CIFAR experiment with the extracted nets")
    parser.add_argument("--scratch-dir", default=None, help="out dir of the from-scratch comparison (the twins)")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="other LesionConfig fields")
    args = parser.parse_args(sys.argv[1:] if argv is None else list(argv))
    mode = config.resolve_mode(args.mode)
    git_commit()  # fixed now: the commit of the code this process runs
    cfg = lesion_config(mode, out_dir=args.out, cifar_dir=args.cifar_dir,
                        scratch_dir=args.scratch_dir, **protocol.parse_overrides(args.set))
    for part in args.part or PARTS:
        record = run_part(cfg, part)
        print(f"{part}: {part_path(cfg, part)} ({record['wall_time_s']:.0f} s)")
        for name, entry in record["entries"].items():
            for kind, curve in _curves(entry):
                print(f"  {name:22s} {kind:9s} intact {curve['intact']:.4f}, single deletions: median "
                      f"{curve['single']['median']:.4f}, worst {curve['single']['min']:.4f}")
    return 0
