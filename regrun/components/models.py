"""Models by name. Every layer is a named module, so any of them can be targeted.

Names follow the layer index: `fc1`/`conv1`, then `norm1`, `act1`, `pool1`, `drop1`, and
`head` for the classifier. `act*` is always an activation module.
"""

import math
from collections import OrderedDict
from collections.abc import Callable, Sequence

from torch import nn

from regrun.errors import RegrunError, choices
from regrun.components.registry import Registry, build

ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "relu": nn.ReLU,
    "leaky_relu": lambda: nn.LeakyReLU(0.01),
    "gelu": nn.GELU,
    "silu": nn.SiLU,
    "elu": nn.ELU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
}
# Class names of the activation modules above, for figures reported per activation layer.
ACTIVATION_TYPES = frozenset(type(factory()).__name__ for factory in ACTIVATIONS.values())
POOLS: dict[str, Callable[[], nn.Module] | None] = {
    "max": lambda: nn.MaxPool2d(2),
    "avg": lambda: nn.AvgPool2d(2),
    "none": None,
}


def make_activation(name: str) -> nn.Module:
    """A fresh activation module by name (never in-place, so hooks see the true output)."""
    if name not in ACTIVATIONS:
        raise RegrunError(f"unknown activation {name!r}; allowed: {choices(ACTIVATIONS)}")
    return ACTIVATIONS[name]()


def _dense_block(layers: OrderedDict, index: int, width_in: int, width: int, act: str, batch_norm: bool, dropout: float) -> None:
    layers[f"fc{index}"] = nn.Linear(width_in, width)
    if batch_norm:
        layers[f"norm{index}"] = nn.BatchNorm1d(width)
    layers[f"act{index}"] = make_activation(act)
    if dropout:
        layers[f"drop{index}"] = nn.Dropout(dropout)


def mlp(
    input_shape: Sequence[int],
    num_outputs: int,
    hidden: Sequence[int] = (256, 128),
    activation: str = "relu",
    batch_norm: bool = False,
    dropout: float = 0.0,
) -> nn.Sequential:
    """flatten → [fc_i → (norm_i) → act_i → (drop_i)] for each hidden width → head."""
    layers: OrderedDict[str, nn.Module] = OrderedDict(flatten=nn.Flatten())
    width_in = math.prod(input_shape)
    for i, width in enumerate(hidden, 1):
        _dense_block(layers, i, width_in, width, activation, batch_norm, dropout)
        width_in = width
    layers["head"] = nn.Linear(width_in, num_outputs)
    return nn.Sequential(layers)


def cnn(
    input_shape: Sequence[int],
    num_outputs: int,
    channels: Sequence[int] = (32, 64),
    kernel_size: int = 3,
    activation: str = "relu",
    batch_norm: bool = True,
    pool: str = "max",
    hidden: Sequence[int] = (128,),
    dropout: float = 0.0,
) -> nn.Sequential:
    """[conv_i → (norm_i) → act_i → (pool_i)] per channel count → flatten → dense blocks → head."""
    if pool not in POOLS:
        raise RegrunError(f"model.pool: unknown pool {pool!r}; allowed: {choices(POOLS)}")
    c_in, height, width = input_shape
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    for i, c_out in enumerate(channels, 1):
        layers[f"conv{i}"] = nn.Conv2d(c_in, c_out, kernel_size, padding=kernel_size // 2, bias=not batch_norm)
        if batch_norm:
            layers[f"norm{i}"] = nn.BatchNorm2d(c_out)
        layers[f"act{i}"] = make_activation(activation)
        if POOLS[pool] is not None:
            layers[f"pool{i}"] = POOLS[pool]()
            height, width = height // 2, width // 2
        c_in = c_out
    layers["flatten"] = nn.Flatten()
    width_in = c_in * height * width
    for i, width_out in enumerate(hidden, len(channels) + 1):
        _dense_block(layers, i, width_in, width_out, activation, False, dropout)
        width_in = width_out
    layers["head"] = nn.Linear(width_in, num_outputs)
    return nn.Sequential(layers)


# name → builder(input_shape, num_outputs, **options) returning an nn.Module
MODELS: Registry[Callable[..., nn.Module]] = Registry("model", "regrun.models")


def register_model(name: str, builder: Callable[..., nn.Module], replace: bool = False) -> None:
    """Make `model.name=NAME` build `builder(input_shape, num_outputs, **the node's other keys)`."""
    MODELS.register(name, builder, replace)


register_model("mlp", mlp)
register_model("cnn", cnn)


def build_model(cfg: dict, input_shape: Sequence[int], num_outputs: int) -> nn.Module:
    """The model named by `cfg["name"]`, built with the config's other keys."""
    return build(MODELS, cfg, input_shape=input_shape, num_outputs=num_outputs)
