"""Linearization by learnable PReLU slopes: ReLU→PReLU, the L0.5 penalty, freezing, and merging linear convs.

Implements the method of the paper's §3 (and of the 2023 predecessor): every ReLU of a trained network becomes a PReLU
whose slope starts at 0 (so the network is unchanged), post-training adds omega·Σ|1−alpha|^0.5 to the cross-entropy,
slopes within 0.01 of 1 are snapped to exactly 1 and frozen, and convs with only linear units between them are merged,
so a linearized plain net really is shallower. Taught in notebook 02_prelu_linearization (used again in 04 and 05).

Symbols: `alpha` is a PReLU slope α (α = 0 is ReLU, α = 1 is the identity), `omega` the penalty weight ω, `granularity`
"channel" (one α per channel) or "layer" (one α per layer).
"""

from __future__ import annotations

import copy
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from .models.repvgg import PlainConvNet

__all__ = [
    "GRANULARITIES", "LAYER_SCALES", "LinearizablePReLU", "to_prelu", "prelu_modules",
    "slope_parameters", "count_slopes", "freeze_random_channels", "freeze_random_layers", "l05_penalty",
    "freeze_near_linear", "freeze_candidates", "freeze_mask", "nonlinear_fraction", "merge_linear",
    "layer_counts", "slope_counts", "learned_skips",
]

Granularity = Literal["channel", "layer"]
LayerScale = Literal["channels", "one"]
GRANULARITIES: tuple[str, ...] = ("channel", "layer")
LAYER_SCALES: tuple[str, ...] = ("channels", "one")

# |1 - alpha| is clamped from below at this value inside the penalty. d|1-α|^0.5/dα = ∓0.5·|1-α|^-0.5 is infinite at
# α = 1; the clamp makes it 0 there instead (and changes the penalty's value by at most sqrt(1e-12) = 1e-6).
_PENALTY_EPS = 1e-12


def _check_choice(name: str, value: str, valid: tuple[str, ...]) -> None:
    if value not in valid:
        raise ValueError(f"unknown {name} {value!r}; choose one of {list(valid)}")


# ---------------------------------------------------------------------------------------------------------------------
# The activation
# ---------------------------------------------------------------------------------------------------------------------


class LinearizablePReLU(nn.Module):
    """PReLU max(0, x) + α·min(0, x) with one slope per channel or per layer, and a mask of frozen (linear) slopes.

    A frozen slope acts as exactly α = 1 in `forward` through `torch.where`, so it receives a zero gradient whatever
    value the parameter holds; `freeze_near_linear` also writes 1.0 into the parameter.

    Args:
        num_channels: number of channels C of the input (N, C, ...).
        granularity: "channel" (alpha has shape (C,)) or "layer" (alpha has shape (1,), shared by all channels).
        device, dtype: of `alpha` (the `frozen` mask is bool on the same device), as for any torch module.

    Raises:
        ValueError: for an unknown `granularity` or `num_channels` < 1.
    """

    def __init__(self, num_channels: int, granularity: str, device: torch.device | str | None = None,
                 dtype: torch.dtype | None = None):
        super().__init__()
        _check_choice("granularity", granularity, GRANULARITIES)
        if num_channels < 1:
            raise ValueError(f"num_channels must be >= 1, got {num_channels}")
        self.num_channels = int(num_channels)
        self.granularity = granularity
        shape = (self.num_channels,) if granularity == "channel" else (1,)
        self.alpha = nn.Parameter(torch.zeros(shape, device=device, dtype=dtype))  # α = 0: exactly ReLU
        self.register_buffer("frozen", torch.zeros(shape, device=device, dtype=torch.bool))

    @property
    def lr_scale(self) -> float:
        """Learning-rate multiplier of `alpha`: 1/C for a layer-wise slope, 1 for channel-wise slopes.

        Ours: a layer-wise slope is C channel slopes tied together; its gradient is the *sum* of theirs and (with
        `l05_penalty(layer_scale="channels")`) its penalty is C times a channel's. Dividing its learning rate by C
        makes its SGD step the *average* of the steps its C channels would take if untied, so one ω and one
        learning rate mean the same pressure per channel in both variants. `train.param_groups` applies it.
        """
        return 1.0 / self.num_channels if self.granularity == "layer" else 1.0

    def effective_alpha(self) -> torch.Tensor:
        """The slopes used in `forward`: alpha, with frozen entries replaced by exactly 1. Shape of `alpha`."""
        return torch.where(self.frozen, torch.ones_like(self.alpha), self.alpha)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() < 2:
            raise ValueError(f"expected input (N, C, ...), got shape {tuple(x.shape)}")
        if self.granularity == "channel" and x.shape[1] != self.num_channels:
            raise ValueError(f"expected {self.num_channels} channels, got input of shape {tuple(x.shape)}")
        # The native op: max(0, x) + α·min(0, x) with one slope per channel (or one for all), saving only its input
        # for the backward pass (a clamp-based version keeps three tensors: 600 MB more for ResNet-56 at batch 128).
        # α = 0 gives relu(x) (negative inputs become -0.0 == 0) and α = 1 gives x, both exactly. Under bf16 autocast
        # the slope is rounded to bf16 like the activations.
        return F.prelu(x, self.effective_alpha().to(x.dtype))

    @torch.no_grad()
    def nonlinear_mask(self) -> torch.Tensor:
        """Bool tensor (num_channels,): True where the channel's effective slope is not exactly 1."""
        return (self.effective_alpha() != 1).expand(self.num_channels).clone()

    def extra_repr(self) -> str:
        return f"num_channels={self.num_channels}, granularity={self.granularity!r}"


