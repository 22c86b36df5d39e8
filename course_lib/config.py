"""Run modes, device choice, seeding and the banner every notebook prints.

A notebook's `parameters` cell sets `RUN_MODE = "auto"`; `resolve_mode` turns that into `smoke`, `cpu` or `full`:
the `COURSE_RUN_MODE` environment variable first (how nbval and CI get smoke mode), then `full` when CUDA is present,
else `cpu`. `system_knobs` picks the speed switches that do not change the maths (bf16 autocast only where the
hardware has native bf16, channels_last, torch.compile) for a device. Taught in notebook 00_setup.
"""

from __future__ import annotations

import os
import platform
import random
import time
from dataclasses import dataclass

import numpy as np
import torch

from .errors import ConfigError

__all__ = ["MODES", "ENV_RUN_MODE", "resolve_mode", "select_device", "seed_everything", "SystemKnobs",
           "system_knobs", "CPU_COMPILE_MIN_STEPS", "cpu_has_native_bf16", "environment_info", "banner", "in_colab",
           "in_binder"]

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
        ConfigError (a ValueError): for an unknown mode (in the argument or in `$COURSE_RUN_MODE`), listing the valid
            ones.
    """
    if run_mode not in MODES:
        raise ConfigError(f"unknown run mode {run_mode!r}; valid modes are {', '.join(MODES)}")
    if run_mode != "auto":
        return run_mode
    env = os.environ.get(ENV_RUN_MODE, "").strip()
    if env:
        if env not in MODES[1:]:
            raise ConfigError(f"${ENV_RUN_MODE}={env!r} is not a run mode; use one of {', '.join(MODES[1:])} (or "
                              f"unset it)")
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


# Measured with `make bench` and single-loop probes on a 2-vCPU AMD EPYC (Zen 4, avx512_bf16), torch 2.14, 2
# threads, batch 128, channel-wise PReLU nets (plain A0/8 of notebook 04, ResNet-20), eager training step:
#   plain A0/8: fp32 NCHW 1087 img/s, fp32 channels_last 1963, bf16 NCHW 1353, bf16 channels_last 2344;
#   ResNet-20:  fp32 NCHW  241 img/s, fp32 channels_last  438, bf16 NCHW  532, bf16 channels_last  499.
# channels_last pays on its own (1.8x in fp32), so it is on for every x86 CPU; bf16 only where it is native.
# torch.compile (bf16, channels_last) adds 1.2x (plain, 53.5 -> 45.7 ms/step) to 1.7x (ResNet-20, 229 -> 133
# ms/step) in the course loop, but compiling a new graph takes 31-35 s on a cold inductor cache (4-7 s warm):
# break-even after about 4,000 (plain) or 400 (ResNet-20) steps cold, 550 or 70 warm. A `smoke` run of 32-64
# steps, a Binder session with a fresh cache or a laptop without a C++ compiler would lose, so on the CPU compile
# is chosen only for runs of at least this many steps (the `cpu` profile's pre-training has 5,850).
CPU_COMPILE_MIN_STEPS = 2000


def _has_cxx_compiler() -> bool:
    import shutil

    return any(shutil.which(c) for c in (os.environ.get("CXX", "g++"), "g++", "clang++", "c++"))


def system_knobs(device: torch.device | str, steps: int | None = None) -> SystemKnobs:
    """The knobs that pay off on `device`; none of them changes the model, the batch or the optimiser.

    CUDA: bf16 autocast (where supported), channels_last and torch.compile. CPU: channels_last on x86 (oneDNN's
    convolutions prefer NHWC), bf16 autocast only with native bf16 (AVX-512 BF16 or AMX; on AVX2 bf16 is emulated
    and slower than fp32), torch.compile only when the caller says the run has at least `CPU_COMPILE_MIN_STEPS`
    optimisation `steps` and a C++ compiler exists (inductor needs one). The thread count is torch's default (one
    per core), recorded as it is. The measurements behind each choice are in the comment above.

    Args:
        device: where the run trains.
        steps: optimisation steps the run will take, if known (None: unknown, so no compile on the CPU).
    """
    device = torch.device(device)
    threads = torch.get_num_threads()
    if device.type == "cuda":
        return SystemKnobs(amp_bf16=torch.cuda.is_bf16_supported(), channels_last=True, compile=True,
                           num_threads=threads)
    cpu = device.type == "cpu"
    x86 = platform.machine().lower() in ("x86_64", "amd64", "i686", "x86")
    compile_pays = cpu and steps is not None and steps >= CPU_COMPILE_MIN_STEPS and _has_cxx_compiler()
    return SystemKnobs(amp_bf16=cpu and cpu_has_native_bf16(), channels_last=cpu and x86, compile=compile_pays,
                       num_threads=threads)


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
