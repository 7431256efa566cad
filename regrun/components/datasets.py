"""Datasets by name, read once and held as tensors on the training device.

Each dataset is one record in `DATASETS` (`register_dataset`, or the `regrun.datasets`
entry points): a function that takes the options of its config node and returns a
`Source`, which says what the data is (`DataSpec`: sample shape, natural task, classes)
before a byte of it is read, and reads each split. The options shared by every dataset
(limits, the validation split) are applied here, the same for all:

    mnist, fashion_mnist, kmnist   torchvision's raw IDX files (<root>/MNIST/raw/...)
    cifar10                        torchvision's <root>/cifar-10-batches-py/ pickles
    tensors                        a .npz or .pt file of x_train, y_train, x_test, y_test
    toy_regression                 thread 003's 1-D problem: y = x² + noise
    teacher                        thread 000's random inputs, labelled by a random linear teacher

The IDX files are read by a 20-line reader that checks each file against its header,
and CIFAR's pickles by an unpickler that builds nothing but dicts, lists, strings,
numbers and numpy arrays: importing torchvision costs two seconds per process, so it is
imported only to download. regrun keeps each whole split as one tensor on the training
device and slices batches from it, so the hot loop has no per-sample Python work (no
DataLoader, no ToTensor).
"""

import codecs
import errno
import gzip
import hashlib
import inspect
import math
import os
import pickle
import shutil
import struct
import zlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
import torch
from torch import Tensor

from regrun.components.registry import Registry, call_with_options
from regrun.errors import RegrunError, choices, is_number, positive_int
from regrun.schema import NON_NEGATIVE, AtLeast


@dataclass(frozen=True)
class DataSpec:
    """What a dataset is, known before its samples are read: enough to build the model
    and choose the task."""

    name: str  # names the data in messages: "mnist", "tensors (data.npz)"
    input_shape: tuple[int, ...]  # one sample's shape, as the model receives it
    task: str  # the natural task: classification for class labels, regression for values
    targets: Literal["labels", "values"]  # integer class labels (N,), or float targets (N, *target_shape)
    num_classes: int | None = None  # with labels
    target_shape: tuple[int, ...] = ()  # one sample's target shape; () for labels


@dataclass(frozen=True)
class Split:
    """A whole split on the device: inputs (N, *input_shape), targets (N,) or (N, *target_shape)."""

    x: Tensor
    y: Tensor

    def __len__(self) -> int:
        return len(self.y)

    def take(self, index: Tensor) -> "Split":
        """The samples at `index`, non-negative integers of any shape ((M, B) gives (M, B, *sample)),
        in its order.

        index_select on the flat index: 2.7 times as fast as `x[index]` for a batch of 64
        MNIST images, 4 times for the (8, 64) batches of a fused group."""
        flat = index.reshape(-1).to(self.y.device)
        return Split(*(t.index_select(0, flat).view(*index.shape, *t.shape[1:]) for t in (self.x, self.y)))


@dataclass(frozen=True)
class Data:
    """The splits of one dataset; `val` is held out from the training set when asked for."""

    name: str
    train: Split
    test: Split
    val: Split | None = None


@dataclass(frozen=True)
class Source:
    """A dataset opened but not read yet: what it is, and how to read a split."""

    spec: DataSpec
    read: Callable[[bool, int | None, torch.device], Split]  # (train?, keep the first N or all, device)


@dataclass(frozen=True)
class DatasetRecord:
    """One dataset: `open(**the options of its config node)` returns its `Source`."""

    open: Callable[..., Source]
    task: str | None = None  # its natural task when the data does not decide it (tensors does)


# Keys every dataset node may hold, besides the options its `open` takes.
COMMON_KEYS = ("train_limit", "test_limit", "val_size", "val_seed")

DATASETS: Registry[DatasetRecord] = Registry(
    "dataset", "regrun.datasets", wrap=lambda name, obj: obj if isinstance(obj, DatasetRecord) else DatasetRecord(obj))


def register_dataset(name: str, record: DatasetRecord | Callable[..., Source], replace: bool = False) -> None:
    """Make `dataset.name=NAME` read the data `record.open(**the node's other keys)` returns."""
    DATASETS.register(name, record if isinstance(record, DatasetRecord) else DatasetRecord(record), replace)


