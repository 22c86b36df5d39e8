"""Every claim of the paper next to the course's own measured result, with a verdict and its scale (notebook 07).

The claims are those of `paper-notes` §5 and §6 (from the abstract and secondary summaries; the paper's figures were
not available). The evidence is whatever sweeps exist: the committed references under `data/reference/` (a folder
per sweep with every run's result file) and any sweep folder
under `runs/`. For each (dataset, network) the evidence that can judge is used: targeted runs (paired gaps at exactly
matched NAPL) at the largest scale; `smoke` runs never judge.

Verdicts are `judging.VERDICTS`; the general rules (pairs, intervals, what is clear, the informative NAPL range) are
those of `course_lib.judging`, and the rule of each claim is stated in its function. Claims that hold by
construction or demonstrate theory are "illustrated", not "reproduced".
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import torch

from . import judging, linearize, models, protocol, theory
from .histograms import total_variation
from .judging import VERDICTS, describe_gaps, informative_gaps
from .paths import histogram_moments
from .results import REFERENCE_DIR

__all__ = ["Evidence", "Finding", "VERDICTS", "CIFAR100_GAP_WINDOW", "RISE_NAPL", "collect_evidence", "assess",
           "ablation_reading", "cifar100_coverage", "to_markdown"]


CIFAR100_GAP_WINDOW = (3.0, 5.0)  # the NAPL range of the paper's CIFAR-100 gap claim
RISE_NAPL = 3.0  # where the paper sees a slight accuracy rise on CIFAR-100


@dataclass(frozen=True)
class Evidence:
    """One finished (or partly finished) sweep: where it comes from and its summary."""

    dataset: str  # cifar10 | cifar100 | imagenet
    network: str  # repvgg (plain net) | resnet56 | ...
    mode: str  # smoke | cpu | full
    source: str  # the file or folder it was read from
    summary: dict  # `judging.summarize` output
    runs: list  # the post-training results (each with its path-length histogram)

    @property
    def label(self) -> str:
        return f"{self.dataset} / {self.network} / {self.mode} ({Path(self.source).name})"

    @property
    def targeted(self) -> bool:
        """Whether it has paired gaps at matched NAPL (only targeted sweeps do)."""
        return bool(self.summary.get("paired_gaps"))


@dataclass(frozen=True)
class Finding:
    """A claim of the paper, what the course measured, the verdict, and the scale it stands on."""

    claim: str  # the paper's statement (paraphrased)
    source: str  # where the statement comes from: [P] primary text, [S] secondary summary (paper-notes §0)
    measured: str  # the course's numbers, in words
    verdict: str  # one of VERDICTS
    evidence: str  # the files the numbers come from ("" when computed here)
    scale: str = ""  # network, epochs, independent nets, mode (`judging.scale`), or "computed"


def _shown(path: Path) -> str:
    """A path as shown to learners: relative to the repository (or the working folder) when inside it."""
    for root in (REFERENCE_DIR.parent.parent, Path.cwd()):
        try:
            return str(path.resolve().relative_to(root.resolve()))
        except ValueError:
            continue
    return str(path)


def _evidence(starts: list[dict], runs: list[dict], source: Path) -> Evidence:
    config = (runs[0] if runs else starts[0])["config"]
    return Evidence(dataset=config.get("dataset", "imagenet"), network=config.get("network", "repvgg"),
                    mode=config.get("mode", "?"), source=_shown(source), summary=judging.summarize(runs, starts),
                    runs=runs)


def collect_evidence(reference_dir: str | Path = REFERENCE_DIR, runs_dir: str | Path | None = None) -> list[Evidence]:
    """Read every reference sweep folder and every sweep folder under `runs_dir` (two levels)."""
    found = []
    reference_dir = Path(reference_dir)
    folders = [p for p in sorted(reference_dir.glob("*")) if (p / "pretrain").is_dir()]
    if runs_dir is not None and Path(runs_dir).is_dir():
        folders += [p.parent for p in sorted(Path(runs_dir).glob("*/pretrain")) + sorted(
            Path(runs_dir).glob("*/*/pretrain")) if p.is_dir()]
    for folder in folders:
        starts, runs = protocol.load_results(folder)
        if runs:
            found.append(_evidence(starts, runs, folder))
    return found


def _best(evidence: Iterable[Evidence], dataset: str, network: str = "repvgg") -> Evidence | None:
    """The evidence of (dataset, network) that can judge: targeted first, then the larger scale and more runs."""
    usable = [e for e in evidence if e.dataset == dataset and e.network == network and judging.can_judge(e.mode)]
    return max(usable, key=lambda e: (e.targeted, judging.MODE_RANK[e.mode], len(e.runs)), default=None)


def _not_run(claim: str, source: str, what: str) -> Finding:
    return Finding(claim, source, f"no {what} result that can judge (targeted, cpu or full scale) yet", "not run", "")


def _gap_claim(claim: str, source: str, ev: Evidence | None, what: str,
               window: tuple[float, float] | None = None) -> Finding:
    """Rule (`judging.gap_reading`, after recovery): reproduced when channel-wise is clearly ahead at some target and
    clearly behind at none; not reproduced when layer-wise is clearly ahead at some target; else inconclusive. With a
    `window` (low, high), only the targets in it count (the claim names a NAPL range)."""
    if ev is None or not ev.targeted:
        return _not_run(claim, source, what)

    def gaps(moment: str) -> list[dict]:
        found = informative_gaps(ev.summary, moment)
        return found if window is None else [g for g in found if window[0] <= g["napl"] <= window[1]]

    verdict, reason = judging.gap_reading(gaps("recovered"))
    where = "" if window is None else f" at the targets in NAPL {window[0]:g}–{window[1]:g}"
    measured = (f"paired gaps in accuracy points (channel − layer, mean [95% interval]){where} after recovery: "
                f"{describe_gaps(gaps('recovered')) or 'none'}; at the end of linearization: "
                f"{describe_gaps(gaps('linearized')) or 'none'}. {reason}")
    return Finding(claim, source, measured, verdict, ev.source, judging.scale(ev.summary))


def _cifar10_later(evidence: list[Evidence]) -> Finding:
    claim = "CIFAR-10: the gap appears only at lower NAPL than on CIFAR-100."
    cifar10, cifar100 = _best(evidence, "cifar10"), _best(evidence, "cifar100")
    if cifar100 is None or not cifar100.targeted:
        shown = f"; CIFAR-10 alone: {describe_gaps(informative_gaps(cifar10.summary))}" if (
            cifar10 and cifar10.targeted) else ""
        return Finding(claim, "[S]", f"needs a targeted CIFAR-100 sweep (no full CIFAR-100 offline here){shown}",
                       "not run", cifar10.source if cifar10 else "")
    if cifar10 is None or not cifar10.targeted:
        return _not_run(claim, "[S]", "targeted CIFAR-10 plain-net")
    highest = {name: max((g["napl"] for g in informative_gaps(e.summary) if g["clear"] == 1), default=None)
               for name, e in (("cifar10", cifar10), ("cifar100", cifar100))}
    ok = None not in highest.values() and highest["cifar10"] < highest["cifar100"]
    return Finding(claim, "[S]", f"highest target with a clear gap: {highest}", "reproduced" if ok else "inconclusive",
                   f"{cifar10.source}, {cifar100.source}")


def _widening(evidence: list[Evidence]) -> Finding:
    """Rule: per seed, the gap at the lowest informative target minus the gap at the highest; reproduced when the
    interval of that difference lies above 0, not reproduced when below, else inconclusive."""
    claim = "The channel-wise advantage grows as NAPL decreases."
    ev = _best(evidence, "cifar10")
    gaps = [g for g in (ev.summary["paired_gaps"] if ev and ev.targeted else [])
            if judging.is_informative(g["target"], ev.summary)]
    if len(gaps) < 2:
        return _not_run(claim, "[S]", "plain-net sweep with two or more targets")
    low, high = min(gaps, key=lambda g: g["target"]), max(gaps, key=lambda g: g["target"])
    by_seed = {s: d for s, d in zip(high["seeds"], high["recovered"]["diffs"])}
    diffs = [d - by_seed[s] for s, d in zip(low["seeds"], low["recovered"]["diffs"]) if s in by_seed]
    interval = judging.paired_interval(diffs)
    verdict = {1: "reproduced", -1: "not reproduced", 0: "inconclusive"}[judging.clarity(interval)]
    shown = (f"[{100 * interval['low']:+.1f}, {100 * interval['high']:+.1f}]" if interval["low"] is not None
             else "(no interval)")
    measured = (f"gap at NAPL {low['target']:g} minus gap at NAPL {high['target']:g}, paired by seed, after recovery: "
                f"{100 * interval['mean']:+.1f} points {shown} over {interval['n']} nets")
    return Finding(claim, "[S]", measured, verdict, ev.source, judging.scale(ev.summary))


def _rise(evidence: list[Evidence]) -> Finding:
    """Rule (`judging.rise_at`, channel-wise, after recovery): reproduced when accuracy clearly rises from the next
    higher target to the target nearest NAPL 3, not reproduced when it clearly falls, else inconclusive. Only the
    rise is tested; the paper's explanation (a smoother loss landscape) is not measured here."""
    claim = ("CIFAR-100: accuracy rises slightly around NAPL ≈ 3, which the paper attributes to linearization "
             "smoothing the loss landscape.")
    ev = _best(evidence, "cifar100")
    rise = judging.rise_at(ev.runs, RISE_NAPL) if ev is not None and ev.targeted else None
    if rise is None or rise["target"] is None:
        return _not_run(claim, "[S]", "targeted CIFAR-100 channel-wise")
    i = rise["interval"]
    shown = f"[{100 * i['low']:+.1f}, {100 * i['high']:+.1f}]" if i["low"] is not None else "(no interval)"
    verdict = "inconclusive" if i["low"] is None else {1: "reproduced", -1: "not reproduced", 0: "inconclusive"}[
        rise["clear"]]
    measured = (f"channel-wise accuracy at NAPL {rise['target']:g} minus at NAPL {rise['above']:g}, paired by seed, "
                f"after recovery: {100 * i['mean']:+.1f} points {shown} over {i['n']} nets; the loss-landscape "
                "explanation is not measured")
    return Finding(claim, "[S]", measured, verdict, ev.source, judging.scale(ev.summary))


