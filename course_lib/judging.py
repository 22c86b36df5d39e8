"""Every rule that judges a result, stated once: how runs are paired, the interval of a gap, what makes it clear,
which NAPL range is informative, which runs may judge a claim, the verdict categories and the scale a verdict names.

`protocol` (the sweeps' summaries), `claims` (notebook 07), `viz` and the notebooks call these functions; nothing else
restates a rule. The rules are ours where the paper is silent:

- *Paired at exactly matched NAPL*: a targeted run is steered to a target NAPL (`targeting`); for each target and
  seed, the channel-wise and the layer-wise run start from the same pre-trained network, and their difference in
  test accuracy (channel minus layer: positive favours the variable-depth network, as the paper reports) is one
  paired gap. A run that missed its target (`reached` false) is left out, and so is its pair; misses are counted.
  Gaps are read at two moments: at the end of linearization and after the recovery phase.
- *Interval*: the mean of the paired gaps over seeds with a 95% Student-t interval (n − 1 degrees of freedom); with a
  single pair there is no interval. *Clear* means the interval excludes 0.
- *Informative NAPL range*: a target tells something about depth only when it is below the unlinearized net's NAPL by
  more than `UNLINEARIZED_MARGIN` and above `NEAR_LINEAR_NAPL` (there both variants are the same linear map).
- *A rise*: accuracy rising as NAPL falls to x means, per seed, the accuracy at the target nearest x (within
  `RISE_WITHIN`) minus that at the next higher target of the same variant, read with the same paired interval: a
  clear rise has an interval above 0.
- *Who may judge*: `smoke` runs test the code, never a claim; fewer than 2 independent pairs cannot judge.
- *Verdicts*: reproduced, not reproduced, inconclusive, illustrated (holds by construction or demonstrates theory),
  not run. A clearly reversed gap is "not reproduced", never "partly". Every verdict names its scale.

Fixed-ω sweeps are summarized as curves only: no gap is interpolated between ω points.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

import torch

from .results import run_name_of

__all__ = ["VERDICTS", "MODE_RANK", "NEAR_LINEAR_NAPL", "UNLINEARIZED_MARGIN", "LEVEL", "RISE_WITHIN", "MOMENTS", "can_judge",
           "informative_range", "is_informative", "n_seeds", "paired_interval", "clarity", "informative_gaps",
           "describe_gaps", "summarize", "format_runs", "matched_pair", "mean_gap", "gap_reading",
           "rise_targets", "rise_at", "prediction_reading", "scale", "verdict"]

VERDICTS = ("reproduced", "not reproduced", "inconclusive", "illustrated", "not run")
MODE_RANK = {"full": 2, "cpu": 1, "smoke": 0}  # larger scale first; rank 0 never judges
NEAR_LINEAR_NAPL = 0.5
UNLINEARIZED_MARGIN = 0.5
LEVEL = 0.95  # of every interval
RISE_WITHIN = 0.5  # a rise "at NAPL x" is read at a target no farther than this from x
MOMENTS = ("linearized", "recovered")  # when a gap is read: end of linearization, after the recovery phase


def can_judge(mode: str) -> bool:
    """Whether results of run mode `mode` may judge a claim (`cpu` and `full`; never `smoke`)."""
    return MODE_RANK.get(mode, 0) > 0


def informative_range(summary: Mapping) -> tuple[float, float]:
    """The open NAPL interval (low, high) in which a run of this sweep is informative (see the module docstring)."""
    baseline = summary.get("baseline")
    high = baseline["napl"] - UNLINEARIZED_MARGIN if baseline else math.inf
    return NEAR_LINEAR_NAPL, high


def is_informative(napl: float, summary: Mapping) -> bool:
    """Whether a run at `napl` lies inside `informative_range(summary)`."""
    low, high = informative_range(summary)
    return low < napl < high


def n_seeds(summary: Mapping) -> int:
    """The smallest number of seeds behind any point of the sweep's curves (0 when there is none)."""
    return min((p["n_seeds"] for points in summary["curves"].values() for p in points), default=0)


