"""The README's results block, generated from the stored references, so that no number in it is typed by hand.

    python -m course_lib report            # print the block
    python -m course_lib report --write    # replace the block between the markers in README.md

The block sits between `<!-- results:start -->` and `<!-- results:end -->`; `tests/test_report.py` fails when the
README's block differs from what the references give.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from . import claims, from_scratch, histograms, judging, lesion_study, protocol

__all__ = ["START", "END", "REFERENCES", "HISTOGRAMS", "groundwork", "results_block", "sync_readme", "main"]

START, END = "<!-- results:start -->", "<!-- results:end -->"
ROOT = Path(__file__).resolve().parents[1]
REFERENCES = {"cifar10_cpu": "Plain net (notebook 04), `cpu` profile",
              "resnet56_cpu": "ResNet-56 ablation (notebook 05), `cpu` profile"}
HISTOGRAMS = "cifar10_cpu_napl14.5"  # the extracted nets next to ResNet-20 at its NAPL (notebook 03)


def _interval(i: dict) -> str:
    if i["mean"] is None:
        return "—"
    shown = f"{100 * i['mean']:+.2f}"
    return shown + (f" [{100 * i['low']:+.2f}, {100 * i['high']:+.2f}]" if i["low"] is not None else " (1 pair)")


def _reference_section(name: str, title: str) -> list[str]:
    stored = protocol.reference_summary(name)
    if stored is None:
        return [f"### {title}", "", f"No stored reference `data/reference/{name}/` yet.", ""]
    summary, runs = stored
    base = summary["baseline"]
    minutes = protocol.reference_wall_time(name) / 60
    commits = sorted({r["provenance"]["git_commit"] for r in runs})
    lines = [f"### {title}", "", f"Scale: {judging.scale(summary)}. Computed in {minutes:.0f} min of wall time "
             f"(`data/reference/{name}/`, code at {', '.join(f'`{c[:10]}`' for c in commits)}).", "",
             f"Unlinearized start: test accuracy {100 * base['test_accuracy']:.2f}% "
             f"(± {100 * base['test_accuracy_std']:.2f} over {base['n_starts']} start(s)) at NAPL {base['napl']:g}.",
             "", "| target NAPL | NAPL channel / layer | pairs | gap at end of linearization | gap after recovery |",
             "|---|---|---|---|---|"]
    for g in summary["paired_gaps"]:
        lines.append(f"| {g['target']:g} | {g['napl_channel']:.2f} / {g['napl_layer']:.2f} | {g['recovered']['n']} | "
                     f"{_interval(g['linearized'])} | {_interval(g['recovered'])} |")
    lines += ["", "Gaps are channel-wise minus layer-wise test accuracy in points, paired by seed, mean [95% Student-t "
              "interval]."]
    for moment in judging.MOMENTS:
        category, reason = judging.gap_reading(judging.informative_gaps(summary, moment))
        lines.append(f"Reading {'after recovery' if moment == 'recovered' else 'at the end of linearization'}: "
                     f"**{category}** ({reason}).")
    if summary["missed_runs"]:
        lines.append(f"Runs that missed their target (left out): {', '.join(summary['missed_runs'])}.")
    return lines + [""]


def groundwork() -> list[tuple[str, str]]:
    """What the paper stands on, read from the stored `cpu` references of notebooks 01, 03 and 05, as (title, text)
    pairs; each text states its own scale and 95% intervals."""
    found = []
    scratch = from_scratch.reference_results()
    if scratch:
        found.append(("ResNet vs its plain twin trained from scratch (data/reference/from_scratch_cpu/)",
                      from_scratch.reading(from_scratch.summarize(scratch))))
    depth = histograms.load_depth_comparison(HISTOGRAMS)
    found.append((f"Path-length histograms at equal NAPL (data/reference/{HISTOGRAMS}/)",
                  f"Scale: {depth['scale']}.\n{histograms.format_table(depth)}"))
    resnet56 = lesion_study.reference("resnet56", "cpu")
    if resnet56 is not None:
        curves = {f"ResNet-56, {entry['images']}": entry for entry in resnet56["entries"].values()}
        found.append(("Lesion study, pretrained ResNet-56 (data/reference/lesion_cpu/resnet56.json)",
                      lesion_study.curve_table(curves, ks=(2, 4, 8, 10))))
    for part, title in (("twins", "Lesions of the from-scratch twins"), ("extracted", "Lesions of the extracted nets")):
        record = lesion_study.reference(part, "cpu")
        if record is not None:
            found.append((f"{title} (data/reference/lesion_cpu/{part}.json)", lesion_study.reading(record)))
    return found


def _groundwork_section() -> list[str]:
    lines = ["### What the paper stands on (notebooks 01, 03, 05), `cpu` references", ""]
    for title, text in groundwork():
        lines += [f"{title}:", "", "```text", text, "```", ""]
    return lines


def results_block() -> str:
    """The block: each stored reference's scale, paired gaps and reading, what the paper stands on, then every claim
    with its verdict."""
    lines = [START, ""]
    for name, title in REFERENCES.items():
        lines += _reference_section(name, title)
    lines += _groundwork_section()
    findings = claims.assess(claims.collect_evidence())
    tally = ", ".join(f"{sum(f.verdict == v for f in findings)} {v}" for v in judging.VERDICTS)
    lines += ["### Every claim, judged by the rules of `course_lib/judging.py`", "", claims.to_markdown(findings), "",
              f"Tally: {tally} (of {len(findings)} claims).", "", END]
    return "\n".join(lines)


def sync_readme(path: Path = ROOT / "README.md", write: bool = False) -> bool:
    """Whether the README's block is up to date; with `write`, make it so. Raises ValueError without the markers."""
    text = path.read_text(encoding="utf-8")
    if text.count(START) != 1 or text.count(END) != 1:
        raise ValueError(f"{path} needs exactly one {START} ... {END} block")
    head, rest = text.split(START)
    tail = rest.split(END)[1]
    current = START + rest.split(END)[0] + END
    block = results_block()
    if write and current != block:
        path.write_text(head + block + tail, encoding="utf-8")
    return current == block


def main(argv: list[str] | None = None, prog: str = "python -m course_lib report") -> int:
    """`python -m course_lib report [--write]`; see `--help`."""
    parser = argparse.ArgumentParser(prog=prog, description="The README's results block, from data/reference/.")
    parser.add_argument("--write", action="store_true", help="replace the block in README.md")
    args = parser.parse_args(argv)
    if not args.write:
        print(results_block())
        return 0
    print("README.md results block: " + ("up to date" if sync_readme(write=True) else "rewritten"))
    return 0
