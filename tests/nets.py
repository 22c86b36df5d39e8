"""Shared test helper: networks with BN layers that look trained."""

from __future__ import annotations

import torch
from torch import nn


def randomize_bn(net: nn.Module, seed: int = 0) -> nn.Module:
    """Non-trivial BN statistics and affine parameters, as after training, so that fusion, folding and lesions do
    real work (a fresh BN is the identity at eval). Returns `net`, changed in place."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                n = m.num_features
                m.running_mean.copy_(torch.rand(n, generator=gen) - 0.5)
                m.running_var.copy_(torch.rand(n, generator=gen) + 0.5)
                m.weight.copy_(torch.rand(n, generator=gen) + 0.5)
                m.bias.copy_(torch.rand(n, generator=gen) - 0.5)
    return net