def cifar100_coverage(targets: Iterable[float]) -> dict:
    """Which targets of a sweep the two CIFAR-100 claims would read: those in `CIFAR100_GAP_WINDOW` (the gap claim)
    and the pair (target nearest `RISE_NAPL`, next higher target) of the rise claim; "ready" when both exist."""
    targets = sorted({float(t) for t in targets})
    window = [t for t in targets if CIFAR100_GAP_WINDOW[0] <= t <= CIFAR100_GAP_WINDOW[1]]
    rise = judging.rise_targets(targets, RISE_NAPL)
    return {"gap_window": window, "rise_pair": rise, "ready": bool(window) and rise is not None}


def _ordering(evidence: list[Evidence]) -> Finding:
    claim = "The gap is larger on harder data: ImageNet > CIFAR-100 > CIFAR-10."
    missing = [d for d in ("imagenet", "cifar100", "cifar10")
               if _best(evidence, d) is None or not _best(evidence, d).targeted]
    if missing:
        return Finding(claim, "[S]", f"needs targeted sweeps on all three datasets; missing: {', '.join(missing)}",
                       "not run", "")
    means = {d: judging.mean_gap(_best(evidence, d).summary) for d in ("imagenet", "cifar100", "cifar10")}
    ordered = all(v is not None for v in means.values()) and means["imagenet"] > means["cifar100"] > means["cifar10"]
    measured = ", ".join(f"{d}: mean gap {100 * v:+.2f}" for d, v in means.items() if v is not None)
    return Finding(claim, "[S]", measured, "reproduced" if ordered else "not reproduced",
                   ", ".join(_best(evidence, d).source for d in means))


