"""The three environment descriptions (pyproject.toml, environment.yml, binder/) and constraints.txt stay in step."""

import re
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
# conda-forge names that differ from the pip names
CONDA_TO_PIP = {"pytorch": "torch", "pytorch-cpu": "torch", "python-graphviz": "graphviz"}
NOT_PACKAGES = {"python", "pip", "graphviz-binary"}


def _name(spec: str) -> str:
    return re.split(r"[<>=!~ \[@]", spec.strip(), maxsplit=1)[0].lower()


def _conda_names(path: Path) -> set[str]:
    deps = yaml.safe_load(path.read_text())["dependencies"]
    names = {CONDA_TO_PIP.get(_name(d), _name(d)) for d in deps if isinstance(d, str)}
    return names - NOT_PACKAGES


def _pyproject():
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def test_runtime_dependencies_are_in_every_environment():
    runtime = {_name(d) for d in _pyproject()["dependencies"]}
    root, binder = _conda_names(ROOT / "environment.yml"), _conda_names(ROOT / "binder" / "environment.yml")
    assert runtime - {"pyyaml"} <= root | {"pyyaml"} and "pyyaml" in root
    assert runtime <= binder | {"pyyaml"} and "pyyaml" in binder


def test_tested_pins_cover_every_dependency():
    pinned = {_name(line) for line in (ROOT / "constraints.txt").read_text().splitlines()
              if line.strip() and not line.startswith("#")}
    wanted = {_name(d) for d in _pyproject()["dependencies"] + _pyproject()["optional-dependencies"]["dev"]}
    assert wanted <= pinned, f"not pinned in constraints.txt: {sorted(wanted - pinned)}"
    assert all("==" in line for line in (ROOT / "constraints.txt").read_text().splitlines()
               if line.strip() and not line.startswith("#"))


def test_binder_installs_course_lib_without_dependencies():
    post_build = (ROOT / "binder" / "postBuild").read_text()
    assert "pip install --no-deps -e ." in post_build
    assert "graphviz" in _conda_names(ROOT / "binder" / "environment.yml")
