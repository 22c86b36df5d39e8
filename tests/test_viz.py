"""Tests for course_lib.viz, headless (Agg): widgets' static fallback, graphviz with and without `dot`, and plots."""

from __future__ import annotations

import shutil
import sys
import types

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from course_lib import viz  # noqa: E402


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _assert_labelled(fig: plt.Figure) -> None:
    """Every visible axes has both labels and a title (its own or the figure's)."""
    assert isinstance(fig, plt.Figure)
    drawn = [ax for ax in fig.axes if ax.get_visible() and ax.axison and ax.get_label() != "<colorbar>"]
    assert drawn, "the figure has no axes"
    has_suptitle = fig._suptitle is not None and fig._suptitle.get_text()
    for ax in drawn:
        assert ax.get_xlabel() and ax.get_ylabel(), f"unlabelled axes: {ax}"
        assert ax.get_title() or has_suptitle, f"untitled axes: {ax}"


# ---------------------------------------------------------------------------------------------------------------------
# interactive


def test_interactive_static_fallback_draws_once_at_the_defaults():
    calls = []

    def draw(eps, phi, n, fixed):
        calls.append((eps, phi, n, fixed))
        return viz.plot_curves([0, 1], {"y": [eps, eps]}, xlabel="x", ylabel="y", title=f"{phi} {n}")

    fig = viz.interactive(draw, static=True, eps=(0.0, 1.0, 0.1, 0.3), phi=["relu", "tanh"], n=(1, 9, 1, 4),
                          fixed="keep")
    assert calls == [(0.3, "relu", 4, "keep")]
    _assert_labelled(fig)


def test_interactive_is_static_outside_a_kernel(monkeypatch):
    monkeypatch.delenv("COURSE_RUN_MODE", raising=False)
    monkeypatch.delenv(viz.ENV_WIDGETS, raising=False)
    assert not viz.widgets_available()  # pytest is no ipykernel shell
    fig = viz.interactive(lambda a: plt.figure(), a=(0, 2, 1, 1))
    assert isinstance(fig, plt.Figure)


def test_widgets_rule_follows_the_environment(monkeypatch):
    class ZMQInteractiveShell:  # stands in for ipykernel's shell class
        pass

    class ColabShell(ZMQInteractiveShell):
        pass

    fake_ipython = types.ModuleType("IPython")
    fake_ipython.get_ipython = lambda: ColabShell()
    monkeypatch.setitem(sys.modules, "IPython", fake_ipython)
    monkeypatch.setitem(sys.modules, "ipywidgets", types.ModuleType("ipywidgets"))
    monkeypatch.delenv(viz.ENV_WIDGETS, raising=False)
    monkeypatch.delenv("COURSE_RUN_MODE", raising=False)
    assert viz.widgets_available()  # a kernel (a subclass counts, as on Colab) with ipywidgets
    monkeypatch.setenv("COURSE_RUN_MODE", "smoke")
    assert not viz.widgets_available()  # headless run
    monkeypatch.setenv(viz.ENV_WIDGETS, "1")
    assert viz.widgets_available()  # forced on
    monkeypatch.setenv(viz.ENV_WIDGETS, "0")
    monkeypatch.delenv("COURSE_RUN_MODE")
    assert not viz.widgets_available()  # forced off


def test_interactive_builds_widgets_in_a_kernel(monkeypatch):
    ipywidgets = pytest.importorskip("ipywidgets")
    monkeypatch.setattr(viz, "widgets_available", lambda: True)
    monkeypatch.setattr(viz, "_in_kernel_with_ipywidgets", lambda: True)
    shown = []
    monkeypatch.setattr("IPython.display.display", lambda obj: shown.append(obj))
    calls = []
    panel = viz.interactive(lambda eps, n, phi: calls.append((eps, n, phi)), eps=(0.0, 1.0, 0.1, 0.3),
                            n=(1, 9, 1, 4), phi=["relu", "tanh"])
    assert isinstance(panel, ipywidgets.interactive) and shown == [panel]
    kinds = {type(c).__name__ for c in panel.children[:3]}
    assert kinds == {"FloatSlider", "IntSlider", "Dropdown"}
    assert calls[0] == (0.3, 4, "relu")  # interactive draws once at the defaults on creation


# ---------------------------------------------------------------------------------------------------------------------
# path_graph


def test_path_graph_uses_graphviz_when_dot_is_there(monkeypatch):
    graphviz = pytest.importorskip("graphviz")
    monkeypatch.setattr(shutil, "which", lambda name: "/usr/bin/dot")
    dot = viz.path_graph([4, 4, 4, 4])
    assert isinstance(dot, graphviz.Digraph)
    assert "257 input-to-output paths" in dot.source
    hidden = {line.split()[0] for line in dot.source.splitlines() if line.strip().startswith("h")}
    assert len(hidden) == 16
    assert dot.source.count("->") == 4 + 3 * 16 + 4 + 1  # in->layer 1, layer->layer, layer 4->out, the skip


