"""The classroom environment check behind notebook 00_setup: where we run, versions, `dot`, widgets, device, CPU
quota, memory, data and checkpoints.

`check_environment()` returns one row per item with a status (`ok`, `warn`, `missing`) and, when something is
wrong, how to fix it. Nothing here raises and nothing is downloaded: the point is to tell a learner everything at
once. Data files that are found are read too (sha256 where registered), so a damaged file shows here. Containers
(Binder, Docker, CI) are judged by their cgroup limits, not by the host's memory and cores, which `psutil` and
`os.cpu_count()` report.
"""

from __future__ import annotations

import importlib
import os
import platform
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Check", "check_environment", "format_checks", "main", "REQUIRED_PACKAGES", "SMOKE_MEMORY_GB", "where",
           "cgroup_memory", "cgroup_cpus"]

MIN_PYTHON = (3, 10)
SMOKE_MEMORY_GB = 1.5  # the largest smoke-mode notebook stays below this (tests/test_memory.py)
CGROUP_ROOT = Path("/sys/fs/cgroup")

# package import name -> (minimum version, what needs it)
REQUIRED_PACKAGES = {
    "torch": ("2.2", "every notebook"),
    "torchvision": ("0.17", "CIFAR download and transforms"),
    "numpy": ("1.24", "every notebook"),
    "matplotlib": ("3.7", "figures"),
    "ipywidgets": ("8.0", "sliders in notebooks 01-03"),
    "graphviz": ("0.20", "path diagrams (Python bindings)"),
    "tqdm": ("4.65", "progress bars"),
    "yaml": ("6.0", "papermill profiles"),
    "psutil": ("5.9", "memory checks"),
}
# On Colab the course keeps Colab's own packages (the install cell uses --no-deps); its ipywidgets 7 has the
# sliders the course uses and Colab ships the frontend for it.
_COLAB_MINIMUM = {"ipywidgets": "7.6"}


@dataclass(frozen=True)
class Check:
    item: str
    status: str  # "ok", "warn" or "missing"
    detail: str
    fix: str = ""


def _version_tuple(version: str) -> tuple[int, ...]:
    parts = []
    for token in version.split("+")[0].split(".")[:3]:
        digits = "".join(ch for ch in token if ch.isdigit())
        parts.append(int(digits) if digits else 0)
    return tuple(parts)


def where() -> str:
    """`colab`, `binder` or `local`."""
    from .config import in_binder, in_colab

    return "colab" if in_colab() else "binder" if in_binder() else "local"


def _install_hint(place: str) -> str:
    return {"colab": "run the notebook's first cell (the Colab install cell), then Runtime > Restart session",
            "binder": "the Binder image lacks it: relaunch from the README badge (a release tag), or pip install it",
            "local": "pip install -c constraints.txt -e . (or: make lab)"}[place]


def _where_check(place: str) -> Check:
    notes = {"colab": "Google Colab: Colab's own torch and numpy are used; Drive is never mounted",
             "binder": "mybinder.org: CPU only, 1-2 GB RAM, smoke mode; the session ends after ~10 min idle and "
                       "nothing you change is kept (File > Download what you want to keep)",
             "local": f"local machine ({platform.system()} {platform.machine()})"}
    return Check("running on", "ok", notes[place])


def _python_check() -> Check:
    version = platform.python_version()
    if sys.version_info[:2] >= MIN_PYTHON:
        return Check("python", "ok", version)
    return Check("python", "missing", f"{version}; the course needs >= {'.'.join(map(str, MIN_PYTHON))}",
                 "use a newer Python (conda env create -f environment.yml gives 3.11)")


def _package_checks(place: str) -> list[Check]:
    rows = []
    for name, (minimum, used_by) in REQUIRED_PACKAGES.items():
        if place == "colab":
            minimum = _COLAB_MINIMUM.get(name, minimum)
        try:
            module = importlib.import_module(name)
        except ImportError:
            rows.append(Check(name, "missing", f"not installed (needed for {used_by})", _install_hint(place)))
            continue
        version = getattr(module, "__version__", "?")
        ok = version == "?" or _version_tuple(version) >= _version_tuple(minimum)
        rows.append(Check(name, "ok" if ok else "warn", f"{version} ({used_by})",
                          "" if ok else f"upgrade to >= {minimum}: pip install -U {name}"))
    return rows


def _dot_check(place: str) -> Check:
    path = shutil.which("dot")
    if path:
        return Check("graphviz dot", "ok", path)
    fix = ("!apt-get install -y graphviz" if place == "colab" else
           "apt install graphviz | brew install graphviz | conda install -c conda-forge graphviz")
    return Check("graphviz dot", "warn", "the 'dot' binary is missing; diagrams use a matplotlib fallback", fix)