def paired_interval(diffs: Iterable[float], level: float = LEVEL) -> dict:
    """Mean of paired differences with its Student-t interval: {"mean", "low", "high", "n", "diffs"}; low and high
    are None with fewer than 2 differences."""
    from scipy import stats

    diffs = [float(d) for d in diffs]
    n = len(diffs)
    if n == 0:
        return {"mean": None, "low": None, "high": None, "n": 0, "diffs": []}
    mean = sum(diffs) / n
    if n < 2:
        return {"mean": mean, "low": None, "high": None, "n": 1, "diffs": diffs}
    sd = math.sqrt(sum((d - mean) ** 2 for d in diffs) / (n - 1))
    half = stats.t.ppf(0.5 + level / 2, n - 1) * sd / math.sqrt(n)
    return {"mean": mean, "low": float(mean - half), "high": float(mean + half), "n": n, "diffs": diffs}


def clarity(interval: Mapping) -> int:
    """+1 when the interval lies above 0 (channel-wise clearly ahead), -1 below 0, 0 when it holds 0 or is missing."""
    if interval.get("low") is None:
        return 0
    return 1 if interval["low"] > 0 else (-1 if interval["high"] < 0 else 0)


def informative_gaps(summary: Mapping, moment: str = "recovered") -> list[dict]:
    """The sweep's paired gaps at `moment` in the informative range, highest NAPL first: each {"napl" (the target),
    "gap", "low", "high", "n", "clear", "napl_channel", "napl_layer"}."""
    if moment not in MOMENTS:
        raise ValueError(f"unknown moment {moment!r}; choose one of {MOMENTS}")
    out = []
    for g in summary.get("paired_gaps", []):
        interval = g[moment]
        if interval["n"] and is_informative(g["target"], summary):
            out.append({"napl": g["target"], "gap": interval["mean"], "low": interval["low"],
                        "high": interval["high"], "n": interval["n"], "clear": clarity(interval),
                        "napl_channel": g["napl_channel"], "napl_layer": g["napl_layer"]})
    return sorted(out, key=lambda g: -g["napl"])


def describe_gaps(gaps: Iterable[Mapping]) -> str:
    """Gaps (from `informative_gaps`) in words: `NAPL 4: +2.6 [+0.4, +4.8] (clear); ...`, in accuracy points."""
    words = {1: " (clear)", -1: " (clearly reversed)", 0: " (interval holds 0)"}
    parts = []
    for g in gaps:
        interval = (f" [{100 * g['low']:+.1f}, {100 * g['high']:+.1f}]" if g["low"] is not None else
                    " (one pair: no interval)")
        word = words[g["clear"]] if g["low"] is not None else ""
        parts.append(f"NAPL {g['napl']:g}: {100 * g['gap']:+.1f}{interval}{word}")
    return "; ".join(parts)


def _mean_std(values: list[float]) -> tuple[float, float]:
    t = torch.tensor(values, dtype=torch.float64)
    return t.mean().item(), (t.std().item() if len(values) > 1 else 0.0)


def _baseline(baselines: list[dict]) -> dict | None:
    if not baselines:
        return None
    accuracies = [b["test_accuracy"] for b in baselines]
    mean, std = _mean_std(accuracies)
    return {"test_accuracy": mean, "test_accuracy_std": std, "accuracies": accuracies, "napl": baselines[0]["napl"],
            "n_starts": len(baselines), "parameters_deploy": baselines[0]["parameters_deploy"],
            "test_accuracy_train_form": _mean_std([b["test_accuracy_train_form"] for b in baselines])[0]}


def _setting(run: Mapping) -> tuple[str, float]:
    return ("omega", run["omega"]) if run.get("target") is None else ("target", run["target"])


