"""Binder's own builder reads binder/: the real repo2docker, asked what it would build (`--no-build --debug`).

mybinder.org builds the course with repo2docker. Without a Docker engine (as on the course machines) repo2docker can
still pick its buildpack and print the Dockerfile it would build, and that is what these tests read, from a fresh
`git clone` of the checkout (so only committed files count, as on Binder):
- the conda buildpack, from binder/environment.yml, not the root environment.yml;
- Python 3.11;
- binder/postBuild runs in the build, binder/start is the entry point.
A control clone without binder/ shows that the same checks tell the two apart: there repo2docker takes the root
environment.yml and neither script. tests/test_binder_install.py checks what the environment then holds.
"""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _plan(repo: Path) -> str:
    """What repo2docker would build from `repo`: its log and the Dockerfile (printed by --debug)."""
    done = subprocess.run([sys.executable, "-m", "repo2docker", "--no-build", "--no-run", "--debug", str(repo)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout + done.stderr


@pytest.fixture(scope="module")
def clone(tmp_path_factory) -> Path:
    if importlib.util.find_spec("repo2docker") is None:
        pytest.skip("jupyter-repo2docker is not installed (pip install -c constraints.txt -e '.[site]')")
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("needs git and a git checkout of the course to clone")
    target = tmp_path_factory.mktemp("r2d") / "course"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(target)], check=True, timeout=120)
    return target


@pytest.fixture(scope="module")
def plan(clone) -> str:
    return _plan(clone)


def test_conda_buildpack_from_binder_environment(plan):
    assert "Building conda environment for python=3.11" in plan  # the CondaBuildPack's log line
    assert 'COPY --chown=0:0 src/binder/environment.yml ${REPO_DIR}/binder/environment.yml' in plan
    assert '--file "binder/environment.yml"' in plan
    assert '--file "environment.yml"' not in plan, "the root environment.yml must not reach Binder's image"


def test_python_is_3_11(plan):
    assert "environment-2epy-2d3-2e11-2dlinux-2d64-2elock" in plan  # repo2docker's lock file for Python 3.11


def test_post_build_runs_and_start_is_the_entry_point(plan):
    assert "RUN ./binder/postBuild" in plan
    assert 'ENV R2D_ENTRYPOINT="${REPO_DIR}/binder/start"' in plan


def test_control_without_binder_takes_the_root_environment(clone, tmp_path):
    control = tmp_path / "no-binder"
    shutil.copytree(clone, control, ignore=shutil.ignore_patterns(".git"))
    shutil.rmtree(control / "binder")
    plan = _plan(control)
    assert "Building conda environment for python=3.11" in plan
    assert '--file "environment.yml"' in plan and '--file "binder/environment.yml"' not in plan
    assert "RUN ./binder/postBuild" not in plan and "R2D_ENTRYPOINT" not in plan
