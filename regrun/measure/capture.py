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

A hook keeps a reference to the output, not a copy, and an in-place operation later in the
forward (`ReLU(inplace=True)`, `x.relu_()`, a residual `h += r`) would rewrite it before the
penalty reads it. `overwritten_in_place` finds the outputs that happens to with one probing
forward; `ActivationCapture` copies those (and only those) as they leave their module, and
compares torch's version counter of every other output it keeps, recorded in the hook, when
they are taken: an overwrite the probe did not see is refused in one line.
"""

from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from typing import Any

import torch
from torch import Tensor, nn

from regrun.errors import RegrunError

OutputFn = Callable[[str, Tensor], None]
# How to write a forward whose captured outputs stay as they left their module.
OUT_OF_PLACE = "set inplace=False on that module, or write x = x.relu() for x.relu_() and h = h + r for h += r"


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


def storage_version(tensor: Tensor) -> int:
    """torch's count of in-place writes to `tensor`'s data. Inside `vmap` (a fused group) a
    hook sees a batched wrapper, whose own counter an in-place write leaves as it was: the
    count is that of the tensor it wraps."""
    while torch._C._functorch.is_batchedtensor(tensor):
        tensor = torch._C._functorch.get_unwrapped(tensor)
    return tensor._version


class ActivationCapture:
    """Keeps the outputs of named modules from one training forward until `take()`.

    Outputs are kept only while autograd is recording: an evaluation pass under
    `torch.no_grad()` must neither leak tensors (opacus#176) nor leave stale outputs for
    the next training step's penalty.

    The outputs of the modules in `copied` (those `overwritten_in_place` found) are kept as
    copies made in the hook; every other one as the tensor itself, with its version counter.
    """

    def __init__(self, model: nn.Module, names: Sequence[str], copied: Collection[str] = ()):
        self.copied = frozenset(copied)
        self._store: dict[str, list[tuple[Tensor, int]]] = {name: [] for name in names}
        self._hooks = forward_hooks(model, list(names), self._keep)

    def _keep(self, name: str, output: Tensor) -> None:
        if torch.is_grad_enabled():
            if name in self.copied:
                output = output.clone()  # differentiable: the penalty's gradient reaches the module
            self._store[name].append((output, storage_version(output)))

    def take(self) -> dict[str, list[Tensor]]:
        """Return the outputs captured since the last call and forget them; one that was
        overwritten in place since its module returned it is a one-line `RegrunError`."""
        taken = {name: [out for out, _ in kept] for name, kept in self._store.items()}
        stale = [name for name, kept in self._store.items() if any(storage_version(o) != v for o, v in kept)]
        for kept in self._store.values():
            kept.clear()
        if stale:
            raise RegrunError(f"activation {stale[0]}: its output was overwritten in place by a later operation of "
                              f"the forward, which the check before training did not see; {OUT_OF_PLACE}")
        return taken

    def held(self) -> int:
        """How many tensors are held right now (0 between training steps)."""
        return sum(len(kept) for kept in self._store.values())

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


def overwritten_in_place(model: nn.Module, example: Tensor, names: Sequence[str]) -> dict[str, str]:
    """Each named module whose output a later in-place operation of the forward overwrites,
    with the module whose own code did it ('act1 (ReLU)', or the model's own forward for an
    `h += r` written there), from one training-mode forward of `example`, as a step runs it.

    Versions are compared before and after every module's forward: between two of those
    moments only the innermost module running executes code of its own. The probe leaves
    no trace: the random number generators, the buffers (BatchNorm's running statistics) and
    the model's mode are restored.
    """
    kept: dict[str, list[tuple[Tensor, int]]] = {name: [] for name in names}
    found: dict[str, str] = {}
    running: list[nn.Module] = []  # the modules whose forward is under way, innermost last

    def keep(name: str, output: Tensor) -> None:
        kept[name].append((output, storage_version(output)))

    def check() -> None:
        for name, outputs in kept.items():
            if name not in found and any(storage_version(o) != v for o, v in outputs):
                found[name] = where[id(running[-1])]

    def enter(module: nn.Module, inputs: object) -> None:
        check()
        running.append(module)

    def leave(module: nn.Module, inputs: object, output: object) -> None:
        check()
        running.pop()

    where = {id(m): f"{name} ({type(m).__name__})" if name else f"the model's own forward ({type(m).__name__})"
             for name, m in model.named_modules()}
    saved = [b.clone() for b in model.buffers()]
    was_training = model.training
    model.train()
    with ExitStack() as hooks:
        hooks.enter_context(torch.random.fork_rng(devices=[example.device] if example.is_cuda else []))
        hooks.enter_context(forward_hooks(model, names, keep))  # before `leave`: a module's own output is fresh
        for m in model.modules():
            hooks.callback(m.register_forward_pre_hook(enter).remove)
            hooks.callback(m.register_forward_hook(leave).remove)
        hooks.callback(_restore, model, was_training, saved)
        model(example)
    return found


def _restore(model: nn.Module, training: bool, buffers: Sequence[Tensor]) -> None:
    model.train(training)
    with torch.no_grad():
        for buffer, value in zip(model.buffers(), buffers):
            buffer.copy_(value)


def overwrite_note(found: Mapping[str, str]) -> str:
    """What a run says of the outputs `overwritten_in_place` found: copied, and how to avoid it."""
    each = "; ".join(f"{name} by {where}" for name, where in found.items())
    return (f"activations overwritten in place later in the forward: {each}; their penalties and statistics take "
            f"a copy of each as it leaves its module ({OUT_OF_PLACE}, to spare the copy)")
