"""What GPU a result was measured on, and how busy it was: provenance and a utilisation sampler.

`gpu_provenance(device)` extends `results.provenance` (git commit, versions, host) with the CUDA device's name,
memory, compute capability and multiprocessor count, torch's CUDA and cuDNN versions, and, when `nvidia-smi` exists,
the driver version and its own report. `UtilizationSampler` is a thread that reads
`nvidia-smi --query-gpu=utilization.gpu` (the percentage of the last sample period in which a kernel was running on
the GPU) every second, falling back to `torch.cuda.utilization()`, and reports the mean over the time it ran.
Used by `course_lib.campaign`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time

import torch

from .results import provenance

__all__ = ["nvidia_smi", "gpu_id", "gpu_provenance", "UtilizationSampler"]


def nvidia_smi(args: list[str], command: str = "nvidia-smi", timeout: float = 10.0) -> str | None:
    """The stripped output of `nvidia-smi ARGS`, or None when it is not installed or fails."""
    if shutil.which(command) is None:
        return None
    try:
        out = subprocess.run([command, *args], capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def gpu_id(device: torch.device) -> str:
    """How `nvidia-smi -i` names the GPU of `device`: its UUID when `nvidia-smi` knows it (independent of
    CUDA_VISIBLE_DEVICES), else its entry in CUDA_VISIBLE_DEVICES, else its index."""
    index = device.index if device.index is not None else torch.cuda.current_device()
    uuid = getattr(torch.cuda.get_device_properties(index), "uuid", None)
    if uuid is not None:
        text = str(uuid)
        name = text if text.startswith("GPU-") else f"GPU-{text}"
        if nvidia_smi(["--query-gpu=name", "--format=csv,noheader", "-i", name]) is not None:
            return name
    visible = [v.strip() for v in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if v.strip()]
    return visible[index] if index < len(visible) else str(index)


def gpu_provenance(device: torch.device | str) -> dict:
    """`results.provenance(device)` plus, on CUDA, the GPU's properties, torch's CUDA/cuDNN versions, the driver
    version and the `nvidia-smi` report (None where a value is not available)."""
    device = torch.device(device)
    info = provenance(device)
    info.update(gpu_properties=None, torch_cuda=torch.version.cuda, cudnn=None, driver=None, nvidia_smi=None)
    if device.type != "cuda":
        return info
    if device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    props = torch.cuda.get_device_properties(device)
    info["gpu_properties"] = {"name": props.name, "total_memory_gib": round(props.total_memory / 2**30, 2),
                              "capability": f"{props.major}.{props.minor}",
                              "multiprocessors": props.multi_processor_count}
    info["cudnn"] = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
    selected = ["-i", gpu_id(device)]
    info["driver"] = nvidia_smi(["--query-gpu=driver_version", "--format=csv,noheader", *selected])
    info["nvidia_smi"] = nvidia_smi(["--query-gpu=name,driver_version,memory.total,power.limit,clocks.max.sm,"
                                     "pcie.link.gen.max", "--format=csv", *selected])
    return info


class UtilizationSampler(threading.Thread):
    """Reads the GPU's utilisation every `interval_s` seconds in a background thread, between `start()` and `stop()`.

    Args:
        device: the CUDA device to watch; another device (or None) samples nothing unless `gpu` is given.
        interval_s: seconds between two samples.
        command: the `nvidia-smi` executable (tests give a stand-in).
        gpu: the `nvidia-smi -i` name of the GPU (default: `gpu_id(device)`).

    `result()` gives {"mean_percent": the mean of the samples (None without any), "samples", "interval_s",
    "method": "nvidia-smi" | "torch.cuda.utilization" | None, "seconds": how long it sampled}.
    """

    def __init__(self, device: torch.device | str | None, interval_s: float = 1.0, command: str = "nvidia-smi",
                 gpu: str | None = None):
        super().__init__(daemon=True)
        self.device = torch.device(device) if device is not None else None
        cuda = self.device is not None and self.device.type == "cuda"
        self.gpu = gpu if gpu is not None else gpu_id(self.device) if cuda else None
        self.interval_s, self.command = interval_s, command
        self.samples: list[float] = []
        self.method: str | None = None
        self._halt = threading.Event()
        self._began: float | None = None
        self._ended: float | None = None

    def read(self) -> float | None:
        """One sample in percent, or None when neither `nvidia-smi` nor `torch.cuda.utilization` can say."""
        if self.gpu is None:
            return None
        out = nvidia_smi(["--query-gpu=utilization.gpu", "--format=csv,noheader,nounits", "-i", self.gpu],
                         self.command, timeout=5.0)
        try:
            value = float(out.splitlines()[0]) if out else None
        except ValueError:
            value = None
        if value is not None:
            self.method = "nvidia-smi"
            return value
        if self.device is None or self.device.type != "cuda":
            return None
        try:
            value = float(torch.cuda.utilization(self.device))  # needs the pynvml (or amdsmi) package
        except Exception:  # any failure means "not available here"
            return None
        self.method = "torch.cuda.utilization"
        return value

    def run(self) -> None:
        self._began = time.time()
        while not self._halt.wait(self.interval_s):
            value = self.read()
            if value is not None:
                self.samples.append(value)
        self._ended = time.time()

    def stop(self) -> dict:
        """Stop sampling and return `result()`."""
        self._halt.set()
        if self.is_alive():
            self.join(timeout=10)
        return self.result()

    def result(self) -> dict:
        seconds = None if self._began is None else round((self._ended or time.time()) - self._began, 1)
        mean = sum(self.samples) / len(self.samples) if self.samples else None
        return {"mean_percent": None if mean is None else round(mean, 1), "samples": len(self.samples),
                "interval_s": self.interval_s, "method": self.method, "seconds": seconds}
