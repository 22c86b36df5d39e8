"""The start network of the ImageNet protocol: RepVGG checkpoints in training or deploy form, ours or official.

A checkpoint's form is detected from its keys: our `models.repvgg` (training form) or `models.PlainConvNet` (deploy
form), or the key names of the official DingXiaoH/RepVGG code (MIT): `stage0.rbr_dense.conv.weight`, `rbr_1x1`,
`rbr_identity`, and `rbr_reparam` in deploy form. Official names are mapped to ours (`from_official`), then loaded
strictly and fused; the deploy form is what gets linearized. Part of `course_lib.imagenet`; taught in notebook 06.
"""

from __future__ import annotations

import pickle
import re
from pathlib import Path

import torch
from torch import nn

from .. import data, models
from ..errors import CourseError
from ..models.pretrained import load_state_dict_strict

__all__ = ["CheckpointPickleError", "load_checkpoint", "checkpoint_format", "from_official", "to_official",
           "start_network"]


class CheckpointPickleError(CourseError, ValueError):
    """A checkpoint holds pickled Python objects besides its tensors, so it cannot be loaded with weights_only."""


def _pickle_error(path: Path, refused: str) -> CheckpointPickleError:
    """The clear error for `torch.load(path, weights_only=True)` refusing the class `refused`, with the safe way out."""
    out = path.with_suffix(".state_dict.pt")
    command = (f"python -c \"import torch; ck = torch.load({str(path)!r}, weights_only=False); "
               f"torch.save(ck.get('model', ck.get('state_dict', ck)), {str(out)!r})\"")
    return CheckpointPickleError(
        f"checkpoint {path} holds pickled Python objects besides the weights (first refused: {refused}), as the "
        "official RepVGG training script writes (its config or arguments next to the state dict). It is only read "
        "with weights_only=True, since unpickling arbitrary objects can run code. If you trust the file, extract the "
        f"state dict once with\n    {command}\nand give {out} instead.")


def _damaged(path: Path, error: Exception) -> data.DataCorruptError:
    return data.DataCorruptError(f"checkpoint {path} does not read as a PyTorch file ({type(error).__name__}: "
                                 f"{str(error)[:200]}): a damaged or truncated copy, or another kind of file. Give a "
                                 "complete copy of the checkpoint (a RepVGG state dict saved with torch.save).")


