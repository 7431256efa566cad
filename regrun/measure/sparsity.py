"""Sparsity statistics of weights and activations, computed without gradients.

Weights (every parameter tensor): exact-zero fraction, fraction with |w| below each
threshold, L1 norm Σ|w|, L2 norm sqrt(Σw²), normalised Hoyer sparsity; for matrices and
kernels also their structure (Distiller's sparsity table): the fractions of all-zero rows
and columns, or filters, input channels and kernels, and the shape without them.

Activations (every leaf module but Flatten, Dropout and Identity, over a whole split):
exact-zero fraction of all output elements and L0, the mean count of non-zero entries per
sample; dead units, where a unit is one index of dim 1 (a feature of a Linear, a channel
of a Conv2d) and is dead when it is zero for every sample (and every position), and each
unit's firing density; mean L1 per sample; mean normalised Hoyer sparsity of each
sample's flattened output.

Normalised Hoyer sparsity of n entries: (√n − ‖x‖₁/‖x‖₂)/(√n − 1), in [0, 1]: 0 when
all entries are equal in size, 1 when one entry is non-zero. An all-zero vector, and a
vector of one entry, count as 1 (nothing in them is spread out).
"""

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from regrun.layout import DENSITY, STRUCTURE_FIGURES

UNSTATED = (nn.Flatten, nn.Dropout, nn.Identity)  # outputs that only repeat their inputs


def normalized_hoyer(x: Tensor) -> Tensor:
    """Normalised Hoyer sparsity of each row (last dimension) of `x`, in [0, 1]."""
    return hoyer_from_norms(x.abs().sum(-1), x.square().sum(-1).sqrt(), x.shape[-1])


def hoyer_from_norms(l1: Tensor, l2: Tensor, n: int) -> Tensor:
    """Normalised Hoyer sparsity of vectors of `n` entries from their L1 and L2 norms."""
    if n == 1:
        return torch.ones_like(l1)
    root_n = math.sqrt(n)
    spread = (root_n - l1 / l2.clamp_min(torch.finfo(l2.dtype).tiny)) / (root_n - 1)
    return torch.where(l2 == 0, torch.ones_like(spread), spread.clamp(0.0, 1.0))  # NaN norms stay NaN


def threshold_key(threshold: float) -> str:
    """Column name of the fraction below a threshold: 1e-3 → 'below_0.001'."""
    return f"below_{threshold:g}"


def weight_stats(model: nn.Module, thresholds: Sequence[float]) -> list[dict]:
    """One row of statistics per parameter tensor of the model."""
    rows = []
    with torch.no_grad():
        for name, param in model.named_parameters():
            flat = param.detach().flatten()
            magnitude = flat.abs()  # once, for every threshold
            l1, l2 = magnitude.sum(), torch.dot(flat, flat).sqrt()
            figures = torch.stack([
                (magnitude == 0).sum() / flat.numel(),
                *[(magnitude < t).sum() / flat.numel() for t in thresholds],
                l1, l2, hoyer_from_norms(l1, l2, flat.numel()),
            ]).tolist()  # one device sync per tensor
            rows.append({
                "name": name, "shape": list(param.shape), "numel": param.numel(),
                "zero_frac": figures[0],
                **{threshold_key(t): f for t, f in zip(thresholds, figures[1:-3])},
                "l1_norm": figures[-3], "l2_norm": figures[-2], "hoyer": figures[-1],
                **structure(param.detach()),
            })
    return rows


def structure(weight: Tensor) -> dict[str, Any]:
    """What of a matrix or kernel is zero as a whole, and the shape it could shrink to.

    A matrix (out, in), a Linear's: the fractions of all-zero rows (outputs) and columns
    (inputs). A kernel (out, in, *k), a convolution's: of all-zero filters (out), input
    channels (in) and kernels (each (out, in) slice). `could_become`: the shape with the
    zero rows and columns, or filters and channels, removed (this layer alone: the next
    layer's inputs shrink with its outputs). Nothing for a tensor of fewer dimensions."""
    if weight.ndim < 2:
        return {}
    alive = weight != 0  # a NaN is not a zero
    outputs = alive.flatten(1).any(1)
    inputs = alive.transpose(0, 1).flatten(1).any(1)
    counts = [outputs.sum(), inputs.sum()]
    if weight.ndim > 2:
        counts.append(alive.flatten(2).any(2).sum())
    kept = torch.stack(counts).tolist()  # one device sync
    out, inp = weight.shape[:2]
    names = STRUCTURE_FIGURES[:2] if weight.ndim == 2 else STRUCTURE_FIGURES[2:]
    totals = [out, inp, out * inp][:len(kept)]
    fractions = [(total - k) / total for k, total in zip(kept, totals)]
    return {**dict(zip(names, fractions)), "could_become": [int(kept[0]), int(kept[1]), *weight.shape[2:]]}


