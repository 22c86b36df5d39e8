"""CIFAR ResNets of He et al. (2016, §4.2) and their plain (no-shortcut) twins.

Option-A shortcuts (strided subsampling plus zero channel padding, no parameters) and parameter names that match the
public akamaster checkpoints (`github.com/akamaster/pytorch_resnet_cifar10`, BSD-2-Clause, © 2018 Yerlan Idelbayev):
`conv1`, `bn1`, `layer{1,2,3}.{i}.conv1/bn1/conv2/bn2`, `linear`. The architecture is re-implemented here, not copied.

Every nonlinearity is its own `nn.ReLU` module (`relu`, `layerX.i.relu1`, `layerX.i.relu2`) so that
`course_lib.linearize.to_prelu` can find and replace it. In a residual block `relu2` sits *after* the addition, so it
lies on every path through the block (notebook 05 explains how that counts in NAPL).

Taught in notebooks 03 and 05.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .repvgg import _fuse_bn

__all__ = ["BasicBlock", "CifarResNet", "OptionAShortcut", "cifar_resnet", "fold_batchnorm"]


class OptionAShortcut(nn.Module):
    """Parameter-free shortcut: take every second pixel and zero-pad `pad` channels on each side."""

    def __init__(self, pad: int):
        super().__init__()
        self.pad = pad

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, self.pad, self.pad))


class BasicBlock(nn.Module):
    """conv3x3-BN-ReLU-conv3x3-BN, plus the shortcut when `residual`, then ReLU."""

    def __init__(self, in_planes: int, planes: int, stride: int = 1, residual: bool = True):
        super().__init__()
        self.residual = residual
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu2 = nn.ReLU()
        if stride != 1 or in_planes != planes:
            self.shortcut: nn.Module = OptionAShortcut((planes - in_planes) // 2)
        else:
            self.shortcut = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.residual:
            out = out + self.shortcut(x)
        return self.relu2(out)


class CifarResNet(nn.Module):
    """3x3 stem (16 channels), three stages of `n` BasicBlocks (16/32/64 channels), global pooling, linear head."""

    def __init__(self, blocks_per_stage: int, num_classes: int = 10, residual: bool = True):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.relu = nn.ReLU()
        in_planes = 16
        stages = []
        for planes, stride in ((16, 1), (32, 2), (64, 2)):
            blocks = []
            for i in range(blocks_per_stage):
                blocks.append(BasicBlock(in_planes, planes, stride if i == 0 else 1, residual=residual))
                in_planes = planes
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3 = stages
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.linear = nn.Linear(64, num_classes)
        for m in self.modules():  # He init for convs and the head, as in the reference implementation
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(m.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))  # (N, 16, 32, 32)
        x = self.layer3(self.layer2(self.layer1(x)))  # (N, 64, 8, 8)
        return self.linear(torch.flatten(self.pool(x), 1))  # (N, num_classes)


def cifar_resnet(depth: int, num_classes: int = 10, plain: bool = False) -> CifarResNet:
    """Build the CIFAR ResNet of depth `6n + 2` (20, 32, 44, 56, 110, ...).

    Args:
        depth: total number of weight layers, `6n + 2`.
        num_classes: size of the linear head (10 for CIFAR-10, 100 for CIFAR-100).
        plain: if True, the same network without the shortcuts (He et al.'s "plain" baseline), with identical
            parameter names and counts.

    Returns:
        The network, randomly initialised. Parameters: 269,722 for depth 20 and 853,018 for depth 56 (10 classes).

    Raises:
        ValueError: if `depth` is not of the form 6n + 2.
    """
    if depth < 8 or (depth - 2) % 6:
        raise ValueError(f"CIFAR ResNet depth must be 6n+2 (20, 32, 44, 56, 110), got {depth}")
    return CifarResNet((depth - 2) // 6, num_classes=num_classes, residual=not plain)


_CONV_BN_PAIRS = (("conv1", "bn1"), ("conv2", "bn2"))


@torch.no_grad()
def fold_batchnorm(model: CifarResNet) -> CifarResNet:
    """Fold every eval-mode BN into the conv before it (in place): the same function, no BN left.

    Each `convK` becomes a conv with bias and each `bnK` an `nn.Identity`, so parameter names stay stable
    (`layer1.0.conv1.weight`, `layer1.0.conv1.bias`, ...). The folded convs keep the model's device and dtype. Call it
    on a model in `eval()` mode; apply it to a freshly built network to get the structure that a folded state dict
    loads into.
    """
    for module in model.modules():
        for conv_name, bn_name in _CONV_BN_PAIRS:
            conv, bn = getattr(module, conv_name, None), getattr(module, bn_name, None)
            if not isinstance(conv, nn.Conv2d) or not isinstance(bn, nn.BatchNorm2d):
                continue
            weight, bias = _fuse_bn(conv.weight, bn)
            fused = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, stride=conv.stride,
                              padding=conv.padding, bias=True, device=weight.device, dtype=weight.dtype)
            fused.weight.copy_(weight)
            fused.bias.copy_(bias)
            setattr(module, conv_name, fused)
            setattr(module, bn_name, nn.Identity())
    return model