def load_checkpoint(source: str | Path, sha256: str | None = None) -> dict[str, torch.Tensor]:
    """Read a state dict from a local file or an https url (cached in `~/.cache/course_lib/checkpoints`).

    Wrappers `{"model": ...}` / `{"state_dict": ...}` and a DDP `module.` prefix are removed.

    Raises:
        DataNotFoundError: no such local file. DataCorruptError (a RuntimeError): the sha256 does not match, or the
        file does not read as a PyTorch file. CheckpointPickleError (a ValueError): the file holds pickled objects
        besides tensors (e.g. an official training checkpoint with its config); the message gives the one-line
        command that extracts the state dict if you trust the file.
    """
    source = str(source)
    remote = source.startswith(("https://", "http://"))
    if remote:
        path = data._CACHE_DIR / "checkpoints" / source.rstrip("/").rsplit("/", 1)[-1]
        if not path.exists():
            data._download(source, path, sha256)  # the course's atomic, checked download
    else:
        path = Path(source).expanduser()
        if not path.is_file():
            what = "is a folder, not a file" if path.is_dir() else "not found"
            raise data.DataNotFoundError(f"checkpoint {path} {what}; give a local file or an https url")
    if sha256:
        fix = (f"Delete {path} and run again to download it from {source} again, or check the sha256." if remote else
               "Check that the checkpoint and the sha256 (checkpoint_sha256) belong together.")
        data.verify_sha256(path, sha256, advice=fix)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        refused = re.search(r"GLOBAL ([\w.]+)", str(error))  # torch names the first class it would not unpickle
        if refused is None:
            raise _damaged(path, error) from error
        raise _pickle_error(path, refused.group(1)) from error
    except (RuntimeError, EOFError, OSError) as error:  # not a torch file, or a truncated one
        raise _damaged(path, error) from error
    for key in ("model", "state_dict"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    return {k.removeprefix("module."): v for k, v in state.items()}


def checkpoint_format(state: dict) -> str:
    """The form of a RepVGG state dict, read from its keys.

    Returns:
        "train" / "deploy" (ours: `models.repvgg` / `models.PlainConvNet`), or "official_train" / "official_deploy"
        (DingXiaoH/RepVGG names: `stage0.rbr_dense.conv.weight` / `stage0.rbr_reparam.weight`).

    Raises:
        ValueError: keys of none of these forms (e.g. an SE variant), with a sample of the keys.
    """
    keys = set(state)
    if any(".se." in k for k in keys):
        raise ValueError("RepVGG checkpoints with SE blocks are not supported (the A family has none)")
    if "stage0.0.conv3x3.0.weight" in keys:
        return "train"
    if "features.0.weight" in keys and "linear.weight" in keys:
        return "deploy"
    if "stage0.rbr_dense.conv.weight" in keys:
        return "official_train"
    if "stage0.rbr_reparam.weight" in keys:
        return "official_deploy"
    raise ValueError(f"not a RepVGG checkpoint of a known form; first keys: {sorted(keys)[:8]}")


_OFFICIAL_PARTS = [("rbr_dense.conv.", "conv3x3.0."), ("rbr_dense.bn.", "conv3x3.1."), ("rbr_1x1.conv.", "conv1x1.0."),
                   ("rbr_1x1.bn.", "conv1x1.1."), ("rbr_identity.", "identity.")]


def _official_blocks(state: dict, marker: str) -> list[str]:
    """Block prefixes ("stage0.", "stage1.0.", ...) of an official state dict, in network order."""
    found = {m.group(1) for k in state if (m := re.match(rf"(stage\d+\.(?:\d+\.)?){marker}", k))}
    return sorted(found, key=lambda p: [int(n) for n in re.findall(r"\d+", p)])


def from_official(state: dict) -> dict[str, torch.Tensor]:
    """Rename an official DingXiaoH/RepVGG state dict to ours (training or deploy form); ours passes through.

    Training form: `stage0.rbr_dense.conv.weight` -> `stage0.0.conv3x3.0.weight`, `rbr_dense.bn` -> `conv3x3.1`,
    `rbr_1x1.{conv,bn}` -> `conv1x1.{0,1}`, `rbr_identity` -> `identity` (stage 0 is a single block there, a
    one-block Sequential here). Deploy form: the k-th block's `rbr_reparam.{weight,bias}` -> `features.{2k}.*`.
    `linear.*` is the same in both.
    """
    form = checkpoint_format(state)
    if form in ("train", "deploy"):
        return dict(state)
    out = {k: v for k, v in state.items() if k.startswith("linear.")}
    if form == "official_deploy":
        for i, block in enumerate(_official_blocks(state, "rbr_reparam")):
            for p in ("weight", "bias"):
                out[f"features.{2 * i}.{p}"] = state[f"{block}rbr_reparam.{p}"]
        return out
    for key, value in state.items():
        if key.startswith("linear."):
            continue
        new = re.sub(r"^stage0\.", "stage0.0.", key)
        for old, ours in _OFFICIAL_PARTS:
            new = new.replace(old, ours)
        out[new] = value
    return out


def to_official(state: dict) -> dict[str, torch.Tensor]:
    """The inverse of `from_official` for our training-form state dicts (used to test the mapping)."""
    out = {}
    for key, value in state.items():
        new = re.sub(r"^stage0\.0\.", "stage0.", key)
        for old, ours in _OFFICIAL_PARTS:
            new = new.replace(ours, old)
        out[new] = value
    return out


def start_network(state: dict, arch: str = "A2", width_mult: float = 1.0) -> tuple[nn.Module, nn.Module | None, str]:
    """The deploy-form net (what gets linearized) from a checkpoint of any supported form, loaded strictly.

    Returns:
        (deploy `PlainConvNet` in eval mode, the training-form `RepVGG` or None for a deploy checkpoint, the form).

    Raises:
        ValueError: an unknown form. RuntimeError: keys or shapes that do not match `arch`/`width_mult` (listed).
    """
    form = checkpoint_format(state)
    state = from_official(state)
    num_classes = state["linear.weight"].shape[0]
    net = models.repvgg(arch, num_classes, cifar=False, width_mult=width_mult)
    if form.endswith("train"):
        for key, value in net.state_dict().items():  # older checkpoints lack this counter; it never affects eval
            if key.endswith("num_batches_tracked"):
                state.setdefault(key, torch.zeros_like(value))
        load_state_dict_strict(net, state)
        return models.repvgg_deploy(net.eval()).eval(), net.eval(), form
    deploy = models.repvgg_deploy(net.eval())
    load_state_dict_strict(deploy, state)
    return deploy.eval(), None, form