def ablation_reading(resnet: dict, plain: dict) -> tuple[str, str]:
    """(verdict, measured) of the ablation claim from two summaries. Rule, at the targets above NAPL 4 that both
    sweeps reached: not reproduced when a ResNet gap is clear (either sign: a clear gap has not vanished);
    reproduced when every ResNet interval holds 0 while the plain net is clearly ahead at one of those targets;
    else inconclusive. Smoke summaries get a reading too (the notebooks show it) but never judge a claim here."""
    plain_gaps = {g["napl"]: g for g in informative_gaps(plain)}
    common = [g for g in informative_gaps(resnet) if g["napl"] > 4 and g["napl"] in plain_gaps]
    if not common:
        return "not run", "no target above NAPL 4 reached by both sweeps"
    if any(g["low"] is None for g in common):
        verdict = "inconclusive"
    elif any(g["clear"] != 0 for g in common):
        verdict = "not reproduced"
    elif any(plain_gaps[g["napl"]]["clear"] == 1 for g in common):
        verdict = "reproduced"
    else:
        verdict = "inconclusive"
    return verdict, (f"after recovery, ResNet-56: {describe_gaps(common)}; plain net at the same targets: "
                     f"{describe_gaps([plain_gaps[g['napl']] for g in common])}")


def _ablation(evidence: list[Evidence]) -> Finding:
    claim = "From ResNet-56 the gap is substantially reduced and nearly vanishes for NAPL > 4."
    resnet, plain = _best(evidence, "cifar10", "resnet56"), _best(evidence, "cifar10")
    if resnet is None or plain is None or not resnet.targeted or not plain.targeted:
        return _not_run(claim, "[S]", "targeted ResNet-56 and plain-net")
    verdict, measured = ablation_reading(resnet.summary, plain.summary)
    return Finding(claim, "[S]", measured, verdict, f"{resnet.source}, {plain.source}",
                   f"{judging.scale(resnet.summary)}; {judging.scale(plain.summary)}")


