"""MNIST, Fashion-MNIST and KMNIST from torchvision's raw IDX files (<root>/MNIST/raw/...).

The IDX files are read by a 20-line reader that checks each file against its header, not
by torchvision: importing torchvision costs two seconds per process, so it is imported
only to download. Files that exist only as .gz (Debian's dataset packages, manual
downloads) are unpacked once, beside the archive or into a cache folder when the data
folder is read-only.
"""

import errno
import gzip
import hashlib
import math
import os
import shutil
import struct
import zlib
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import torch

from regrun.components.datasets.loading import DatasetRecord, register_dataset
from regrun.components.datasets.types import DataSpec, Scaling, Source, Split, scale_pixels
from regrun.errors import RegrunError


@dataclass(frozen=True)
class DatasetInfo:
    """An IDX dataset (MNIST and its relatives) in torchvision's layout."""

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
IDX_DATASETS: dict[str, DatasetInfo] = {
    "mnist": DatasetInfo("MNIST", 0.1307, 0.3081),
    "fashion_mnist": DatasetInfo("FashionMNIST", 0.2860, 0.3530),
    "kmnist": DatasetInfo("KMNIST", 0.1918, 0.3483),
}


def open_idx(name: str, info: DatasetInfo, root: str = "data", download: bool = False,
             scaling: Scaling = "standardize") -> Source:
    """An IDX dataset under `root` (torchvision's layout), downloaded when missing and `download`,
    its pixels scaled as `scaling` says."""
    spec = DataSpec(name, info.input_shape, "classification", "labels", info.num_classes)
    path = Path(root).expanduser()

    def read(train: bool, limit: int | None, device: torch.device) -> Split:
        raw = _ensure_raw_files(name, info, path, bool(download))
        return _load_split(info, raw, train, limit, device, scaling)

    return Source(spec, read)


def _ensure_raw_files(name: str, info: DatasetInfo, root: Path, download: bool) -> Path:
    """The folder holding the four raw IDX files, unpacking any that exist only as .gz.

    Debian's dataset packages and manual downloads ship .gz files; torchvision only
    unpacks them inside download(), so they are unpacked here once, beside the archive, or
    into a cache folder (`unpack_dir`) when the data folder is read-only. Each file is
    written whole or not at all: a corrupt archive or a full disk leaves nothing behind.
    """
    raw = info.raw_dir(root)
    found = raw
    for file in info.raw_files():
        packed = raw / f"{file}.gz"
        if not (raw / file).is_file() and packed.is_file():
            found = _unpack(packed, raw / file, info)
    missing = [f for f in info.raw_files() if not (raw / f).is_file() and not (found / f).is_file()]
    if not missing:
        return found
    reason = "download is off (dataset.download=false)"
    if download:
        try:
            info.download(root)
            return raw
        except Exception as err:  # any network failure: report it on the one line below
            reason = f"download failed ({type(err).__name__})"
    raise RegrunError(
        f"dataset {name}: {reason} and {raw} lacks {', '.join(missing)}; put torchvision's raw "
        f"IDX files (or their .gz) there, or point dataset.root=DIR at a folder holding "
        f"{info.folder}/raw/"
    )


def unpack_dir(raw: Path) -> Path:
    """Where the .gz files of a read-only data folder are unpacked: a folder of its own under
    $XDG_CACHE_HOME/regrun (~/.cache/regrun), named after the data folder's path."""
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "regrun" / "unpacked"
    return cache / hashlib.sha256(str(raw.resolve()).encode()).hexdigest()[:16]


def _unpack(packed: Path, target: Path, info: DatasetInfo) -> Path:
    """Unpack `packed` to `target`, or to the same name in `unpack_dir` when `target`'s
    folder cannot be written; returns the folder it went to. Whole, or not at all."""
    try:
        _unpack_to(packed, target)
        return target.parent
    except PermissionError:
        pass
    except OSError as err:
        if err.errno != errno.EROFS:
            raise RegrunError(f"cannot unpack {packed} into {target.parent}: {err.strerror}") from err
    cached = unpack_dir(target.parent) / target.name
    # The members of a read-only folder that are already unpacked stay where they are.
    for file in info.raw_files():
        if (target.parent / file).is_file() and not (cached.parent / file).exists():
            cached.parent.mkdir(parents=True, exist_ok=True)
            (cached.parent / file).symlink_to(target.parent / file)
    if cached.is_file() and cached.stat().st_mtime >= packed.stat().st_mtime:
        return cached.parent
    try:
        cached.parent.mkdir(parents=True, exist_ok=True)
        _unpack_to(packed, cached)
    except OSError as err:
        raise RegrunError(f"cannot unpack {packed}: {target.parent} is read-only and {cached.parent} "
                          f"cannot be written ({err.strerror}); unpack it by hand, or set XDG_CACHE_HOME") from err
    return cached.parent


def _unpack_to(packed: Path, target: Path) -> None:
    """Decompress through a temporary file beside `target` and a rename; an OSError of the
    temporary file propagates, a damaged archive is a one-line error naming it."""
    tmp = target.with_name(f".{target.name}.tmp")
    with open(tmp, "wb") as dst:  # PermissionError / EROFS here: the folder is read-only
        try:
            with gzip.open(packed, "rb") as src:
                shutil.copyfileobj(src, dst)
        except (EOFError, zlib.error, gzip.BadGzipFile) as err:
            dst.close()
            tmp.unlink(missing_ok=True)
            raise RegrunError(f"{packed}: not a whole gzip file ({err}); replace it, or put the unpacked "
                              f"{target.name} beside it") from err
        except OSError:
            dst.close()
            tmp.unlink(missing_ok=True)
            raise
    os.replace(tmp, target)


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


def _load_split(info: DatasetInfo, raw: Path, train: bool, limit: int | None, device: torch.device,
                scaling: Scaling) -> Split:
    prefix = raw / ("train" if train else "t10k")
    images = read_idx(Path(f"{prefix}-images-idx3-ubyte"))
    labels = read_idx(Path(f"{prefix}-labels-idx1-ubyte"))
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise RegrunError(f"{prefix}-*: {images.shape} images do not pair with {labels.shape} labels; "
                          "expected N×28×28 images and N labels")
    if labels.max(initial=0) >= info.num_classes:
        raise RegrunError(f"{prefix}-labels-idx1-ubyte: label {labels.max()} outside 0..{info.num_classes - 1}")
    x = scale_pixels(torch.tensor(images[:limit], device=device).unsqueeze(1), scaling, info.mean, info.std)
    return Split(x, torch.tensor(labels[:limit], device=device).long())


for _name, _info in IDX_DATASETS.items():
    register_dataset(_name, DatasetRecord(partial(open_idx, _name, _info), "classification"))
