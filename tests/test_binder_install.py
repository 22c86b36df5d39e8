"""What binder/ asks for installs into a fresh virtual environment and runs the first notebooks there.

repo2docker itself (Docker, conda) is not available on the course machines, so this is the closest check they allow:

1. map binder/environment.yml to pip names (pytorch-cpu -> torch, python-graphviz -> graphviz, ...), keeping its
   version bounds and pinning every package with constraints.txt;
2. create a venv under tmp_path (no system site-packages) and `pip install` that list with the machine's ordinary pip
   configuration, exactly as `make test` installs .venv (index and local wheel cache; no other network);
3. run binder/postBuild in it (PATH points at the venv first);
4. check the widget frontend is registered with JupyterLab (`jupyter labextension list`);
5. check, Colab-like, that the notebooks' install cell would install nothing but course_lib over what is there;
6. run notebooks 00-03 through binder/start (which sets smoke mode) under `pytest --nbval-lax` in that venv.

Differences from a real Binder build, on purpose: pip installs PyPI's torch==2.14.1 wheel (CUDA-enabled; conda's
`pytorch-cpu` is the CPU build of the same code), the Graphviz `dot` binary is conda/apt only (the test uses the
machine's `dot` when there is one; the notebooks fall back to matplotlib without it), and pytest + nbval are added
to drive the notebooks. About 4-6 minutes on 2 cores, most of it pip unpacking torch and its CUDA libraries.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from course_lib import notebook_meta

ROOT = Path(__file__).resolve().parents[1]
BINDER = ROOT / "binder"
NOTEBOOKS_ON_BINDER = ("00", "01", "02", "03")  # the theory notebooks a classroom opens first
REPORT = ROOT / "runs" / "tests" / "binder_install.json"

# conda-forge name -> pip name; None: not a pip package (say why)
CONDA_TO_PIP = {
    "pytorch-cpu": "torch",
    "pytorch": "torch",
    "python-graphviz": "graphviz",
    "jupyterlab_widgets": "jupyterlab-widgets",
    "python": None,  # the venv's interpreter
    "graphviz": None,  # the `dot` binary: conda-forge or apt only, never on PyPI
}
TEST_DRIVERS = ("pytest", "nbval")  # not part of Binder: they run the notebooks here


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _constraints() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, version = line.split("==")
            pins[_normalize(name)] = version.strip()
    return pins


def pip_requirements() -> list[str]:
    """binder/environment.yml as pip requirement strings (conda's version bounds translated)."""
    reqs = []
    for dep in yaml.safe_load((BINDER / "environment.yml").read_text())["dependencies"]:
        if not isinstance(dep, str):
            continue
        name, spec = re.match(r"^([A-Za-z0-9_.\-]+)\s*(.*)$", dep.strip()).groups()
        pip_name = CONDA_TO_PIP.get(name, name)
        if pip_name is None:
            continue
        spec = spec.strip()
        if spec.startswith("=") and not spec.startswith("=="):  # conda's fuzzy "=2.*" / "=2.3" is a prefix match
            version = spec[1:]
            spec = "==" + (version if version.endswith("*") else version + ".*")
        reqs.append(pip_name + spec)
    return reqs


def test_every_binder_package_maps_to_a_pinned_pip_package():
    pins = _constraints()
    names = {_normalize(re.split(r"[<>=!~]", r, maxsplit=1)[0]) for r in pip_requirements()}
    assert names - set(pins) == set(), f"pin these in constraints.txt: {sorted(names - set(pins))}"
    assert "torch" in names and "jupyterlab-widgets" in names and "graphviz" in names


def _run(cmd, env, cwd=ROOT, timeout=900):
    result = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"{' '.join(map(str, cmd))} failed:\n{result.stdout[-6000:]}\n{result.stderr[-4000:]}"
    return result.stdout


@pytest.mark.slow
@pytest.mark.timeout(1500)
def test_binder_environment_installs_fresh_and_runs_notebooks(tmp_path, data_dir):
    times = {}
    start = time.time()
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)  # the base interpreter, not this venv's
    bin_dir = venv / "bin"
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH", "COURSE_RUN_MODE",
                                                             "COURSE_WIDGETS", "JUPYTER_PATH", "JUPYTER_DATA_DIR")}
    env.update(PATH=f"{bin_dir}{os.pathsep}{env.get('PATH', '')}", VIRTUAL_ENV=str(venv),
               COURSE_DATA_DIR=str(data_dir), OMP_NUM_THREADS=env.get("OMP_NUM_THREADS", "2"),
               PIP_DISABLE_PIP_VERSION_CHECK="1")
    # no user-level Jupyter extensions, kernelspecs or config leak in
    env.update(JUPYTER_DATA_DIR=str(tmp_path / "jupyter-data"), JUPYTER_CONFIG_DIR=str(tmp_path / "jupyter-config"))

    _run([bin_dir / "python", "-m", "pip", "install", "-q", "-c", ROOT / "constraints.txt",
          *pip_requirements(), *TEST_DRIVERS], env)
    times["pip install (binder/environment.yml)"] = round(time.time() - start, 1)

    t = time.time()
    _run(["bash", BINDER / "postBuild"], env)
    times["binder/postBuild"] = round(time.time() - t, 1)
    out = _run([bin_dir / "python", "-c", "import course_lib, torch, sys; print(course_lib.__file__, "
                "torch.__version__, sys.prefix)"], env)
    assert str(ROOT / "course_lib") in out and str(venv) in out  # the editable course_lib, in the fresh venv
    assert _constraints()["torch"] in out
    _run([bin_dir / "python", "-m", "pip", "check"], env)

    listing = subprocess.run([bin_dir / "jupyter", "labextension", "list"], env=env, capture_output=True, text=True)
    labext = listing.stdout + listing.stderr  # JupyterLab prints the list on stderr
    assert re.search(r"@jupyter-widgets/jupyterlab-manager.*enabled.*OK", labext), labext

    # Colab-like: with torch, numpy and the helpers present, the install cell's pip lines touch nothing but
    # course_lib (the git URL is replaced by this checkout; the machines reach no git host).
    colab = [line.split("%pip install -q ", 1)[1] for line in notebook_meta.install_source().splitlines()
             if "%pip install" in line]
    assert len(colab) == 2 and colab[0].startswith("--no-deps ")
    for args, allowed in ((["--no-deps", str(ROOT)], {"course-lib"}), (colab[1].split(), set())):
        report = json.loads(_run([bin_dir / "python", "-m", "pip", "install", "-q", "--dry-run", "--report", "-",
                                  *args], env))
        would = {_normalize(i["metadata"]["name"]) for i in report["install"]}
        assert would <= allowed, f"the Colab install cell would (re)install {sorted(would - allowed)}"

    started = _run([BINDER / "start", "env"], env)
    assert "COURSE_RUN_MODE=smoke" in started

    notebooks = [str(p.relative_to(ROOT)) for p in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
                 if p.name[:2] in NOTEBOOKS_ON_BINDER]
    assert len(notebooks) == len(NOTEBOOKS_ON_BINDER)
    if shutil.which("dot", path=env["PATH"]) is None:
        print("note: no `dot` binary here; the notebooks draw diagrams with the matplotlib fallback")
    t = time.time()
    _run([BINDER / "start", bin_dir / "python", "-m", "pytest", "-q", "-p", "no:cacheprovider", "--nbval-lax",
          "--nbval-current-env", *notebooks], env, timeout=1200)
    times["notebooks " + "-".join(NOTEBOOKS_ON_BINDER) + " (smoke, nbval)"] = round(time.time() - t, 1)
    times["total"] = round(time.time() - start, 1)
    print("fresh Binder-like venv:", json.dumps(times))
    try:
        REPORT.parent.mkdir(parents=True, exist_ok=True)
        REPORT.write_text(json.dumps(times, indent=2) + "\n")
    except OSError:
        pass
