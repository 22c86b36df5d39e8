"""The only place that draws: the bundled figure style, plots of results, diagrams, and widgets with fallbacks.

Each plot function takes results (tensors, arrays, dicts) and an optional `ax` (or `axes`), and returns the figure;
none trains, reads globals or writes results. Graphviz diagrams fall back to matplotlib when the `dot` binary is
missing, and widgets fall back to one static figure at the default values when no widget frontend is present.

Used by every notebook: `interactive` and the Proposition 1 plots in 01_function_spaces, the PReLU, penalty and slope
plots in 02_prelu_linearization, `path_graph` and `plot_histogram` in 03_paths_and_napl.
"""

from __future__ import annotations

import contextlib
import math
import os
import shutil
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import torch

from . import judging

__all__ = [
    "STYLE_PATH", "ENV_WIDGETS", "DOT_INSTALL_HINT", "style", "use_style", "image_grid", "widgets_available",
    "interactive", "path_graph", "plot_curves", "plot_point_maps", "plot_prop1_errors", "plot_prelu",
    "plot_penalties", "plot_slopes", "plot_nonlinear_fractions", "plot_error_map", "plot_histogram",
    "plot_from_scratch",
    "plot_lesion_curves", "plot_single_lesions",
]

STYLE_PATH = Path(__file__).with_name("course.mplstyle")
ENV_WIDGETS = "COURSE_WIDGETS"
DOT_INSTALL_HINT = (
    "Graphviz's `dot` binary was not found, so this diagram is drawn with matplotlib. For the graphviz version "
    "install the binary (the pip package `graphviz` is only the Python bindings): `apt install graphviz`, "
    "`brew install graphviz` or `conda install -c conda-forge graphviz`, then restart the kernel."
)


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


def _new_ax(ax: plt.Axes | None, figsize: tuple[float, float] | None = None) -> tuple[plt.Figure, plt.Axes]:
    if ax is not None:
        return ax.figure, ax
    fig, ax = plt.subplots(figsize=figsize)
    return fig, ax


def _numpy(values: Any) -> np.ndarray:
    if isinstance(values, torch.Tensor):
        return values.detach().cpu().double().numpy()
    return np.asarray(values, dtype=float)


# ---------------------------------------------------------------------------------------------------------------------
# Widgets with a static fallback
# ---------------------------------------------------------------------------------------------------------------------


def _in_kernel_with_ipywidgets() -> bool:
    """ipywidgets imports and the code runs in an ipykernel shell (Colab's shell subclasses it, hence the MRO)."""
    try:
        import ipywidgets  # noqa: F401
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and any(c.__name__ == "ZMQInteractiveShell" for c in type(shell).__mro__)


def widgets_available() -> bool:
    """Whether `interactive` draws live sliders here. The first rule that applies decides:

    1. `$COURSE_WIDGETS` is "0": static; "1": widgets whenever rule 3 holds.
    2. `$COURSE_RUN_MODE` is set: a headless run (CI, nbval, `make reproduce`), so static.
    3. ipywidgets imports and the code runs in an ipykernel shell (JupyterLab, Notebook, VS Code, Colab): widgets.
    4. Anything else (plain Python, IPython in a terminal, no ipywidgets): static.

    A kernel cannot see whether a frontend is watching it, so a headless runner must set one of the two variables
    (otherwise its executed notebook holds a widget instead of a picture).
    """
    forced = os.environ.get(ENV_WIDGETS, "").strip()
    if forced == "0" or (forced != "1" and os.environ.get("COURSE_RUN_MODE", "").strip()):
        return False
    return _in_kernel_with_ipywidgets()


def _default(spec: Any) -> Any:
    if isinstance(spec, tuple) and len(spec) == 4:
        return spec[3]
    if isinstance(spec, list):
        return spec[0]
    return spec


def _control(name: str, spec: Any) -> Any:
    import ipywidgets as widgets

    if isinstance(spec, tuple) and len(spec) == 4:
        low, high, step, value = spec
        kind = widgets.IntSlider if all(isinstance(v, int) for v in spec) else widgets.FloatSlider
        return kind(value=value, min=low, max=high, step=step, description=name, continuous_update=False)
    if isinstance(spec, list):
        return widgets.Dropdown(options=spec, value=spec[0], description=name)
    return widgets.fixed(spec)


