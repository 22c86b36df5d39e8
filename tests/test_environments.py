"""The three environment descriptions (pyproject.toml, environment.yml, binder/) and constraints.txt stay in step."""

import re
from pathlib import Path

import tomllib
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


# --- Binder -------------------------------------------------------------------------------------------------------

def _binder_specs() -> dict[str, str]:
    deps = yaml.safe_load((ROOT / "binder" / "environment.yml").read_text())
    assert deps["channels"] == ["conda-forge"]
    assert all(isinstance(d, str) for d in deps["dependencies"]), "no pip: section in binder/ (it would pull CUDA torch)"
    return {_name(d): d.replace(" ", "") for d in deps["dependencies"]}


def test_binder_is_a_cpu_only_jupyterlab_with_widgets_and_dot():
    specs = _binder_specs()
    assert "pytorch-cpu" in specs and "pytorch" not in specs  # the CPU build: no CUDA libraries in the image
    assert specs["jupyterlab"].endswith(">=4") and specs["ipywidgets"].endswith(">=8")
    assert specs["jupyterlab_widgets"].endswith(">=3")  # the JupyterLab 4 frontend that matches ipywidgets 8
    assert {"graphviz", "python-graphviz", "ipykernel"} <= set(specs)  # the dot binary and the bindings


def test_binder_scripts_are_executable_and_start_sets_smoke_mode():
    import os
    import subprocess

    for script in ("postBuild", "start"):
        assert os.access(ROOT / "binder" / script, os.X_OK), f"chmod +x binder/{script}"
    env = {k: v for k, v in os.environ.items() if k not in ("COURSE_RUN_MODE", "COURSE_WIDGETS")}
    out = subprocess.run([ROOT / "binder" / "start", "env"], env=env, capture_output=True, text=True, check=True)
    assert "COURSE_RUN_MODE=smoke" in out.stdout.splitlines()
    assert "COURSE_WIDGETS=1" in out.stdout.splitlines()  # live sliders although a run mode is set
    out = subprocess.run([ROOT / "binder" / "start", "env"], env={**env, "COURSE_RUN_MODE": "cpu"},
                         capture_output=True, text=True, check=True)
    assert "COURSE_RUN_MODE=cpu" in out.stdout.splitlines()  # a learner's choice wins


# --- Release tag and the README's badge block ---------------------------------------------------------------------

def test_binder_badge_launches_the_release_tag_in_jupyterlab_on_notebook_00():
    from course_lib import RELEASE_TAG, REPO_SLUG, notebook_meta

    assert re.fullmatch(r"v\d+\.\d+\.\d+", RELEASE_TAG), "Binder must launch a release tag, never a branch"
    assert notebook_meta.binder_url() == (f"https://mybinder.org/v2/gh/{REPO_SLUG}/{RELEASE_TAG}"
                                          "?urlpath=lab%2Ftree%2Fnotebooks%2F00_setup.ipynb")
    assert (ROOT / "notebooks" / "00_setup.ipynb").exists()


def test_readme_holds_the_generated_classroom_badge_block():
    from course_lib import notebook_meta

    assert notebook_meta.sync_readme(ROOT / "README.md") == [], (
        "paste the output of `python -m course_lib notebook-meta --readme-block` into README.md, or run "
        "`python -m course_lib notebook-meta --write` to refresh an existing block")


def test_sync_readme_rewrites_only_the_block(tmp_path):
    from course_lib import notebook_meta

    start, end = notebook_meta.README_MARKERS
    readme = tmp_path / "README.md"
    readme.write_text(f"# Title\n\n{start}\nold badges\n{end}\n\nrest\n")
    assert notebook_meta.sync_readme(readme, write=True) == ["the classroom badge block is out of date"]
    assert readme.read_text() == f"# Title\n\n{notebook_meta.readme_badges()}\n\nrest\n"
    assert notebook_meta.sync_readme(readme) == []
    readme.write_text("# no markers\n")
    assert notebook_meta.sync_readme(readme, write=True) and readme.read_text() == "# no markers\n"


# --- Colab --------------------------------------------------------------------------------------------------------

def _run_install_cell(on_colab: bool, monkeypatch) -> list[str]:
    """Execute the generated install cell as IPython would, recording the %pip lines instead of running pip."""
    import sys
    import types

    from IPython.core.inputtransformer2 import TransformerManager

    from course_lib import notebook_meta

    calls = []

    class FakeShell:
        def run_line_magic(self, name, line):
            calls.append(f"%{name} {line}")

    if on_colab:
        monkeypatch.setitem(sys.modules, "google.colab", types.ModuleType("google.colab"))
    else:
        monkeypatch.delitem(sys.modules, "google.colab", raising=False)
    code = TransformerManager().transform_cell(notebook_meta.install_source())
    exec(compile(code, "<install cell>", "exec"), {"get_ipython": lambda: FakeShell()})
    return calls


def test_colab_install_cell_does_nothing_outside_colab(monkeypatch):
    assert _run_install_cell(False, monkeypatch) == []


def test_colab_install_cell_installs_course_lib_from_the_notebooks_ref_and_keeps_torch_numpy(monkeypatch):
    from course_lib import REPO_REF, REPO_SLUG, notebook_meta

    calls = _run_install_cell(True, monkeypatch)
    assert calls[0] == f'%pip install -q --no-deps "course_lib @ git+https://github.com/{REPO_SLUG}@{REPO_REF}"'
    assert f"/blob/{REPO_REF}/notebooks/" in notebook_meta.badge("00_setup.ipynb")  # the badge's ref is the same
    for call in calls[1:]:  # the helpers: unversioned (pip keeps what Colab has), never torch/numpy/matplotlib
        assert not re.search(r"[<>=]", call) and not re.search(r"\b(torch|torchvision|numpy|matplotlib)\b", call)
        assert "-U" not in call.split() and "--upgrade" not in call and "--force-reinstall" not in call


def test_nothing_mounts_google_drive():
    from course_lib import notebook_meta

    sources = [notebook_meta.install_source()] + [p.read_text() for p in (ROOT / "course_lib").rglob("*.py")]
    sources += [p.read_text() for p in (ROOT / "notebooks").glob("*.ipynb")]
    assert not any("drive.mount" in s or "from google.colab import drive" in s for s in sources)
