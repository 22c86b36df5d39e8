"""The checkers of notebook 02_prelu_linearization: a channel-wise PReLU, the L0.5 penalty, the freezing rule, the
slope counts, RepVGG fusion and merging two convs, against `course_lib.linearize` and `course_lib.models`.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .. import linearize
from ..models import cifar_resnet, plain_cifar_net, repvgg
from ..models.repvgg import RepVGGBlock
from .compare import (
    F64,
    Case,
    Mismatch,
    Wrong,
    compare,
    differ,
    generator,
    known_mistake,
    randn,
    read_items,
    read_number,
    read_tensor,
    show,
    worst_difference,
)

__all__ = ["channel_prelu_cases", "l05_cases", "freeze_cases", "slope_counts_cases", "fuse_block_cases",
           "merge_convs_cases"]


def _prelu_module(alpha: Tensor, frozen: Tensor | None = None) -> linearize.LinearizablePReLU:
    """The course's PReLU holding these slopes (channel-wise, or layer-wise for a single slope)."""
    granularity = "layer" if alpha.numel() == 1 else "channel"
    module = linearize.LinearizablePReLU(alpha.numel(), granularity, dtype=alpha.dtype)
    with torch.no_grad():
        module.alpha.copy_(alpha.detach())
        if frozen is not None:
            module.frozen.copy_(frozen)
    return module


def channel_prelu_cases() -> list[Case]:
    def judge(got: Any, args: tuple) -> Mismatch | None:
        x, alpha = args
        with torch.no_grad():
            expected = _prelu_module(alpha)(x)
        x64 = x.to(F64)

        def explain(bad: Tensor) -> str:
            signs = [s for s, mask in (("negative", x64 < 0), ("positive", x64 >= 0)) if (bad & mask).any()]
            channels = sorted({int(i) for i in bad.nonzero()[:, 1]})
            return f"at {' and '.join(signs)} inputs, in channel(s) {channels}"

        return compare(got, expected, "output", atol=1e-6, rtol=1e-6, explain=explain)

    cases = []
    for i, (shape, slopes) in enumerate((((6, 4), 4), ((2, 3, 4, 3), 3), ((2, 3, 5, 5), 3), ((2, 5, 4, 4), 1))):
        x = torch.randn(*shape, generator=generator(i))
        alpha = torch.rand(slopes, generator=generator(i + 10)) * 2 - 0.5  # in [-0.5, 1.5)
        what = "one slope for every channel" if slopes == 1 else f"{slopes} slopes, one per channel"
        cases.append(Case(f"x of shape {shape}, {what}", (x, alpha), judge))
    return cases


def l05_cases() -> list[Case]:
    def judge(got: Any, args: tuple) -> Mismatch | None:
        alpha, frozen = args
        module = _prelu_module(alpha, frozen)
        expected = linearize.l05_penalty(module)
        (expected_grad,) = torch.autograd.grad(expected, module.alpha)
        if not torch.is_tensor(got):
            return Mismatch("the penalty is not a tensor, so it carries no gradient to the slopes",
                            f"a 0-dim tensor = {expected.item():.6g}", show(got))
        value, target = read_number(got, "the penalty"), expected.item()
        unfrozen, every = alpha[~frozen].detach(), alpha.detach()
        if mismatch := known_mistake(value, target, {
                "your sum includes the frozen slopes": (1 - every).abs().sqrt().sum().item(),
                "that is L1, Σ|1 − α|, not Σ|1 − α|^0.5": (1 - unfrozen).abs().sum().item(),
                "that is L2, Σ(1 − α)², not Σ|1 − α|^0.5": ((1 - unfrozen) ** 2).sum().item()}):
            return Mismatch(f"the penalty: {mismatch.differed}", mismatch.expected, mismatch.got)
        if not got.requires_grad:
            return Mismatch("the penalty carries no gradient to the slopes (computed outside torch, or detached?)",
                            "a tensor that requires grad", show(got))
        (grad,) = torch.autograd.grad(got.sum(), alpha, allow_unused=True)
        grad = torch.zeros_like(alpha) if grad is None else grad

        def explain(bad: Tensor) -> str:
            return f"{int((bad & frozen).sum())} of them at frozen slopes (a frozen slope gets no penalty, so no " \
                   "gradient)"

        return compare(grad, expected_grad, "∂L/∂α", atol=1e-9, rtol=1e-6, explain=explain)

    def slopes(values: list[float], frozen: list[bool]) -> tuple[Tensor, Tensor]:
        return torch.tensor(values, dtype=F64, requires_grad=True), torch.tensor(frozen)

    return [
        Case("8 slopes, none frozen", slopes([0.0, 0.3, -0.4, 0.9, 0.5, 0.1, 0.97, -0.2], [False] * 8), judge, True),
        Case("8 slopes, 3 frozen at exactly 1 (as freezing leaves them), two unfrozen ones above 1",
             slopes([1.0, 0.2, 1.3, 1.0, 0.6, 1.0, -0.3, 1.1], [True, False, False, True, False, True, False, False]),
             judge, True),
        Case("6 slopes, 3 frozen whose parameter still holds its old value (they act as α = 1)",
             slopes([0.995, 0.4, 1.004, 0.8, 0.991, 0.0], [True, False, True, False, True, False]), judge, True),
    ]


