"""Result files with provenance: atomic JSON writing, the git commit, and reading reference results.

Every experiment writes its results through `write_json_atomic` (temporary file + rename, so an interrupted run
never leaves half a file) and stamps them with `provenance()`: git commit, library versions, device, time.
"""

from __future__ import annotations

import functools
import json
import subprocess
from pathlib import Path
from typing import Any

from .storage import write_atomic

__all__ = ["write_json_atomic", "read_json", "git_commit", "provenance", "REFERENCE_DIR", "load_reference", "run_name",
           "run_name_of", "REPO_ROOT", "repo_path"]

REPO_ROOT = Path(__file__).resolve().parents[1]
REFERENCE_DIR = REPO_ROOT / "data" / "reference"


def repo_path(relative: str | Path) -> Path:
    """`relative` inside the course repository, e.g. `repo_path("runs/04_cifar_smoke")`, wherever Python was started
    (the notebooks' default folders do not depend on papermill's or Jupyter's working directory). When course_lib is
    installed without the repository (pip install on Colab), `relative` to the working directory instead."""
    in_clone = (REPO_ROOT / "notebooks").is_dir() and (REPO_ROOT / "course_lib").is_dir()
    return (REPO_ROOT if in_clone else Path.cwd()) / relative


def write_json_atomic(path: str | Path, obj: Any) -> Path:
    """Write `obj` as indented JSON to `path` atomically (a temporary file in the same folder, then a rename).

    Raises:
        StorageError: the disk is full or the folder not writable; the message names the file and the free space,
            and the previous version of `path` is untouched (see `storage.write_atomic`).
    """
    text = json.dumps(obj, indent=1, default=_to_jsonable) + "\n"  # fails before any file is touched
    return write_atomic(path, lambda f: f.write(text.encode()))


def _to_jsonable(obj: Any) -> Any:
    if hasattr(obj, "tolist"):  # numpy arrays and torch tensors
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"cannot write {type(obj).__name__} to JSON")


def read_json(path: str | Path) -> Any:
    """Read a JSON file."""
    return json.loads(Path(path).read_text())


@functools.cache  # read once per process: the commit of the code the first stage of this process ran
def git_commit() -> str | None:
    """The commit of the course repository (with `+dirty` for uncommitted changes), or None outside a clone.

    Cached: the first call fixes it for the process, so a long sweep records the code it started with, not
    whatever the clone holds when a result is written. Every protocol stage calls it when it starts.
    """
    root = Path(__file__).resolve().parents[1]
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10)
        if sha.returncode != 0:
            return None
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return sha.stdout.strip() + ("+dirty" if dirty else "")
    except (OSError, subprocess.TimeoutExpired):
        return None


def provenance(device: Any = None) -> dict:
    """Git commit plus `config.environment_info` (versions, device, host, time)."""
    from .config import environment_info

    return {"git_commit": git_commit(), **environment_info(device)}


def load_reference(name: str) -> dict | None:
    """`data/reference/<name>.json` if it exists (a stored result of a `cpu` or `full` run), else None."""
    path = REFERENCE_DIR / f"{name}.json"
    return read_json(path) if path.exists() else None


def run_name(granularity: str, seed: int, omega: float | None = None, target: float | None = None) -> str:
    """File stem of one post-training run's result: `channel-omega0.03-seed1` for a fixed ω, `layer-target4-seed0`
    for a target NAPL. Exactly one of `omega` and `target` is given."""
    if (omega is None) == (target is None):
        raise ValueError(f"give exactly one of omega and target, got omega={omega}, target={target}")
    knob = f"omega{omega:g}" if target is None else f"target{target:g}"
    return f"{granularity}-{knob}-seed{seed}"


def run_name_of(result: dict) -> str:
    """`run_name` of a stored post-training result."""
    target = result.get("target")
    return run_name(result["granularity"], result["seed"], omega=result["omega"] if target is None else None,
                    target=target)
