"""Loading the public pretrained CIFAR ResNet-20/56 (akamaster, BSD-2-Clause) with a strict key and shape check."""

from __future__ import annotations

from pathlib import Path

import torch

from .cifar_resnet import CifarResNet, cifar_resnet

__all__ = ["load_pretrained_cifar_resnet", "load_state_dict_strict"]


def load_state_dict_strict(model: torch.nn.Module, state_dict: dict[str, torch.Tensor]) -> None:
    """Load `state_dict` into `model`, failing with a message that lists every missing, unexpected or mis-shaped key."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(own))
    mis_shaped = [f"{k}: checkpoint {tuple(state_dict[k].shape)} vs model {tuple(own[k].shape)}"
                  for k in sorted(set(own) & set(state_dict)) if own[k].shape != state_dict[k].shape]
    if missing or unexpected or mis_shaped:
        raise RuntimeError(
            "checkpoint does not match the model:\n"
            f"  missing keys: {missing}\n  unexpected keys: {unexpected}\n  shape mismatches: {mis_shaped}"
        )
    model.load_state_dict(state_dict, strict=True)


def load_pretrained_cifar_resnet(depth: int, root: str | Path | None = None) -> CifarResNet:
    """The akamaster CIFAR-10 ResNet-20 or ResNet-56, loaded strictly, in eval mode.

    The file is looked up like the data (`root`, `COURSE_DATA_DIR`, the repo's `data/`, under `pretrained/` or
    directly), checked against the sha256 of `data/registry.json`, and downloaded from the registry url when absent.

    The weights were trained on inputs normalised with mean (0.485, 0.456, 0.406) and std (0.229, 0.224, 0.225);
    this is `course_lib.data.NORMALIZATION`, which every loader of the course uses.

    Args:
        depth: 20 or 56.
        root: an extra folder to look in first.

    Raises:
        ValueError: for another depth.
        FileNotFoundError / RuntimeError: when the file can be neither found nor downloaded, or its sha256 is wrong.
    """
    from ..data import fetch_registered  # late import: data imports nothing from models

    names = {20: "resnet20-12fca82f.th", 56: "resnet56-4bfd9763.th"}
    if depth not in names:
        raise ValueError(f"pretrained CIFAR ResNets exist for depth 20 and 56, not {depth}")
    path = fetch_registered(f"pretrained/{names[depth]}", root=root)
    # A legacy pickle {'state_dict', 'best_prec1'} from the public repository: trusted by its sha256, hence
    # weights_only=False.
    checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    state_dict = {k.removeprefix("module."): v for k, v in checkpoint["state_dict"].items()}
    model = cifar_resnet(depth, num_classes=10)
    for key, value in model.state_dict().items():  # saved before BN had this counter; it never affects eval
        if key.endswith("num_batches_tracked"):
            state_dict.setdefault(key, torch.zeros_like(value))
    load_state_dict_strict(model, state_dict)
    return model.eval()