def _widget_check(place: str) -> Check:
    """ipywidgets needs the frontend of its own major version: 8 with jupyterlab_widgets 3, 7 with 1."""
    from .viz import ENV_WIDGETS

    forced = os.environ.get(ENV_WIDGETS, "").strip()
    if forced == "0":
        return Check("widget frontend", "ok", f"${ENV_WIDGETS}=0: every widget is drawn as one static figure")
    if forced != "1" and os.environ.get("COURSE_RUN_MODE", "").strip():
        return Check("widget frontend", "ok", f"static figures: $COURSE_RUN_MODE is set, which marks a headless run "
                                              f"(export {ENV_WIDGETS}=1 for live sliders)")
    try:
        import ipywidgets
    except ImportError:
        return Check("widget frontend", "warn", "ipywidgets missing; sliders show one static figure",
                     _install_hint(place))
    if place == "colab":
        return Check("widget frontend", "ok", f"ipywidgets {ipywidgets.__version__} with Colab's own frontend")
    try:
        import jupyterlab_widgets
    except ImportError:
        return Check("widget frontend", "warn",
                     f"ipywidgets {ipywidgets.__version__} but no jupyterlab_widgets: in JupyterLab the sliders "
                     "show as text", "pip install -c constraints.txt jupyterlab_widgets, then reload the page")
    wanted = {8: 3, 7: 1}.get(_version_tuple(ipywidgets.__version__)[0])
    have = _version_tuple(getattr(jupyterlab_widgets, "__version__", "0"))[0]
    detail = f"ipywidgets {ipywidgets.__version__} with jupyterlab_widgets {getattr(jupyterlab_widgets, '__version__', '?')}"
    if wanted is not None and have != wanted:
        return Check("widget frontend", "warn", detail + f" (ipywidgets {ipywidgets.__version__[0]} needs "
                     f"jupyterlab_widgets {wanted}.x)", "pip install -c constraints.txt ipywidgets jupyterlab_widgets")
    return Check("widget frontend", "ok", detail)


def cgroup_memory(root: Path = CGROUP_ROOT) -> tuple[int, int] | None:
    """(limit, usage) in bytes of this container's memory cgroup (v2, else v1); None when there is no limit."""
    for limit_file, usage_file in (("memory.max", "memory.current"),
                                   ("memory/memory.limit_in_bytes", "memory/memory.usage_in_bytes")):
        try:
            limit = (root / limit_file).read_text().strip()
            usage = int((root / usage_file).read_text().strip())
        except (OSError, ValueError):
            continue
        if limit.isdigit() and int(limit) < 2**60:  # "max" (v2) or a huge number (v1) means unlimited
            return int(limit), usage
    return None


def cgroup_cpus(root: Path = CGROUP_ROOT) -> float | None:
    """The CPU quota of this container in cores (cgroup v2, else v1); None when there is none."""
    try:
        quota, period = (root / "cpu.max").read_text().split()
    except (OSError, ValueError):
        try:
            quota = (root / "cpu" / "cpu.cfs_quota_us").read_text().strip()
            period = (root / "cpu" / "cpu.cfs_period_us").read_text().strip()
        except OSError:
            return None
    if not quota.lstrip("-").isdigit() or int(quota) <= 0 or not period.isdigit() or int(period) == 0:
        return None
    return int(quota) / int(period)


def _device_check() -> Check:
    import torch

    from .config import cpu_has_native_bf16, select_device

    device = select_device()
    if device.type == "cuda":
        return Check("device", "ok", f"CUDA: {torch.cuda.get_device_name(0)}; full mode runs here")
    detail = f"{device} (native bf16: {cpu_has_native_bf16()})"
    return Check("device", "ok", detail + "; smoke and cpu modes run here, full mode wants a GPU")


