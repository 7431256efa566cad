"""Penalties of your own, named on the command line as MODULE:FUNCTION, as a model factory is.

A penalty function takes a tensor and, for a per-sample penalty on activations, the
dimensions to reduce over (`dims`, None for all); it returns a scalar. Thread 001 adds
‖p‖₁² of every parameter p to its loss; with this file on the Python path (run from this
folder, or from the project's root as `examples.penalties:squared_l1`):

    regrun 'reg.targets.sq.layers=["*"]' +reg.targets.sq.site=params \
        +reg.targets.sq.penalty=penalties:squared_l1 +reg.targets.sq.lambda=1e-6

regrun checks the function before training: it must take one tensor, give a finite
floating-point scalar on an example batch, and take `dims` when it is on activations
with reduction=batch_mean.
"""

from torch import Tensor


def squared_l1(x: Tensor, dims: tuple[int, ...] | None = None) -> Tensor:
    """(Σ|x|)²"""
    total = x.abs().sum() if dims is None else x.abs().sum(dim=dims)
    return total.square()
