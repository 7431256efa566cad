"""A dataset of one's own: a .npz or .pt file of x_train, y_train, x_test, y_test, read
without running code from it (numpy without pickles, torch's weights-only loader)."""

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from regrun.components.datasets.loading import register_dataset
from regrun.components.datasets.types import DataSpec, Source, Split
from regrun.errors import RegrunError

TENSOR_KEYS = ("x_train", "y_train", "x_test", "y_test")


def open_tensors(path: str | None = None) -> Source:
    """A file of arrays: x_train, y_train, x_test, y_test (and optionally num_classes).

    `.npz` (read with allow_pickle=False) or `.pt` (torch.load with weights_only=True).
    Inputs of any sample shape (N, ...); integer targets (N,) are class labels, 0..C−1 with
    C = num_classes or the largest label + 1; float targets (N, ...) are values to regress.
    Every problem is a one-line error naming the file and the array. The file is read
    here, so that the model can be built to fit it.
    """
    arrays = _read_tensor_file(path)
    x_train, y_train, x_test, y_test = (arrays[key] for key in TENSOR_KEYS)
    for key in TENSOR_KEYS:
        _check_array(path, key, arrays[key])
    for split in ("train", "test"):
        x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
        if len(x) != len(y):
            raise RegrunError(f"{path}: x_{split} has {len(x)} samples but y_{split} {len(y)}; allowed: as many of each")
    for kind in ("x", "y"):
        train, test = arrays[f"{kind}_train"], arrays[f"{kind}_test"]
        if train.shape[1:] != test.shape[1:] or train.is_floating_point() != test.is_floating_point():
            raise RegrunError(f"{path}: {kind}_test holds {_describe(test)} samples but {kind}_train "
                              f"{_describe(train)}; allowed: the same shape and kind in both")
    if y_train.is_floating_point():
        spec = DataSpec(f"tensors ({path})", tuple(x_train.shape[1:]), "regression", "values",
                        target_shape=tuple(y_train.shape[1:]))
        targets = (y_train.float(), y_test.float())
    else:
        spec = DataSpec(f"tensors ({path})", tuple(x_train.shape[1:]), "classification", "labels",
                        _num_classes(path, arrays))
        targets = (y_train.long(), y_test.long())
    splits = {True: (x_train.float(), targets[0]), False: (x_test.float(), targets[1])}

    def read(train: bool, limit: int | None, device: torch.device) -> Split:
        x, y = splits[train]
        return Split(x[:limit].to(device), y[:limit].to(device))

    return Source(spec, read)


def _read_tensor_file(path: str | None) -> dict[str, Tensor]:
    """The file's arrays as CPU tensors; a missing file, key or bad format is one line."""
    if not path:
        raise RegrunError("dataset.path: dataset tensors needs a file; set dataset.path=FILE (.npz or .pt)")
    file = Path(path).expanduser()
    if file.suffix not in (".npz", ".pt"):
        raise RegrunError(f"dataset.path={path}: unknown file type {file.suffix!r}; allowed: .npz, .pt")
    if not file.is_file():
        raise RegrunError(f"dataset.path={path}: no such file")
    try:
        if file.suffix == ".npz":
            with np.load(file, allow_pickle=False) as npz:
                loaded = {key: torch.from_numpy(npz[key]) for key in npz.files}
        else:
            loaded = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as err:  # zip, numpy and torch errors alike: the file cannot be read as asked
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise RegrunError(f"{path}: not a readable {file.suffix} file of arrays ({reason})") from err
    if not isinstance(loaded, dict):
        raise RegrunError(f"{path}: holds a {type(loaded).__name__}; allowed: a dict of {', '.join(TENSOR_KEYS)}")
    missing = [key for key in TENSOR_KEYS if key not in loaded]
    if missing:
        raise RegrunError(f"{path}: lacks {', '.join(missing)}; a tensors file holds {', '.join(TENSOR_KEYS)} "
                          "(and optionally num_classes)")
    return loaded


def _describe(array: Tensor) -> str:
    kind = "float" if array.is_floating_point() else "integer"
    return f"{kind} {tuple(array.shape[1:])}"


def _check_array(path: str, key: str, array: Any) -> None:
    """One array of a tensors file: a numeric tensor with a sample axis, not empty, finite."""
    if not isinstance(array, Tensor):
        raise RegrunError(f"{path}: {key} is a {type(array).__name__}; allowed: an array")
    if array.dtype == torch.bool or array.is_complex():
        raise RegrunError(f"{path}: {key} has dtype {array.dtype}; allowed: floating point or integer numbers")
    least = 2 if key.startswith("x") else 1
    if array.ndim < least:
        raise RegrunError(f"{path}: {key} has shape {tuple(array.shape)}; allowed: (N, ...) with N samples "
                          f"and at least {least - 1} more axis, e.g. (N, 1) for one feature")
    if len(array) == 0:
        raise RegrunError(f"{path}: {key} is empty; allowed: at least one sample")
    if array.is_floating_point() and not (finite := torch.isfinite(array.reshape(len(array), -1)).all(1)).all():
        raise RegrunError(f"{path}: {key} holds NaN or infinite values (first at sample "
                          f"{int((~finite).nonzero()[0])}); allowed: finite numbers")
    if not array.is_floating_point() and key.startswith("y") and (array.ndim != 1 or array.min() < 0):
        raise RegrunError(f"{path}: {key} holds integers of shape {tuple(array.shape)}, from {array.min().item()}; "
                          "class labels are one per sample, shape (N,), from 0 (float targets are regressed)")


def _num_classes(path: str, arrays: Mapping[str, Any]) -> int:
    """The `num_classes` entry, or the largest label + 1; it must exceed every label."""
    largest = max(int(arrays["y_train"].max()), int(arrays["y_test"].max()))
    given = arrays.get("num_classes")
    if given is None:
        return largest + 1
    value = given.item() if isinstance(given, Tensor) and given.numel() == 1 else given
    if not isinstance(value, int) or value <= largest:
        raise RegrunError(f"{path}: num_classes={value!r} but the labels reach {largest}; allowed: an integer "
                          f"above {largest}, or no num_classes entry")
    return value


register_dataset("tensors", open_tensors)
