"""Forward hooks on named modules: activations captured without touching model code.

Every hook here is registered inside a `with` block and removed when it ends, so nothing
stays attached to the model after training or evaluation.

Hooks work on any model, not only `nn.Sequential`: a module is found by its name in
`model.named_modules()` (`blocks.0.act` inside a `ModuleList`) and its hook fires at every
call. What a hook sees of a module's output:

- a tensor: that tensor;
- a tuple or list whose first element is a tensor: that first tensor, PyTorch's main
  output by convention (`nn.LSTM`'s output sequence, not its (h, c) state, which repeats
  part of it; `nn.MultiheadAttention`'s output, not its attention weights);
- anything else (a dict, None): nothing can be captured. A target on such a module is a
  one-line error; statistics leave it out.

A module called more than once in one forward (a shared layer, a block applied twice) is
captured at every call: its activation penalty is the sum over the calls, and its
statistics pool the outputs of all calls.
"""

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor, nn

from regrun.errors import RegrunError

OutputFn = Callable[[str, Tensor], None]


def main_tensor(output: object) -> Tensor | None:
    """The tensor a hook takes of a module's output: the output itself, the first element of a
    tuple or list when that is a tensor, else None."""
    if isinstance(output, tuple | list) and output:
        output = output[0]
    return output if isinstance(output, Tensor) else None


@contextmanager
def forward_hooks(model: nn.Module, names: Sequence[str], fn: OutputFn, strict: bool = True) -> Iterator[None]:
    """Call `fn(name, tensor)` after each forward of the named modules while in the block.

    `tensor` is `main_tensor(output)`. An output without one is an error when `strict`,
    and is skipped otherwise.
    """
    modules = dict(model.named_modules())

    def make_hook(name: str):
        def hook(module: nn.Module, inputs: object, output: object) -> None:
            tensor = main_tensor(output)
            if tensor is not None:
                fn(name, tensor)
            elif strict:
                raise RegrunError(
                    f"module {name!r} ({type(module).__name__}) returns {type(output).__name__}, not a tensor "
                    "nor a tuple starting with one; its activations cannot be captured"
                )

        return hook

    handles = [modules[name].register_forward_hook(make_hook(name)) for name in names]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


class ActivationCapture:
    """Keeps the outputs of named modules from one training forward until `take()`.

    Outputs are kept only while autograd is recording: an evaluation pass under
    `torch.no_grad()` must neither leak tensors (opacus#176) nor leave stale outputs for
    the next training step's penalty.
    """

    def __init__(self, model: nn.Module, names: Sequence[str]):
        self._store: dict[str, list[Tensor]] = {name: [] for name in names}
        self._hooks = forward_hooks(model, list(names), self._keep)

    def _keep(self, name: str, output: Tensor) -> None:
        if torch.is_grad_enabled():
            self._store[name].append(output)

    def take(self) -> dict[str, list[Tensor]]:
        """Return the outputs captured since the last call and forget them."""
        taken = {name: outputs[:] for name, outputs in self._store.items()}
        for outputs in self._store.values():
            outputs.clear()
        return taken

    def held(self) -> int:
        """How many tensors are held right now (0 between training steps)."""
        return sum(len(outputs) for outputs in self._store.values())

    def __enter__(self) -> "ActivationCapture":
        self._hooks.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.take()
        self._hooks.__exit__(*exc)


def output_shapes(model: nn.Module, example: Tensor, names: Sequence[str]) -> dict[str, tuple[int, ...]]:
    """Per-sample output shape of each named module, from one no-grad forward of `example`
    (at its first call); a module that does not run in that forward is left out."""
    shapes: dict[str, tuple[int, ...]] = {}

    def record(name: str, output: Tensor) -> None:
        shapes.setdefault(name, tuple(output.shape[1:]))

    was_training = model.training
    model.eval()  # eval mode: BatchNorm would refuse a batch of one in training mode
    try:
        with forward_hooks(model, names, record), torch.no_grad():
            model(example)
    finally:
        model.train(was_training)
    return shapes
