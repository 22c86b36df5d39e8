"""Build the course site: the notebooks, executed in smoke mode, plus the stored reference results, as static HTML.

    python -m course_lib site --out runs/site                         # execute in smoke mode, then build
    python -m course_lib site --out runs/site --executed runs/smoke   # reuse `make reproduce MODE=smoke`

The builder is Sphinx with myst-nb (both pure pip). It puts one source folder together under `<out>/src`:
- the files of `site/` (conf.py, index.md);
- every course notebook as executed (nothing runs again: myst-nb's execution is off). In the copies the Colab install
  cell is hidden and external badge images become plain links, so the site loads nothing from outside;
- `reference.md`: each stored reference sweep of `data/reference/`, drawn with `viz.plot_accuracy_vs_napl`
  (notebook 07, on the site too, shows every claim next to this evidence);
and builds it with `sphinx-build -b html` into `<out>/html`. tests/test_site.py opens every page in a browser.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import nbformat

from . import reproduce
from .results import REFERENCE_DIR

__all__ = ["SITE_SOURCES", "execute_smoke", "check_executed", "stage", "build", "main"]

ROOT = Path(__file__).resolve().parents[1]
SITE_SOURCES = ROOT / "site"
_EXTERNAL_IMAGE = re.compile(r"!\[([^\]]*)\]\((https?://[^)\s]+)\)")  # ![alt](http...)
_WIDGET_MIME = "application/vnd.jupyter.widget-view+json"
_BADGE_LINK = re.compile(r"\[!\[([^\]]*)\]\(https?://[^)\s]+\)\]\(([^)\s]+)\)")  # [![alt](img)](target)


def execute_smoke(out: Path, only: list[str] | None = None) -> Path:
    """Execute the notebooks in smoke mode with `course_lib.reproduce` (a few minutes for all); returns `<out>/smoke`.

    Args:
        out: the folder for reproduce's `smoke/` output.
        only: notebook name prefixes (e.g. ["04", "05"]); None executes every notebook.

    Raises:
        RuntimeError: when a notebook failed (its error is in `<out>/smoke/summary.json`).
    """
    command = [sys.executable, "-m", "course_lib", "reproduce", "--mode", "smoke", "--out", str(out)]
    done = subprocess.run(command + (["--only", *only] if only else []), cwd=ROOT)
    if done.returncode != 0:
        raise RuntimeError(f"a notebook failed in smoke mode; see {out / 'smoke' / 'summary.json'}")
    return out / "smoke"


def _code_sources(nb: nbformat.NotebookNode) -> list[str]:
    return [c.source for c in nb.cells
            if c.cell_type == "code" and "injected-parameters" not in c.metadata.get("tags", [])]


def check_executed(folder: Path) -> list[Path]:
    """The executed notebooks in `folder`, checked against the course's: every one there, every code cell run without
    an error, the same code as `notebooks/` now (papermill's injected-parameters cell aside).

    Returns:
        Their paths in learning-path order.

    Raises:
        ValueError: naming each notebook that is missing, stale, unexecuted or failed.
    """
    problems, paths = [], []
    for original in reproduce.notebooks():
        path = folder / original.name
        if not path.is_file():
            problems.append(f"{original.name}: not in {folder}")
            continue
        nb = nbformat.read(path, as_version=4)
        code = [c for c in nb.cells if c.cell_type == "code"]
        if _code_sources(nb) != _code_sources(nbformat.read(original, as_version=4)):
            problems.append(f"{original.name}: its code differs from notebooks/{original.name} (stale copy)")
        elif any(c.execution_count is None for c in code):
            problems.append(f"{original.name}: not every code cell was executed")
        elif any(o.output_type == "error" for c in code for o in c.outputs):
            problems.append(f"{original.name}: a cell has an error output")
        paths.append(path)
    if problems:
        raise ValueError("executed notebooks not usable for the site (run `make site` to execute them afresh):\n  "
                         + "\n  ".join(problems))
    return paths


def _offline_copy(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """The notebook as the site shows it, loading nothing from outside: the Colab install cell hidden, external
    badge images turned into links, widget outputs (tqdm's progress bars) shown by their text form."""
    nb = nbformat.from_dict(json.loads(json.dumps(nb)))  # a deep copy
    nb.metadata.pop("widgets", None)  # widget state would make the page load a widget manager from a CDN
    for cell in nb.cells:
        if "colab-install" in cell.metadata.get("tags", []):
            cell.metadata["tags"] = [*cell.metadata["tags"], "remove-cell"]
        if cell.cell_type == "markdown":
            cell.source = _EXTERNAL_IMAGE.sub(r"[\1](\2)", _BADGE_LINK.sub(r"[\1](\2)", cell.source))
        for output in cell.get("outputs", []):
            if _WIDGET_MIME in output.get("data", {}) and len(output["data"]) > 1:
                del output["data"][_WIDGET_MIME]
    return nb


def _reference_page(src: Path) -> None:
    """`reference.md` and its figures: every stored reference sweep, drawn from its summary."""
    from . import figures, from_scratch, judging

    lines = ["# Reference results", "",
             "The course's stored reference sweeps (`data/reference/<name>/`, every run's result file with its",
             "provenance: git commit, versions, device, wall time). Notebooks 04 and 05 show them in `cpu` mode, and",
             "notebook 07 judges every claim of the paper with them. Each figure is drawn from its sweep's summary by",
             "`course_lib.viz.plot_accuracy_vs_napl` (after the recovery phase); error bars are ± one standard",
             "deviation over the independent nets.", ""]
    (src / "_generated").mkdir(exist_ok=True)
    references = [p for p in sorted(REFERENCE_DIR.iterdir()) if (p / "pretrain").is_dir()]  # linearization sweeps
    for reference in references:
        summary = figures.load_summary(reference)
        source = f"data/reference/{reference.name}" + ("/" if reference.is_dir() else "")
        (src / "_generated" / f"{reference.stem}.png").write_bytes(figures.render_png(summary, source))
        lines += [f"## {figures.reference_label(summary['config'])}", "", f"`{source}`: {judging.scale(summary)}.",
                  "", f"![Accuracy against NAPL from {reference.name}](_generated/{reference.stem}.png)", ""]
    for folder in sorted(REFERENCE_DIR.glob("from_scratch_*/")):  # notebook 01's ResNet against its plain twin
        results = from_scratch.load_results(folder)
        lines += ["## A ResNet and its plain twin trained from scratch", "",
                  f"`data/reference/{folder.name}/`: {from_scratch.reading(from_scratch.summarize(results))}", ""]
    (src / "reference.md").write_text("\n".join(lines))


def stage(executed: list[Path], src: Path) -> list[Path]:
    """Put the site's sources together in `src` (emptied first); returns the pages written."""
    if src.exists():
        shutil.rmtree(src)
    shutil.copytree(SITE_SOURCES, src, ignore=shutil.ignore_patterns("_build", "__pycache__"))
    (src / "notebooks").mkdir()
    pages = [src / "index.md"]
    for path in executed:
        nbformat.write(_offline_copy(nbformat.read(path, as_version=4)), src / "notebooks" / path.name)
        pages.append(src / "notebooks" / path.name)
    _reference_page(src)
    return [*pages, src / "reference.md"]


def build(executed: Path, out: Path) -> Path:
    """Check the executed notebooks in `executed`, stage the sources in `<out>/src`, build `<out>/html`.

    Returns:
        The folder of the built site (open its index.html).

    Raises:
        ValueError: when the executed notebooks are missing, stale or failed (see `check_executed`).
        subprocess.CalledProcessError: when Sphinx reports an error or a warning (the build is strict).
    """
    notebooks = check_executed(executed)
    stage(notebooks, out / "src")
    html = out / "html"
    # -W: a warning (a broken reference, an unreadable output) fails the build; -q prints only those; -E: no stale
    # pickled environment from an earlier build.
    subprocess.run([sys.executable, "-m", "sphinx", "-b", "html", "-q", "-W", "--keep-going", "-E",
                    str(out / "src"), str(html)], check=True)
    return html


def main(argv: list[str] | None = None, prog: str = "python -m course_lib site") -> int:
    """`python -m course_lib site [--out DIR] [--executed DIR]`; see `--help`."""
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "site", help="build folder (default runs/site)")
    parser.add_argument("--executed", type=Path, default=None,
                        help="folder of notebooks already executed in smoke mode (default: execute them now)")
    args = parser.parse_args(argv)
    start = time.time()
    executed = args.executed or execute_smoke(args.out)
    html = build(executed, args.out)
    pages = [p for p in html.rglob("*.html") if "_static" not in p.parts]
    print(f"site: {html / 'index.html'} ({len(pages)} pages, {time.time() - start:.0f} s)")
    return 0