def interactive(draw: Callable[..., plt.Figure | None], *, static: bool | None = None, **sliders: Any) -> Any:
    """Sliders that redraw a figure, or one static figure at the default values when no widget frontend is live.

    Args:
        draw: called with one keyword argument per slider; draws and returns a figure (or draws on the current one).
        static: True forces the static figure; False asks for widgets whenever ipywidgets runs in a kernel;
            None (default) decides with `widgets_available()`.
        **sliders: per keyword, `(min, max, step, default)` for a slider (an integer slider when all four are ints),
            a list for a drop-down whose first item is the default, or any other value, passed as a fixed argument.

    Returns:
        The `ipywidgets.interactive` panel (already displayed), or the static figure (returned, not displayed: the
        notebook's inline backend shows it once at the end of the cell).
    """
    use_widgets = widgets_available() if static is None else (not static and _in_kernel_with_ipywidgets())
    if not use_widgets:
        fig = draw(**{name: _default(spec) for name, spec in sliders.items()})
        return fig if fig is not None else plt.gcf()

    import ipywidgets as widgets
    from IPython.display import display

    def update(**values: Any) -> None:
        draw(**values)
        plt.show()  # the inline backend shows the figure inside the panel's output area and closes it

    panel = widgets.interactive(update, **{name: _control(name, spec) for name, spec in sliders.items()})
    display(panel)
    return panel


# ---------------------------------------------------------------------------------------------------------------------
# Path diagrams (graphviz, or matplotlib without `dot`)
# ---------------------------------------------------------------------------------------------------------------------

_SKIP_COLOUR, _PATH_COLOUR, _LINEAR_COLOUR = "#D55E00", "#0072B2", "#BBBBBB"


def _linear_masks(widths: Sequence[int], linear: Sequence[Sequence[bool]] | None) -> list[list[bool]]:
    if linear is None:
        return [[False] * w for w in widths]
    masks = [list(map(bool, m)) for m in linear]
    if [len(m) for m in masks] != list(widths):
        raise ValueError(f"linear must give one flag per unit: widths {list(widths)}, got {[len(m) for m in masks]}")
    return masks


def path_graph(widths: Sequence[int], *, skip: bool = True, linear: Sequence[Sequence[bool]] | None = None,
               title: str | None = None, engine: str = "auto") -> Any:
    """Draw a network as a path graph: one input unit, fully connected hidden layers, one output unit.

    Hidden units are circles (nonlinear) or grey squares (linear, e.g. a PReLU channel frozen at slope 1). With
    `skip`, a red edge joins input and output directly: the residual connection of paper 2211.17180, Fig. 1.

    Args:
        widths: units per hidden layer, e.g. [4, 4, 4, 4] for the 257-path example.
        skip: draw the input-to-output skip connection.
        linear: per hidden layer, one bool per unit, True where the unit is linear; None means all nonlinear.
        title: the diagram's title; None builds one from the number of paths.
        engine: "graphviz", "matplotlib", or "auto" (graphviz when the `dot` binary and the `graphviz` package are
            there; otherwise matplotlib, after printing `DOT_INSTALL_HINT`).

    Returns:
        A `graphviz.Digraph` or a matplotlib Figure (already closed for pyplot); either shows itself when it is the
        last expression of a notebook cell.

    Raises:
        ValueError: for an unknown engine or a `linear` mask that does not match `widths`.
    """
    if engine not in ("auto", "graphviz", "matplotlib"):
        raise ValueError(f"unknown engine {engine!r}; choose auto, graphviz or matplotlib")
    masks = _linear_masks(widths, linear)
    n_paths = math.prod(widths) + int(skip)
    title = title or f"{n_paths} input-to-output paths" + (" (1 through the skip)" if skip else "")
    if engine == "auto":
        try:
            import graphviz  # noqa: F401
            engine = "graphviz" if shutil.which("dot") else "matplotlib"
        except ImportError:
            engine = "matplotlib"
        if engine == "matplotlib":
            print(DOT_INSTALL_HINT)
    if engine == "graphviz":
        return _path_graph_graphviz(widths, skip, masks, title)
    return _path_graph_matplotlib(widths, skip, masks, title)