def open_dataset(cfg: Mapping[str, Any]) -> Source:
    """The dataset a `dataset` config node names, opened: its keys and values checked, its
    spec known; a bad one is a one-line error. Reads no sample (but a tensors file)."""
    name = cfg.get("name")
    record = DATASETS.entry(name)
    own = [key for key in inspect.signature(record.open).parameters]
    allowed = ["name", *own, *COMMON_KEYS]
    for key in cfg:
        if key not in allowed:
            raise RegrunError(f"dataset.{key}: unknown key; allowed: {choices(allowed)}")
    for key in ("train_limit", "test_limit"):
        positive_int(f"dataset.{key}", cfg.get(key), or_null=True)
    _check_val_size(cfg.get("val_size"))
    seed = cfg.get("val_seed", 0)
    if not is_number(seed) or not isinstance(seed, int) or seed < 0:
        raise RegrunError(f"dataset.val_seed must be an integer ≥ 0, got {seed!r}")
    options = {key: value for key, value in cfg.items() if key in own}
    return call_with_options(record.open, options, "dataset", f"dataset {name!r}")


def load_data(cfg: Mapping[str, Any], device: torch.device, source: Source | None = None) -> Data:
    """Read the splits of the dataset `cfg` names onto `device`: the first `train_limit` /
    `test_limit` samples (null: all), then `val_size` samples of the training set held out
    as a validation split, drawn with `val_seed` (not the run's seed, so that runs of
    several seeds are judged on the same samples)."""
    source = source or open_dataset(cfg)
    train, test = (source.read(is_train, cfg.get(limit), device)
                   for is_train, limit in ((True, "train_limit"), (False, "test_limit")))
    val = None
    if cfg.get("val_size") is not None:
        train, val = _hold_out(train, cfg["val_size"], cfg.get("val_seed", 0))
    for which, split in (("training", train), ("validation", val), ("test", test)):
        if split is not None:
            _check_split(source.spec, split, which)
    return Data(cfg["name"], train, test, val)


def _check_val_size(value: object) -> None:
    if value is None or (is_number(value) and ((isinstance(value, int) and value >= 1) or 0 < value < 1)):
        return
    raise RegrunError(f"dataset.val_size must be a sample count (an integer ≥ 1), a fraction in (0, 1), "
                      f"or null; got {value!r}")


def _hold_out(train: Split, size: int | float, seed: int) -> tuple[Split, Split]:
    """(the rest of the training set in its order, a seeded random validation split)."""
    n = len(train)
    count = size if isinstance(size, int) else round(size * n)
    if not 1 <= count < n:
        raise RegrunError(f"dataset.val_size={size} holds out {count} of the {n} training samples; "
                          f"allowed: 1 to {n - 1} samples, or a fraction that holds out as many")
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).to(train.y.device)
    return train.take(order[count:].sort().values), train.take(order[:count])


def _check_split(spec: DataSpec, split: Split, which: str) -> None:
    """The samples are what the spec says: a plugin's reader is held to its word."""
    where = f"dataset {spec.name}: the {which} split"
    if len(split) == 0 or len(split.x) != len(split.y):
        raise RegrunError(f"{where} has {len(split.x)} inputs and {len(split.y)} targets; "
                          "allowed: as many of each, at least one")
    if tuple(split.x.shape[1:]) != spec.input_shape:
        raise RegrunError(f"{where} has samples of shape {tuple(split.x.shape[1:])}; the dataset "
                          f"declares {spec.input_shape}")
    if spec.targets == "labels":
        bad = split.y.dtype != torch.int64 or split.y.ndim != 1
        if bad or split.y.min() < 0 or split.y.max() >= (spec.num_classes or 0):
            raise RegrunError(f"{where} has labels of dtype {split.y.dtype}, shape {tuple(split.y.shape)}, "
                              f"from {split.y.min().item()} to {split.y.max().item()}; allowed: int64 labels "
                              f"0..{(spec.num_classes or 0) - 1}, one per sample")
    elif not split.y.is_floating_point() or tuple(split.y.shape[1:]) != spec.target_shape:
        raise RegrunError(f"{where} has targets of dtype {split.y.dtype} and shape {tuple(split.y.shape)}; "
                          f"allowed: floats of shape (N, {', '.join(map(str, spec.target_shape))})")


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


def open_idx(name: str, info: DatasetInfo, root: str = "data", download: bool = False) -> Source:
    """An IDX dataset under `root` (torchvision's layout), downloaded when missing and `download`."""
    spec = DataSpec(name, info.input_shape, "classification", "labels", info.num_classes)
    path = Path(root).expanduser()

    def read(train: bool, limit: int | None, device: torch.device) -> Split:
        raw = _ensure_raw_files(name, info, path, bool(download))
        return _load_split(info, raw, train, limit, device)

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


