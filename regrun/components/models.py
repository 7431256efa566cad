"""Models by name. Every layer is a named module, so any of them can be targeted.

A builder is called `builder(input_shape, num_outputs, **the model node's other keys)`,
where `input_shape` is one sample's shape, e.g. (1, 28, 28), and `num_outputs` the width
the task wants (classes, regression values).

Names in `mlp` and `cnn` follow the layer index: `fc1`/`conv1`, then `norm1`, `act1`,
`pool1`, `drop1`, and `head` for the output layer; `act*` is always an activation module.
The `autoencoder` names its encoder `enc*`, its code `code_fc`/`code` and its decoder
`dec*` (see `autoencoder`). `model=custom` builds the user's own model from
`model.factory=MODULE:FUNCTION` (see `custom`).

An activation is a name (`relu`) or a mapping with its parameters
(`{name: leaky_relu, negative_slope: 0.2}`); `norm` is one of `Norm`.
"""

import itertools
import math
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Annotated, Any, Literal

from torch import nn

from regrun.components.registry import Choice, Registry, build, call_with_options, read_choice
from regrun.components.user_code import load_callable
from regrun.errors import RegrunError, choices, contained, is_number, one_line
from regrun.schema import AtLeast, Range, read_node

# name → (module class, {parameter: default}). Never in-place, so hooks see the true output.
ACTIVATIONS: dict[str, tuple[type[nn.Module], dict[str, float]]] = {
    "relu": (nn.ReLU, {}),
    "leaky_relu": (nn.LeakyReLU, {"negative_slope": 0.01}),
    "gelu": (nn.GELU, {}),
    "silu": (nn.SiLU, {}),
    "elu": (nn.ELU, {"alpha": 1.0}),
    "tanh": (nn.Tanh, {}),
    "sigmoid": (nn.Sigmoid, {}),
}
# Class names of the activation modules above, for figures reported per activation layer.
ACTIVATION_TYPES = frozenset(cls.__name__ for cls, _ in ACTIVATIONS.values())
# The options' types; the schema (regrun.schema) checks every config value against them.
ActivationSpec = str | Mapping[str, Any]
Size = Annotated[int, AtLeast(1)]
Sizes = Annotated[Sequence[int], AtLeast(1)]  # layer widths, channel counts
Dropout = Annotated[float, Range(0, 1, hi_open=True)]
# batch: BatchNorm1d/2d; instance: InstanceNorm2d (affine), conv layers only; layer:
# LayerNorm on a dense layer's features, GroupNorm(1, C) on a conv layer's C×H×W; none.
Norm = Literal["batch", "instance", "layer", "none"]
Pool = Literal["max", "avg", "none"]
# A conv followed by a norm that removes each channel's mean needs no bias of its own.
CENTERING_NORMS = frozenset({"batch", "instance"})
POOLS: dict[str, Callable[[], nn.Module] | None] = {
    "max": lambda: nn.MaxPool2d(2),
    "avg": lambda: nn.AvgPool2d(2),
    "none": None,
}
LEAKY_RELU_02 = MappingProxyType({"name": "leaky_relu", "negative_slope": 0.2})  # the autoencoder's default


def make_activation(spec: ActivationSpec, where: str = "model.activation") -> nn.Module:
    """A fresh activation module from a name or a `{name, PARAMETER: number}` mapping."""
    options = dict(spec) if isinstance(spec, Mapping) else {}
    name = options.pop("name", None) if isinstance(spec, Mapping) else spec
    if not isinstance(name, str) or name not in ACTIVATIONS:
        raise RegrunError(f"{where}: unknown activation {name!r}; allowed: {choices(ACTIVATIONS)}")
    cls, defaults = ACTIVATIONS[name]
    for key, value in options.items():
        if key not in defaults:
            raise RegrunError(f"{where}.{key}: not a parameter of {name}; allowed: {choices(defaults)}")
        if not is_number(value) or not math.isfinite(value):
            raise RegrunError(f"{where}.{key} must be a finite number, got {value!r}")
    return cls(**options)


def check_dense_norm(norm: str) -> None:
    """Instance norm takes statistics over a channel's positions: dense features have none."""
    if norm == "instance":
        raise RegrunError("model.norm: 'instance' normalises a channel over its positions and does not apply "
                          "to dense layers; allowed: batch, layer, none")


def check_positions(norm: str, layer: str, height: int, width: int) -> None:
    """Instance norm takes statistics over a channel's positions: one position gives none."""
    if norm == "instance" and height * width < 2:
        raise RegrunError(f"model.norm: instance norm needs more than one position per channel, and {layer} "
                          f"outputs {height}×{width}; use norm=batch, layer or none, or fewer layers")


def make_norm(norm: str, width: int, conv: bool) -> nn.Module | None:
    """The norm module for `width` features (dense) or channels (conv); None for `none`."""
    if norm == "batch":
        return nn.BatchNorm2d(width) if conv else nn.BatchNorm1d(width)
    if norm == "instance":
        return nn.InstanceNorm2d(width, affine=True)
    if norm == "layer":
        return nn.GroupNorm(1, width) if conv else nn.LayerNorm(width)
    return None


