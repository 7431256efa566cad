"""Datasets by name, read once from their IDX files and held as tensors on the device.

The files are torchvision's raw files in torchvision's layout (<root>/MNIST/raw/...), read
here by a 20-line IDX reader that checks each file against its header: importing
torchvision costs two seconds per process (its models), so it is imported only to
download. regrun keeps the whole split as one normalised float tensor on the training
device and slices batches from it, so the hot loop has no per-sample Python work (no
DataLoader, no ToTensor).
"""

import gzip
import math
import shutil
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from regrun.errors import RegrunError, choices, positive_int


@dataclass(frozen=True)
class DatasetInfo:
    """What regrun knows of a dataset before reading a byte of it."""

    folder: str  # torchvision's class name, which is also its folder under the root
    mean: float  # of the training pixels in [0, 1]; used to normalise
    std: float
    input_shape: tuple[int, ...] = (1, 28, 28)
    num_classes: int = 10

    def raw_dir(self, root: str | Path) -> Path:
        """Where torchvision keeps the raw IDX files under `root`."""
        return Path(root) / self.folder / "raw"

    def raw_files(self) -> list[str]:
        """The uncompressed IDX file names (the same for MNIST and its relatives)."""
        return [f"{split}-{kind}" for split in ("train", "t10k") for kind in ("images-idx3-ubyte", "labels-idx1-ubyte")]

    def download(self, root: Path) -> None:
        """Fetch the files with torchvision's own downloader (its mirrors and checksums)."""
        from torchvision import datasets  # slow to import: only when a download is asked for

        getattr(datasets, self.folder)(str(root), train=True, download=True)


IDX_UBYTE = 0x08  # the IDX type code of unsigned bytes, the only type MNIST and its relatives use
DATASET_KEYS = ("name", "root", "download", "train_limit", "test_limit")
DATASETS: dict[str, DatasetInfo] = {
    "mnist": DatasetInfo("MNIST", 0.1307, 0.3081),
    "fashion_mnist": DatasetInfo("FashionMNIST", 0.2860, 0.3530),
    "kmnist": DatasetInfo("KMNIST", 0.1918, 0.3483),
}


@dataclass(frozen=True)
class Split:
    """A whole split on the device: images (N, C, H, W) normalised, labels (N,)."""

    x: Tensor
    y: Tensor

    def __len__(self) -> int:
        return len(self.y)


@dataclass(frozen=True)
class Data:
    """The train and test splits of one dataset."""

    name: str
    train: Split
    test: Split


def dataset_info(name: str) -> DatasetInfo:
    """The registry entry for `name`, or a one-line error listing the datasets."""
    if name not in DATASETS:
        raise RegrunError(f"dataset.name: unknown dataset {name!r}; allowed: {choices(DATASETS)}")
    return DATASETS[name]


def check_dataset_config(cfg: dict[str, Any]) -> DatasetInfo:
    """The registry entry of a `dataset` config node; a bad key, name or limit is a one-line error."""
    for key in cfg:
        if key not in DATASET_KEYS:
            raise RegrunError(f"dataset.{key}: unknown key; allowed: {choices(DATASET_KEYS)}")
    for key in ("train_limit", "test_limit"):
        positive_int(f"dataset.{key}", cfg.get(key), or_null=True)
    return dataset_info(cfg.get("name"))


def load_data(cfg: dict[str, Any], device: torch.device) -> Data:
    """Load both splits of `cfg["name"]` from `cfg["root"]` onto `device`.

    Keys: name, root, download (try torchvision's download when files are missing),
    train_limit / test_limit (keep only the first N samples; null keeps all).
    """
    info = check_dataset_config(cfg)
    root = Path(cfg["root"]).expanduser()
    _ensure_raw_files(cfg["name"], info, root, bool(cfg.get("download", False)))
    splits = [_load_split(info, root, train, cfg.get(limit), device)
              for train, limit in ((True, "train_limit"), (False, "test_limit"))]
    return Data(cfg["name"], *splits)