# ---------------------------------------------------------------------------------------------------------------------
# ReLU -> PReLU and looking at the slopes
# ---------------------------------------------------------------------------------------------------------------------


def _device_dtype(model: nn.Module) -> tuple[torch.device | None, torch.dtype | None]:
    """Device and floating dtype of the model's first parameter (None, None for a model without parameters)."""
    param = next(model.parameters(), None)
    if param is None:
        return None, None
    return param.device, param.dtype if param.is_floating_point() else None


def to_prelu(
    model: nn.Module,
    granularity: Granularity,
    input_shape: tuple[int, ...] = (1, 3, 32, 32),
    *,
    alpha_init: float = 0.0,
) -> nn.Module:
    """A deep copy of `model` with every `nn.ReLU` module (at any depth) replaced by a `LinearizablePReLU`.

    Channel counts are read from one forward pass on zeros of `input_shape` in eval mode (the copy's training flag is
    restored afterwards). With `alpha_init=0` the copy computes exactly the same function as `model`. The slopes get
    the device and dtype of `model`'s parameters (the meta device included: only shapes are needed).

    Paper: ReLU → PReLU, slopes initialised so that post-training starts from the pretrained network (§3).

    Args:
        model: any module whose nonlinearities are `nn.ReLU` modules (not `F.relu` calls, which cannot be found).
        granularity: "channel" (one slope per channel) or "layer" (one slope per ReLU module).
        input_shape: shape of the probe input (N, C, H, W).
        alpha_init: initial value of every slope (ours: 0.0, so the copy equals `model`).

    Returns:
        The new module; `model` is untouched. A ReLU module used at several places becomes one shared PReLU.

    Raises:
        ValueError: for an unknown `granularity`, a ReLU that the probe pass never reaches, or one reached with
            different channel counts.
    """
    _check_choice("granularity", granularity, GRANULARITIES)
    new = copy.deepcopy(model)
    relus = {id(m): m for m in new.modules() if isinstance(m, nn.ReLU)}
    channels: dict[int, set[int]] = {key: set() for key in relus}

    def record(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        channels[id(module)].add(int(output.shape[1]))

    handles = [m.register_forward_hook(record) for m in relus.values()]
    was_training = new.training
    device, dtype = _device_dtype(new)
    probe = torch.zeros(input_shape, device=device, dtype=dtype)
    try:
        new.eval()
        with torch.no_grad():
            new(probe)
    finally:
        for h in handles:
            h.remove()
        new.train(was_training)

    replacements: dict[int, LinearizablePReLU] = {}
    for key, module in relus.items():
        if len(channels[key]) != 1:
            found = "never reached" if not channels[key] else f"reached with channel counts {sorted(channels[key])}"
            raise ValueError(f"cannot size the PReLU for {module!r}: {found} by a forward pass on {input_shape}")
        prelu = LinearizablePReLU(channels[key].pop(), granularity, device=device, dtype=dtype)
        with torch.no_grad():
            prelu.alpha.fill_(alpha_init)
        replacements[key] = prelu.train(was_training)
    # remove_duplicate=False: a ReLU registered under two names is replaced under both.
    for name, module in list(new.named_modules(remove_duplicate=False)):
        if id(module) in replacements:
            parent_name, _, child = name.rpartition(".")
            setattr(new.get_submodule(parent_name), child, replacements[id(module)])
    return new


def prelu_modules(model: nn.Module) -> list[tuple[str, LinearizablePReLU]]:
    """(name, module) of every `LinearizablePReLU` in `model`, in module order."""
    return [(name, m) for name, m in model.named_modules() if isinstance(m, LinearizablePReLU)]


def slope_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The alpha Parameters of `model`, e.g. for an optimizer group without weight decay (which would pull α to 0)."""
    return [m.alpha for _, m in prelu_modules(model)]


def count_slopes(model: nn.Module) -> int:
    """Total number of slope parameters α (frozen or not): the parameter-count difference to a ReLU network."""
    return sum(m.alpha.numel() for _, m in prelu_modules(model))


def slope_counts(model: nn.Module, input_shape: tuple[int, ...] = (1, 3, 32, 32)) -> dict[str, float]:
    """The parameter-count control: how many slopes each variant adds to a ReLU network.

    Paper: channel-wise linearization has "~0.03% more parameters" than layer-wise on RepVGG-A2 (§4), the only
    difference between the two variants; e.g. RepVGG-A2 deploy: 7,808 channel slopes vs 22 layer slopes on
    25,499,944 parameters, 0.0305%. Counts what `to_prelu` would create (one slope per channel, or one per ReLU
    module) from one probe pass, without copying the network.

    Args:
        model: a network whose nonlinearities are `nn.ReLU` modules (left untouched).
        input_shape: probe input (N, C, H, W).

    Returns:
        {"parameters": of `model`, "channel_slopes", "layer_slopes", "extra_slopes": their difference,
         "extra_fraction": extra_slopes / parameters}.
    """
    channels: dict[int, int] = {}

    def record(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        channels[id(module)] = int(output.shape[1])

    handles = [m.register_forward_hook(record) for m in model.modules() if isinstance(m, nn.ReLU)]
    device, dtype = _device_dtype(model)
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros(input_shape, device=device, dtype=dtype))
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    channel, layer = sum(channels.values()), len(channels)
    parameters = sum(p.numel() for p in model.parameters())
    return {"parameters": parameters, "channel_slopes": channel, "layer_slopes": layer,
            "extra_slopes": channel - layer, "extra_fraction": (channel - layer) / parameters}


def nonlinear_fraction(model: nn.Module) -> dict[str, float]:
    """Fraction of channels still nonlinear (effective α ≠ 1), per PReLU module name in module order.

    A layer-wise PReLU reports 1.0 or 0.0.
    """
    return {name: m.nonlinear_mask().float().mean().item() for name, m in prelu_modules(model)}


# ---------------------------------------------------------------------------------------------------------------------
# The penalty and freezing
# ---------------------------------------------------------------------------------------------------------------------


def l05_penalty(model: nn.Module, layer_scale: LayerScale = "channels") -> torch.Tensor:
    """The sparsity penalty L0.5 = Σ w_i·|1 − α_i|^0.5 over the slopes that are not frozen.

    Paper: L_{0.5} = Σ_i |1 − α_i|^{0.5}, added to the cross-entropy as ω·L_{0.5} (§3); frozen slopes are excluded.

    Ours (the paper is silent on the layer-wise weighting): with `layer_scale="channels"` a layer-wise slope gets the
    weight w = C, its layer's channel count; a channel-wise slope always has w = 1. A layer-wise slope is a layer of C
    channel slopes tied together: its cross-entropy gradient is the sum of the C per-channel gradients, and with w = C
    so is its penalty gradient. So a layer-wise and a channel-wise net whose slopes all equal the same α get the same
    penalty, the same total push per layer and the same penalty-to-CE ratio: one ω means comparable pressure.
    `"one"` gives every slope weight 1, as a literal reading of the formula.

    Ours (numerics): |1 − α| is clamped from below at 1e-12, so an unfrozen slope sitting exactly at 1 gets gradient 0
    instead of NaN (the derivative ∓0.5·|1−α|^−0.5 is infinite there); frozen slopes are indexed out before the power,
    so they never reach it.

    Args:
        model: a network containing `LinearizablePReLU` modules.
        layer_scale: "channels" or "one", the weight of a layer-wise slope (see above).

    Returns:
        A 0-dim tensor that requires grad (a zero one if the model has no unfrozen slope), in the slopes' dtype and on
        their device (a model without slopes: those of its parameters).

    Raises:
        ValueError: for an unknown `layer_scale`.
    """
    _check_choice("layer_scale", layer_scale, LAYER_SCALES)
    terms: list[torch.Tensor] = []
    for _, m in prelu_modules(model):
        alpha = m.alpha[~m.frozen]  # (n_unfrozen,)
        weight = m.num_channels if (m.granularity == "layer" and layer_scale == "channels") else 1
        terms.append(weight * (1 - alpha).abs().clamp_min(_PENALTY_EPS).sqrt().sum())
    if not terms:
        device, dtype = _device_dtype(model)
        return torch.zeros((), device=device, dtype=dtype, requires_grad=True)
    return torch.stack(terms).sum()


@torch.no_grad()
def freeze_near_linear(model: nn.Module, tol: float = 0.01, optimizer: torch.optim.Optimizer | None = None,
                       freeze_crossing: bool = True) -> int:
    """Freeze every slope with |α − 1| < tol at exactly 1; call it after each optimizer step.

    With `freeze_crossing` (ours), a slope that stepped past 1 (α ≥ 1) is frozen too. Slopes start at 0, so α ≥ 1
    means the last step jumped over the ±tol window around 1. Near α = 1 the L0.5 gradient ½ω|1−α|^−½ grows without
    bound, so discrete SGD steps overshoot: without this rule slopes chatter around 1 (or fly off to large α, which
    blows up a deep net's activations) instead of landing in the window.

    The frozen mask only grows. Every call writes 1.0 into all frozen slopes (undoing drift from weight decay or
    momentum) and, if `optimizer` is given, zeroes the frozen entries of its per-parameter state (SGD
    `momentum_buffer`, Adam `exp_avg`/`exp_avg_sq`, any tensor state shaped like α), so momentum cannot move them.
    A frozen slope also gets no gradient (see `LinearizablePReLU.forward`) and no penalty (see `l05_penalty`).

    Paper: units with |α_i − 1| < 0.01 are frozen at 1 (§3).

    Args:
        model: a network containing `LinearizablePReLU` modules.
        tol: freezing threshold on |α − 1|.
        freeze_crossing: also freeze slopes that reached or passed 1.
        optimizer: the optimizer that updates the slopes, or None to leave optimizer state alone.

    Returns:
        The number of slopes newly frozen by this call (a layer-wise slope counts 1, not C).
    """
    newly_frozen = 0
    for _, m in prelu_modules(model):
        new = freeze_candidates(m, tol, freeze_crossing)
        newly_frozen += int(new.sum())
        freeze_mask(m, new, optimizer)
    return newly_frozen


@torch.no_grad()
def freeze_candidates(module: LinearizablePReLU, tol: float = 0.01, freeze_crossing: bool = True) -> torch.Tensor:
    """Bool mask (shape of α) of the unfrozen slopes that `freeze_near_linear` would freeze now."""
    near = (module.alpha - 1).abs() < tol
    return ~module.frozen & ((near | (module.alpha >= 1)) if freeze_crossing else near)


@torch.no_grad()
def freeze_mask(module: LinearizablePReLU, mask: torch.Tensor, optimizer: torch.optim.Optimizer | None = None) -> None:
    """Freeze the slopes in `mask` at exactly 1 (the frozen mask only grows), write 1.0 into every frozen slope and
    zero their optimizer state, so momentum cannot move them (see `freeze_near_linear`)."""
    module.frozen |= mask
    module.alpha[module.frozen] = 1.0
    if optimizer is not None and module.alpha in optimizer.state:
        for key, value in optimizer.state[module.alpha].items():
            if key != "step" and torch.is_tensor(value) and value.shape == module.alpha.shape:
                value[module.frozen] = 0.0


@torch.no_grad()
def freeze_random_channels(model: nn.Module, fraction: float, seed: int = 0) -> nn.Module:
    """Make round(fraction·C) randomly chosen channels of every PReLU layer exactly linear (frozen at α = 1).

    For demonstrations of what channel-wise linearization *can* produce (notebook 03); training decides which
    channels become linear in the real experiment. Works on channel-wise PReLUs; returns `model`.
    """
    gen = torch.Generator().manual_seed(seed)
    for _, prelu in prelu_modules(model):
        if prelu.granularity != "channel":
            raise ValueError("freeze_random_channels needs channel-wise PReLUs (to_prelu(model, 'channel'))")
        pick = torch.randperm(prelu.num_channels, generator=gen)[: round(fraction * prelu.num_channels)]
        prelu.frozen[pick], prelu.alpha[pick] = True, 1.0
    return model


@torch.no_grad()
def freeze_random_layers(model: nn.Module, k: int, seed: int = 0) -> nn.Module:
    """Make k randomly chosen PReLU layers entirely linear (every slope frozen at α = 1); returns `model`."""
    prelus = prelu_modules(model)
    for i in torch.randperm(len(prelus), generator=torch.Generator().manual_seed(seed))[:k].tolist():
        prelus[i][1].frozen[:], prelus[i][1].alpha[:] = True, 1.0
    return model


# ---------------------------------------------------------------------------------------------------------------------
# Merging linear layers of a plain conv net
# ---------------------------------------------------------------------------------------------------------------------


def _is_linear_identity(layer: nn.Module) -> bool:
    return isinstance(layer, nn.Identity) or (isinstance(layer, LinearizablePReLU) and not layer.nonlinear_mask().any())


def _pair(value: int | tuple[int, ...]) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else (int(value[0]), int(value[1]))


def _mergeable(conv: nn.Module) -> bool:
    """A plain dense conv: the kernel composition below assumes groups 1, dilation 1 and numeric zero padding."""
    return (isinstance(conv, nn.Conv2d) and conv.groups == 1 and _pair(conv.dilation) == (1, 1)
            and conv.padding_mode == "zeros" and not isinstance(conv.padding, str))


def _conv_with(weight: torch.Tensor, bias: torch.Tensor, stride: tuple[int, int], padding: tuple[int, int],
               like: torch.Tensor) -> nn.Conv2d:
    conv = nn.Conv2d(weight.shape[1], weight.shape[0], tuple(weight.shape[2:]), stride=stride, padding=padding,
                     bias=True, device=like.device, dtype=like.dtype)
    conv.weight.copy_(weight)
    conv.bias.copy_(bias)
    return conv


def _bias(conv: nn.Conv2d) -> torch.Tensor:
    return conv.bias if conv.bias is not None else torch.zeros(conv.out_channels, device=conv.weight.device,
                                                               dtype=conv.weight.dtype)


def _fold_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    """conv followed by eval-mode BN as one conv with bias (running statistics, not batch statistics)."""
    gamma = bn.weight if bn.weight is not None else torch.ones_like(bn.running_var)
    beta = bn.bias if bn.bias is not None else torch.zeros_like(bn.running_mean)
    scale = gamma / torch.sqrt(bn.running_var + bn.eps)  # (C_out,)
    folded = copy.deepcopy(conv)
    folded.weight = nn.Parameter(conv.weight * scale.reshape(-1, 1, 1, 1))
    folded.bias = nn.Parameter((_bias(conv) - bn.running_mean) * scale + beta)
    return folded


def _float64(t: torch.Tensor) -> torch.Tensor:
    """`t` in float64, on the CPU if its device has no float64 (Apple's mps)."""
    return t.to(device="cpu" if t.device.type == "mps" else t.device, dtype=torch.float64)


def _merge_convs(first: nn.Conv2d, second: nn.Conv2d) -> nn.Conv2d:
    """The conv equal to second(first(x)) away from the borders (see `merge_linear`).

    Composed in float64 whatever the convs' dtype, then stored in the device and dtype of `first`.
    """
    (s1h, s1w), (s2h, s2w) = _pair(first.stride), _pair(second.stride)
    (p1h, p1w), (p2h, p2w) = _pair(first.padding), _pair(second.padding)
    w1, w2 = _float64(first.weight), _float64(second.weight)  # (C1, C0, k1h, k1w), (C2, C1, k2h, k2w)
    # W[c2, c0, j·s1 + i] = Σ_{c1} W2[c2, c1, j]·W1[c1, c0, i]: a transposed conv with W2 as input, W1 as kernel.
    weight = F.conv_transpose2d(w2, w1, stride=(s1h, s1w))  # (C2, C0, k1 + (k2-1)·s1) per dim
    bias = _float64(_bias(second)) + w2.sum(dim=(2, 3)) @ _float64(_bias(first))  # b2 + Σ W2·b1
    return _conv_with(weight, bias, (s1h * s2h, s1w * s2w), (p1h + p2h * s1h, p1w + p2w * s1w), first.weight)


@torch.no_grad()
def merge_linear(model: PlainConvNet) -> PlainConvNet:
    """Fold BNs into convs, drop fully linear activations and merge the convs they separated into one.

    A `LinearizablePReLU` whose channels are all linear (and `nn.Identity`) is the identity, so the convs around it
    compose to one conv: kernel k1 + (k2−1)·s1, stride s1·s2, padding p1 + p2·s1, weight the composed kernels and bias
    b2 + Σ W2·b1. Merges repeat along a chain, so three 3x3 convs become one 7x7. A partially linear activation, a
    ReLU, a conv with groups/dilation, and any other module are kept as they are.

    Ours (borders): the merge is exact in the interior but not at image borders whenever the second conv pads
    (p2 > 0). The original pads the *intermediate* map with zeros, while the merged conv pads the raw input, so the
    intermediate values it implicitly uses outside the map are first-conv responses (at least its bias), not zeros.
    Output pixels whose receptive field reaches those padded intermediate positions differ; a stride-1 chain of 3x3
    convs is exact except on a border of (number of merged pads) pixels, which later layers widen by their own
    receptive field. An exact version would need per-position corrections, so the plain conv form is kept; with
    p2 = 0 the merge is exact everywhere.

    Args:
        model: a `PlainConvNet`; `features` holds Conv2d, optional BatchNorm2d (folded with running statistics, so
            the result matches `model` in eval mode) and activations.

    Returns:
        A new `PlainConvNet` with the same training flag, device and dtype; `model` is untouched.
    """
    layers: list[nn.Module] = []
    for layer in model.features:
        if (isinstance(layer, nn.BatchNorm2d) and layers and isinstance(layers[-1], nn.Conv2d)
                and layer.running_mean is not None):
            layers[-1] = _fold_bn(layers[-1], layer)
        elif _is_linear_identity(layer):
            continue  # exactly the identity: drop it, so the convs on both sides become adjacent
        elif layers and _mergeable(layers[-1]) and _mergeable(layer):
            layers[-1] = _merge_convs(layers[-1], layer)
        else:
            layers.append(copy.deepcopy(layer))
    merged = PlainConvNet(nn.Sequential(*layers), copy.deepcopy(model.linear))
    return merged.train(model.training)


def layer_counts(model: nn.Module) -> dict[str, int]:
    """Depth of a network: numbers of conv layers and of activation layers that are still nonlinear.

    Returns:
        {"conv": number of nn.Conv2d modules, "nonlinear": nn.ReLU modules plus `LinearizablePReLU` modules with at
        least one nonlinear channel}. For a plain net (after `merge_linear`) both equal its depth in layers.
    """
    convs = sum(isinstance(m, nn.Conv2d) for m in model.modules())
    nonlinear = sum(isinstance(m, nn.ReLU) or (isinstance(m, LinearizablePReLU) and bool(m.nonlinear_mask().any()))
                    for m in model.modules())
    return {"conv": convs, "nonlinear": nonlinear}


@torch.no_grad()
def learned_skips(model: PlainConvNet, x: torch.Tensor) -> list[dict[str, float]]:
    """Split what each layer passes on into a nonlinear branch and a learned linear skip, like a residual block.

    In a plain net with PReLU layers, let h be a layer's pre-activation and L its linear channels (slope exactly 1).
    The next conv W sees act(h) = act(h)·[c ∉ L] + h·[c ∈ L], so by linearity of the conv

        W * act(h) = W * (act(h)·[c ∉ L])  +  W * (h·[c ∈ L]),

    a nonlinear branch plus a linear path that skips this layer's nonlinearity: y = F(x) + S(x), the residual form
    with a learned linear shortcut S. Layer-wise linearization can only make L empty or everything.

    Args:
        model: a `PlainConvNet` whose activations are `LinearizablePReLU` (e.g. after channel-wise post-training).
        x: a batch of inputs (N, C, H, W); it is moved to the model's device and dtype.

    Returns:
        One dict per PReLU layer followed by a conv: {"layer", "linear_channels", "channels", "skip_norm",
        "branch_norm", "skip_share" = skip_norm / (skip_norm + branch_norm)} (norms are of the two terms above, over
        the batch), and "max_error" of W * act(h) − (branch + skip) (zero up to float rounding).
    """
    layers = list(model.features)
    out: list[dict[str, float]] = []
    device, dtype = _device_dtype(model)
    h = x.to(device=device, dtype=dtype)
    for i, layer in enumerate(layers):
        nxt = layers[i + 1] if i + 1 < len(layers) else None
        if isinstance(layer, LinearizablePReLU) and isinstance(nxt, nn.Conv2d):
            linear = (~layer.nonlinear_mask()).reshape(1, -1, 1, 1).to(h.dtype)
            activated = layer(h)
            weight_only = dict(stride=nxt.stride, padding=nxt.padding, dilation=nxt.dilation, groups=nxt.groups)
            branch = F.conv2d(activated * (1 - linear), nxt.weight, **weight_only)
            skip = F.conv2d(h * linear, nxt.weight, **weight_only)
            whole = F.conv2d(activated, nxt.weight, **weight_only)
            skip_norm, branch_norm = skip.norm().item(), branch.norm().item()
            out.append({"layer": len(out) + 1, "linear_channels": int(linear.sum().item()),
                        "channels": layer.num_channels, "skip_norm": skip_norm, "branch_norm": branch_norm,
                        "skip_share": skip_norm / max(skip_norm + branch_norm, 1e-30),
                        "max_error": (whole - branch - skip).abs().max().item()})
        h = layer(h)
    return out
