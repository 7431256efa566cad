"""Forward hooks on named modules: activations captured without touching model code.

Every hook here is registered inside a `with` block and removed when it ends, so nothing
stays attached to the model after training or evaluation.
"""

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

import torch
from torch import Tensor, nn

from regrun.errors import RegrunError

OutputFn = Callable[[str, Tensor], None]


@contextmanager
def forward_hooks(model: nn.Module, names: Sequence[str], fn: OutputFn) -> Iterator[None]:
    """Call `fn(name, output)` after each forward of the named modules while in the block."""
    modules = dict(model.named_modules())

    def make_hook(name: str):
        def hook(module: nn.Module, inputs: object, output: object) -> None:
            if not isinstance(output, Tensor):
                raise RegrunError(
                    f"module {name!r} ({type(module).__name__}) returns "
                    f"{type(output).__name__}, not a tensor; its activations cannot be captured"
                )
            fn(name, output)

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

    def __exit__(self, *exc: object) -> None:
        self.take()
        self._hooks.__exit__(*exc)


def output_shapes(model: nn.Module, example: Tensor, names: Sequence[str]) -> dict[str, tuple[int, ...]]:
    """Per-sample output shape of each named module, from one no-grad forward of `example`."""
    shapes: dict[str, tuple[int, ...]] = {}

    def record(name: str, output: Tensor) -> None:
        shapes[name] = tuple(output.shape[1:])

    was_training = model.training
    model.eval()  # eval mode: BatchNorm would refuse a batch of one in training mode
    try:
        with forward_hooks(model, names, record), torch.no_grad():
            model(example)
    finally:
        model.train(was_training)
    return shapes
