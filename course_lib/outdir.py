"""A sweep's out dir: whether it can take a run (checked before any work), and the runs stored in it.

`problems(cfg, ...)` says, without writing anything, what keeps `cfg.out_dir` from taking a run: a file where the
folder should be, no write permission, or less free space than the run's checkpoints need (`bytes_needed`, estimated
from the start network's parameter count). `matching_runs(cfg)` reads back every post-training result stored in the
folder that was made with `cfg`'s settings, so a sweep's summary covers every run of the folder, not only the ω of
its last invocation. Used by `protocol` (the summary) and `preflight` (the checks before work).
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from . import models
from .results import read_json
from .storage import existing_ancestor, format_bytes, free_bytes

__all__ = ["MARGIN_BYTES", "RUN_FILE_BYTES", "start_parameters", "bytes_needed", "problems", "same_settings",
           "matching_runs"]

MARGIN_BYTES = 64 * 2**20  # ours: room for the summary, logs and other programs writing to the same disk
RUN_FILE_BYTES = 2**20  # a run's JSON (histories, histograms) is a few 100 kB at most


def start_parameters(cfg: Any) -> int:
    """Parameters of the start network a config trains (its training form, the largest), counted without weights.

    Ours: read from the fields the two protocols have (`network`/`dataset` for CIFAR, `n_classes` for ImageNet).
    """
    if getattr(cfg, "network", "repvgg") != "repvgg":
        depth = int(cfg.network.removeprefix("resnet"))
        return models.count_parameters(models.cifar_resnet(depth, 10))  # small: built on the CPU in ms
    cifar = hasattr(cfg, "dataset")
    classes = (100 if cfg.dataset == "cifar100" else 10) if cifar else (getattr(cfg, "n_classes", None) or 1000)
    with torch.device("meta"):  # shapes only: RepVGG-A2 would take 100 MB
        return models.count_parameters(models.repvgg(cfg.arch, classes, cifar=cifar, width_mult=cfg.width_mult))


def bytes_needed(cfg: Any, pretrain_left: bool, runs_left: int) -> int:
    """Disk space a sweep still needs: the pre-training's checkpoint and deploy net when it is not stored, one
    post-training checkpoint at a time, every kept network (`save_models`), each run's JSON, and a margin.

    Ours: a checkpoint holds the fp32 weights and optimizer state (up to 2 more copies for AdamW) and is written
    next to the previous one before it replaces it, so 4 x the weights each.
    """
    weights = 4 * start_parameters(cfg)
    need = MARGIN_BYTES + runs_left * RUN_FILE_BYTES
    if pretrain_left:
        need += 4 * weights + weights  # epoch checkpoint + deploy.pt
    if runs_left:
        need += 4 * weights + (runs_left * weights if getattr(cfg, "save_models", False) else 0)
    return need


def problems(out_dir: str | Path, need: int, what: str = "this run") -> list[str]:
    """What keeps `out_dir` from taking a run that writes about `need` more bytes (empty when it is fine).

    Checked without writing anything: the path is a folder or can be created (its closest existing ancestor is a
    writable folder), it is writable, and its file system has `need` bytes free.
    """
    import os

    out = Path(out_dir).expanduser()
    place = existing_ancestor(out)
    if out.exists() and not out.is_dir():
        return [f"the out dir {out} is a file, not a folder: choose another out_dir (--out, OUT_DIR)"]
    if not place.is_dir():
        return [f"the out dir {out} cannot be created: {place} is a file, not a folder; choose another out_dir "
                "(--out, OUT_DIR)"]
    if not os.access(place, os.W_OK | os.X_OK):
        verb = "write into" if place == out.absolute() else f"create {out} in"
        return [f"cannot {verb} {place} (no write permission, or a read-only file system): choose a writable "
                "out_dir (--out, OUT_DIR)"]
    free = free_bytes(place)
    if free < need:
        return [f"the out dir {out} has {format_bytes(free)} free, but {what} needs about {format_bytes(need)} "
                "(checkpoints and results): free some space or choose an out_dir on another disk (--out, OUT_DIR)"]
    return []


def same_settings(stored: dict, cfg: Any, stage: str) -> bool:
    """Whether a stored result was made with `cfg`'s values of every field that defines `stage` (the test of
    `protocol.reuse_if_same`, without its error)."""
    old, new = stored.get("config", {}), json.loads(json.dumps(asdict(cfg)))  # tuples as the file holds them
    return all(f in old and old[f] == new[f] for f in cfg.defining(stage))


def matching_runs(cfg: Any) -> list[dict]:
    """Every post-training result in `<cfg.out_dir>/runs/` made with `cfg`'s settings, whatever its ω, seed or
    granularity (runs made with other post-training settings are left out). Files that do not read are skipped."""
    found = []
    for path in sorted((Path(cfg.out_dir) / "runs").glob("*.json")):
        try:
            result = read_json(path)
        except (OSError, ValueError):
            continue
        if isinstance(result, dict) and same_settings(result, cfg, "posttrain"):
            found.append(result)
    return found
