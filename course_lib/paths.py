"""Exact path-length histograms, NAPL and APL of a network, computed from its `torch.fx` graph.

A network is read as a path graph whose units are *channels* (a 3x3 conv connects every output channel to every input
channel, like a dense layer). A path runs from an input channel to an output unit; its *length* is the number of
nonlinear units it meets. We carry the distribution of that length through the traced graph in topological order,
starting from δ₀ at the input:

- an activation whose channels are nonlinear with fraction p: `dist ← (1 − p)·dist + p·shift(dist)`;
- a junction (an addition `x + f(x)`, or `torch.cat` along the channel dimension) mixes its inputs' distributions;
- every other op (conv, BN, pooling, linear, flatten, slicing, padding, scaling by a constant, ...) adds 0.

Two measures differ only in the junction weights. The *normalized* measure (NAPL, 2506.14386) picks each of the k
summands of an addition with probability 1/k and a concatenated input in proportion to its channels. At an addition
whose summand is zero-padded along the channels (the option-A shortcut of a CIFAR ResNet where the width doubles),
the course keeps 1/k per summand (`junction="summand"`, the walk picks a summand first: ResNet-20/56 NAPL 14.5/41.5);
`junction="channel"` lets the walk pick a channel first and then one of the summands that carry a path there, so a
zero-padded channel of the shortcut carries none (15.0/42.0; NAPL = 3(6n + 2)/4 against 3(6n + 2)/4 − 1/2). The
*unnormalized* one (APL, 2211.17180) counts every path once, so each input weighs in proportion to its path count;
counts are multiplied by the fan-out of each weight layer (Conv, Linear) and kept in log space so deep nets do not
overflow. Symbols: `napl` = normalized average path length, `apl` = unnormalized average path length.

Paper: 2211.17180 Fig. 1 (APL; the 257-path example) and 2506.14386 §3 (NAPL: "the average number of nonlinear units
encountered along paths from input to output"); the exact histogram algorithm is ours (paper-notes §2.4–2.5).
Taught in notebook 03_paths_and_napl and used in 05_resnet56_ablation.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import fx, nn
from torch.fx.passes.shape_prop import ShapeProp

from .errors import ConfigError

__all__ = ["ActivationInfo", "JUNCTIONS", "activation_layers", "path_length_distribution", "path_counts", "napl",
           "napl_reader", "apl", "histogram_moments"]

JUNCTIONS = ("summand", "channel")  # how the normalized walk crosses an addition with zero-padded channels

# Elementwise nonlinearities that count as fully nonlinear (p = 1) in every channel. Ours: the papers only use
# (P)ReLU; we count any other elementwise activation (GELU, Tanh, ...) the same way. Max-pooling and softmax are not
# elementwise activations and count as linear, like the rest of the "conv/BN/pool add 0" rule.
_ACTIVATION_MODULES = (
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.RReLU, nn.ELU, nn.SELU, nn.CELU, nn.GELU, nn.SiLU, nn.Mish,
    nn.Sigmoid, nn.Tanh, nn.Hardtanh, nn.Hardswish, nn.Hardsigmoid, nn.Softplus, nn.Softsign, nn.LogSigmoid,
    nn.Tanhshrink, nn.Softshrink, nn.Hardshrink, nn.Threshold,
)
_ACTIVATION_FUNCTIONS = {
    F.relu, F.relu_, torch.relu, torch.relu_, F.relu6, F.leaky_relu, F.prelu, F.elu, F.selu, F.celu, F.gelu, F.silu,
    F.mish, F.sigmoid, torch.sigmoid, F.tanh, torch.tanh, F.hardtanh, F.hardswish, F.hardsigmoid, F.softplus,
    F.softsign, F.logsigmoid, F.tanhshrink,
}
_ACTIVATION_METHODS = {"relu", "relu_", "sigmoid", "sigmoid_", "tanh", "tanh_"}
_ADD_FUNCTIONS = {operator.add, operator.iadd, operator.sub, operator.isub, torch.add, torch.sub}
_ADD_METHODS = {"add", "add_", "sub", "sub_"}
_CAT_FUNCTIONS = {torch.cat, torch.concat, torch.concatenate}
_CONV_FUNCTIONS = {F.conv1d, F.conv2d, F.conv3d}


class ActivationInfo(NamedTuple):
    """One activation on the input-to-output paths, as `activation_layers` reports it."""

    name: str  # module path ("layer1.0.relu1") or fx node name of a functional call ("relu_1")
    num_channels: int  # size of dim 1 of its output
    nonlinear_fraction: float  # p: fraction of its channels that are nonlinear


class _Paths(NamedTuple):
    """What flows along the graph: the length distribution (sums to 1) and log(number of paths)."""

    dist: torch.Tensor  # float64 (max_length + 1,)
    log_count: float


class _PathTracer(fx.Tracer):
    """fx tracer that also keeps any module with a `nonlinear_mask()` method (the course's PReLU) as a leaf."""

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return callable(getattr(m, "nonlinear_mask", None)) or super().is_leaf_module(m, module_qualified_name)


# ---------------------------------------------------------------------------------------------------------------------
# Reading the graph


def _trace(model: nn.Module, input_shape: tuple[int, ...]) -> fx.GraphModule:
    """Trace `model` symbolically and record every node's output shape (in eval mode, without grad).

    The dummy input has the device and floating dtype of the model's first parameter (the meta device works too).
    """
    gm = fx.GraphModule(model, _PathTracer().trace(model))
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    dtype = param.dtype if param is not None and param.is_floating_point() else torch.float32
    modes = {m: m.training for m in model.modules()}
    try:
        gm.eval()  # BN with running statistics: works for batch 1 and leaves those statistics untouched
        with torch.no_grad():
            ShapeProp(gm).propagate(torch.zeros(input_shape, device=device, dtype=dtype))
    finally:
        for m, training in modes.items():
            m.training = training
    return gm


def _is_tensor(node: fx.Node) -> bool:
    return "tensor_meta" in node.meta  # ShapeProp sets it for tensors and tuples of tensors, not for ints or sizes


def _channels(node: fx.Node) -> int:
    shape = node.meta["tensor_meta"].shape
    return int(shape[1]) if len(shape) >= 2 else int(shape[0]) if len(shape) == 1 else 1


def _op_name(node: fx.Node, modules: dict[str, nn.Module]) -> str:
    if node.op == "call_module":
        return f"{type(modules[node.target]).__name__} module {node.target!r}"
    if node.op == "call_method":
        return f"Tensor.{node.target}"
    return getattr(node.target, "__qualname__", str(node.target))


def _is_add(node: fx.Node) -> bool:
    return (node.op == "call_function" and node.target in _ADD_FUNCTIONS) or (
        node.op == "call_method" and node.target in _ADD_METHODS)


def _is_cat(node: fx.Node) -> bool:
    return node.op == "call_function" and node.target in _CAT_FUNCTIONS


def _activation_fraction(node: fx.Node, modules: dict[str, nn.Module]) -> float | None:
    """Nonlinear fraction p of an activation node, or None if the node is not an activation.

    The fraction is taken in float64 on the CPU, whatever the model's device and dtype (mps has no float64).
    """
    if node.op == "call_module":
        m = modules[node.target]
        if callable(getattr(m, "nonlinear_mask", None)):
            mask = m.nonlinear_mask()  # bool (C,), True where the channel is still nonlinear
            return float(mask.cpu().to(torch.float64).mean())
        if isinstance(m, nn.PReLU):  # a slope of exactly 1 is the identity; one shared slope covers all channels
            return float((m.weight.detach() != 1).cpu().to(torch.float64).mean())
        if isinstance(m, nn.LeakyReLU):
            return 0.0 if m.negative_slope == 1 else 1.0
        return 1.0 if isinstance(m, _ACTIVATION_MODULES) else None
    if node.op == "call_function" and node.target in _ACTIVATION_FUNCTIONS:
        return 1.0  # Ours: functional F.prelu / F.leaky_relu are not inspected and count as fully nonlinear
    if node.op == "call_method" and node.target in _ACTIVATION_METHODS:
        return 1.0
    return None


def _fan_out(node: fx.Node, modules: dict[str, nn.Module]) -> int:
    """How many units of a weight layer each incoming unit feeds (1 for every other op)."""
    if node.op == "call_module":
        m = modules[node.target]
        if isinstance(m, nn.modules.conv._ConvNd):  # Conv and ConvTranspose; a group only sees its own channels
            return m.out_channels // m.groups
        if isinstance(m, nn.Linear):
            return m.out_features
    elif node.op == "call_function" and node.target is F.linear:
        return int(node.meta["tensor_meta"].shape[-1])
    elif node.op == "call_function" and node.target in _CONV_FUNCTIONS:
        groups = node.kwargs.get("groups", node.args[6] if len(node.args) > 6 else 1)
        return _channels(node) // groups
    return 1


def _path_inputs(args: object, values: dict[fx.Node, _Paths]) -> list[fx.Node]:
    """Nodes among (nested) `args` that carry paths from the input, with repetitions (`x * x` lists x twice)."""
    found: list[fx.Node] = []
    fx.node.map_arg(args, lambda n: found.append(n) if n in values else None)
    return found


def _summands(node: fx.Node, values: dict[fx.Node, _Paths]) -> list[fx.Node]:
    """Summands of an addition; a chain `a + b + c` whose partial sums have no other use counts as one 3-way sum."""
    summands: list[fx.Node] = []
    for arg in _path_inputs((node.args, node.kwargs), values):
        summands += _summands(arg, values) if _is_add(arg) and len(arg.users) == 1 else [arg]
    return summands


# ---------------------------------------------------------------------------------------------------------------------
# Propagation


def _shift(dist: torch.Tensor) -> torch.Tensor:
    """Length + 1: move all mass one bin up (the last bin is always empty, see `_propagate`)."""
    return torch.cat([dist.new_zeros(1), dist[:-1]])


def _mix(parts: list[_Paths], weights: list[float] | None) -> _Paths:
    """Junction: path counts add; the distribution is a mixture with `weights` (None: in proportion to counts)."""
    logs = torch.tensor([p.log_count for p in parts], dtype=torch.float64)
    log_total = torch.logsumexp(logs, 0)
    w = torch.exp(logs - log_total) if weights is None else torch.tensor(weights, dtype=torch.float64) / sum(weights)
    dist = sum(wi * p.dist for wi, p in zip(w, parts))
    return _Paths(dist, float(log_total))


def _junction(node: fx.Node, values: dict[fx.Node, _Paths], normalized: bool,
              live: dict[fx.Node, torch.Tensor] | None = None) -> tuple[_Paths, torch.Tensor | None]:
    """The junction's paths, and (with `live`, the channel-first walk) which of its output channels carry a path."""
    if _is_add(node):
        inputs = _summands(node, values)
        if live is None or not any(n in live for n in inputs):
            weights = [1.0] * len(inputs) if normalized else None  # Paper: each summand of x + f(x) w.p. 1/2
            return _mix([values[n] for n in inputs], weights), None
        masks = _live_masks(node, inputs, live)  # (k, C): summand i carries a path in channel c
        carriers = masks.sum(0)  # (C,) summands that carry each channel
        out = carriers > 0
        # Ours (junction="channel"): a uniform live output channel, then one of the summands that carry it
        weights = (masks[:, out] / carriers[out]).sum(1).tolist()
        return _mix([values[n] for n in inputs], weights), None if out.all() else out
    tensors = node.args[0] if node.args else node.kwargs["tensors"]
    dim = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim", 0)
    ndim = len(node.meta["tensor_meta"].shape)
    if dim % ndim != 1:
        raise NotImplementedError(
            f"paths: {node.target.__name__} along dim {dim} (node {node.name!r}); only channel concatenation "
            "(dim 1) is supported")
    inputs = _path_inputs(tensors, values)
    if live is None or not any(n in live for n in inputs):
        weights = [float(_channels(n)) for n in inputs] if normalized else None  # a uniform channel of the output
        return _mix([values[n] for n in inputs], weights), None
    masks = [live.get(n, torch.ones(_channels(n), dtype=torch.bool)) for n in inputs]
    out = torch.cat(masks)
    return _mix([values[n] for n in inputs], [float(m.sum()) for m in masks]), None if out.all() else out


def _live_masks(node: fx.Node, inputs: list[fx.Node], live: dict[fx.Node, torch.Tensor]) -> torch.Tensor:
    """(k, C) bool: which output channels of an addition each summand carries a path to (a summand of one channel
    is broadcast to all)."""
    channels = _channels(node)
    rows = []
    for n in inputs:
        mask = live.get(n, torch.ones(_channels(n), dtype=torch.bool))
        if len(mask) not in (1, channels):
            raise NotImplementedError(f"paths: addition {node.name!r} of {len(mask)} and {channels} channels")
        rows.append(mask.expand(channels))
    return torch.stack(rows).to(torch.float64)


def _channel_pad(node: fx.Node) -> tuple[int, int] | None:
    """(before, after): the channels that an `F.pad` node adds along dim 1, or None for any other node."""
    if node.op != "call_function" or node.target is not F.pad:
        return None
    pad = node.args[1] if len(node.args) > 1 else node.kwargs["pad"]
    i = 2 * (len(node.meta["tensor_meta"].shape) - 2)  # F.pad lists (before, after) from the last dim back to dim 1
    return (int(pad[i]), int(pad[i + 1])) if len(pad) >= i + 2 else None


def _live_after(node: fx.Node, source: fx.Node, live: dict[fx.Node, torch.Tensor],
                modules: dict[str, nn.Module]) -> torch.Tensor | None:
    """Which channels of a one-input node carry a path, or None for all: zero padding adds channels without one, a
    dense layer (Linear, an ungrouped conv) gives every output channel one, channel-wise ops keep the mask."""
    pad, mask = _channel_pad(node), live.get(source)
    if pad is not None:
        if min(pad) < 0:
            raise NotImplementedError(f"paths: F.pad {node.name!r} crops channels; only zero padding is supported")
        inner = mask if mask is not None else torch.ones(_channels(source), dtype=torch.bool)
        return torch.cat([torch.zeros(pad[0], dtype=torch.bool), inner, torch.zeros(pad[1], dtype=torch.bool)])
    if mask is None:
        return None
    m = modules.get(node.target) if node.op == "call_module" else None
    if isinstance(m, nn.Linear) or (node.op == "call_function" and node.target is F.linear) or (
            isinstance(m, nn.modules.conv._ConvNd) and m.groups == 1):
        return None
    if _channels(node) != len(mask) or isinstance(m, nn.modules.conv._ConvNd) or node.target in _CONV_FUNCTIONS:
        raise NotImplementedError(f"paths: {_op_name(node, modules)} (node {node.name!r}) after zero-padded channels; "
                                  'junction="channel" supports channel-wise ops, dense layers and additions there')
    return mask


def _propagate(gm: fx.GraphModule, normalized: bool, junction: str = "summand") -> _Paths:
    """Carry `_Paths` from the (first) input placeholder to the output of a shape-propagated graph."""
    modules = dict(gm.named_modules())
    max_length = sum(_activation_fraction(n, modules) is not None for n in gm.graph.nodes)
    values: dict[fx.Node, _Paths] = {}
    # junction="channel": the channels of a node that carry no path (zero padding), where some do not
    live: dict[fx.Node, torch.Tensor] | None = {} if normalized and junction == "channel" else None
    for node in gm.graph.nodes:
        if node.op == "placeholder":
            if not values and _is_tensor(node):  # δ₀; a path starts at one of the input channels
                start = torch.zeros(max_length + 1, dtype=torch.float64)
                start[0] = 1.0
                values[node] = _Paths(start, math.log(_channels(node)))
            continue
        inputs = _path_inputs((node.args, node.kwargs), values)
        if node.op == "output":
            if len(inputs) != 1:
                raise NotImplementedError(f"paths: the model must return one tensor, got {len(inputs)} outputs")
            return values[inputs[0]]
        if not inputs or not _is_tensor(node):  # constants, parameters, shapes: no path from the input
            continue
        if _is_add(node) or _is_cat(node):
            values[node], mask = _junction(node, values, normalized, live)
            if mask is not None:
                live[node] = mask
            continue
        if len(inputs) > 1:
            raise NotImplementedError(
                f"paths: {_op_name(node, modules)} (node {node.name!r}) combines {len(inputs)} tensors that depend "
                "on the input; only additions (x + f(x)) and channel concatenation (torch.cat, dim 1) are supported")
        dist, log_count = values[inputs[0]]
        p = _activation_fraction(node, modules)
        if p is not None:
            dist = (1.0 - p) * dist + p * _shift(dist)  # the path meets a nonlinear channel w.p. p
        values[node] = _Paths(dist, log_count + math.log(_fan_out(node, modules)))
        if live is not None and (mask := _live_after(node, inputs[0], live, modules)) is not None:
            live[node] = mask
    raise ValueError("paths: the traced graph has no output node")


def _check_junction(junction: str) -> str:
    if junction not in JUNCTIONS:
        raise ConfigError(f"unknown junction {junction!r}; choose one of {list(JUNCTIONS)}")
    return junction


def _trim(dist: torch.Tensor) -> torch.Tensor:
    nonzero = torch.nonzero(dist).flatten()
    return dist[: int(nonzero[-1]) + 1].clone() if len(nonzero) else dist[:1].clone()


# ---------------------------------------------------------------------------------------------------------------------
# Public API


def path_length_distribution(
    model: nn.Module,
    input_shape: tuple[int, ...] = (1, 3, 32, 32),
    normalized: bool = True,
    junction: str = "summand",
) -> torch.Tensor:
    """Exact distribution of the number of nonlinear units met on a path from the input to the output.

    Args:
        model: a network that `torch.fx` can trace symbolically, with one tensor input and one tensor output. ReLU
            modules and calls count as nonlinear in every channel; a module with a `nonlinear_mask()` method (the
            course's PReLU: bool (C,), True where the slope is not 1) and `nn.PReLU` count their nonlinear channels;
            other elementwise activations (GELU, Tanh, ...) count as nonlinear in every channel.
        input_shape: shape of the dummy input used to read channel counts, e.g. (1, 3, 32, 32). The model runs once in
            eval mode without grad; its training flags and BN statistics are left as they were.
        normalized: True for NAPL's measure (each summand of an addition w.p. 1/k); False for APL's (every path
            counted once).
        junction: how the normalized walk crosses an addition where a summand has zero-padded channels (the
            option-A shortcut): "summand" (the course's: each summand w.p. 1/k, ResNet-20 NAPL 14.5) or "channel"
            (a uniform output channel first, then one of the summands that carry a path there; a padded channel of
            the shortcut carries none, 15.0). The two agree on every net without channel padding; APL's measure
            counts paths and does not depend on it.

    Returns:
        float64 tensor (L + 1,): entry k is the probability that a path meets k nonlinear units; it sums to 1 and
        ends at the longest path with nonzero probability.

    Raises:
        NotImplementedError: for an op other than an addition or a channel `torch.cat` that combines several tensors
            depending on the input (e.g. `x * torch.sigmoid(x)`), or a model with several outputs; with
            junction="channel", for an op on zero-padded channels that is neither channel-wise nor dense.
        ConfigError: an unknown `junction`.
        torch.fx.proxy.TraceError: if the forward pass has data-dependent control flow.

    Paper: 2506.14386 §3 (NAPL) and 2211.17180 Fig. 1 (APL).
    Ours: units are channels (spatial positions are ignored); a chain `a + b + c` is one junction with weights 1/3;
    the `junction` conventions (the paper does not say how it counts a zero-padded shortcut).
    """
    return _trim(_propagate(_trace(model, input_shape), normalized, _check_junction(junction)).dist)


def path_counts(model: nn.Module, input_shape: tuple[int, ...] = (1, 3, 32, 32)) -> torch.Tensor:
    """Number of input-to-output paths meeting k nonlinear units, for each k.

    Args:
        model: as in `path_length_distribution`.
        input_shape: as in `path_length_distribution`.

    Returns:
        float64 tensor (L + 1,) of path counts; a path picks one channel of the input and one unit of every weight
        layer (Conv, Linear) it crosses. Entries overflow to inf beyond about 1e308 paths (use the distribution then).

    Raises:
        NotImplementedError: as in `path_length_distribution`.

    Paper: 2211.17180 Fig. 1 (257 paths around a residual connection).
    """
    paths = _propagate(_trace(model, input_shape), normalized=False)
    return _trim(paths.dist) * math.exp(paths.log_count)


def napl(model: nn.Module, input_shape: tuple[int, ...] = (1, 3, 32, 32), junction: str = "summand") -> float:
    """Normalized average path length: mean nonlinear length of a path under the normalized measure.

    Args:
        model: as in `path_length_distribution`.
        input_shape: as in `path_length_distribution`.
        junction: as in `path_length_distribution` ("summand", the course's, or "channel").

    Returns:
        The NAPL, e.g. 22.0 for RepVGG-A2 and 41.5 for ResNet-56 (the post-addition ReLU lies on every path; 42.0
        with junction="channel").

    Raises:
        NotImplementedError, ConfigError: as in `path_length_distribution`.

    Paper: 2506.14386 §3.
    """
    dist = path_length_distribution(model, input_shape, normalized=True, junction=junction)
    return float((torch.arange(len(dist), dtype=torch.float64) * dist).sum())


def napl_reader(model: nn.Module, input_shape: tuple[int, ...] = (1, 3, 32, 32),
                junction: str = "summand") -> Callable[[], float]:
    """A function that returns `napl(model, junction=junction)` for the model's current nonlinear masks, tracing the
    graph only once (freezing slopes changes the fractions, not the graph). Used to read NAPL many times."""
    gm, junction = _trace(model, input_shape), _check_junction(junction)

    def read() -> float:
        dist = _propagate(gm, normalized=True, junction=junction).dist
        return float((torch.arange(len(dist), dtype=torch.float64) * dist).sum())

    return read


def apl(model: nn.Module, input_shape: tuple[int, ...] = (1, 3, 32, 32)) -> float:
    """Unnormalized average path length: mean nonlinear length when every path counts once.

    Args:
        model: as in `path_length_distribution`.
        input_shape: as in `path_length_distribution`.

    Returns:
        The APL, e.g. 1024/257 for the 257-path example, where NAPL is 2.

    Raises:
        NotImplementedError: as in `path_length_distribution`.

    Paper: 2211.17180 Fig. 1.
    """
    dist = path_length_distribution(model, input_shape, normalized=False)
    return float((torch.arange(len(dist), dtype=torch.float64) * dist).sum())


def activation_layers(model: nn.Module, input_shape: tuple[int, ...] = (1, 3, 32, 32)) -> list[ActivationInfo]:
    """Every activation on the input-to-output paths, in topological order, with its nonlinear fraction.

    Args:
        model: as in `path_length_distribution`.
        input_shape: as in `path_length_distribution`.

    Returns:
        One `ActivationInfo(name, num_channels, nonlinear_fraction)` per activation module call or functional call;
        for a plain net, NAPL is the sum of the fractions.
    """
    gm = _trace(model, input_shape)
    modules = dict(gm.named_modules())
    depends_on_input: set[fx.Node] = set()
    layers = []
    for node in gm.graph.nodes:
        if node.op == "placeholder":
            if not depends_on_input and _is_tensor(node):
                depends_on_input.add(node)
            continue
        if not any(n in depends_on_input for n in node.all_input_nodes) or not _is_tensor(node):
            continue
        depends_on_input.add(node)
        p = _activation_fraction(node, modules)
        if p is not None:
            name = str(node.target) if node.op == "call_module" else node.name
            layers.append(ActivationInfo(name, _channels(node), p))
    return layers


def histogram_moments(dist: torch.Tensor | list[float],
                      skewness: bool = False) -> tuple[float, float] | tuple[float, float, float]:
    """Mean and standard deviation of a path-length distribution (probabilities of lengths 0, 1, ...), and with
    `skewness=True` also its skewness E[(k − mean)³]/std³ (NaN for a single spike, whose std is 0).

    The mean is the NAPL; the standard deviation says how *variable* the depth is (0 for a fixed-depth net,
    √n/2 for n residual blocks of one nonlinearity each, Veit et al.'s Binomial(n, ½)); the skewness says which side
    has the longer tail (0 for Binomial(n, ½), (1 − 2p)/√(np(1 − p)) for Binomial(n, p)).
    """
    d = torch.as_tensor(dist, dtype=torch.float64)
    k = torch.arange(len(d), dtype=torch.float64)
    mean = (k * d).sum() / d.sum()
    std = (((k - mean) ** 2 * d).sum() / d.sum()).sqrt()
    if not skewness:
        return mean.item(), std.item()
    third = ((k - mean) ** 3 * d).sum() / d.sum()
    return mean.item(), std.item(), (third / std**3).item() if std > 1e-9 else math.nan
