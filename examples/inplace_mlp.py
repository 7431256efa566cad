"""An MLP with in-place ReLUs, as many real models have them (torchvision's ResNets,
pix2pix): flatten → fc1 → act1 → fc2 → act2 → head, each act a `ReLU(inplace=...)`.

A penalty on fc1's output sees it as it left fc1 whether `inplace` is true or not:

    regrun model=custom model.factory=inplace_mlp:mlp +model.inplace=true trainer.epochs=1 \
        reg=l1_activations 'reg.targets.l1_activations.layers=[fc1]'

(run it from this folder, or with it on PYTHONPATH).
"""

import math
from collections import OrderedDict
from collections.abc import Sequence

from torch import nn


def mlp(input_shape: Sequence[int], num_outputs: int, hidden: Sequence[int] = (256, 128),
        inplace: bool = True) -> nn.Sequential:
    """regrun's default MLP (model=mlp) with `ReLU(inplace=inplace)` activations."""
    layers: OrderedDict[str, nn.Module] = OrderedDict(flatten=nn.Flatten())
    width_in = math.prod(input_shape)
    for i, width in enumerate(hidden, 1):
        layers[f"fc{i}"] = nn.Linear(width_in, width)
        layers[f"act{i}"] = nn.ReLU(inplace=inplace)
        width_in = width
    layers["head"] = nn.Linear(width_in, num_outputs)
    return nn.Sequential(layers)