def freeze_cases() -> list[Case]:
    def judge(got: Any, args: tuple) -> Mismatch | None:
        alpha, was_frozen, tol = args
        module = _prelu_module(alpha, was_frozen)
        linearize.freeze_mask(module, linearize.freeze_candidates(module, tol, freeze_crossing=True))
        new_alpha, new_frozen = read_items(got, 2, "(alpha, frozen)")
        new_frozen = read_tensor(new_frozen, "frozen", tuple(alpha.shape)).bool()
        missing, extra = module.frozen & ~new_frozen, new_frozen & ~module.frozen
        if missing.any():
            k = int(missing.nonzero()[0])
            why = ("it was frozen before, and the frozen mask only grows" if was_frozen[k] else
                   "it stepped past 1, and the crossing rule freezes that too" if alpha[k] >= 1 else
                   f"|α − 1| = {abs(alpha[k].item() - 1):.4g} < tol = {tol}")
            return Mismatch(f"slope {k} (α = {alpha[k].item():.4g}) should be frozen but is not: {why}",
                            f"frozen = {module.frozen.tolist()}", f"frozen = {new_frozen.tolist()}")
        if extra.any():
            k = int(extra.nonzero()[0])
            return Mismatch(f"slope {k} (α = {alpha[k].item():.4g}) is frozen but should not be: "
                            f"|α − 1| = {abs(alpha[k].item() - 1):.4g} is not below tol = {tol}, and α < 1",
                            f"frozen = {module.frozen.tolist()}", f"frozen = {new_frozen.tolist()}")
        new_alpha = read_tensor(new_alpha, "alpha", tuple(alpha.shape))
        bad = new_alpha != module.alpha.detach()
        if not bad.any():
            return None
        k = int(bad.nonzero()[0])
        why = "a frozen slope must hold exactly 1" if module.frozen[k] else "a slope that is not frozen keeps its value"
        return Mismatch(f"alpha[{k}] is wrong: {why}", f"alpha[{k}] = {module.alpha[k].item():.6g}",
                        f"alpha[{k}] = {new_alpha[k].item():.6g}")

    def case(label: str, values: list[float], frozen: list[bool], tol: float) -> Case:
        return Case(label, (torch.tensor(values, dtype=F64), torch.tensor(frozen), tol), judge)

    spread = (0.8 + 0.4 * torch.rand(12, generator=generator(0), dtype=F64)).tolist()
    return [
        case("8 slopes, none frozen yet, tol = 0.01", [0.2, 0.995, 1.004, 0.985, 1.3, -0.4, 0.999, 0.6],
             [False] * 8, 0.01),
        case("6 slopes, 2 frozen earlier (one has drifted), tol = 0.01", [0.97, 1.0, 0.5, 1.02, 0.991, 0.3],
             [True, True, False, False, False, False], 0.01),
        case("12 slopes between 0.8 and 1.2, 3 frozen earlier, tol = 0.05", spread,
             [i % 4 == 0 for i in range(12)], 0.05),
    ]


def _random_bn(bn: nn.BatchNorm2d, gen: torch.Generator) -> None:
    """Give a BatchNorm the statistics of a trained one (not 0 and 1)."""
    with torch.no_grad():
        for t, low, high in ((bn.weight, 0.5, 1.5), (bn.bias, -0.5, 0.5), (bn.running_mean, -0.5, 0.5),
                             (bn.running_var, 0.5, 1.5)):
            t.copy_(low + (high - low) * torch.rand(t.shape, generator=gen, dtype=t.dtype))


