"""Model zoo of the course: CIFAR ResNets and plain twins, the RepVGG family, and a name registry.

`list_models()` names every registered network; `create(name, num_classes)` builds one. Tests loop over the registry.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from .cifar_resnet import BasicBlock, CifarResNet, OptionAShortcut, cifar_resnet, fold_batchnorm
from .pretrained import load_pretrained_cifar_resnet
from .repvgg import REPVGG_CONFIGS, PlainConvNet, RepVGG, RepVGGBlock, repvgg, repvgg_deploy, repvgg_widths

__all__ = [
    "BasicBlock", "CifarResNet", "OptionAShortcut", "cifar_resnet", "fold_batchnorm", "load_pretrained_cifar_resnet",
    "REPVGG_CONFIGS", "PlainConvNet", "RepVGG", "RepVGGBlock", "repvgg", "repvgg_deploy", "repvgg_widths",
    "plain_cifar_net", "list_models", "create", "count_parameters", "linearized_networks",
]


def plain_cifar_net(arch: str = "A0", num_classes: int = 10, width_mult: float = 1.0) -> PlainConvNet:
    """The main experiment's network: a CIFAR RepVGG fused to its deploy form, a true feedforward net.

    Built from a freshly initialised training form, so it is mostly useful for shapes and counts; the experiment
    pre-trains the training form and then calls `repvgg_deploy` on it.
    """
    return repvgg_deploy(repvgg(arch, num_classes=num_classes, cifar=True, width_mult=width_mult).eval())


_REGISTRY: dict[str, Callable[[int], nn.Module]] = {
    "resnet20": lambda k: cifar_resnet(20, k),
    "resnet56": lambda k: cifar_resnet(56, k),
    "plain20": lambda k: cifar_resnet(20, k, plain=True),
    "plain56": lambda k: cifar_resnet(56, k, plain=True),
    "repvgg_a0_cifar": lambda k: repvgg("A0", k, cifar=True),
    "repvgg_a2_cifar": lambda k: repvgg("A2", k, cifar=True),
    "repvgg_a2": lambda k: repvgg("A2", k),
}


def list_models() -> list[str]:
    """Names accepted by `create`."""
    return sorted(_REGISTRY)


def create(name: str, num_classes: int = 10) -> nn.Module:
    """Build a registered network by name (see `list_models()`)."""
    if name not in _REGISTRY:
        raise ValueError(f"unknown model {name!r}; choose one of {list_models()}")
    return _REGISTRY[name](num_classes)


def count_parameters(model: nn.Module) -> int:
    """Number of scalar parameters (buffers such as BN running statistics are not counted)."""
    return sum(p.numel() for p in model.parameters())


def linearized_networks() -> dict[str, tuple[Callable[[], nn.Module], tuple[int, ...]]]:
    """Every network the course linearizes, in the form that is linearized, with its probe input shape.

    RepVGG nets in their fused deploy form; the CIFAR ResNets with BN folded (as `experiments` post-trains them).
    Builders are randomly initialised (counts and shapes do not depend on the weights).
    """
    def folded_resnet(depth: int) -> Callable[[], nn.Module]:
        return lambda: fold_batchnorm(cifar_resnet(depth).eval())

    cifar, imagenet = (1, 3, 32, 32), (1, 3, 224, 224)
    return {
        "ResNet-20 (CIFAR)": (folded_resnet(20), cifar),
        "ResNet-56 (CIFAR, notebook 05)": (folded_resnet(56), cifar),
        "RepVGG-A0 x1/8 plain (CIFAR, notebook 04 cpu)": (lambda: plain_cifar_net("A0", 10, 0.125), cifar),
        "RepVGG-A2 plain (CIFAR, notebook 04 full)": (lambda: plain_cifar_net("A2", 10), cifar),
        "RepVGG-A2 plain (ImageNet, notebook 06)": (lambda: repvgg_deploy(repvgg("A2", 1000).eval()), imagenet),
    }