def image_shape(name: str, input_shape: Sequence[int]) -> tuple[int, int, int]:
    """(C, H, W) of the samples, for a model made of 2-D convolutions."""
    if len(input_shape) != 3:
        raise RegrunError(f"model.name: {name} takes images (C, H, W); this dataset's samples have shape "
                          f"{tuple(input_shape)}; use model=mlp or model=custom")
    c, h, w = input_shape
    return c, h, w


def _dense_block(layers: OrderedDict, index: int, width_in: int, width: int, act: ActivationSpec, norm: str,
                 dropout: float) -> None:
    layers[f"fc{index}"] = nn.Linear(width_in, width)
    if (module := make_norm(norm, width, conv=False)) is not None:
        layers[f"norm{index}"] = module
    layers[f"act{index}"] = make_activation(act)
    if dropout:
        layers[f"drop{index}"] = nn.Dropout(dropout)


def mlp(
    input_shape: Sequence[int],
    num_outputs: int,
    hidden: Sizes = (256, 128),
    activation: ActivationSpec = "relu",
    norm: Norm = "none",
    dropout: Dropout = 0.0,
) -> nn.Sequential:
    """flatten → [fc_i → (norm_i) → act_i → (drop_i)] for each hidden width → head."""
    check_dense_norm(norm)
    layers: OrderedDict[str, nn.Module] = OrderedDict(flatten=nn.Flatten())
    width_in = math.prod(input_shape)
    for i, width in enumerate(hidden, 1):
        _dense_block(layers, i, width_in, width, activation, norm, dropout)
        width_in = width
    layers["head"] = nn.Linear(width_in, num_outputs)
    return nn.Sequential(layers)


def cnn(
    input_shape: Sequence[int],
    num_outputs: int,
    channels: Sizes = (32, 64),
    kernel_size: Size = 3,
    activation: ActivationSpec = "relu",
    norm: Norm = "batch",
    pool: Pool = "max",
    hidden: Sizes = (128,),
    dropout: Dropout = 0.0,
) -> nn.Sequential:
    """[conv_i → (norm_i) → act_i → (pool_i)] per channel count → flatten → dense blocks → head.

    `norm` applies to the conv blocks; the dense layers after them have none.
    """
    c_in, height, width = image_shape("cnn", input_shape)
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    for i, c_out in enumerate(channels, 1):
        check_positions(norm, f"conv{i}", height, width)
        layers[f"conv{i}"] = nn.Conv2d(c_in, c_out, kernel_size, padding=kernel_size // 2,
                                       bias=norm not in CENTERING_NORMS)
        if (module := make_norm(norm, c_out, conv=True)) is not None:
            layers[f"norm{i}"] = module
        layers[f"act{i}"] = make_activation(activation)
        if (make_pool := POOLS[pool]) is not None:
            layers[f"pool{i}"] = make_pool()
            height, width = height // 2, width // 2
        c_in = c_out
    if height < 1 or width < 1:
        raise RegrunError(f"model.channels: {len(channels)} blocks with pool={pool} shrink the "
                          f"{input_shape[1]}×{input_shape[2]} input to nothing; use fewer blocks or pool=none")
    layers["flatten"] = nn.Flatten()
    width_in = c_in * height * width
    for i, width_out in enumerate(hidden, len(channels) + 1):
        _dense_block(layers, i, width_in, width_out, activation, "none", dropout)
        width_in = width_out
    layers["head"] = nn.Linear(width_in, num_outputs)
    return nn.Sequential(layers)


def _halved(size: int, kernel_size: int, padding: int) -> tuple[int, int]:
    """A stride-2 conv's output size, and the output_padding that makes its transpose give `size` back."""
    out = (size + 2 * padding - kernel_size) // 2 + 1
    return out, size - ((out - 1) * 2 - 2 * padding + kernel_size)