def _path_graph_graphviz(widths: Sequence[int], skip: bool, masks: list[list[bool]], title: str) -> Any:
    import graphviz

    dot = graphviz.Digraph(graph_attr={"rankdir": "LR", "label": title, "labelloc": "t", "nodesep": "0.15",
                                       "ranksep": "0.6"},
                           node_attr={"label": "", "width": "0.25", "height": "0.25", "fixedsize": "true"},
                           edge_attr={"arrowsize": "0.4", "color": "#00000055"})
    dot.node("in", shape="circle", style="filled", fillcolor="black")
    dot.node("out", shape="circle", style="filled", fillcolor="black")
    previous = ["in"]
    for layer, mask in enumerate(masks):
        names = [f"h{layer}_{i}" for i in range(len(mask))]
        with dot.subgraph() as rank:
            rank.attr(rank="same")
            for name, is_linear in zip(names, mask):
                rank.node(name, shape="square" if is_linear else "circle",
                          style="filled", fillcolor=_LINEAR_COLOUR if is_linear else _PATH_COLOUR)
        for a in previous:
            for b in names:
                dot.edge(a, b)
        previous = names
    for a in previous:
        dot.edge(a, "out")
    if skip:
        dot.edge("in", "out", color=_SKIP_COLOUR, penwidth="2.5", constraint="false")
    return dot


def _path_graph_matplotlib(widths: Sequence[int], skip: bool, masks: list[list[bool]], title: str) -> plt.Figure:
    columns = [[0.0]] + [list(np.arange(w) - (w - 1) / 2) for w in widths] + [[0.0]]  # unit heights per column
    top = max(len(c) for c in columns) / 2
    fig, ax = plt.subplots(figsize=(1.3 * len(columns), 0.5 * 2 * top + 1.2))
    for x in range(len(columns) - 1):
        for y0 in columns[x]:
            for y1 in columns[x + 1]:
                ax.plot([x, x + 1], [y0, y1], color="black", alpha=0.25, lw=0.8, zorder=1)
    if skip:
        arc = np.linspace(0, np.pi, 100)
        half = (len(columns) - 1) / 2
        ax.plot(half - half * np.cos(arc), (top + 0.6) * np.sin(arc), color=_SKIP_COLOUR, lw=2.5, zorder=1)
    ax.scatter([0, len(columns) - 1], [0, 0], s=120, color="black", zorder=2)
    for x, mask in enumerate(masks, start=1):
        for y, is_linear in zip(columns[x], mask):
            ax.scatter([x], [y], s=140, marker="s" if is_linear else "o", zorder=2,
                       color=_LINEAR_COLOUR if is_linear else _PATH_COLOUR, edgecolor="black", linewidth=0.5)
    ax.set_title(title)
    ax.set_xlim(-0.5, len(columns) - 0.5)
    ax.set_ylim(-top - 0.5, top + 1.0)
    ax.axis("off")
    plt.close(fig)  # closed for pyplot, so a notebook shows it once, as the cell's value, like a graphviz diagram
    return fig


# ---------------------------------------------------------------------------------------------------------------------
# Generic curves and notebook 01 (function spaces, Proposition 1)
# ---------------------------------------------------------------------------------------------------------------------


def plot_curves(x: Any, curves: Mapping[str, Any], *, xlabel: str, ylabel: str, title: str,
                ax: plt.Axes | None = None, logx: bool = False, logy: bool = False,
                styles: Mapping[str, dict] | None = None) -> plt.Figure:
    """Line plot of several named curves over one x.

    Args:
        x: shared x values, shape (n,).
        curves: label -> y values of shape (n,).
        xlabel, ylabel, title: axis labels and title (required: every course figure is labelled).
        ax: draw here; None makes a new figure.
        logx, logy: logarithmic axes.
        styles: label -> extra matplotlib keyword arguments (e.g. {"F(x)": {"ls": "--"}}).

    Returns:
        The figure.
    """
    fig, ax = _new_ax(ax)
    xs = _numpy(x)
    for label, ys in curves.items():
        ax.plot(xs, _numpy(ys), label=label, **(styles or {}).get(label, {}))
    ax.set(xlabel=xlabel, ylabel=ylabel, title=title)
    if logx:
        ax.set_xscale("log")
    if logy:
        ax.set_yscale("log")
    if len(curves) > 1:
        ax.legend()
    return fig