def summarize(results: list[dict], baselines: dict | list[dict] | None = None) -> dict:
    """Curves per (granularity, ω or target) and the paired gaps at every target (see the module docstring).

    Runs whose loss became non-finite are listed under "diverged_runs", targeted runs that missed their target under
    "missed_runs"; both are left out of the means and the gaps.
    """
    baselines = [baselines] if isinstance(baselines, Mapping) else list(baselines or [])
    diverged = [run_name_of(r) for r in results if r.get("diverged")]
    missed = [run_name_of(r) for r in results if not r.get("diverged") and r.get("reached") is False]
    ok = [r for r in results if not r.get("diverged") and r.get("reached") is not False]
    curves: dict[str, list[dict]] = {}
    for g in sorted({r["granularity"] for r in ok}):
        points = []
        for kind, value in sorted({_setting(r) for r in ok if r["granularity"] == g}, key=lambda k: (k[0], k[1])):
            group = [r for r in ok if r["granularity"] == g and _setting(r) == (kind, value)]
            acc, acc_std = _mean_std([r["test_accuracy"] for r in group])
            lin, lin_std = _mean_std([r.get("test_accuracy_linearized", r["test_accuracy"]) for r in group])
            napl, napl_std = _mean_std([r["napl"] for r in group])
            points.append({"omega": value if kind == "omega" else None, "target": value if kind == "target" else None,
                           "n_seeds": len(group), "accuracy": acc, "accuracy_std": acc_std,
                           "accuracy_linearized": lin, "accuracy_linearized_std": lin_std,
                           "napl": napl, "napl_std": napl_std})
        curves[g] = points
    paired = []
    for target in sorted({r["target"] for r in ok if r.get("target") is not None}):
        by_seed = {(r["granularity"], r["seed"]): r for r in ok if r.get("target") == target}
        pairs = [(by_seed[("channel", s)], by_seed[("layer", s)]) for s in sorted({s for _, s in by_seed})
                 if ("channel", s) in by_seed and ("layer", s) in by_seed]
        if not pairs:
            continue
        paired.append({
            "target": target, "seeds": [c["seed"] for c, _ in pairs],
            "napl_channel": _mean_std([c["napl"] for c, _ in pairs])[0],
            "napl_layer": _mean_std([l["napl"] for _, l in pairs])[0],
            "linearized": paired_interval(c["test_accuracy_linearized"] - l["test_accuracy_linearized"]
                                          for c, l in pairs),
            "recovered": paired_interval(c["test_accuracy"] - l["test_accuracy"] for c, l in pairs),
        })
    return {"baseline": _baseline(baselines),
            "config": ok[0]["config"] if ok else (baselines[0]["config"] if baselines else None),
            "curves": curves, "paired_gaps": paired, "n_runs": len(results), "diverged_runs": diverged,
            "missed_runs": missed}


def matched_pair(results: list[dict], summary: Mapping) -> tuple[dict, dict] | None:
    """A (channel-wise, layer-wise) pair of runs at the same target and seed in the informative range (the lowest
    such target), or else the two informative runs closest in NAPL; None when there is none."""
    ok = [r for r in results if not r.get("diverged") and r.get("reached") is not False
          and is_informative(r["napl"], summary)]
    pairs = [(c, l) for c in ok if c["granularity"] == "channel" for l in ok if l["granularity"] == "layer"]
    same = [(c, l) for c, l in pairs if c.get("target") is not None and c.get("target") == l.get("target")
            and c["seed"] == l["seed"]]
    if same:
        return min(same, key=lambda pair: (pair[0]["target"], pair[0]["seed"]))
    return min(pairs, key=lambda pair: (abs(pair[0]["napl"] - pair[1]["napl"]), pair[1]["napl"])) if pairs else None


def mean_gap(summary: Mapping, napl_min: float = 0.0, napl_max: float | None = None,
             moment: str = "recovered") -> float | None:
    """Mean of the informative paired gaps at targets with napl_min < NAPL < napl_max, or None when there is none."""
    top = math.inf if napl_max is None else napl_max
    gaps = [g["gap"] for g in informative_gaps(summary, moment) if napl_min < g["napl"] < top]
    return sum(gaps) / len(gaps) if gaps else None


