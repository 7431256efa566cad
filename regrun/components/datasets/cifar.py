"""CIFAR-10 from torchvision's <root>/cifar-10-batches-py/ pickles.

Unpickling runs code, so the batches are read by an unpickler that builds nothing but
dicts, lists, strings, numbers and numpy arrays; torchvision (two seconds to import, and
its MD5 checks refuse files it did not download) is imported only to download.
"""

import codecs
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import torch

from regrun.components.datasets.loading import DatasetRecord, register_dataset
from regrun.components.datasets.types import DataSpec, Scaling, Source, Split, scale_pixels
from regrun.errors import RegrunError

# CIFAR-10 in torchvision's layout: Python 2 pickles of dicts holding "data" (N×3072
# uint8, channel-major rows) and "labels" (a list of ints); batches.meta names the classes.
CIFAR_FOLDER = "cifar-10-batches-py"
CIFAR_TRAIN = tuple(f"data_batch_{i}" for i in range(1, 6))
CIFAR_TEST = ("test_batch",)
CIFAR_META = "batches.meta"
CIFAR_SHAPE = (3, 32, 32)
CIFAR_MEAN = (0.4914, 0.4822, 0.4465)  # per channel, of the training pixels in [0, 1]
CIFAR_STD = (0.2470, 0.2435, 0.2616)
# All an unpickler may build from a CIFAR batch: numpy arrays (how numpy 1 and numpy 2
# name their rebuilder), and `_codecs.encode`, through which Python 3's protocol-2 pickles
# spell bytes. Dicts, lists, strings and numbers need no lookup at all.
_reconstruct = np.zeros(0).__reduce__()[0]
PICKLE_ALLOWED: dict[tuple[str, str], Any] = {
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): codecs.encode,
}


class _AllowListUnpickler(pickle.Unpickler):
    """Unpickling runs code: this one builds only what PICKLE_ALLOWED names."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in PICKLE_ALLOWED:
            raise pickle.UnpicklingError(f"refused to unpickle {module}.{name}")
        return PICKLE_ALLOWED[(module, name)]


def read_pickle(path: Path) -> dict[str, Any]:
    """A CIFAR pickle as a dict with text keys; anything else is a one-line error."""
    try:
        with open(path, "rb") as f:
            # latin1, as torchvision reads them: Python 2's byte strings (numpy's buffers) pass unchanged.
            loaded = _AllowListUnpickler(f, encoding="latin1").load()
    except Exception as err:  # a damaged pickle can raise nearly any exception type
        raise RegrunError(f"{path}: not a CIFAR batch ({type(err).__name__}: {err}); a CIFAR batch holds only "
                          "dicts, lists, strings, numbers and numpy arrays; replace it with torchvision's file") from err
    if not isinstance(loaded, dict):
        raise RegrunError(f"{path}: holds a {type(loaded).__name__}, not the dict of a CIFAR batch")
    return {key.decode("latin1") if isinstance(key, bytes) else key: value for key, value in loaded.items()}


def open_cifar10(root: str = "data", download: bool = False, scaling: Scaling = "standardize") -> Source:
    """CIFAR-10 from `<root>/cifar-10-batches-py/`, downloaded by torchvision when missing and
    `download`, its pixels scaled as `scaling` says."""
    spec = DataSpec("cifar10", CIFAR_SHAPE, "classification", "labels", 10)
    folder = Path(root).expanduser() / CIFAR_FOLDER

    def read(train: bool, limit: int | None, device: torch.device) -> Split:
        _ensure_cifar_files(folder, bool(download))
        _check_cifar_meta(folder / CIFAR_META)
        images, labels = [], []
        for file in CIFAR_TRAIN if train else CIFAR_TEST:
            batch_images, batch_labels = _cifar_batch(folder / file)
            images.append(batch_images)
            labels.append(batch_labels)
            if limit is not None and sum(map(len, labels)) >= limit:
                break  # the first batches hold the first samples
        x = torch.tensor(np.concatenate(images)[:limit], device=device).view(-1, *CIFAR_SHAPE)
        mean, std = (torch.tensor(v, device=device).view(1, 3, 1, 1) for v in (CIFAR_MEAN, CIFAR_STD))
        return Split(scale_pixels(x, scaling, mean, std), torch.tensor(np.concatenate(labels)[:limit], device=device))

    return Source(spec, read)


def _ensure_cifar_files(folder: Path, download: bool) -> None:
    missing = [f for f in (*CIFAR_TRAIN, *CIFAR_TEST, CIFAR_META) if not (folder / f).is_file()]
    if not missing:
        return
    reason = "download is off (dataset.download=false)"
    if download:
        try:
            from torchvision import datasets  # slow to import: only when a download is asked for

            datasets.CIFAR10(str(folder.parent), train=True, download=True)
            return
        except Exception as err:  # any network failure: report it on the one line below
            reason = f"download failed ({type(err).__name__})"
    raise RegrunError(f"dataset cifar10: {reason} and {folder} lacks {', '.join(missing)}; unpack torchvision's "
                      f"cifar-10-python.tar.gz there, or point dataset.root=DIR at a folder holding {CIFAR_FOLDER}/")


def _check_cifar_meta(path: Path) -> None:
    names = read_pickle(path).get("label_names")
    if not isinstance(names, list) or len(names) != 10:
        raise RegrunError(f"{path}: label_names should list the 10 classes, got {names!r:.80}")


def _cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """A batch's images (N×3072 uint8) and labels (N,), their shapes and values checked."""
    batch = read_pickle(path)
    images, labels = batch.get("data"), batch.get("labels")
    if not isinstance(images, np.ndarray) or images.dtype != np.uint8 or images.ndim != 2 or images.shape[1] != 3072:
        what = f"{images.dtype} array of shape {images.shape}" if isinstance(images, np.ndarray) else type(images).__name__
        raise RegrunError(f"{path}: 'data' is a {what}; expected an N×3072 uint8 array")
    if not isinstance(labels, list) or len(labels) != len(images) or not all(type(k) is int and 0 <= k < 10 for k in labels):
        raise RegrunError(f"{path}: 'labels' should be a list of {len(images)} integers in 0..9, one per image")
    return images, np.array(labels, dtype=np.int64)


register_dataset("cifar10", DatasetRecord(open_cifar10, "classification"))
