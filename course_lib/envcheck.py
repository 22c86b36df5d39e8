"""The classroom environment check behind notebook 00_setup: versions, `dot`, widgets, device, memory, data.

`check_environment()` returns one row per item with a status (`ok`, `warn`, `missing`) and, when something is
wrong, how to fix it. Nothing here raises: the point is to tell a learner everything at once.
"""

from __future__ import annotations

import importlib
import shutil
from dataclasses import dataclass

__all__ = ["Check", "check_environment", "format_checks", "REQUIRED_PACKAGES"]

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


def _package_checks() -> list[Check]:
    rows = []
    for name, (minimum, used_by) in REQUIRED_PACKAGES.items():
        try:
            module = importlib.import_module(name)
        except ImportError:
            rows.append(Check(name, "missing", f"not installed (needed for {used_by})",
                              "pip install -e . (or: make lab)"))
            continue
        version = getattr(module, "__version__", "?")
        ok = version == "?" or _version_tuple(version) >= _version_tuple(minimum)
        rows.append(Check(name, "ok" if ok else "warn", f"{version} ({used_by})",
                          "" if ok else f"upgrade to >= {minimum}: pip install -U {name}"))
    return rows


def _dot_check() -> Check:
    path = shutil.which("dot")
    if path:
        return Check("graphviz dot", "ok", path)
    return Check("graphviz dot", "warn", "the 'dot' binary is missing; diagrams use a matplotlib fallback",
                 "apt install graphviz | brew install graphviz | conda install -c conda-forge graphviz")


def _widget_check() -> Check:
    try:
        import ipywidgets
        import jupyterlab_widgets  # noqa: F401  the JupyterLab frontend of ipywidgets 8
    except ImportError:
        return Check("widget frontend", "warn", "jupyterlab_widgets not found; sliders show one static figure",
                     "pip install 'ipywidgets>=8' (it brings jupyterlab_widgets); in Colab widgets work as is")
    return Check("widget frontend", "ok", f"ipywidgets {ipywidgets.__version__} with jupyterlab_widgets")


def _device_check() -> Check:
    import torch

    from .config import cpu_has_native_bf16, select_device

    device = select_device()
    if device.type == "cuda":
        return Check("device", "ok", f"CUDA: {torch.cuda.get_device_name(0)}")
    detail = f"{device} ({torch.get_num_threads()} threads, native bf16: {cpu_has_native_bf16()})"
    return Check("device", "ok", detail + "; smoke and cpu modes run here, full mode wants a GPU")


def _memory_check() -> Check:
    try:
        import psutil
    except ImportError:
        return Check("memory", "warn", "psutil missing, cannot measure", "pip install psutil")
    available = psutil.virtual_memory().available / 2**30
    status = "ok" if available >= 1.5 else "warn"
    return Check("memory", status, f"{available:.1f} GiB available",
                 "" if status == "ok" else "smoke mode needs about 1.5 GB; close other notebooks")


def _data_checks() -> list[Check]:
    from . import data

    rows = [Check("data folders", "ok", " -> ".join(str(d) for d in data.search_dirs()))]
    for name in ("cifar10", "cifar100"):
        found = data.locate_cifar(name)
        if found:
            rows.append(Check(name, "ok", f"found: {found}"))
        else:
            rows.append(Check(name, "warn", "not found locally; torchvision downloads it on first use (~170 MB)",
                              f"offline? set {data.ENV_DATA_DIR} to a folder with the files"))
    return rows


def check_environment() -> list[Check]:
    """Every check a classroom needs, in the order notebook 00 shows them."""
    return [*_package_checks(), _dot_check(), _widget_check(), _device_check(), _memory_check(), *_data_checks()]


def format_checks(checks: list[Check]) -> str:
    """A fixed-width table of the checks, with the fixes underneath."""
    marks = {"ok": "ok  ", "warn": "WARN", "missing": "MISS"}
    lines = [f"{marks[c.status]}  {c.item:<16} {c.detail}" for c in checks]
    fixes = [f"  - {c.item}: {c.fix}" for c in checks if c.fix]
    return "\n".join(lines + (["", "How to fix:"] + fixes if fixes else []))
