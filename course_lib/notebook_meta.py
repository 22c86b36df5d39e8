"""Generate what every notebook shares from one place: the Open-in-Colab badge and the Colab install cell.

The repository slug and git ref live in `course_lib.REPO_SLUG` / `course_lib.REPO_REF`. Run

    python -m course_lib.notebook_meta --write

after changing them (or after adding a notebook); `tests/test_notebooks.py` fails when a notebook is out of sync.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import nbformat

from . import REPO_REF, REPO_SLUG

__all__ = ["badge", "install_source", "INSTALL_TAG", "sync_notebook", "main"]

INSTALL_TAG = "colab-install"
_BADGE_RE = re.compile(r"\[!\[Open In Colab\]\([^)]*\)\]\([^)]*\)")


def badge(notebook_name: str) -> str:
    """The Markdown Open-in-Colab badge for `notebooks/<notebook_name>` at the course's ref."""
    url = f"https://colab.research.google.com/github/{REPO_SLUG}/blob/{REPO_REF}/notebooks/{notebook_name}"
    return f"[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]({url})"


def install_source() -> str:
    """The first code cell: installs course_lib on Colab only, from the notebook's own ref, keeping torch/numpy."""
    return (
        "# Colab only: install course_lib from the same git ref as this notebook. torch and numpy stay as Colab has\n"
        "# them (--no-deps for course_lib; its few extra dependencies are listed explicitly). Drive is never mounted.\n"
        "import sys\n"
        "if \"google.colab\" in sys.modules:\n"
        f"    %pip install -q --no-deps \"course_lib @ git+https://github.com/{REPO_SLUG}@{REPO_REF}\"\n"
        "    %pip install -q \"graphviz>=0.20\" \"ipywidgets>=8\" \"pyyaml>=6\" \"tqdm>=4.65\""
    )


def sync_notebook(path: Path, write: bool = False) -> list[str]:
    """Bring the badge and install cell of `path` in line; returns what differed (empty when in sync)."""
    nb = nbformat.read(path, as_version=4)
    problems = []
    first = nb.cells[0]
    want_badge = badge(path.name)
    if first.cell_type != "markdown" or not _BADGE_RE.search(first.source):
        problems.append("the first cell has no Open-in-Colab badge")
    elif _BADGE_RE.search(first.source).group(0) != want_badge:
        problems.append("the badge points elsewhere")
        first.source = _BADGE_RE.sub(want_badge, first.source)
    installs = [c for c in nb.cells if INSTALL_TAG in c.get("metadata", {}).get("tags", [])]
    if len(installs) != 1:
        problems.append(f"{len(installs)} cells tagged {INSTALL_TAG!r}, expected 1")
    elif installs[0].source != install_source():
        problems.append("the Colab install cell is out of date")
        installs[0].source = install_source()
    if write and problems:
        nbformat.write(nb, path)
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="sync badges and Colab install cells of notebooks/*.ipynb")
    parser.add_argument("--write", action="store_true", help="rewrite out-of-date notebooks")
    args = parser.parse_args(argv)
    bad = 0
    for path in sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb")):
        problems = sync_notebook(path, write=args.write)
        for p in problems:
            print(f"{path.name}: {p}{' (fixed)' if args.write else ''}")
        bad += bool(problems)
    return 0 if args.write or not bad else 1


if __name__ == "__main__":
    sys.exit(main())