def test_path_graph_falls_back_to_matplotlib_without_dot(monkeypatch, capsys):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    fig = viz.path_graph([4, 4, 4, 4], linear=[[True, False, False, False]] * 4)
    assert isinstance(fig, plt.Figure)
    assert "apt install graphviz" in capsys.readouterr().out
    assert fig.axes[0].get_title() == "257 input-to-output paths (1 through the skip)"


@pytest.mark.skipif(shutil.which("dot") is None, reason="the graphviz `dot` binary is not installed")
def test_path_graph_renders_with_dot():
    svg = viz.path_graph([2, 3], skip=False, linear=[[False, True], [True, True, False]]).pipe(format="svg")
    assert b"<svg" in svg


def test_path_graph_rejects_bad_input():
    with pytest.raises(ValueError, match="engine"):
        viz.path_graph([2], engine="tikz")
    with pytest.raises(ValueError, match="one flag per unit"):
        viz.path_graph([2, 3], linear=[[True, False]])


# ---------------------------------------------------------------------------------------------------------------------
# Plot functions: each returns a labelled figure, and draws into a given axes


def _plots() -> dict[str, callable]:
    x = torch.linspace(-2, 2, 21)
    eps = np.logspace(-4, -1, 4)
    return {
        "curves": lambda ax: viz.plot_curves(x, {"R": x, "F": x + 0.1}, xlabel="t", ylabel="y", title="R vs F",
                                             ax=ax, logy=False),
        "prop1_errors": lambda ax: viz.plot_prop1_errors(eps, {"tanh": eps**2, "gelu": eps}, ax=ax),
        "prelu": lambda ax: viz.plot_prelu(x, {0.0: torch.relu(x), 1.0: x}, ax=ax),
        "slopes": lambda ax: viz.plot_slopes(np.arange(5), np.random.rand(5, 7), np.arange(7) % 3, title="run",
                                             ax=ax),
        "fractions": lambda ax: viz.plot_nonlinear_fractions({"channel": [1, 0.5, 0.2], "layer": [1, 0, 1]}, ax=ax),
        "error_map": lambda ax: viz.plot_error_map(torch.rand(8, 8), title="border", ax=ax),
        "histogram": lambda ax: viz.plot_histogram(torch.tensor([0.25, 0.5, 0.25]), ax=ax, label="net",
                                                   closed_form=[0.25, 0.5, 0.25]),
    }


@pytest.mark.parametrize("name", list(_plots()))
def test_plot_returns_a_labelled_figure(name):
    _assert_labelled(_plots()[name](None))


@pytest.mark.parametrize("name", list(_plots()))
def test_plot_draws_into_the_given_axes(name):
    fig, ax = plt.subplots()
    assert _plots()[name](ax) is fig
    assert ax.lines or ax.patches or ax.images or ax.collections


def test_multi_panel_plots_are_labelled():
    alpha = np.linspace(0, 0.99, 50)
    fig = viz.plot_penalties(alpha, {"L0.5": np.sqrt(1 - alpha)}, {"L0.5": 0.5 / np.sqrt(1 - alpha)})
    _assert_labelled(fig)
    assert len(fig.axes) == 2
    pts = torch.randn(30, 2)
    fig = viz.plot_point_maps(pts, {"relu": torch.relu(pts)}, title="maps")
    _assert_labelled(fig)
    assert len(fig.axes) == 2


def test_histograms_overlay_on_one_axes():
    fig = viz.plot_histogram([0.5, 0.5], label="resnet")
    viz.plot_histogram([0.0, 0.0, 1.0], ax=fig.axes[0], label="plain")
    assert len(fig.axes) == 1 and len(fig.axes[0].patches) == 5
    assert [t.get_text() for t in fig.axes[0].get_legend().get_texts()] == ["resnet", "plain"]


def test_image_grid_shows_one_column_per_class():
    images = torch.zeros(4, 3, 8, 8, dtype=torch.uint8)
    fig = viz.image_grid(images, torch.tensor([0, 1, 0, 1]), ["a", "b"], per_class=2)
    assert len(fig.axes) == 4 and fig.axes[0].get_title() == "a"


def test_accuracy_vs_napl_plot_has_both_variants_and_labels():
    from course_lib import judging, viz

    runs = [{"granularity": g, "omega": w, "seed": s, "napl": n, "test_accuracy": a, "config": {}}
            for g, w, s, n, a in [("channel", 0.1, 0, 8.0, 0.7), ("channel", 0.1, 1, 8.5, 0.72),
                                  ("layer", 0.1, 0, 9.0, 0.65), ("layer", 0.1, 1, 9.0, 0.66)]]
    summary = judging.summarize(runs, {"napl": 22.0, "test_accuracy": 0.8, "test_accuracy_train_form": 0.8,
                                           "parameters_deploy": 1})
    fig = viz.plot_accuracy_vs_napl(summary, title="t")
    ax = fig.axes[0]
    viz.plot_accuracy_vs_napl(summary, ax=ax, reference=True)
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert any("channel" in t for t in labels) and any("layer" in t for t in labels)
    assert ax.get_xlabel() and ax.get_ylabel()