def fuse_block_cases() -> list[Case]:
    def judge(got: Any, args: tuple) -> Mismatch | None:
        (block,) = args
        block = block.eval()
        ref = block.fused_conv()
        kernel, bias = read_items(got, 2, "(kernel, bias)")
        kernel = read_tensor(kernel, "kernel", tuple(ref.weight.shape))
        bias = read_tensor(bias, "bias", tuple(ref.bias.shape))
        bad = differ(kernel, ref.weight.detach(), atol=1e-9)
        if bad.any():
            centre_only = not bad[:, :, [0, 0, 0, 1, 1, 2, 2, 2], [0, 1, 2, 0, 2, 0, 1, 2]].any()
            diagonal_only = all(o == i for o, i, _, _ in bad.nonzero().tolist())
            if centre_only and diagonal_only and block.identity is not None:
                where = ("only at the centre tap of channel c → c: that is the identity branch, the Dirac kernel "
                         "(1 at the centre of c → c) times its BatchNorm's γ/√(σ² + ε)")
            elif centre_only:
                where = "only at the centre tap: that is where the 1×1 branch sits (padded to 3×3)"
            else:
                where = ("away from the centre tap: the 3×3 branch (kernel·γ/√(σ² + ε)), or a 1×1 kernel that "
                         "is not at the centre")
            return worst_difference(kernel, ref.weight.detach(), bad, "kernel", f"the kernel differs {where}")
        bn = [block.conv3x3[1], block.conv1x1[1]] + ([block.identity] if block.identity is not None else [])
        scales = [b.weight / torch.sqrt(b.running_var + b.eps) for b in bn]
        mistakes = {"the running means μ are missing (each branch adds β − μ·γ/√(σ² + ε))":
                    sum(b.bias for b in bn)}
        if block.identity is not None:
            mistakes["the identity branch's BatchNorm bias β − μ·γ/√(σ² + ε) is missing"] = (
                sum(b.bias - b.running_mean * s for b, s in zip(bn[:2], scales[:2])))
        bad = differ(bias, ref.bias.detach(), atol=1e-9)
        if bad.any():
            why = next((m for m, v in mistakes.items() if not differ(bias, v.detach(), atol=1e-9).any()),
                       "each branch adds its BatchNorm's β − μ·γ/√(σ² + ε)")
            return worst_difference(bias, ref.bias.detach(), bad, "bias", f"the bias differs: {why}")
        x = torch.randn(2, block.in_ch, 7, 7, generator=generator(1), dtype=F64)
        with torch.no_grad():
            ours = torch.relu(F.conv2d(x, kernel, bias, stride=block.stride, padding=1))
            return compare(ours, block(x), "relu(conv(x)) of your fusion vs the block", atol=1e-9)

    cases = []
    for seed, (c_in, c_out, stride) in enumerate(((4, 4, 1), (3, 5, 1), (4, 4, 2), (6, 6, 1))):
        torch.manual_seed(seed)  # the convs' default initialisation
        block, gen = RepVGGBlock(c_in, c_out, stride).double(), generator(seed)
        for bn in (block.conv3x3[1], block.conv1x1[1], block.identity):
            if bn is not None:
                _random_bn(bn, gen)
        branches = "3×3, 1×1 and identity branches" if block.identity is not None else "3×3 and 1×1 branches"
        cases.append(Case(f"RepVGGBlock({c_in} → {c_out} channels, stride {stride}): {branches}", (block.eval(),),
                          judge))
    return cases


def _composed_kernel(w1: Tensor, w2: Tensor) -> Tensor:
    """The kernel of conv2 ∘ conv1 (stride 1, no padding) from its impulse responses, shape (C2, C0, K, K)."""
    c0, k = w1.shape[1], w1.shape[-1] + w2.shape[-1] - 1
    impulses = torch.eye(c0 * k * k, dtype=F64).reshape(c0 * k * k, c0, k, k)  # one input pixel set to 1
    response = F.conv2d(F.conv2d(impulses, w1), w2)  # (C0·K·K, C2, 1, 1)
    return response.reshape(c0, k, k, -1).permute(3, 0, 1, 2)


