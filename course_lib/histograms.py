"""Comparing path-length histograms: the total-variation distance and the first three moments, and the stored
comparison of extracted plain nets with a real ResNet at equal NAPL (notebook 03, section 6).

At one NAPL every histogram has the same mean, so what tells a variable-depth net from a fixed-depth one is the
*shape*: the spread (standard deviation), the lopsidedness (skewness), and how much probability mass two histograms
place on different path lengths (total variation, ½ Σ_k |p_k − q_k|: 0 for equal histograms, 1 for histograms
without a common length, e.g. two spikes at different lengths).

The stored comparison reads a reference sweep made by `python -m course_lib cifar --targets T ...` (stored with
`protocol.export_reference`); for each independent network (seed) it compares the channel-wise and the layer-wise
extracted nets with each other and with the ResNet's exact histogram (`paths`, the course's junction convention), and
gives the mean over seeds with a 95% interval (`judging.paired_interval`). Command line:

    python -m course_lib histograms --from /path/to/sweep --name cifar10_cpu_napl14.5   # export, then compare
    python -m course_lib histograms --name cifar10_cpu_napl14.5                        # compare a stored one again

Paper: 2506.14386 (the extracted networks' histograms are ResNet-like mixtures of short and long paths, near
binomial); the measures and the pairing by seed are ours.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import torch

from . import judging, models, paths, protocol
from .errors import StoredResultError
from .results import REFERENCE_DIR, provenance, read_json, write_json_atomic

__all__ = ["FILE", "total_variation", "moments", "compare_runs", "depth_comparison", "write_depth_comparison",
           "load_depth_comparison", "format_table", "main"]

FILE = "histograms.json"  # the comparison's file inside a reference folder
_PAIRS = (("channel", "resnet"), ("layer", "resnet"), ("channel", "layer"))  # the distances, in this order
_MOMENTS = ("mean", "variance", "skewness")


def _tensor(dist: torch.Tensor | Sequence[float]) -> torch.Tensor:
    return torch.as_tensor(dist, dtype=torch.float64).flatten()


def total_variation(p: torch.Tensor | Sequence[float], q: torch.Tensor | Sequence[float]) -> float:
    """Total-variation distance ½ Σ_k |p_k − q_k| of two path-length distributions (entry k: length k).

    The shorter one is padded with zeros, so the lengths line up whatever the two nets' depths. 0 for equal
    distributions, 1 when they share no length (two spikes at different lengths).
    """
    p, q = _tensor(p), _tensor(q)
    n = max(len(p), len(q))
    p, q = torch.nn.functional.pad(p, (0, n - len(p))), torch.nn.functional.pad(q, (0, n - len(q)))
    return 0.5 * (p - q).abs().sum().item()


def moments(dist: torch.Tensor | Sequence[float]) -> dict[str, float | None]:
    """Mean (the NAPL), variance, standard deviation and skewness of a path-length distribution
    (`paths.histogram_moments`); the skewness is None for a single spike (variance 0)."""
    mean, std, skew = paths.histogram_moments(_tensor(dist), skewness=True)
    return {"mean": mean, "variance": std**2, "std": std, "skewness": None if math.isnan(skew) else skew}


def _interval(values: Iterable[float | None]) -> dict | None:
    """Mean over seeds with its 95% Student-t interval (`judging.paired_interval`); None when a value is missing."""
    values = list(values)
    if not values or any(v is None for v in values):
        return None
    found = judging.paired_interval(values)
    return {"mean": found["mean"], "low": found["low"], "high": found["high"], "n": found["n"]}


def compare_runs(runs: Iterable[Mapping], resnet_dist: torch.Tensor | Sequence[float]) -> dict:
    """Per seed with both a channel-wise and a layer-wise run: the three distances (channel–ResNet, layer–ResNet,
    channel–layer) and the moments of both nets; then, over the seeds, the mean of each with its 95% interval.

    Args:
        runs: post-training results (`protocol.linearize_and_record`), each with "granularity", "seed", "napl" and
            "path_length_histogram"; a seed without both variants is left out (listed under "unpaired_seeds").
        resnet_dist: the ResNet's path-length distribution.

    Returns:
        {"resnet_moments": its moments, "per_seed": [{"seed", "napl_channel", "napl_layer", "reached_channel",
        "reached_layer", "tv": {"channel-resnet", "layer-resnet", "channel-layer"}, "moments": {"channel",
        "layer"}}], "intervals": {"tv": {...}, "moments": {"channel": {...}, "layer": {...}}}, "unpaired_seeds"}.
    """
    by_seed: dict[int, dict[str, Mapping]] = {}
    for run in runs:
        by_seed.setdefault(run["seed"], {})[run["granularity"]] = run
    paired = {s: r for s, r in sorted(by_seed.items()) if "channel" in r and "layer" in r}
    hists = {"resnet": _tensor(resnet_dist)}
    per_seed = []
    for seed, pair in paired.items():
        hists.update({g: _tensor(pair[g]["path_length_histogram"]) for g in ("channel", "layer")})
        per_seed.append({
            "seed": seed, **{f"napl_{g}": pair[g]["napl"] for g in ("channel", "layer")},
            **{f"reached_{g}": pair[g].get("reached") for g in ("channel", "layer")},
            "tv": {f"{a}-{b}": total_variation(hists[a], hists[b]) for a, b in _PAIRS},
            "moments": {g: moments(hists[g]) for g in ("channel", "layer")}})
    intervals = {
        "tv": {f"{a}-{b}": _interval(s["tv"][f"{a}-{b}"] for s in per_seed) for a, b in _PAIRS},
        "moments": {g: {m: _interval(s["moments"][g][m] for s in per_seed) for m in _MOMENTS}
                    for g in ("channel", "layer")}}
    return {"resnet_moments": moments(hists["resnet"]), "per_seed": per_seed, "intervals": intervals,
            "unpaired_seeds": sorted(set(by_seed) - set(paired))}


def depth_comparison(name: str, resnet_depth: int = 20, target: float | None = None,
                     reference_dir: str | Path = REFERENCE_DIR) -> dict:
    """The comparison of a stored reference sweep's extracted nets with ResNet-`resnet_depth` (see the module
    docstring), with the sweep's scale, the ResNet's histogram and the provenance of this computation.

    Args:
        name: the reference folder `<reference_dir>/<name>/` (`protocol.export_reference`).
        resnet_depth: depth 6n + 2 of the CIFAR ResNet to compare with (20: NAPL 14.5).
        target: the target NAPL whose runs are compared; None: the sweep's only target.
        reference_dir: where the reference folders are.

    Raises:
        StoredResultError: no such reference, or it has several targets and `target` is None, or none at `target`.
    """
    stored = protocol.reference_summary(name, reference_dir)
    if stored is None:
        raise StoredResultError(f"no reference sweep {Path(reference_dir) / name}; store one first with "
                                f"`python -m course_lib histograms --from <sweep folder> --name {name}`")
    summary, runs = stored
    targets = sorted({r["target"] for r in runs if r.get("target") is not None})
    if target is None and len(targets) != 1:
        raise StoredResultError(f"reference {name} has targets {targets}; choose one (--target)")
    target = targets[0] if target is None else target
    chosen = [r for r in runs if r.get("target") == target and not r.get("diverged")]
    if not chosen:
        raise StoredResultError(f"reference {name} has no run at target {target:g}; its targets are {targets}")
    resnet = paths.path_length_distribution(models.cifar_resnet(resnet_depth))
    return {"kind": "histogram_comparison", "reference": name, "target": target,
            "resnet": f"ResNet-{resnet_depth}", "resnet_napl": paths.napl(models.cifar_resnet(resnet_depth)),
            "resnet_histogram": resnet.tolist(), "junction": "summand", "scale": judging.scale(summary),
            "runs": {f"{r['granularity']}-seed{r['seed']}": {"napl": r["napl"], "reached": r.get("reached"),
                                                           "path_length_histogram": r["path_length_histogram"]}
                     for r in chosen},
            **compare_runs(chosen, resnet), "provenance": provenance()}


def write_depth_comparison(name: str, resnet_depth: int = 20, target: float | None = None,
                           reference_dir: str | Path = REFERENCE_DIR) -> Path:
    """Compute `depth_comparison` and write it to `<reference_dir>/<name>/histograms.json` (atomically)."""
    result = depth_comparison(name, resnet_depth, target, reference_dir)
    return write_json_atomic(Path(reference_dir) / name / FILE, result)


def load_depth_comparison(name: str, reference_dir: str | Path = REFERENCE_DIR) -> dict:
    """The stored comparison `<reference_dir>/<name>/histograms.json`.

    Raises:
        StoredResultError: it is not there; the message says which command makes it.
    """
    path = Path(reference_dir) / name / FILE
    if not path.exists():
        raise StoredResultError(f"no stored histogram comparison at {path}; make it with "
                                f"`python -m course_lib histograms --name {name}`")
    return read_json(path)


def _cell(interval: Mapping | None, digits: int = 3) -> str:
    if interval is None:
        return "—"
    if interval["low"] is None:
        return f"{interval['mean']:.{digits}f} (one net: no interval)"
    return f"{interval['mean']:.{digits}f} [{interval['low']:.{digits}f}, {interval['high']:.{digits}f}]"


def format_table(comparison: Mapping) -> str:
    """The distances and moments as text: per seed, then the mean over seeds with its 95% interval."""
    resnet, seeds = comparison["resnet_moments"], comparison["per_seed"]
    names = {"channel-resnet": f"TV(channel-wise, {comparison.get('resnet', 'ResNet')})",
             "layer-resnet": f"TV(layer-wise, {comparison.get('resnet', 'ResNet')})",
             "channel-layer": "TV(channel-wise, layer-wise)"}
    lines = [f"{'':36s}" + "".join(f"{'seed ' + str(s['seed']):>9s}" for s in seeds) + "   mean [95% interval]"]
    for key, label in names.items():
        lines.append(f"{label:36s}" + "".join(f"{s['tv'][key]:9.3f}" for s in seeds)
                     + f"   {_cell(comparison['intervals']['tv'][key])}")
    for g in ("channel", "layer"):
        for m in _MOMENTS:
            values = "".join(f"{s['moments'][g][m]:9.3f}" if s["moments"][g][m] is not None else f"{'—':>9s}"
                             for s in seeds)
            lines.append(f"{f'{g}-wise {m}':36s}{values}   {_cell(comparison['intervals']['moments'][g][m])}")
    skew = "—" if resnet["skewness"] is None else f"{resnet['skewness']:.3f}"
    lines.append(f"{comparison.get('resnet', 'ResNet')}: mean {resnet['mean']:.3f}, variance {resnet['variance']:.3f}, "
                 f"skewness {skew} (exact, one network)")
    return "\n".join(lines)


def main(argv: list[str] | None = None, prog: str = "python -m course_lib histograms") -> int:
    """`python -m course_lib histograms [--from SWEEP] --name NAME [--depth 20] [--target T]`."""
    parser = argparse.ArgumentParser(prog=prog, description="Path-length histograms of extracted nets next to a "
                                     "real ResNet at equal NAPL (notebook 03): distances and moments, stored.")
    parser.add_argument("--from", dest="source", default=None,
                        help="a finished sweep folder to store first as data/reference/NAME/ (protocol.export_reference)")
    parser.add_argument("--name", required=True, help="the reference folder under data/reference/")
    parser.add_argument("--depth", type=int, default=20, help="CIFAR ResNet depth 6n+2 to compare with (default 20)")
    parser.add_argument("--target", type=float, default=None, help="target NAPL (default: the sweep's only one)")
    args = parser.parse_args(argv)
    if args.source is not None:
        if not protocol.load_results(args.source)[1]:
            raise StoredResultError(f"{args.source} holds no finished post-training run (runs/*.json); give the out "
                                    "folder of a `python -m course_lib cifar --targets ...` sweep")
        print(f"stored {protocol.export_reference(args.source, args.name)}")
    path = write_depth_comparison(args.name, args.depth, args.target)
    print(f"wrote {path}\n{format_table(read_json(path))}")
    return 0
