"""The only place that draws: the bundled figure style, plots of results, diagrams, and widgets with fallbacks.

Each plot function takes results (tensors, arrays, dicts) and an optional `ax`, and returns the figure; none trains,
reads globals or writes results. Graphviz diagrams fall back to matplotlib when the `dot` binary is missing, and
widgets fall back to one static figure at the default values when no widget frontend is present.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Iterator, Sequence

import matplotlib
import matplotlib.pyplot as plt
import torch

__all__ = ["STYLE_PATH", "style", "use_style", "image_grid"]

STYLE_PATH = Path(__file__).with_name("course.mplstyle")


@contextlib.contextmanager
def style() -> Iterator[None]:
    """Context manager: draw with the course style."""
    with matplotlib.style.context(str(STYLE_PATH)):
        yield


def use_style() -> None:
    """Make the course style the default for the rest of the session (notebooks call this once)."""
    matplotlib.style.use(str(STYLE_PATH))


def image_grid(images: torch.Tensor, labels: torch.Tensor, class_names: Sequence[str], per_class: int = 1,
               ax_size: float = 1.1) -> plt.Figure:
    """One row of `per_class` examples for every class; `images` uint8 (N, 3, H, W), `labels` int64 (N,)."""
    classes = range(len(class_names))
    fig, axes = plt.subplots(per_class, len(class_names), squeeze=False,
                             figsize=(ax_size * len(class_names), ax_size * per_class + 0.3))
    for c in classes:
        picks = (labels == c).nonzero().flatten()[:per_class]
        for r in range(per_class):
            ax = axes[r, c]
            ax.axis("off")
            if r < len(picks):
                ax.imshow(images[picks[r]].permute(1, 2, 0).numpy())
            if r == 0:
                ax.set_title(class_names[c], fontsize=8)
    return fig