def merge_convs_cases() -> list[Case]:
    def judge(got: Any, args: tuple) -> Mismatch | None:
        w1, b1, w2, b2 = args
        kernel_ref = _composed_kernel(w1, w2)
        bias_ref = b2 + w2.sum(dim=(2, 3)) @ b1  # b2 + Σ_{c1, taps} W2·b1
        kernel, bias = read_items(got, 2, "(kernel, bias)")
        try:
            kernel = read_tensor(kernel, "kernel", tuple(kernel_ref.shape))
        except Wrong as wrong:
            m = wrong.mismatch
            raise Wrong(Mismatch(f"{m.differed}: (C2, C0, k1 + k2 − 1, k1 + k2 − 1)", m.expected, m.got)) from None
        if mismatch := compare(kernel, kernel_ref, "kernel", atol=1e-9):
            correlated = F.conv2d(w1.transpose(0, 1), w2, padding=w2.shape[-1] - 1).transpose(0, 1)
            if not differ(kernel, correlated, atol=1e-9).any():
                mismatch = Mismatch(f"{mismatch.differed}: that is conv2d of the kernels, a cross-correlation; one "
                                    "of them must be flipped (or use conv_transpose2d)", mismatch.expected,
                                    mismatch.got)
            return mismatch
        if mismatch := compare(bias, bias_ref, "bias", atol=1e-9):
            return Mismatch(f"{mismatch.differed}: the first conv's bias b1 goes through the second conv's weights, "
                            "so b = b2 + Σ over c1 and the taps of W2·b1", mismatch.expected, mismatch.got)
        return None

    cases = []
    for seed, (c0, c1, c2, k1, k2) in enumerate(((3, 4, 4, 3, 3), (2, 3, 2, 1, 3), (4, 2, 3, 3, 1), (3, 6, 2, 3, 3))):
        w1, w2 = randn(c1, c0, k1, k1, seed=seed), randn(c2, c1, k2, k2, seed=seed + 10)
        b1, b2 = randn(c1, seed=seed + 20), randn(c2, seed=seed + 30)
        cases.append(Case(f"a {k1}×{k1} conv {c0} → {c1} channels, then a {k2}×{k2} conv {c1} → {c2}",
                          (w1, b1, w2, b2), judge))
    return cases


def slope_counts_cases() -> list[Case]:
    def judge(got: Any, args: tuple) -> Mismatch | None:
        model, input_shape = args
        counts = linearize.slope_counts(model, input_shape)
        channel, layer = (read_number(v, n) for v, n in zip(read_items(got, 2, "(channel_slopes, layer_slopes)"),
                                                         ("channel_slopes", "layer_slopes")))
        convs = sum(m.out_channels for m in model.modules() if isinstance(m, nn.Conv2d))
        if mismatch := known_mistake(channel, counts["channel_slopes"], {
                "that is the sum of the convs' output channels; count the channels each ReLU sees (a RepVGG "
                "training block has two convs before its one ReLU)": convs}):
            return Mismatch(f"channel slopes: {mismatch.differed}", mismatch.expected, mismatch.got)
        if mismatch := known_mistake(layer, counts["layer_slopes"], {"that is the number of convs": sum(
                isinstance(m, nn.Conv2d) for m in model.modules())}):
            return Mismatch(f"layer slopes (one per ReLU layer): {mismatch.differed}", mismatch.expected,
                            mismatch.got)
        return None

    torch.manual_seed(0)
    mlp = nn.Sequential(nn.Linear(5, 7), nn.ReLU(), nn.Linear(7, 3), nn.ReLU(), nn.Linear(3, 2))
    cifar = (1, 3, 32, 32)
    return [
        Case("RepVGG-A0 at 1/8 width, deploy form (plain conv + ReLU)", (plain_cifar_net("A0", 10, 0.125), cifar),
             judge),
        Case("RepVGG-A0 at 1/8 width, training form (3×3, 1×1 and identity branches)",
             (repvgg("A0", 10, cifar=True, width_mult=0.125), cifar), judge),
        Case("ResNet-20 (CIFAR)", (cifar_resnet(20), cifar), judge),
        Case("a 3-layer MLP on inputs of size 5", (mlp, (1, 5)), judge),
    ]