def plot_point_maps(points: Any, maps: Mapping[str, Any], *, color: Any = None, title: str = "",
                    axes: Sequence[plt.Axes] | None = None) -> plt.Figure:
    """Scatter 2-D inputs next to their images under several maps, one panel each, colours following the points.

    Args:
        points: inputs, shape (n, 2).
        maps: panel title -> outputs, shape (n, 2), in the same order as `points`.
        color: one value per point (default: the input's angle), so a reader can follow a point between panels.
        title: the figure's title.
        axes: 1 + len(maps) axes to draw on; None makes a new figure.

    Returns:
        The figure.
    """
    pts = _numpy(points)
    if axes is None:
        fig, axes = plt.subplots(1, 1 + len(maps), figsize=(3.2 * (1 + len(maps)), 3.3))
    fig = axes[0].figure
    c = np.arctan2(pts[:, 1], pts[:, 0]) if color is None else _numpy(color)
    for ax, (name, values) in zip(axes, [("inputs x", pts), *maps.items()]):
        v = _numpy(values)
        ax.scatter(v[:, 0], v[:, 1], c=c, s=6, cmap="twilight")
        ax.set(xlabel="coordinate 1", ylabel="coordinate 2", title=name, aspect="equal")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_prop1_errors(eps: Any, errors: Mapping[str, Any], ax: plt.Axes | None = None) -> plt.Figure:
    """Log-log plot of the Proposition 1 error max|R(x) − F(x)| against ε, with O(ε) and O(ε²) guide lines.

    Args:
        eps: the ε values, shape (n,).
        errors: nonlinearity name -> max errors at each ε, shape (n,).
        ax: draw here; None makes a new figure.

    Returns:
        The figure.
    """
    fig, ax = _new_ax(ax)
    e = _numpy(eps)
    for name, values in errors.items():
        ax.loglog(e, _numpy(values), "o-", label=name)
    anchor = 4 * max(float(np.max(_numpy(v))) for v in errors.values())  # guides sit just above the data
    ax.loglog(e, anchor * (e / e.max()), "k--", lw=1, label="slope 1: O(ε)")
    ax.loglog(e, anchor * (e / e.max()) ** 2, "k:", lw=1, label="slope 2: O(ε²)")
    ax.set(xlabel="ε", ylabel="max |R(x) − F(x)|", title="Proposition 1: error of the wide layer")
    ax.legend(fontsize=8)
    return fig


# ---------------------------------------------------------------------------------------------------------------------
# Notebook 02 (PReLU, penalties, post-training)
# ---------------------------------------------------------------------------------------------------------------------


def plot_prelu(x: Any, curves: Mapping[float, Any], ax: plt.Axes | None = None) -> plt.Figure:
    """PReLU curves y = max(0, x) + α·min(0, x), one per slope α.

    Args:
        x: inputs, shape (n,).
        curves: α -> outputs, shape (n,).
        ax: draw here; None makes a new figure.

    Returns:
        The figure.
    """
    fig, ax = _new_ax(ax)
    cmap = plt.get_cmap("viridis")
    for alpha, ys in curves.items():
        name = " (ReLU)" if alpha == 0 else " (identity)" if alpha == 1 else ""
        shade = cmap(min(max(float(alpha), 0.0), 1.0) * 0.9)  # dark for ReLU, light for the identity
        ax.plot(_numpy(x), _numpy(ys), color=shade, label=f"α = {alpha:g}{name}")
    ax.set(xlabel="input x", ylabel="PReLU(x)", title="PReLU: from ReLU (α = 0) to the identity (α = 1)")
    ax.legend(fontsize=8)
    return fig


def plot_penalties(alpha: Any, values: Mapping[str, Any], gradients: Mapping[str, Any],
                   axes: Sequence[plt.Axes] | None = None) -> plt.Figure:
    """Penalties of a slope α (left) and the size of their gradients (right, log scale).

    Args:
        alpha: slope values, shape (n,).
        values: penalty name -> value at each α, shape (n,).
        gradients: penalty name -> |d penalty / dα| at each α, shape (n,).
        axes: two axes to draw on; None makes a new figure.

    Returns:
        The figure.
    """
    if axes is None:
        fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    fig = axes[0].figure
    a = _numpy(alpha)
    for name, v in values.items():
        axes[0].plot(a, _numpy(v), label=name)
    for name, g in gradients.items():
        axes[1].semilogy(a, _numpy(g), label=name)
    axes[0].set(xlabel="slope α", ylabel="penalty", title="Penalty on 1 − α")
    axes[1].set(xlabel="slope α", ylabel="|d penalty / dα|", title="Gradient size (log scale)")
    for ax in axes:
        ax.legend(fontsize=8)
    fig.suptitle("L0.5 pulls hardest exactly where α is nearly 1")
    fig.tight_layout()
    return fig