def stat_modules(model: nn.Module) -> list[str]:
    """Names of the leaf modules whose outputs get activation statistics."""
    return [name for name, m in model.named_modules()
            if name and not list(m.children()) and not isinstance(m, UNSTATED)]


# Elements of one CPU output a statistics pass works on at a time (4 MB of float32): the copy
# |x| is then reused from one part to the next, where one copy of a whole batch of 1000 CNN
# images would be a fresh 100 MB buffer each time, every page of it a fault. Measured on
# the project's 2-core machine, parts made the statistics of an evaluation half as long.
PART_ELEMENTS = 1 << 20


class ActivationStats:
    """Running activation statistics of one module over the batches it has seen."""

    def __init__(self) -> None:
        self.samples = 0
        self.shape: tuple[int, ...] = ()
        self._sums: Tensor | None = None  # zeros, l1, hoyer: summed on the device
        self._alive: Tensor | None = None  # per unit: non-zero at least once
        self._fires: Tensor | None = None  # per unit: its count of non-zero entries

    def update(self, output: Tensor) -> None:
        """Add one batch of outputs, shape (B, units, ...).

        What the figures need, and no more: each unit's count of non-zero entries (zero
        fraction, dead units), and each sample's L1 and L2 norm (mean L1, Hoyer). Per part
        of the batch (`PART_ELEMENTS`, on the CPU): one copy |x|, summed over each unit's
        positions (L1) and then turned into its sign in place and summed (the non-zero
        count); the L2 norm of each sample is one pass over x. Sums run in float32 at
        least (exact counts; a bfloat16 output's figures as a float32 one's). torch's own
        kernels for these figures (vector_norm of order 0 and 1, count_nonzero) take 4 to
        30 times as long on ReLU outputs, whose zeros fall at random.
        """
        out = output.detach()
        out = out.unsqueeze(1) if out.ndim == 1 else out  # (B,): one unit
        out = out.unsqueeze(2) if out.ndim == 2 else out  # (B, units): one position each
        positions, sample = tuple(range(2, out.ndim)), tuple(range(1, out.ndim))
        wide = torch.promote_types(out.dtype, torch.float32)
        elements = out[0].numel()
        parts = out.split(max(1, PART_ELEMENTS // max(elements, 1))) if out.device.type == "cpu" else (out,)
        for part in parts:
            magnitude = part.abs()
            # float64 from here: sums over many units (and a count of zeros over millions of
            # elements) would drop digits in float32
            l1_units = magnitude.sum(positions, dtype=wide)  # (B, units); NaN where a unit held one
            l1 = l1_units.sum(1, dtype=torch.float64)
            nonzero = magnitude.sign_().sum(positions, dtype=wide)  # (B, units); sign(NaN) is 0
            l2 = torch.linalg.vector_norm(part, dim=sample, dtype=wide).double()
            sums = torch.stack([elements * part.shape[0] - nonzero.sum(dtype=torch.float64), l1.sum(),
                                hoyer_from_norms(l1, l2, elements).sum()])
            fires = nonzero.sum(0, dtype=torch.float64)
            alive = (fires > 0) | l1_units.isnan().any(0)  # a NaN is not a zero
            self._sums = sums if self._sums is None else self._sums + sums
            self._alive = alive if self._alive is None else self._alive | alive
            self._fires = fires if self._fires is None else self._fires + fires
        self.samples += out.shape[0]
        self.shape = tuple(output.shape[1:]) or (1,)

    def result(self) -> dict:
        """The statistics so far, as plain numbers. An output that held a NaN makes the zero
        fraction, L1, L0 and Hoyer NaN, and counts the NaN's unit alive.

        `l0`: the mean number of non-zero entries per sample, (1 − zero_frac) × entries;
        `density`: each unit's firing density, the fraction of its entries (samples ×
        positions) that are non-zero (SAELens's feature density)."""
        assert self._sums is not None and self._alive is not None and self._fires is not None, "no batch seen"
        zeros, l1, hoyer = self._sums.tolist()
        per_sample = math.prod(self.shape)
        units = self._alive.numel()
        dead = units - int(self._alive.sum().item())
        zero_frac = zeros / (per_sample * self.samples) if not math.isnan(l1) else math.nan
        entries_per_unit = self.samples * per_sample // units
        return {
            "shape": list(self.shape), "samples": self.samples,
            "zero_frac": zero_frac, "l0": (1.0 - zero_frac) * per_sample,
            "units": units, "dead_units": dead, "dead_frac": dead / units,
            "l1_per_sample": l1 / self.samples, "hoyer": hoyer / self.samples,
            DENSITY: (self._fires / entries_per_unit).tolist(),
        }