def _histograms(evidence: list[Evidence]) -> list[Finding]:
    """Emergent variable depth (histogram spread) and the near-binomial shape: both hold by construction for any
    partly linear channel-wise net (a Poisson-binomial of the layers' fractions), so they are illustrated."""
    claims = ("Channel-wise linearization of a feedforward net produces variable-depth, ResNet-like structure "
              "(layer-wise stays fixed-depth).",
              "The extracted networks' path-length histograms are near-binomial mixtures of short and long paths.")
    ev = next((e for e in (_best(evidence, d) for d in ("imagenet", "cifar100", "cifar10")) if e is not None), None)
    runs = [r for r in (ev.runs if ev else []) if r.get("path_length_histogram")
            and judging.is_informative(r["napl"], ev.summary)]
    channel = [r for r in runs if r["granularity"] == "channel"]
    layer = [r for r in runs if r["granularity"] == "layer"]
    if not channel:
        return [_not_run(c, "[S]", "plain-net channel-wise") for c in claims]
    stds = [histogram_moments(r["path_length_histogram"])[1] for r in channel]
    layer_stds = [histogram_moments(r["path_length_histogram"])[1] for r in layer]
    tvs = [_tv_to_binomial(r["path_length_histogram"], n_layers=22) for r in channel]
    why = "holds by construction for any partly linear channel-wise net: an illustration, not a test"
    return [
        Finding(claims[0], "[S]", f"path-length std of channel-wise nets {min(stds):.2f}–{max(stds):.2f} over "
                f"{len(channel)} runs; layer-wise nets {max(layer_stds, default=0):.2f}; {why}", "illustrated",
                ev.source, judging.scale(ev.summary)),
        Finding(claims[1], "[S]", f"total-variation distance to Binomial(22, NAPL/22) {min(tvs):.3f}–{max(tvs):.3f}; "
                f"{why}", "illustrated", ev.source, judging.scale(ev.summary)),
    ]


def _tv_to_binomial(dist: list[float], n_layers: int) -> float:
    mean = sum(k * p for k, p in enumerate(dist))
    q = min(max(mean / n_layers, 0.0), 1.0)
    binom = [math.comb(n_layers, k) * q ** k * (1 - q) ** (n_layers - k) for k in range(n_layers + 1)]
    return total_variation(dist, binom)