def _ensure_raw_files(name: str, info: DatasetInfo, root: Path, download: bool) -> None:
    raw = info.raw_dir(root)
    for file in info.raw_files():
        packed = raw / f"{file}.gz"
        if not (raw / file).is_file() and packed.is_file():
            # Debian's dataset packages and manual downloads ship .gz files; torchvision only
            # unpacks them inside download(), so unpack them here once.
            with gzip.open(packed, "rb") as src, open(raw / file, "wb") as dst:
                shutil.copyfileobj(src, dst)
    missing = [f for f in info.raw_files() if not (raw / f).is_file()]
    if not missing:
        return
    reason = "download is off (dataset.download=false)"
    if download:
        try:
            info.download(root)
            return
        except Exception as err:  # any network failure: report it on the one line below
            reason = f"download failed ({type(err).__name__})"
    raise RegrunError(
        f"dataset {name}: {reason} and {raw} lacks {', '.join(missing)}; put torchvision's raw "
        f"IDX files (or their .gz) there, or point dataset.root=DIR at a folder holding "
        f"{info.folder}/raw/"
    )


def read_idx(path: Path) -> np.ndarray:
    """An IDX file of unsigned bytes as an array; a truncated or corrupt file is a one-line error."""
    data = path.read_bytes()
    dims = data[3] if len(data) >= 4 and data[:2] == b"\0\0" and data[2] == IDX_UBYTE else None
    if dims is None or len(data) < 4 + 4 * dims:
        raise RegrunError(f"{path}: not an IDX file of unsigned bytes (bad header); replace it with torchvision's raw file")
    shape = struct.unpack(f">{dims}I", data[4:4 + 4 * dims])
    expected = 4 + 4 * dims + math.prod(shape)
    if len(data) != expected:
        raise RegrunError(f"{path}: {len(data)} bytes, but its header ({'×'.join(map(str, shape))}) "
                          f"needs {expected}; the file is truncated or corrupt, replace it")
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * dims).reshape(shape)


def _load_split(info: DatasetInfo, root: Path, train: bool, limit: int | None, device: torch.device) -> Split:
    prefix = info.raw_dir(root) / ("train" if train else "t10k")
    images = read_idx(Path(f"{prefix}-images-idx3-ubyte"))
    labels = read_idx(Path(f"{prefix}-labels-idx1-ubyte"))
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise RegrunError(f"{prefix}-*: {images.shape} images do not pair with {labels.shape} labels; "
                          "expected N×28×28 images and N labels")
    if labels.max(initial=0) >= info.num_classes:
        raise RegrunError(f"{prefix}-labels-idx1-ubyte: label {labels.max()} outside 0..{info.num_classes - 1}")
    x = torch.tensor(images[:limit], device=device).unsqueeze(1).float().div_(255).sub_(info.mean).div_(info.std)
    return Split(x, torch.tensor(labels[:limit], device=device).long())


def batches(split: Split, batch_size: int, generator: torch.Generator, skip: int = 0) -> Iterator[tuple[Tensor, Tensor]]:
    """Shuffled mini-batches; the permutation comes from a CPU generator for reproducibility.

    `skip` drops the first batches of the permutation: a run resumed mid-epoch replays the
    epoch's permutation (from the generator state at the epoch's start) and skips what it did.
    """
    order = torch.randperm(len(split), generator=generator).to(split.y.device)
    for start in range(skip * batch_size, len(split), batch_size):
        index = order[start:start + batch_size]
        yield split.x[index], split.y[index]


def chunks(split: Split, size: int) -> Iterator[tuple[Tensor, Tensor]]:
    """The split in order, as views of at most `size` samples (for evaluation)."""
    for start in range(0, len(split), size):
        yield split.x[start:start + size], split.y[start:start + size]