def _cpu_check() -> Check:
    import torch

    threads, quota = torch.get_num_threads(), cgroup_cpus()
    detail = f"{os.cpu_count()} cores visible, torch uses {threads} threads"
    if quota is None:
        return Check("cpu threads", "ok", detail)
    detail += f", container quota {quota:g} cores"
    allowed = max(1, int(-(-quota // 1)))
    if threads > allowed:
        return Check("cpu threads", "warn", detail + ": more threads than the quota makes every step slower",
                     f"torch.set_num_threads({allowed}) at the top of the notebook, or export OMP_NUM_THREADS={allowed}")
    return Check("cpu threads", "ok", detail)


def _memory_check(place: str) -> Check:
    try:
        import psutil
    except ImportError:
        return Check("memory", "warn", "psutil missing, cannot measure", "pip install psutil")
    available = psutil.virtual_memory().available
    detail = f"{available / 2**30:.1f} GiB available"
    limits = cgroup_memory()
    if limits is not None:
        limit, usage = limits
        available = min(available, limit - usage)
        detail = f"{available / 2**30:.1f} GiB available (container limit {limit / 2**30:.1f} GiB)"
    ok = available / 1e9 >= SMOKE_MEMORY_GB
    fix = "" if ok else (f"smoke mode needs about {SMOKE_MEMORY_GB} GB: shut down other kernels (Running Terminals "
                         "and Kernels tab) or restart this one" + ("; Binder cannot give more" if place == "binder"
                                                                     else ""))
    return Check("memory", "ok" if ok else "warn", detail, fix)


def _file_check(name: str, found: Path | None, missing: str, fix: str) -> Check:
    """ok with the path where a file was found, else a warning saying what happens without it and how to fix it."""
    return Check(name, "ok", f"found: {found}") if found else Check(name, "warn", missing, fix)


def _corrupt(name: str, error: Exception) -> Check:
    message = str(error)
    cause, _, fix = message.partition(". ")
    return Check(name, "missing", f"found but does not read: {cause}", fix or "replace the file with a good copy")


def _data_checks() -> list[Check]:
    """Where the data and checkpoints are, and that each one found reads (sha256 where registered, every batch of a
    torchvision folder): a damaged file is reported here, not in the middle of a run."""
    from . import data

    rows = [Check("data folders", "ok", " -> ".join(str(d) for d in data.search_dirs()))]
    download_dir = data._download_dir()
    free_gb = shutil.disk_usage(download_dir if download_dir.exists() else Path.home()).free / 1e9
    for name, when in (("cifar10", "first use"), ("cifar100", "first use with DATASET='cifar100'")):
        try:
            found = data.check_cifar(name)
        except data.DataCorruptError as exc:
            rows.append(_corrupt(name, exc))
            continue
        rows.append(_file_check(name, found,
                                f"not found locally; torchvision downloads it on {when} (170 MB into "
                                f"{download_dir}, {free_gb:.1f} GB free)",
                                f"offline or slow network? set {data.ENV_DATA_DIR} to a folder with the files"))
    for relpath, entry in data.registry().items():
        if not relpath.startswith("pretrained/"):
            continue
        name = Path(relpath).name
        found = next((d / rel for d in data.search_dirs() for rel in (relpath, name) if (d / rel).is_file()), None)
        if found is not None and entry.get("sha256"):
            try:
                data.verify_sha256(found, entry["sha256"], entry.get("url"))
            except data.DataCorruptError as exc:
                rows.append(_corrupt(name, exc))
                continue
        rows.append(_file_check(name, found, f"not found locally; downloaded and sha256-checked on first use "
                                             f"({entry.get('size', 0) / 1e6:.1f} MB)",
                                f"offline? copy it into {download_dir / 'pretrained'} or {data.ENV_DATA_DIR}"))
    return rows


def check_environment() -> list[Check]:
    """Every check a classroom needs, in the order notebook 00 shows them."""
    place = where()
    return [_where_check(place), _python_check(), *_package_checks(place), _dot_check(place), _widget_check(place),
            _device_check(), _cpu_check(), _memory_check(place), *_data_checks()]


def format_checks(checks: list[Check]) -> str:
    """A fixed-width table of the checks, with the fixes underneath."""
    marks = {"ok": "ok  ", "warn": "WARN", "missing": "MISS"}
    lines = [f"{marks[c.status]}  {c.item:<22} {c.detail}" for c in checks]
    fixes = [f"  - {c.item}: {c.fix}" for c in checks if c.fix]
    return "\n".join(lines + (["", "How to fix:"] + fixes if fixes else []))


def main(argv: list[str] | None = None, prog: str = "python -m course_lib envcheck") -> int:
    """`python -m course_lib envcheck`: print the checks; exit status 1 when something required is missing."""
    import argparse

    argparse.ArgumentParser(prog=prog, description="Check this environment for the course: Python and packages, "
                            "`dot`, widgets, device, CPU quota, memory, data and checkpoints.").parse_args(argv)
    checks = check_environment()
    print(format_checks(checks))
    missing = [c.item for c in checks if c.status == "missing"]
    if missing:
        print(f"\nmissing: {', '.join(missing)} (see 'How to fix' above)")
    return 1 if missing else 0