@functools.cache  # builds RepVGG-A2 twice: a few seconds
def _parameter_control() -> Finding:
    build, shape = models.linearized_networks()["RepVGG-A2 plain (ImageNet, notebook 06)"]
    c = linearize.slope_counts(build(), shape)
    return Finding("Channel-wise linearization adds only ~0.03% parameters (RepVGG-A2); extra experiments rule this "
                   "out as the cause.", "[S]",
                   f"computed: {c['channel_slopes']:,} channel vs {c['layer_slopes']} layer slopes on "
                   f"{c['parameters']:,} parameters = {100 * c['extra_fraction']:.4f}%; the paper's extra control "
                   "experiments were not repeated", "illustrated", "course_lib.linearize.slope_counts", "computed")


@functools.cache
def _theory() -> tuple[Finding, ...]:
    relu = theory.prop1_max_error("relu", 1e-2)
    slopes = {phi: math.log10(theory.prop1_max_error(phi, 1e-2) / theory.prop1_max_error(phi, 1e-3))
              for phi in ("tanh", "gelu")}
    W, b = theory.identity_residual_block(4)
    x = torch.randn(100, 4, dtype=W.dtype)
    identity_error = (theory.residual_block(x, W, b, "relu") - x).abs().max().item()
    generator = torch.Generator().manual_seed(0)
    x1, x2 = theory.find_collision(torch.randn(4, 4, generator=generator), torch.randn(4, generator=generator))
    return (
        Finding("Proposition 1: a residual block equals a feedforward layer of twice the width plus a linear read-out, "
                "exactly only as ε → 0 (exact for ReLU on bounded inputs).", "[S] + reconstruction (paper-notes §6.4)",
                f"computed: ReLU max error {relu:.1e} at ε = 1e-2 (float rounding only); error order in ε: tanh "
                f"{slopes['tanh']:.2f}, GELU {slopes['gelu']:.2f} (ε² and ε)", "illustrated", "course_lib.theory",
                "computed"),
        Finding("A ResNet cannot be equivalently reparameterized as a same-width feedforward net (non-injective φ).",
                "[S] + proof sketch (paper-notes §6.2)",
                f"computed: the residual block relu(0·x − 1) + x is the identity (max error {identity_error:.0e}), "
                f"while a square ReLU layer maps two inputs {float((x1 - x2).norm()):.2f} apart to one output",
                "illustrated", "course_lib.theory", "computed"),
    )


def assess(evidence: list[Evidence]) -> list[Finding]:
    """One finding per claim of the paper, from the evidence (see the module docstring for the rules)."""
    return [
        _gap_claim("Variable-depth (channel-wise) networks generalise better than fixed-depth (layer-wise) ones at "
                   "matched NAPL, even where optimisation is unlikely to matter (after a recovery phase).", "[P]",
                   _best(evidence, "cifar10"), "CIFAR-10 plain-net"),
        _gap_claim("ImageNet, RepVGG-A2: channel-wise is more accurate below NAPL ≈ 12, the two are comparable "
                   "above, and the gap widens as NAPL decreases.", "[S]", _best(evidence, "imagenet"), "ImageNet"),
        _gap_claim("CIFAR-100: channel-wise is clearly better at NAPL 3–5 (error bars do not overlap).", "[S]",
                   _best(evidence, "cifar100"), "CIFAR-100", window=CIFAR100_GAP_WINDOW),
        _rise(evidence),
        _cifar10_later(evidence),
        _widening(evidence),
        _ordering(evidence),
        _ablation(evidence),
        *_histograms(evidence),
        _parameter_control(),
        *_theory(),
    ]


def to_markdown(findings: list[Finding]) -> str:
    """The findings as a markdown table (claim, source, our result, scale, verdict)."""
    icon = {"reproduced": "✅", "not reproduced": "❌", "inconclusive": "❔", "illustrated": "📐", "not run": "⏳"}
    lines = ["| # | the paper says | source | we measured | scale | verdict |", "|---|---|---|---|---|---|"]
    for i, f in enumerate(findings, 1):
        measured = f.measured + (f" <br><sub>{f.evidence}</sub>" if f.evidence else "")
        lines.append(f"| {i} | {f.claim} | {f.source} | {measured} | {f.scale or '—'} | {icon[f.verdict]} {f.verdict} |")
    return "\n".join(lines)