def autoencoder(
    input_shape: Sequence[int],
    num_outputs: int,
    channels: Sizes = (16, 32),
    kernel_size: Size = 4,
    code_size: Size = 64,
    activation: ActivationSpec = LEAKY_RELU_02,
    code_activation: ActivationSpec = "relu",
    norm: Norm = "batch",
) -> nn.Sequential:
    """A convolutional autoencoder whose output has the input's shape (B, C, H, W).

    Encoder, per entry of `channels`: enc_i (Conv2d, stride 2) → enc_norm_i → enc_act_i.
    Code: flatten → code_fc (Linear to `code_size`) → code (its activation, ReLU by default,
    so that an L1 penalty on it gives exact zeros). Decoder: dec_fc (Linear back) →
    dec_fc_act → unflatten, then dec_i (ConvTranspose2d, stride 2) mirroring enc_i from the
    last level to the first, each but dec1 followed by dec_norm_i → dec_act_i; dec1 gives
    the output, with no norm or activation. Odd sizes are given back by output_padding.
    `num_outputs` is not used: the output is shaped like the input.
    """
    shape = image_shape("autoencoder", input_shape)
    widths = [shape[0], *channels]
    if len(widths) < 2:
        raise RegrunError("model.channels: the autoencoder needs at least one conv layer, got []")
    padding = (kernel_size - 1) // 2
    encoder: OrderedDict[str, nn.Module] = OrderedDict()
    decoder: list[OrderedDict[str, nn.Module]] = []  # built level by level, then reversed
    height, width = shape[1:]
    for i, (c_in, c_out) in enumerate(itertools.pairwise(widths), 1):
        (h_out, h_pad), (w_out, w_pad) = _halved(height, kernel_size, padding), _halved(width, kernel_size, padding)
        if h_out < 1 or w_out < 1:
            raise RegrunError(f"model.channels: {len(widths) - 1} stride-2 layers with kernel_size {kernel_size} "
                              f"shrink the {shape[1]}×{shape[2]} input to nothing; at most {i - 1} fit")
        check_positions(norm, f"enc{i}", h_out, w_out)
        bias = norm not in CENTERING_NORMS
        encoder[f"enc{i}"] = nn.Conv2d(c_in, c_out, kernel_size, stride=2, padding=padding, bias=bias)
        _norm_and_activation(encoder, f"enc_norm{i}", f"enc_act{i}", norm, c_out, activation)
        level: OrderedDict[str, nn.Module] = OrderedDict()
        level[f"dec{i}"] = nn.ConvTranspose2d(c_out, c_in, kernel_size, stride=2, padding=padding,
                                              output_padding=(h_pad, w_pad), bias=bias or i == 1)
        if i > 1:
            _norm_and_activation(level, f"dec_norm{i}", f"dec_act{i}", norm, c_in, activation)
        decoder.append(level)
        height, width = h_out, w_out
    flat = widths[-1] * height * width
    middle = OrderedDict([
        ("flatten", nn.Flatten()),
        ("code_fc", nn.Linear(flat, code_size)),
        ("code", make_activation(code_activation, "model.code_activation")),
        ("dec_fc", nn.Linear(code_size, flat)),
        ("dec_fc_act", make_activation(activation)),
        ("unflatten", nn.Unflatten(1, (widths[-1], height, width))),
    ])
    return nn.Sequential(OrderedDict([*encoder.items(), *middle.items(),
                                      *(item for level in reversed(decoder) for item in level.items())]))


def _norm_and_activation(layers: OrderedDict, norm_name: str, act_name: str, norm: str, channels: int,
                         activation: ActivationSpec) -> None:
    if (module := make_norm(norm, channels, conv=True)) is not None:
        layers[norm_name] = module
    layers[act_name] = make_activation(activation)


def custom(input_shape: Sequence[int], num_outputs: int, factory: object = None, **options: Any) -> nn.Module:
    """The user's own model: `factory` is MODULE:FUNCTION, called as
    `FUNCTION(input_shape, num_outputs, **options)`; it must return an `nn.Module`.

    MODULE is imported from the current directory or the Python path.
    """
    function = load_callable(factory, "model.factory", "my_models:make_net")
    try:
        with contained(f"model.factory: {factory}"):
            model = call_with_options(function, options, "model", f"model factory {factory!r}",
                                      (tuple(input_shape), num_outputs))
    except RegrunError:
        raise
    except Exception as err:  # the user's code: any error is theirs to read, in one line
        raise RegrunError(f"model.factory: {factory} raised {one_line(err)}") from err
    if not isinstance(model, nn.Module):
        raise RegrunError(f"model.factory: {factory} returned {type(model).__name__}, not a torch.nn.Module")
    return model


# name → builder(input_shape, num_outputs, **options) returning an nn.Module
MODELS: Registry[Callable[..., nn.Module]] = Registry("model", "regrun.models")


def register_model(name: str, builder: Callable[..., nn.Module], replace: bool = False) -> None:
    """Make `model.name=NAME` build `builder(input_shape, num_outputs, **the node's other keys)`."""
    MODELS.register(name, builder, replace)


register_model("mlp", mlp)
register_model("cnn", cnn)
register_model("autoencoder", autoencoder)
register_model("custom", custom)


@dataclass(frozen=True)
class ModelSettings(Choice):
    """The `model` node: a registered model and the options its builder takes."""

    @classmethod
    def from_node(cls, where: str, node: object) -> "ModelSettings":
        """Read as the builder's signature says (after its input shape and output count)."""
        return read_choice(where, node, MODELS, cls, positional=2)


def build_model(model: ModelSettings | Mapping[str, Any], input_shape: Sequence[int], num_outputs: int) -> nn.Module:
    """The model a `model` node names (checked settings, or a mapping read as them), built
    with its options."""
    model = read_node("model", model, ModelSettings)
    built = build(MODELS, model, (tuple(input_shape), num_outputs))
    if not isinstance(built, nn.Module):  # a plugin's builder
        raise RegrunError(f"model {model.name!r} returned {type(built).__name__}, not a torch.nn.Module")
    return built
