"""Figures drawn from the stored reference results: the README's picture of the main result, and the site's.

The main result (paper Fig. 3, our `cpu` scale): test accuracy against NAPL for channel-wise and layer-wise
linearization after the recovery phase, from the stored reference sweep `data/reference/cifar10_cpu/`, drawn by
`viz.plot_accuracy_vs_napl` (notebook 04 draws the same curves live). The committed PNG carries, in its metadata, the sha256 of the summary it was drawn from, so a test
can tell when the stored data and the picture have drifted apart.

    python -m course_lib figures --write   # redraw docs/img/accuracy_vs_napl.png
    python -m course_lib figures --check   # exit 1 if the committed PNG is not what the stored data gives
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
from PIL import Image  # Pillow comes with matplotlib

from . import judging, protocol, viz
from .results import REFERENCE_DIR

__all__ = ["MAIN_REFERENCE", "README_FIGURE", "summary_sha256", "reference_label", "draw_accuracy_vs_napl",
           "render_png", "png_metadata", "pixels", "load_summary", "write", "main"]

ROOT = Path(__file__).resolve().parents[1]
MAIN_REFERENCE = REFERENCE_DIR / "cifar10_cpu"  # a reference sweep folder (`protocol.export_reference`)
README_FIGURE = ROOT / "docs" / "img" / "accuracy_vs_napl.png"
_DPI = 100  # about 50 kB; the README shows it at its natural width
_HASH_KEY = "summary-sha256"  # PNG text chunk holding the hash of the summary drawn


def summary_sha256(summary: dict[str, Any]) -> str:
    """The sha256 of a results summary in canonical JSON (sorted keys, no spaces), independent of file layout."""
    canonical = json.dumps(summary, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(canonical.encode()).hexdigest()


def reference_label(config: dict[str, Any]) -> str:
    """A stored run's dataset and network in words, from its config (e.g. "CIFAR-10, ResNet-56")."""
    dataset = {"cifar10": "CIFAR-10", "cifar100": "CIFAR-100"}.get(config["dataset"], config["dataset"])
    network = config.get("network", "repvgg")
    net = (f"plain RepVGG-{config['arch']} at width ×{config['width_mult']:g}" if network == "repvgg"
           else {"resnet56": "ResNet-56", "resnet20": "ResNet-20"}.get(network, network))
    return f"{dataset}, {net}"


def draw_accuracy_vs_napl(summary: dict[str, Any]) -> plt.Figure:
    """Accuracy against NAPL after recovery, both variants, from a stored CIFAR summary (`judging.summarize`).

    Args:
        summary: a reference's summary (its "config" names dataset, network and seeds).

    Returns:
        The figure, in the course style, titled from the summary's config.
    """
    with viz.style():
        fig, ax = plt.subplots(figsize=(6.4, 4.0))
        config = summary["config"]
        nets = "independent nets" if config.get("network", "repvgg") == "repvgg" else "fine-tunes"
        title = f"{reference_label(config)}: mean ± std over {len(config['seeds'])} {nets} ({config['mode']} profile)"
        viz.plot_accuracy_vs_napl(summary, ax=ax, title=title)
    return fig


def render_png(summary: dict[str, Any], source: str = "data/reference/cifar10_cpu/") -> bytes:
    """`draw_accuracy_vs_napl` as PNG bytes, with the source file and the summary's sha256 in its text chunks."""
    fig = draw_accuracy_vs_napl(summary)
    buffer = io.BytesIO()
    # Software=None: no matplotlib version in the file, so the bytes change only when the picture does.
    with viz.style():  # the style's tight bounding box applies at save time
        fig.savefig(buffer, format="png", dpi=_DPI, metadata={"Software": None, "Source": source,
                                                               _HASH_KEY: summary_sha256(summary)})
    plt.close(fig)
    return buffer.getvalue()


def png_metadata(png: Path | bytes) -> dict[str, str]:
    """The text chunks of a PNG file (or PNG bytes)."""
    with Image.open(io.BytesIO(png) if isinstance(png, bytes) else png) as image:
        return dict(image.text)


def pixels(png: Path | bytes) -> np.ndarray:
    """The RGBA pixels of a PNG, uint8 (H, W, 4)."""
    with Image.open(io.BytesIO(png) if isinstance(png, bytes) else png) as image:
        return np.asarray(image.convert("RGBA"))


def load_summary(reference: Path = MAIN_REFERENCE) -> dict[str, Any]:
    """The summary of a reference sweep folder, summarized anew from its files."""
    return judging.summarize(*reversed(protocol.load_results(reference)))


def _source(reference: Path) -> str:
    return reference.relative_to(ROOT).as_posix() + "/"


def write(path: Path = README_FIGURE, reference: Path = MAIN_REFERENCE) -> Path:
    """Draw the main result from `reference` and write it to `path`; returns the path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(render_png(load_summary(reference), source=_source(reference)))
    return path


def _check(path: Path, reference: Path) -> list[str]:
    """What is wrong with the committed figure (empty when it matches the stored data)."""
    if not path.is_file():
        return [f"{path} is missing: run `python -m course_lib figures --write`"]
    summary = load_summary(reference)
    problems = []
    if png_metadata(path).get(_HASH_KEY) != summary_sha256(summary):
        problems.append(f"{path.name} was drawn from other data than {reference.name}")
    if not np.array_equal(pixels(path), pixels(render_png(summary, _source(reference)))):
        problems.append(f"{path.name} differs from a fresh drawing of {reference.name}")
    return problems


def main(argv: list[str] | None = None, prog: str = "python -m course_lib figures") -> int:
    """`python -m course_lib figures --write | --check`."""
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.splitlines()[0])
    action = parser.add_mutually_exclusive_group(required=True)
    action.add_argument("--write", action="store_true", help=f"redraw {README_FIGURE.relative_to(ROOT)}")
    action.add_argument("--check", action="store_true", help="exit 1 if the committed figure is stale")
    args = parser.parse_args(argv)
    if args.write:
        path = write()
        print(f"wrote {path.relative_to(ROOT)} ({path.stat().st_size / 1000:.0f} kB)")
        return 0
    problems = _check(README_FIGURE, MAIN_REFERENCE)
    print("\n".join(problems) or f"{README_FIGURE.relative_to(ROOT)} matches {MAIN_REFERENCE.name}")
    return 1 if problems else 0