def plot_slopes(steps: Any, slopes: Any, layer_of: Any, *, title: str, ax: plt.Axes | None = None) -> plt.Figure:
    """Trajectories of every PReLU slope during post-training, coloured by layer (dark: first, light: last).

    Args:
        steps: optimizer steps, shape (T,).
        slopes: effective slopes after each step, shape (T, S) (frozen slopes read exactly 1).
        layer_of: index of each slope's layer, shape (S,).
        title: the figure's title (say which run it shows).
        ax: draw here; None makes a new figure.

    Returns:
        The figure.
    """
    fig, ax = _new_ax(ax)
    s, values, layers = _numpy(steps), _numpy(slopes), _numpy(layer_of)
    cmap, norm = plt.get_cmap("viridis"), plt.Normalize(0, max(float(layers.max()), 1.0))
    width = 0.6 if values.shape[1] > 50 else 1.2
    for j in range(values.shape[1]):
        ax.plot(s, values[:, j], color=cmap(norm(layers[j])), lw=width, alpha=0.6)
    ax.axhline(1.0, color="black", ls="--", lw=1)
    ax.set(xlabel="post-training step", ylabel="slope α", title=title)
    sm = plt.cm.ScalarMappable(cmap=cmap, norm=norm)
    fig.colorbar(sm, ax=ax, label="layer index")
    return fig


def plot_nonlinear_fractions(fractions: Mapping[str, Sequence[float]], ax: plt.Axes | None = None,
                             title: str = "Nonlinear channels per layer") -> plt.Figure:
    """Share of still-nonlinear channels in each layer, one line per run.

    Args:
        fractions: run label -> fraction per layer (0: fully linear, 1: untouched), in layer order.
        ax: draw here; None makes a new figure.
        title: the figure's title.

    Returns:
        The figure.
    """
    fig, ax = _new_ax(ax)
    for label, values in fractions.items():
        v = _numpy(list(values))
        ax.plot(np.arange(1, len(v) + 1), v, "o-", ms=4, label=label)
    ax.set(xlabel="layer", ylabel="fraction of nonlinear channels", title=title, ylim=(-0.05, 1.05))
    ax.legend(fontsize=8)
    return fig


def plot_error_map(error: Any, *, title: str, ax: plt.Axes | None = None) -> plt.Figure:
    """Image of a per-pixel error (e.g. |merged − original| of a feature map), with a colour bar.

    Args:
        error: non-negative values, shape (H, W).
        title: the figure's title.
        ax: draw here; None makes a new figure.

    Returns:
        The figure.
    """
    fig, ax = _new_ax(ax, figsize=(4.2, 3.6))
    image = ax.imshow(_numpy(error), cmap="magma")
    ax.set(xlabel="column (pixel)", ylabel="row (pixel)", title=title)
    ax.grid(False)
    fig.colorbar(image, ax=ax, label="max |difference|")
    return fig


# ---------------------------------------------------------------------------------------------------------------------
# Notebook 03 (path-length histograms)
# ---------------------------------------------------------------------------------------------------------------------


