"""RepVGG (Ding et al., CVPR 2021, arXiv 2101.03697): training form, deploy form, and their exact fusion.

Training form: every block sums a 3x3 conv+BN, a 1x1 conv+BN and (when shapes allow) an identity BN, then applies a
ReLU. Because the three branches are linear, they fuse exactly into one 3x3 conv with bias ("structural
re-parameterization"). The deploy form is therefore a plain feedforward stack of 3x3 conv + ReLU layers: RepVGG-A2 has
22 of them and NAPL 22. That plain net is the starting point of the paper's linearization experiments.

Configurations follow the official code (`DingXiaoH/RepVGG`, MIT): stage depths (1, 2, 4, 14, 1) for the A family,
widths min(64, 64a), 64a, 128a, 256a, 512b. `cifar=True` uses stride 1 in stages 0 and 1 for 32x32 inputs, as the
CIFAR RepVGGs of `chenyaofo/pytorch-cifar-models` do. `width_mult` scales every width (ours: for the narrow `cpu`
profile). The code here is our own.

Taught in notebooks 04 and 06.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import nn

__all__ = ["RepVGGConfig", "REPVGG_CONFIGS", "RepVGGBlock", "RepVGG", "PlainConvNet", "repvgg", "repvgg_deploy",
           "repvgg_widths"]


@dataclass(frozen=True)
class RepVGGConfig:
    depths: tuple[int, int, int, int, int]  # blocks per stage 0..4
    width_a: float  # multiplier of stages 1-3 (base widths 64, 128, 256)
    width_b: float  # multiplier of stage 4 (base width 512)


REPVGG_CONFIGS: dict[str, RepVGGConfig] = {
    "A0": RepVGGConfig((1, 2, 4, 14, 1), 0.75, 2.5),
    "A1": RepVGGConfig((1, 2, 4, 14, 1), 1.0, 2.5),
    "A2": RepVGGConfig((1, 2, 4, 14, 1), 1.5, 2.75),
}


def repvgg_widths(arch: str, width_mult: float = 1.0) -> list[int]:
    """Channel widths of stages 0..4, scaled by `width_mult` (at least 4 channels each)."""
    cfg = _config(arch)
    base = [min(64, 64 * cfg.width_a), 64 * cfg.width_a, 128 * cfg.width_a, 256 * cfg.width_a, 512 * cfg.width_b]
    return [max(4, int(round(w * width_mult))) for w in base]


def _config(arch: str) -> RepVGGConfig:
    if arch not in REPVGG_CONFIGS:
        raise ValueError(f"unknown RepVGG arch {arch!r}; choose one of {sorted(REPVGG_CONFIGS)}")
    return REPVGG_CONFIGS[arch]


def _conv_bn(in_ch: int, out_ch: int, kernel: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_ch, out_ch, kernel, stride=stride, padding=kernel // 2, bias=False),
        nn.BatchNorm2d(out_ch),
    )


def _fuse_bn(kernel: torch.Tensor, bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """Fold eval-mode BN into a preceding bias-free conv kernel: returns (kernel, bias)."""
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)  # (C_out,)
    return kernel * scale.reshape(-1, 1, 1, 1), bn.bias - bn.running_mean * scale


class RepVGGBlock(nn.Module):
    """3x3 conv+BN ∥ 1x1 conv+BN ∥ identity BN (if in == out and stride 1), summed, then ReLU."""

    def __init__(self, in_ch: int, out_ch: int, stride: int = 1):
        super().__init__()
        self.in_ch, self.out_ch, self.stride = in_ch, out_ch, stride
        self.conv3x3 = _conv_bn(in_ch, out_ch, 3, stride)
        self.conv1x1 = _conv_bn(in_ch, out_ch, 1, stride)
        self.identity = nn.BatchNorm2d(out_ch) if in_ch == out_ch and stride == 1 else None
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv3x3(x) + self.conv1x1(x)
        if self.identity is not None:
            out = out + self.identity(x)
        return self.relu(out)

    @torch.no_grad()
    def fused_conv(self) -> nn.Conv2d:
        """The single 3x3 conv (with bias) equal to the three branches in eval mode, on their device and dtype."""
        k3, b3 = _fuse_bn(self.conv3x3[0].weight, self.conv3x3[1])
        k1, b1 = _fuse_bn(self.conv1x1[0].weight, self.conv1x1[1])
        kernel = k3 + nn.functional.pad(k1, (1, 1, 1, 1))  # the 1x1 kernel sits at the 3x3 centre
        bias = b3 + b1
        if self.identity is not None:
            dirac = torch.zeros_like(kernel)
            diag = torch.arange(self.out_ch, device=kernel.device)
            dirac[diag, diag, 1, 1] = 1.0  # identity as a 3x3 kernel
            kid, bid = _fuse_bn(dirac, self.identity)
            kernel, bias = kernel + kid, bias + bid
        conv = nn.Conv2d(self.in_ch, self.out_ch, 3, stride=self.stride, padding=1, bias=True, device=kernel.device,
                         dtype=kernel.dtype)
        conv.weight.copy_(kernel)
        conv.bias.copy_(bias)
        return conv


class RepVGG(nn.Module):
    """RepVGG in training form: stages 0..4 of RepVGGBlocks, global average pooling, linear head."""

    def __init__(self, arch: str, num_classes: int = 1000, cifar: bool = False, width_mult: float = 1.0):
        super().__init__()
        cfg = _config(arch)
        self.arch, self.cifar, self.width_mult = arch, cifar, width_mult
        widths = repvgg_widths(arch, width_mult)
        strides = (1, 1, 2, 2, 2) if cifar else (2, 2, 2, 2, 2)
        in_ch = 3
        for s, (depth, width, stride) in enumerate(zip(cfg.depths, widths, strides)):
            blocks = [RepVGGBlock(in_ch if i == 0 else width, width, stride if i == 0 else 1) for i in range(depth)]
            setattr(self, f"stage{s}", nn.Sequential(*blocks))
            in_ch = width
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.linear = nn.Linear(in_ch, num_classes)

    def blocks(self) -> list[RepVGGBlock]:
        return [b for s in range(5) for b in getattr(self, f"stage{s}")]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for s in range(5):
            x = getattr(self, f"stage{s}")(x)
        return self.linear(torch.flatten(self.pool(x), 1))


class PlainConvNet(nn.Module):
    """A plain feedforward conv net: `features` (conv, activation, conv, activation, ...), pooling, linear head.

    This is RepVGG's deploy form; `course_lib.linearize.merge_linear` also returns this type.
    """

    def __init__(self, features: nn.Sequential, linear: nn.Linear):
        super().__init__()
        self.features = features
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.linear = linear

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(torch.flatten(self.pool(self.features(x)), 1))


def repvgg(arch: str, num_classes: int = 1000, cifar: bool = False, width_mult: float = 1.0) -> RepVGG:
    """Build RepVGG `A0|A1|A2` in training form.

    Args:
        arch: "A0", "A1" or "A2".
        num_classes: classes of the linear head.
        cifar: stride 1 in stages 0 and 1 (for 32x32 inputs) instead of the ImageNet stride 2.
        width_mult: multiplies every stage width (ours; 1.0 is the paper's network).

    Raises:
        ValueError: for an unknown `arch`.
    """
    return RepVGG(arch, num_classes=num_classes, cifar=cifar, width_mult=width_mult)


def repvgg_deploy(model: RepVGG) -> PlainConvNet:
    """Fuse a training-form RepVGG into its deploy form: one 3x3 conv with bias + ReLU per block.

    The result equals `model` in eval mode (BN uses running statistics) up to float rounding, on `model`'s device and
    in its dtype. `model` is untouched.
    Each ReLU module is copied, so the deploy net has 22 `nn.ReLU` modules for the A family.
    """
    layers: list[nn.Module] = []
    for block in model.blocks():
        layers += [block.fused_conv(), copy.deepcopy(block.relu)]
    return PlainConvNet(nn.Sequential(*layers), copy.deepcopy(model.linear))
