"""A dataset of one's own: a .npz or .pt file of x_train, y_train, x_test, y_test, read
without running code from it (numpy without pickles, torch's weights-only loader)."""

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from regrun.components.datasets.loading import check_num_classes, register_dataset
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
    if not path:
        raise RegrunError("dataset.path: dataset tensors needs a file; set dataset.path=FILE (.npz or .pt)")
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
    for key, array in (("x_train", splits[True][0]), ("x_test", splits[False][0]),
                       ("y_train", targets[0]), ("y_test", targets[1])):
        _check_float32(path, key, arrays[key], array)

    def read(train: bool, limit: int | None, device: torch.device) -> Split:
        x, y = splits[train]
        return Split(x[:limit].to(device), y[:limit].to(device))

    return Source(spec, read)


def _read_tensor_file(path: str) -> dict[str, Tensor]:
    """The file's arrays as CPU tensors; a missing file, key or bad format is one line."""
    file = Path(path).expanduser()
    if file.suffix not in (".npz", ".pt"):
        raise RegrunError(f"dataset.path={path}: unknown file type {file.suffix!r}; allowed: .npz, .pt")
    if file.is_dir():
        raise RegrunError(f"dataset.path={path}: a directory; allowed: a {file.suffix} file")
    if not file.is_file():
        raise RegrunError(f"dataset.path={path}: no such file")
    if (kind := _file_kind(file)) != ZIP and not (file.suffix == ".pt" and kind == PICKLE):
        raise RegrunError(f"{path}: {kind}, not a {file.suffix} file of arrays; allowed: a file "
                          f"{'np.savez wrote' if file.suffix == '.npz' else 'torch.save wrote'}")
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


# What a file's first bytes say it is. np.savez and torch.save (since 1.6) write zip archives;
# torch.save's legacy format is a pickle, which the weights-only loader reads safely.
ZIP, PICKLE = "a zip archive", "a pickle"
MAGIC = ((b"PK\x03\x04", ZIP), (b"PK\x05\x06", ZIP), (b"\x80", PICKLE), (b"\x93NUMPY", "a single .npy array"),
         (b"\x1f\x8b", "a gzip file"), (b"\x89HDF", "an HDF5 file"), (b"BZh", "a bzip2 file"))


def _file_kind(file: Path) -> str:
    """What `file` holds, from its first bytes: one of MAGIC's kinds, an empty file, text
    (quoted), or binary data of an unknown kind."""
    with file.open("rb") as handle:
        head = handle.read(64)
    if not head:
        return "an empty file"
    for magic, kind in MAGIC:
        if head.startswith(magic):
            return kind
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return f"binary data of an unknown kind (starts with {head[:8]!r})"
    first = text.strip().splitlines()[0][:30] if text.strip() else ""
    return f"text (starts with {first!r})"


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


def _check_float32(path: str, key: str, given: Tensor, converted: Tensor) -> None:
    """Training runs in float32: values that were finite as given but overflow it are refused
    here, not blamed on training when the first step diverges."""
    if converted.is_floating_point() and not (finite := torch.isfinite(converted.reshape(len(converted), -1)).all(1)).all():
        first = int((~finite).nonzero()[0])
        raise RegrunError(f"{path}: {key} holds values beyond float32's range (largest |value| "
                          f"{given.abs().max().item():.3g}, first at sample {first}); allowed: finite numbers "
                          f"within ±{torch.finfo(torch.float32).max:.3g}, since training runs in float32")


def _num_classes(path: str, arrays: Mapping[str, Any]) -> int:
    """The `num_classes` entry, or the largest label + 1; it must exceed every label."""
    largest = max(int(arrays["y_train"].max()), int(arrays["y_test"].max()))
    given = arrays.get("num_classes")
    if given is None:
        check_num_classes(f"{path}: y_train/y_test's largest label is {largest}", largest + 1,
                          len(arrays["y_train"]) + len(arrays["y_test"]))
        return largest + 1
    value = given.item() if isinstance(given, Tensor) and given.numel() == 1 else given
    if not isinstance(value, int) or value <= largest:
        raise RegrunError(f"{path}: num_classes={value!r} but the labels reach {largest}; allowed: an integer "
                          f"above {largest}, or no num_classes entry")
    check_num_classes(f"{path}: num_classes={value}", value, len(arrays["y_train"]) + len(arrays["y_test"]))
    return value


register_dataset("tensors", open_tensors)