def _load_split(info: DatasetInfo, raw: Path, train: bool, limit: int | None, device: torch.device) -> Split:
    prefix = raw / ("train" if train else "t10k")
    images = read_idx(Path(f"{prefix}-images-idx3-ubyte"))
    labels = read_idx(Path(f"{prefix}-labels-idx1-ubyte"))
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise RegrunError(f"{prefix}-*: {images.shape} images do not pair with {labels.shape} labels; "
                          "expected N×28×28 images and N labels")
    if labels.max(initial=0) >= info.num_classes:
        raise RegrunError(f"{prefix}-labels-idx1-ubyte: label {labels.max()} outside 0..{info.num_classes - 1}")
    x = torch.tensor(images[:limit], device=device).unsqueeze(1).float().div_(255).sub_(info.mean).div_(info.std)
    return Split(x, torch.tensor(labels[:limit], device=device).long())


for _name, _info in IDX_DATASETS.items():
    register_dataset(_name, DatasetRecord(partial(open_idx, _name, _info), "classification"))


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


def open_cifar10(root: str = "data", download: bool = False) -> Source:
    """CIFAR-10 from `<root>/cifar-10-batches-py/`, downloaded by torchvision when missing and `download`."""
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
        x = torch.tensor(np.concatenate(images)[:limit], device=device).view(-1, *CIFAR_SHAPE).float().div_(255)
        mean, std = (torch.tensor(v, device=device).view(1, 3, 1, 1) for v in (CIFAR_MEAN, CIFAR_STD))
        return Split(x.sub_(mean).div_(std), torch.tensor(np.concatenate(labels)[:limit], device=device))

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


def open_toy_regression(train_size: Annotated[int, AtLeast(1)] = 1000, test_size: Annotated[int, AtLeast(1)] = 200,
                        noise: Annotated[float, NON_NEGATIVE] = 0.2, seed: Annotated[int, NON_NEGATIVE] = 0) -> Source:
    """Thread 003's 1-D problem: x uniform in [−1, 1], y = x² + noise·u with u uniform in
    [0, 1) (the tutorial its net comes from); inputs and targets of shape (N, 1).

    Drawn from `seed`, the training samples first, so that test_size leaves them as they are.
    The options' types and ranges are checked from the annotations (regrun/schema.py).
    """
    spec = DataSpec("toy_regression", (1,), "regression", "values", target_shape=(1,))

    def read(train: bool, limit: int | None, device: torch.device) -> Split:
        generator = torch.Generator().manual_seed(seed)
        draws = [_toy_samples(size, noise, generator) for size in (train_size, test_size)]
        x, y = draws[0] if train else draws[1]
        return Split(x[:limit].to(device), y[:limit].to(device))

    return Source(spec, read)


def _toy_samples(size: int, noise: float, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    x = torch.rand(size, 1, generator=generator) * 2 - 1
    return x, x.square() + noise * torch.rand(size, 1, generator=generator)


register_dataset("toy_regression", DatasetRecord(open_toy_regression, "regression"))


def open_teacher(features: Annotated[int, AtLeast(1)] = 128, classes: Annotated[int, AtLeast(2)] = 2,
                 train_size: Annotated[int, AtLeast(1)] = 1000, test_size: Annotated[int, AtLeast(1)] = 200,
                 seed: Annotated[int, NON_NEGATIVE] = 0) -> Source:
    """Thread 000's random inputs, made learnable: x uniform in [0, 1)^features (the
    thread's `torch.rand(batch, 128)`), labelled by a random linear teacher, the arg-max of
    W(x − ½) with W standard normal (classes × features), all drawn from `seed`."""
    spec = DataSpec("teacher", (features,), "classification", "labels", classes)

    def read(train: bool, limit: int | None, device: torch.device) -> Split:
        generator = torch.Generator().manual_seed(seed)
        teacher = torch.randn(classes, features, generator=generator)
        x = torch.rand(train_size + test_size, features, generator=generator)
        y = ((x - 0.5) @ teacher.T).argmax(1)
        part = slice(0, train_size) if train else slice(train_size, None)
        return Split(x[part][:limit].to(device), y[part][:limit].to(device))

    return Source(spec, read)


register_dataset("teacher", DatasetRecord(open_teacher, "classification"))


def batches(split: Split, batch_size: int, generator: torch.Generator, skip: int = 0) -> Iterator[tuple[Tensor, Tensor]]:
    """Shuffled mini-batches; the permutation comes from a CPU generator for reproducibility.

    `skip` drops the first batches of the permutation: a run resumed mid-epoch replays the
    epoch's permutation (from the generator state at the epoch's start) and skips what it did.
    """
    order = torch.randperm(len(split), generator=generator).to(split.y.device)
    for start in range(skip * batch_size, len(split), batch_size):
        batch = split.take(order[start:start + batch_size])
        yield batch.x, batch.y


def chunks(split: Split, size: int) -> Iterator[tuple[Tensor, Tensor]]:
    """The split in order, as views of at most `size` samples (for evaluation)."""
    for start in range(0, len(split), size):
        yield split.x[start:start + size], split.y[start:start + size]
