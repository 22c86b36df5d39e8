"""Every rule that judges a result, stated once: which NAPL range is informative, how the variants are matched,
what makes a gap clear, which runs may judge a claim, and the plain-language verdict of a sweep.

`protocol` (the sweeps' summaries), `claims` (notebook 07), `viz` and the notebooks call these functions; nothing else
restates a rule. The rules are ours where the paper is silent:

- *Informative NAPL range*: a run tells something about depth only when it was linearized (NAPL below the
  unlinearized net's by more than `UNLINEARIZED_MARGIN`) and is not (nearly) linear altogether (NAPL above
  `NEAR_LINEAR_NAPL`: there both variants are the same linear map, so a gap would measure only optimisation).
- *Matched NAPL*: at each layer-wise point, the channel-wise accuracy is interpolated linearly in NAPL between the
  mean points of the channel-wise curve (the unlinearized net included); the gap is channel minus layer, so positive
  gaps favour the variable-depth networks, as the paper reports.
- *Clear*: a gap is clear when it is larger than the two variants' seed standard deviations added together.
- *Who may judge*: `smoke` runs test the code, never a claim; a single seed has no spread to judge by.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

import torch

from .results import run_name

__all__ = ["VERDICTS", "MODE_RANK", "NEAR_LINEAR_NAPL", "UNLINEARIZED_MARGIN", "can_judge", "informative_range",
           "is_informative", "n_seeds", "gap_spread", "clarity", "informative_gaps", "describe_gaps", "summarize",
           "matched_pair", "mean_gap", "ablation_gap_smaller", "verdict"]

VERDICTS = ("reproduced", "partly", "not reproduced", "not run yet")
MODE_RANK = {"full": 2, "cpu": 1, "smoke": 0}  # larger scale first; rank 0 never judges
NEAR_LINEAR_NAPL = 0.5
UNLINEARIZED_MARGIN = 0.5


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


def gap_spread(gap: Mapping) -> float:
    """The spread a gap must exceed to be clear: the two variants' seed standard deviations added together."""
    return gap["layer_accuracy_std"] + gap["channel_accuracy_std_interp"]


def clarity(gap: Mapping) -> int:
    """+1 when channel-wise is clearly ahead, -1 when clearly behind, 0 when the gap is within the spread."""
    spread = gap_spread(gap)
    return 1 if gap["gap"] > spread else (-1 if -gap["gap"] > spread else 0)


def informative_gaps(summary: Mapping) -> list[dict]:
    """The sweep's matched-NAPL gaps in the informative range, highest NAPL first, each with its `clear` flag."""
    gaps = [g for g in summary["gaps_at_matched_napl"] if is_informative(g["napl"], summary)]
    return [{**g, "clear": clarity(g)} for g in sorted(gaps, key=lambda g: -g["napl"])]


def describe_gaps(gaps: Iterable[Mapping]) -> str:
    """Gaps (from `informative_gaps`) in words: `NAPL 7.0: +2.6 (clear); ...`, in accuracy points."""
    words = {1: " (clear)", -1: " (clearly behind)", 0: " (within spread)"}
    return "; ".join(f"NAPL {g['napl']:.1f}: {100 * g['gap']:+.1f}{words[g['clear']]}" for g in gaps)


def _mean_std(values: list[float]) -> tuple[float, float]:
    t = torch.tensor(values, dtype=torch.float64)
    return t.mean().item(), (t.std().item() if len(values) > 1 else 0.0)


def _interp(x: float, xs: list[float], ys: list[float]) -> float:
    for (x0, y0), (x1, y1) in zip(zip(xs, ys), zip(xs[1:], ys[1:])):
        if x0 <= x <= x1:
            return y0 if x1 == x0 else y0 + (y1 - y0) * (x - x0) / (x1 - x0)
    return ys[-1]


def summarize(results: list[dict], baseline: dict | None = None) -> dict:
    """Average over seeds per (granularity, ω) and compare the variants at matched NAPL (module docstring).

    Runs whose loss became non-finite are listed under "diverged_runs" and left out of the means.
    """
    diverged = [run_name(r["granularity"], r["omega"], r["seed"]) for r in results if r.get("diverged")]
    results = [r for r in results if not r.get("diverged")]
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


def matched_pair(results: list[dict], summary: Mapping) -> tuple[dict, dict] | None:
    """The (channel-wise, layer-wise) runs closest in NAPL among the informative ones, or None."""
    ok = [r for r in results if not r.get("diverged") and is_informative(r["napl"], summary)]
    pairs = [(c, l) for c in ok if c["granularity"] == "channel" for l in ok if l["granularity"] == "layer"]
    return min(pairs, key=lambda pair: (abs(pair[0]["napl"] - pair[1]["napl"]), pair[1]["napl"])) if pairs else None


def mean_gap(summary: Mapping, napl_min: float = 0.0, napl_max: float | None = None) -> float | None:
    """Mean informative gap over the points with napl_min < NAPL < napl_max, or None when there is none.

    The paper's ablation reads: from a ResNet the gap "nearly vanishes for NAPL > 4", i.e.
    `mean_gap(resnet_summary, 4)` should be close to 0.
    """
    top = math.inf if napl_max is None else napl_max
    gaps = [g["gap"] for g in summary["gaps_at_matched_napl"]
            if is_informative(g["napl"], summary) and napl_min < g["napl"] < top]
    return sum(gaps) / len(gaps) if gaps else None


def ablation_gap_smaller(resnet_gap: float, plain_gap: float) -> bool:
    """Whether the channel-wise advantage from a ResNet is smaller than from the plain net (a reversal counts as
    smaller: the advantage is gone). Whether it *vanishes* is a separate test (every point within the spread)."""
    return resnet_gap < plain_gap


def verdict(summary: Mapping) -> str:
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
    informative = informative_gaps(summary)
    top = informative_range(summary)[1]
    if not informative:
        lines.append("No layer-wise run was linearized inside the channel-wise NAPL range, so there is no matched "
                     "comparison yet: the claim is not tested by this run (widen the ω grid or train longer).")
    elif n_seeds(summary) < 2:
        best = max(informative, key=lambda g: g["gap"])
        lines.append(f"Channel-wise is ahead at {sum(g['gap'] > 0 for g in informative)} of "
                     f"{len(informative)} matched NAPL point(s) (largest gap {100 * best['gap']:+.2f} points at "
                     f"NAPL {best['napl']:.2f}), but with a single seed there is no spread to judge the gaps "
                     "by: not a test of the paper's claim.")
        return "\n".join(lines)
    else:
        clear = [g for g in informative if g["clear"] == 1]
        worse = [g for g in informative if g["clear"] == -1]
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
