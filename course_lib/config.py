"""Run modes, device choice, seeding and the banner every notebook prints.

A notebook's `parameters` cell sets `RUN_MODE = "auto"`; `resolve_mode` turns that into `smoke`, `cpu` or `full`:
the `COURSE_RUN_MODE` environment variable first (how nbval and CI get smoke mode), then `full` when CUDA is present,
else `cpu`. `system_knobs` picks the speed switches that do not change the maths (bf16 autocast only where the
hardware has native bf16, channels_last, torch.compile) for a device. Taught in notebook 00_setup.
"""

from __future__ import annotations

import os
import random
import time
from dataclasses import dataclass

import numpy as np
import torch

__all__ = ["MODES", "ENV_RUN_MODE", "resolve_mode", "select_device", "seed_everything", "SystemKnobs",
           "system_knobs", "cpu_has_native_bf16", "environment_info", "banner", "in_colab", "in_binder"]

MODES = ("auto", "smoke", "cpu", "full")
ENV_RUN_MODE = "COURSE_RUN_MODE"
# What each resolved mode is for, shown in the banner.
_MODE_HELP = {
    "smoke": "seconds: small subsets, tiny widths, 1 epoch; real data and the real code path (CI, Binder)",
    "cpu": "minutes to an hour on a laptop: full CIFAR-10 test set, narrow networks, few seeds",
    "full": "the paper's protocol on GPU(s)",
}


def resolve_mode(run_mode: str = "auto") -> str:
    """Turn a notebook's `RUN_MODE` into a concrete mode: `smoke`, `cpu` or `full`.

    Args:
        run_mode: one of `auto|smoke|cpu|full`. `auto` uses `$COURSE_RUN_MODE` when set, else `full` with CUDA,
            else `cpu`.

    Raises:
        ValueError: for an unknown mode (in the argument or in `$COURSE_RUN_MODE`), listing the valid ones.
    """
    if run_mode not in MODES:
        raise ValueError(f"unknown run mode {run_mode!r}; valid modes are {', '.join(MODES)}")
    if run_mode != "auto":
        return run_mode
    env = os.environ.get(ENV_RUN_MODE, "").strip()
    if env:
        if env not in MODES[1:]:
            raise ValueError(f"${ENV_RUN_MODE}={env!r} is not a run mode; use one of {', '.join(MODES[1:])}")
        return env
    return "full" if torch.cuda.is_available() else "cpu"


def select_device(preference: str = "auto") -> torch.device:
    """`auto` picks CUDA, then Apple MPS, then the CPU; any other string is passed to `torch.device`."""
    if preference != "auto":
        return torch.device(preference)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch (all devices); returns a CPU `torch.Generator` seeded with `seed`."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def cpu_has_native_bf16() -> bool:
    """True when the CPU has native bf16 arithmetic (AVX-512 BF16 or AMX); elsewhere bf16 autocast is slower."""
    try:
        flags = open("/proc/cpuinfo").read()
    except OSError:
        return False
    return " avx512_bf16" in flags or " amx_bf16" in flags


@dataclass(frozen=True)
class SystemKnobs:
    """Speed switches that leave the maths unchanged (up to float rounding); recorded in every result."""

    amp_bf16: bool  # bf16 autocast for the forward pass
    channels_last: bool  # NHWC memory format for convs
    compile: bool  # torch.compile the model
    num_threads: int  # intra-op CPU threads


def system_knobs(device: torch.device | str) -> SystemKnobs:
    """The knobs that pay off on `device`: everything on CUDA, bf16 on CPUs with native bf16 only."""
    device = torch.device(device)
    if device.type == "cuda":
        return SystemKnobs(amp_bf16=torch.cuda.is_bf16_supported(), channels_last=True, compile=True,
                           num_threads=torch.get_num_threads())
    native = device.type == "cpu" and cpu_has_native_bf16()
    return SystemKnobs(amp_bf16=native, channels_last=native, compile=False, num_threads=torch.get_num_threads())


def in_colab() -> bool:
    """True inside Google Colab."""
    return "COLAB_RELEASE_TAG" in os.environ or "google.colab" in __import__("sys").modules


def in_binder() -> bool:
    """True inside a mybinder.org session."""
    return "BINDER_SERVICE_HOST" in os.environ or "BINDER_LAUNCH_HOST" in os.environ


def environment_info(device: torch.device | str | None = None) -> dict:
    """Versions, device and host facts recorded as provenance in every result file."""
    import platform

    device = torch.device(device) if device is not None else select_device()
    info = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "platform": platform.platform(),
        "device": str(device),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cpu_native_bf16": cpu_has_native_bf16(),
        "time_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    try:
        import torchvision

        info["torchvision"] = torchvision.__version__
    except ImportError:
        info["torchvision"] = None
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
        info["cuda"] = torch.version.cuda
    return info


def banner(mode: str, device: torch.device | str, data_dir: str | None = None, expected: str | None = None) -> str:
    """The one-paragraph banner a notebook prints after resolving its mode: mode, device, data, time, how to switch."""
    lines = [
        f"run mode : {mode}  ({_MODE_HELP.get(mode, '')})",
        f"device   : {device}",
        f"data     : {data_dir or 'resolved on first use (COURSE_DATA_DIR, then data/, then download)'}",
    ]
    if expected:
        lines.append(f"expected : {expected}")
    lines.append(f"switch   : set RUN_MODE in the parameters cell, or export {ENV_RUN_MODE}=smoke|cpu|full")
    return "\n".join(lines)