def plot_histogram(dist: Any, ax: plt.Axes | None = None, label: str | None = None, closed_form: Any = None,
                   closed_label: str = "closed form", title: str = "Path-length histogram",
                   xlabel: str = "nonlinear units on the path", ylabel: str = "probability of a path") -> plt.Figure:
    """Bars of a path-length distribution, optionally with a closed form as markers. Call twice to overlay.

    Args:
        dist: probability (or count) of each length k = 0, 1, ..., shape (L + 1,).
        ax: draw here (e.g. to overlay a second network); None makes a new figure.
        label: legend label of the bars.
        closed_form: values to compare with, shape (L' + 1,), drawn as black dots where nonzero; None for none.
        closed_label: legend label of the closed form.
        title, xlabel, ylabel: the axes' title and labels.

    Returns:
        The figure.
    """
    fig, ax = _new_ax(ax)
    d = _numpy(dist)
    ax.bar(np.arange(len(d)), d, width=0.85, alpha=0.6, label=label)
    if closed_form is not None:
        c = _numpy(closed_form)
        shown = c > 0  # zero entries would only clutter the axis
        ax.plot(np.arange(len(c))[shown], c[shown], "o", color="black", ms=4, label=closed_label)
    ax.set(xlabel=xlabel, ylabel=ylabel, title=title)
    if label is not None or closed_form is not None:
        ax.legend(fontsize=8)
    return fig


# ---------------------------------------------------------------------------------------------------------------------
# The main experiment (notebooks 04, 05, 07)
# ---------------------------------------------------------------------------------------------------------------------

_VARIANT_COLORS = {"channel": "#0072B2", "layer": "#D55E00"}


def plot_accuracy_vs_napl(summary: Mapping[str, Any], ax: plt.Axes | None = None, title: str | None = None,
                          reference: bool = False, label_suffix: str = "", moment: str = "recovered",
                          start_label: str | None = None) -> plt.Figure:
    """Accuracy vs NAPL for both variants from `judging.summarize` output, with ± std error bars over seeds.

    `moment` is "recovered" (after the recovery phase) or "linearized" (at the end of linearization); a targeted
    point sits at its mean NAPL. `reference=True` draws the curves faded and dashed (a stored run next to a live one).
    `start_label` names the unlinearized start (default: "unlinearized plain net" or the network's name).
    """
    fig, ax = _new_ax(ax)
    alpha, style = (0.45, "--") if reference else (1.0, "-")
    suffix = label_suffix or (" (stored reference)" if reference else "")
    key = "accuracy" if moment == "recovered" else "accuracy_linearized"
    baseline = summary.get("baseline")
    for granularity, points in summary["curves"].items():
        points = [{"napl": p["napl"], "napl_std": p["napl_std"], "acc": p.get(key, p["accuracy"]),
                   "acc_std": p.get(f"{key}_std", p["accuracy_std"])} for p in points]
        if baseline:
            points.append({"napl": baseline["napl"], "napl_std": 0.0, "acc": baseline["test_accuracy"],
                           "acc_std": baseline.get("test_accuracy_std", 0.0)})
        points = sorted(points, key=lambda p: p["napl"])
        ax.errorbar([p["napl"] for p in points], [100 * p["acc"] for p in points],
                    yerr=[100 * p["acc_std"] for p in points], xerr=[p["napl_std"] for p in points],
                    marker="o", ms=4, capsize=3, linestyle=style, alpha=alpha,
                    color=_VARIANT_COLORS.get(granularity), label=f"{granularity}-wise{suffix}")
    if baseline and not reference:
        network = (summary.get("config") or {}).get("network", "repvgg")
        label = start_label or ("unlinearized plain net" if network == "repvgg" else f"unlinearized {network}")
        ax.plot([baseline["napl"]], [100 * baseline["test_accuracy"]], marker="*", ms=12, color="black",
                linestyle="none", label=label)
    ax.set_xlabel("NAPL (normalized average path length)")
    ax.set_ylabel(f"test accuracy (%), {'after recovery' if moment == 'recovered' else 'end of linearization'}")
    if title:
        ax.set_title(title)
    ax.legend(fontsize=8)
    return fig


def plot_omega_trajectories(runs: Sequence[Mapping[str, Any]], ax: plt.Axes | None = None,
                            title: str = "The controller raises ω until the target NAPL is reached") -> plt.Figure:
    """ω against the post-training step of targeted runs (their `omega_trajectory`), one step line per run."""
    fig, ax = _new_ax(ax)
    for run in runs:
        steps, omegas = zip(*run["omega_trajectory"])
        ax.step(steps, omegas, where="post", color=_VARIANT_COLORS.get(run["granularity"]),
                label=f"{run['granularity']}-wise, target {run['target']:g}, seed {run['seed']}")
    ax.set(xlabel="post-training step", ylabel="ω", title=title)
    ax.legend(fontsize=8)
    return fig


