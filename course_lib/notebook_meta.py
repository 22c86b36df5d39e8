"""Generate the classroom links from one place: the Colab badge and install cell of every notebook, and the README's
Binder and Colab badge block.

The repository slug, the notebooks' git ref and the release tag live in `course_lib.REPO_SLUG`, `course_lib.REPO_REF`
and `course_lib.RELEASE_TAG`. Run

    python -m course_lib notebook-meta --write

after changing them (or after adding a notebook); `tests/test_notebooks.py` fails when a notebook is out of sync and
`tests/test_environments.py` when the README's block (between the two `classroom-badges` markers) is.

Which ref is used where:
- A notebook's Colab badge and its install cell share `REPO_REF`, so the course_lib a Colab session installs is the
  one the notebook was written against.
- The README's Binder badge launches `RELEASE_TAG`: mybinder.org caches one image per commit, and a tag never moves,
  so a class of 30 does not trigger 30 rebuilds after every push to a branch.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path
from urllib.parse import quote

import nbformat

from . import RELEASE_TAG, REPO_REF, REPO_SLUG

__all__ = ["badge", "binder_url", "readme_badges", "install_source", "INSTALL_TAG", "README_MARKERS",
           "sync_notebook", "sync_readme", "main"]

ROOT = Path(__file__).resolve().parents[1]
README_MARKERS = ("<!-- classroom-badges:start -->", "<!-- classroom-badges:end -->")

INSTALL_TAG = "colab-install"
_BADGE_RE = re.compile(r"\[!\[Open In Colab\]\([^)]*\)\]\([^)]*\)")


def badge(notebook_name: str) -> str:
    """The Markdown Open-in-Colab badge for `notebooks/<notebook_name>` at the course's ref."""
    url = f"https://colab.research.google.com/github/{REPO_SLUG}/blob/{REPO_REF}/notebooks/{notebook_name}"
    return f"[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]({url})"


def binder_url(notebook_name: str = "00_setup.ipynb", ref: str = RELEASE_TAG) -> str:
    """The mybinder.org launch URL of `ref` that opens JupyterLab on `notebooks/<notebook_name>`.

    `urlpath=lab/tree/...` names the interface explicitly, so the link does not depend on repo2docker's default UI.
    """
    return f"https://mybinder.org/v2/gh/{REPO_SLUG}/{ref}?urlpath=" + quote(f"lab/tree/notebooks/{notebook_name}",
                                                                           safe="")


def readme_badges() -> str:
    """The README's classroom block, markers included: Binder at the release tag, Colab for notebook 00."""
    binder = f"[![Launch on Binder](https://mybinder.org/badge_logo.svg)]({binder_url()})"
    return "\n".join([
        README_MARKERS[0],
        f"{binder} {badge('00_setup.ipynb')}",
        "",
        f"Binder launches release `{RELEASE_TAG}` in JupyterLab on `notebooks/00_setup.ipynb` (CPU only, smoke mode); "
        f"Colab opens `00_setup.ipynb` from `{REPO_REF}`, and every notebook carries its own Colab badge.",
        README_MARKERS[1],
    ])


def install_source() -> str:
    """The first code cell: installs course_lib on Colab only, from the notebook's own ref, keeping Colab's packages.

    `--no-deps` keeps Colab's torch, torchvision, numpy and matplotlib exactly as they are (a forced numpy reinstall
    makes Colab restart the runtime). The second line names course_lib's small helpers without versions: pip leaves
    an installed one alone and installs only what is missing. Nothing here touches Google Drive.
    """
    return (
        "# Colab only: install course_lib from the same git ref as this notebook. --no-deps keeps Colab's own torch,\n"
        "# numpy and matplotlib; the helpers on the second line are installed only if missing. Drive is never mounted.\n"
        "import sys\n"
        "if \"google.colab\" in sys.modules:\n"
        f"    %pip install -q --no-deps \"course_lib @ git+https://github.com/{REPO_SLUG}@{REPO_REF}\"\n"
        "    %pip install -q graphviz ipywidgets psutil pyyaml tqdm"
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


def sync_readme(path: Path = ROOT / "README.md", write: bool = False) -> list[str]:
    """Bring the README's classroom block in line; returns what differed (empty when in sync).

    Only the text between the two markers is rewritten; a README without the markers is reported, never edited.
    """
    text = path.read_text(encoding="utf-8")
    start, end = README_MARKERS
    if text.count(start) != 1 or text.count(end) != 1 or text.index(start) > text.index(end):
        return [f"needs exactly one block from {start} to {end} (print it: python -m course_lib notebook-meta "
                "--readme-block)"]
    head, rest = text.split(start, 1)
    current, tail = rest.split(end, 1)
    if start + current + end == readme_badges():
        return []
    if write:
        path.write_text(head + readme_badges() + tail, encoding="utf-8")
    return ["the classroom badge block is out of date"]


def main(argv: list[str] | None = None, prog: str = "python -m course_lib notebook-meta") -> int:
    """`python -m course_lib notebook-meta [--write | --readme-block]`; see `--help`."""
    parser = argparse.ArgumentParser(prog=prog, description="sync the badges and Colab install cells of notebooks/*.ipynb "
                                                 "and the README's classroom badge block")
    parser.add_argument("--write", action="store_true", help="rewrite out-of-date notebooks and README block")
    parser.add_argument("--readme-block", action="store_true", help="print the README block and exit")
    args = parser.parse_args(argv)
    if args.readme_block:
        print(readme_badges())
        return 0
    bad = 0
    targets = [(p, sync_notebook) for p in sorted((ROOT / "notebooks").glob("*.ipynb"))]
    if (ROOT / "README.md").exists():
        targets.append((ROOT / "README.md", sync_readme))
    for path, sync in targets:
        problems = sync(path, write=args.write)
        for p in problems:
            print(f"{path.name}: {p}{' (fixed)' if args.write and 'needs exactly' not in p else ''}")
        bad += bool(problems)
    return 0 if args.write or not bad else 1