def gap_reading(gaps: list[Mapping]) -> tuple[str, str]:
    """(verdict, reason) for "channel-wise generalises better at matched NAPL" from `informative_gaps`."""
    if not gaps:
        return "not run", "no paired gap in the informative NAPL range"
    if any(g["low"] is None for g in gaps):
        return "inconclusive", "fewer than 2 independent pairs at some target: no interval"
    ahead, behind = sum(g["clear"] == 1 for g in gaps), sum(g["clear"] == -1 for g in gaps)
    if behind:
        return "not reproduced", f"layer-wise is clearly ahead at {behind} of {len(gaps)} targets"
    if ahead:
        return "reproduced", (f"channel-wise is clearly ahead at {ahead} of {len(gaps)} targets; no interval "
                              "favours layer-wise")
    return "inconclusive", f"every interval ({len(gaps)} targets) holds 0"


def rise_targets(targets: Iterable[float], napl: float, within: float = RISE_WITHIN) -> tuple[float, float] | None:
    """The two targets a rise at `napl` is read from: the target nearest `napl` that has a higher one, and that next
    higher target; None when no such target lies within `within` of `napl`."""
    targets = sorted({float(t) for t in targets})
    candidates = [t for t in targets[:-1] if abs(t - napl) <= within]
    if not candidates:
        return None
    near = min(candidates, key=lambda t: (abs(t - napl), t))
    return near, targets[targets.index(near) + 1]


def rise_at(runs: Iterable[Mapping], napl: float, granularity: str = "channel", moment: str = "recovered") -> dict:
    """Whether accuracy *rises* as NAPL falls to `napl`: per seed, the accuracy at the target nearest `napl` minus the
    accuracy at the next higher target (same variant, same start), with its paired interval.

    Returns {"target", "above", "interval", "clear"}; "clear" is +1 for a clear rise, -1 for a clear fall, 0 when
    the interval holds 0 or there is none; target and above are None when the runs have no such pair of targets.
    Only targeted runs that reached their target and did not diverge count.
    """
    if moment not in MOMENTS:
        raise ValueError(f"unknown moment {moment!r}; choose one of {MOMENTS}")
    key = "test_accuracy" if moment == "recovered" else "test_accuracy_linearized"
    ok = [r for r in runs if r.get("granularity") == granularity and r.get("target") is not None
          and r.get("reached") is not False and not r.get("diverged")]
    pair = rise_targets({r["target"] for r in ok}, napl)
    if pair is None:
        return {"target": None, "above": None, "interval": paired_interval([]), "clear": 0}
    target, above = pair
    at = {r["seed"]: r.get(key, r["test_accuracy"]) for r in ok if r["target"] == target}
    higher = {r["seed"]: r.get(key, r["test_accuracy"]) for r in ok if r["target"] == above}
    interval = paired_interval(at[s] - higher[s] for s in sorted(at) if s in higher)
    return {"target": target, "above": above, "interval": interval, "clear": clarity(interval)}


def prediction_reading(interval: Mapping | None, expected_sign: int, mode: str) -> str:
    """A prediction about the sign of a paired difference, read from its 95% interval: "supported" (the interval
    lies on the expected side of 0), "reversed" (clearly on the other side), "inconclusive" (it holds 0, or fewer than
    2 pairs), "not judged" (smoke mode, or no interval can be formed). `expected_sign` is +1 or -1."""
    if not can_judge(mode):
        return "not judged (smoke: a test of the code)"
    if interval is None:
        return "not judged (undefined)"
    if interval.get("low") is None:
        return "inconclusive (fewer than 2 independent pairs: no interval)"
    side = clarity(interval)
    return "supported" if side == expected_sign else "reversed" if side == -expected_sign else "inconclusive"