def plot_nonlinear_heatmap(rows: Mapping[str, Sequence[float]], ax: plt.Axes | None = None,
                           title: str = "Nonlinear channels per layer") -> plt.Figure:
    """Heat map of per-layer nonlinear fractions: one row per run (e.g. one ω), one column per PReLU layer.

    Args:
        rows: run label -> fraction of still-nonlinear channels per layer (1: untouched ReLU layer, 0: linear).
        ax: draw here; None makes a new figure sized to the rows.
        title: the figure's title.

    Returns:
        The figure.
    """
    labels = list(rows)
    matrix = np.array([_numpy(list(rows[k])) for k in labels])
    fig, ax = _new_ax(ax, figsize=(7.5, 0.45 * len(labels) + 1.6))
    image = ax.imshow(matrix, aspect="auto", cmap="viridis", vmin=0.0, vmax=1.0, interpolation="nearest")
    ax.set_yticks(range(len(labels)), labels, fontsize=8)
    ax.set_xticks(range(0, matrix.shape[1], max(1, matrix.shape[1] // 11)))
    ax.set_xticklabels([str(i + 1) for i in range(0, matrix.shape[1], max(1, matrix.shape[1] // 11))])
    ax.set(xlabel="PReLU layer (input → output)", title=title)
    ax.grid(False)
    fig.colorbar(image, ax=ax, label="fraction nonlinear")
    return fig


def plot_gaps(summaries: Mapping[str, Mapping[str, Any]], ax: plt.Axes | None = None, moment: str = "recovered",
              title: str = "Channel-wise minus layer-wise accuracy, paired at matched NAPL") -> plt.Figure:
    """The paired gaps (from `judging.summarize`) of several sweeps on one axis, with their 95% intervals.

    `summaries` maps a label to a summary (e.g. {"plain net (04)": ..., "ResNet-56 (05)": ...}); the figure is
    drawn on `ax` (None: a new one) and returned. Only the targets of the informative NAPL range
    (`judging.informative_gaps`) are drawn; a gap from a single pair has no bar.
    """
    fig, ax = _new_ax(ax)
    for label, summary in summaries.items():
        gaps = sorted(judging.informative_gaps(summary, moment), key=lambda g: g["napl"])
        if not gaps:
            continue
        low = [100 * (g["gap"] - g["low"]) if g["low"] is not None else 0.0 for g in gaps]
        high = [100 * (g["high"] - g["gap"]) if g["high"] is not None else 0.0 for g in gaps]
        ax.errorbar([g["napl"] for g in gaps], [100 * g["gap"] for g in gaps], yerr=[low, high],
                    marker="o", ms=5, capsize=3, label=label)
    ax.axhline(0.0, color="gray", lw=1)
    ax.set(xlabel="target NAPL", ylabel=f"gap (accuracy points), {moment}", title=title)
    ax.legend(fontsize=8)
    return fig


def plot_from_scratch(sources: Mapping[str, tuple[Mapping[str, Any], Sequence[Mapping[str, Any]]]],
                      axes: Sequence[plt.Axes] | None = None) -> plt.Figure:
    """A ResNet against its plain twin trained from scratch (`from_scratch.summarize` and its results), side by side:
    test accuracy per net with its 95% interval, the ResNet − plain gap paired by seed with its 95% interval, and
    the training loss per epoch (mean over seeds, band from the lowest to the highest seed).

    `sources` maps a label (e.g. "this run", "stored cpu reference") to (summary, results); the first is drawn solid,
    the others dashed and faded. A net or gap with one seed has no bar.
    """
    if axes is None:
        fig, axes = plt.subplots(1, 3, figsize=(13.5, 3.8), gridspec_kw={"width_ratios": [1.1, 0.8, 1.5]})
    fig = axes[0].figure
    colors = {False: "#0072B2", True: "#D55E00"}  # ResNet blue, plain orange

    def bar(interval):
        return [[0.0], [0.0]] if interval["low"] is None else [[100 * (interval["mean"] - interval["low"])],
                                                               [100 * (interval["high"] - interval["mean"])]]

    labels = []
    for k, (label, (summary, runs)) in enumerate(sources.items()):
        style = {"alpha": 1.0 if k == 0 else 0.5, "ls": "-" if k == 0 else "--"}
        for name, net in summary["nets"].items():
            x = len(labels)
            labels.append(f"{name}\n" + label.replace(" ", "\n", 1))
            axes[0].errorbar([x], [100 * net["accuracy"]["mean"]], yerr=bar(net["accuracy"]), marker="o", capsize=4,
                             color=colors[net["plain"]], alpha=style["alpha"])
            mine = [r for r in runs if r["net"] == name and not r.get("diverged")]
            epochs = min(len(r["curve"]) for r in mine)
            losses = np.array([[e["train_loss"] for e in r["curve"][:epochs]] for r in mine])
            xs = np.arange(1, epochs + 1)
            axes[2].plot(xs, losses.mean(0), marker="." if epochs < 3 else None, color=colors[net["plain"]],
                         label=f"{name} ({label})", **style)
            axes[2].fill_between(xs, losses.min(0), losses.max(0), color=colors[net["plain"]], alpha=0.15)
        for g in summary["gaps"]:
            axes[1].errorbar([f"depth {g['depth']}\n" + label.replace(" ", "\n", 1)], [100 * g["gap"]["mean"]],
                             yerr=bar(g["gap"]), marker="s", capsize=4, color="black", alpha=style["alpha"])
    axes[0].set_xticks(range(len(labels)), labels, fontsize=8)
    axes[0].set(ylabel="test accuracy (%)", title="Trained from scratch: mean, 95% interval")
    axes[1].axhline(0.0, color="gray", lw=1)
    axes[1].tick_params(axis="x", labelsize=8)
    axes[1].set(ylabel="ResNet − plain (accuracy points)", title="Gap paired by seed, 95% interval")
    axes[2].set(xlabel="epoch", ylabel="training loss (cross-entropy)",
                title="Training loss: mean over seeds, band min–max")
    axes[2].legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_lesion_curves(curves: Mapping[str, Mapping[str, Any]], ax: plt.Axes | None = None,
                       title: str = "Accuracy after deleting k random units", styles: Mapping[str, dict] | None = None
                       ) -> plt.Figure:
    """Veit's random-k lesion curves (from `lesion.lesion_curve`): accuracy against the number k of deleted units.

    For each label: the median over the draws (line; k = 0 is the intact net), the min–max range of the draws
    (shaded) and the 95% interval of their mean (error bars). Accuracies in percent.
    """
    fig, ax = _new_ax(ax)
    for label, curve in curves.items():
        points = curve["random"]
        ks = [0] + [p["k"] for p in points]
        median = [100 * curve["intact"]] + [100 * p["median"] for p in points]
        line, = ax.plot(ks, median, marker="o", ms=4, label=label, **(styles or {}).get(label, {}))
        ax.fill_between(ks, [100 * curve["intact"]] + [100 * p["min"] for p in points],
                        [100 * curve["intact"]] + [100 * p["max"] for p in points], color=line.get_color(), alpha=0.15)
        with_interval = [p for p in points if p["low"] is not None]
        if with_interval:
            ax.errorbar([p["k"] for p in with_interval], [100 * p["mean"] for p in with_interval],
                        yerr=[[100 * (p["mean"] - p["low"]) for p in with_interval],
                              [100 * (p["high"] - p["mean"]) for p in with_interval]],
                        fmt="none", ecolor=line.get_color(), capsize=3, lw=1)
    ax.set(xlabel="units deleted at random (k)", ylabel="test accuracy (%)", title=title)
    ax.legend(fontsize=8)
    return fig


def plot_single_lesions(curves: Mapping[str, Mapping[str, Any]], ax: plt.Axes | None = None,
                        title: str = "Accuracy after deleting one unit") -> plt.Figure:
    """Accuracy (percent) after each single deletion (from `lesion.lesion_curve`), against the deleted unit's
    position, one line per label, with each net's intact accuracy as a dashed line of the same colour."""
    fig, ax = _new_ax(ax)
    for label, curve in curves.items():
        single = [100 * a for a in curve["single"]["accuracies"]]
        line, = ax.plot(range(1, len(single) + 1), single, marker="o", ms=4, label=label)
        ax.axhline(100 * curve["intact"], color=line.get_color(), ls="--", lw=1)
    ax.set(xlabel="deleted unit (position in the net)", ylabel="test accuracy (%)", title=title)
    ax.legend(fontsize=8)
    return fig