def scale(summary: Mapping) -> str:
    """The scale a verdict stands on, in words: network and width, epochs, independent networks, mode."""
    cfg = summary.get("config") or {}
    baseline = summary.get("baseline") or {}
    starts = baseline.get("n_starts", 0)
    if cfg.get("network", "repvgg") == "repvgg":
        net = f"plain RepVGG-{cfg.get('arch', '?')} at width ×{cfg.get('width_mult', 1):g}"
        nets = f"{starts} independently pre-trained net(s)"
    else:
        net = f"{cfg['network']} (pretrained akamaster weights, BN folded)"
        nets = f"{starts} fine-tune(s) of one pretrained net (pre-training variance not covered)"
    images = f"{cfg['n_train']:,}" if cfg.get("n_train") else "all"
    return (f"{net}, {cfg.get('dataset', '?')} ({images} training images), {cfg.get('pretrain_epochs', '?')} "
            f"pre-training epoch(s), ≤{cfg.get('posttrain_epochs', '?')} linearization + "
            f"{cfg.get('recovery_epochs', 0)} recovery epoch(s), {nets}, {cfg.get('mode', '?')} mode")


def format_runs(summary: Mapping) -> str:
    """The sweep's curves as a table: variant, target or ω, NAPL, accuracy at the end of linearization and after
    recovery (mean ± std over seeds)."""
    lines = [f"{'variant':8s} {'run':>12s} {'NAPL':>13s} {'linearized':>17s} {'recovered':>17s} {'seeds':>5s}"]
    for g, points in summary["curves"].items():
        for p in points:
            run = f"target {p['target']:g}" if p["target"] is not None else f"ω {p['omega']:g}"
            lines.append(f"{g:8s} {run:>12s} {p['napl']:6.2f} ± {p['napl_std']:4.2f} "
                         f"{p['accuracy_linearized']:.4f} ± {p['accuracy_linearized_std']:.4f} "
                         f"{p['accuracy']:.4f} ± {p['accuracy_std']:.4f} {p['n_seeds']:5d}")
    return "\n".join(lines)


def verdict(summary: Mapping) -> str:
    """A plain-language reading of a summary: its scale, the unlinearized start, each target's paired gaps at both
    moments, and the reading of the paper's claim at this scale. Every number comes from `summary`."""
    lines = [f"Scale: {scale(summary)}."]
    network = (summary.get("config") or {}).get("network", "repvgg")
    base = summary.get("baseline")
    if base:
        name = "plain net" if network == "repvgg" else network
        spread = f" ± {base['test_accuracy_std']:.4f} over {base['n_starts']} starts" if base["n_starts"] > 1 else ""
        lines.append(f"Unlinearized {name}: accuracy {base['test_accuracy']:.4f}{spread} at NAPL {base['napl']:.4g}.")
    for g in summary.get("paired_gaps", []):
        moments = []
        for moment in MOMENTS:
            i = g[moment]
            interval = f" [{100 * i['low']:+.2f}, {100 * i['high']:+.2f}]" if i["low"] is not None else ""
            moments.append(f"{moment} {100 * i['mean']:+.2f}{interval}")
        lines.append(f"Target NAPL {g['target']:g} (channel {g['napl_channel']:.2f}, layer {g['napl_layer']:.2f}; "
                     f"{g['recovered']['n']} pair(s)): gap in points {', '.join(moments)}.")
    if summary.get("missed_runs"):
        lines.append(f"Missed their target (left out): {', '.join(summary['missed_runs'])}.")
    if summary.get("diverged_runs"):
        lines.append(f"Diverged (left out): {', '.join(summary['diverged_runs'])}.")
    if not summary.get("paired_gaps") and summary.get("missed_runs"):
        lines.append("No paired gap: at every target one variant missed it (listed above), so no pair is matched "
                     "in NAPL.")
        return "\n".join(lines)
    if not summary.get("paired_gaps"):
        lines.append("No targeted runs: a fixed-ω sweep shows curves only, and its two variants are not compared "
                     "at matched NAPL.")
        return "\n".join(lines)
    for moment in MOMENTS:
        category, reason = gap_reading(informative_gaps(summary, moment))
        lines.append(f"Reading {'after recovery' if moment == 'recovered' else 'at the end of linearization'}: "
                     f"{category} ({reason}).")
    if network != "repvgg":
        lines.append("From a ResNet the paper expects the gap to nearly vanish above NAPL 4: compare the intervals "
                     "above with the plain net's at the same targets.")
    return "\n".join(lines)
