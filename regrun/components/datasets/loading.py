"""Datasets by name, and loading one from its config node.

Each dataset is one record in `DATASETS` (`register_dataset`, or the `regrun.datasets`
entry points): a function that takes the options of its config node and returns a
`Source`, which says what the data is (`DataSpec`) before a byte of it is read, and reads
each split. The options shared by every dataset (limits, the validation split) are
checked and applied here, the same for all, and every split read is checked against its
dataset's spec, so that a plugin's reader is held to its word.
"""

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Annotated, Any

import torch

from regrun.components.datasets.types import Data, DataSpec, Source, Split
from regrun.components.registry import Choice, Registry, builder_hints, call_with_options
from regrun.errors import RegrunError
from regrun.schema import AtLeast, parse, read_node


@dataclass(frozen=True)
class DatasetRecord:
    """One dataset: `open(**the options of its config node)` returns its `Source`."""

    open: Callable[..., Source]
    task: str | None = None  # its natural task when the data does not decide it (tensors does)


DATASETS: Registry[DatasetRecord] = Registry(
    "dataset", "regrun.datasets", wrap=lambda name, obj: obj if isinstance(obj, DatasetRecord) else DatasetRecord(obj))


def register_dataset(name: str, record: DatasetRecord | Callable[..., Source], replace: bool = False) -> None:
    """Make `dataset.name=NAME` read the data `record.open(**the node's other keys)` returns."""
    DATASETS.register(name, record if isinstance(record, DatasetRecord) else DatasetRecord(record), replace)


@dataclass(frozen=True)
class DatasetSettings(Choice):
    """The `dataset` node: a registered dataset, the options its `open` takes, and the keys
    every dataset takes (limits, the validation hold-out), the same for all."""

    train_limit: Annotated[int, AtLeast(1)] | None = None  # the first N training samples (null: all)
    test_limit: Annotated[int, AtLeast(1)] | None = None
    # samples held out of training for validation: a count, or a fraction of the training set
    val_size: Annotated[int | float, "a sample count ≥ 1 or a fraction in (0, 1)"] | None = None
    val_seed: Annotated[int, AtLeast(0)] = 0  # draws the validation samples (not the run's seed)

    @classmethod
    def from_node(cls, where: str, node: object) -> "DatasetSettings":
        """Read with the registered dataset's `open` signature as the options' schema."""
        name = node.get("name") if isinstance(node, Mapping) else None
        record = DATASETS.entry(name, f"{where}.name") if isinstance(node, Mapping) else None
        return parse(where, node, cls, options=builder_hints(record.open) if record else {})

    def validate(self, where: str) -> None:
        """A validation size is a sample count (≥ 1) or a fraction in (0, 1)."""
        size = self.val_size
        if size is None or (isinstance(size, int) and size >= 1) or (isinstance(size, float) and 0 < size < 1):
            return
        raise RegrunError(f"{where}.val_size must be a sample count ≥ 1, a fraction in (0, 1), or null; got {size!r}")


def open_dataset(cfg: DatasetSettings | Mapping[str, Any]) -> Source:
    """The dataset a `dataset` node names (checked settings, or a mapping read as them),
    opened: its spec known. Reads no sample (but a tensors file)."""
    settings = read_node("dataset", cfg, DatasetSettings)
    return call_with_options(DATASETS[settings.name].open, settings.options, "dataset", f"dataset {settings.name!r}")


# A classifier's head has one output per class: more classes than this and than samples is a
# label that is not a class index (an id, a 10⁹), which would build a head the allocator cannot hold.
MAX_CLASSES = 100_000


def check_num_classes(where: str, classes: int, samples: int) -> None:
    """Refuse `classes` classes when they exceed both MAX_CLASSES and the `samples` they are for."""
    if classes > max(MAX_CLASSES, samples):
        raise RegrunError(f"{where}: a head of {classes} classes for {samples} samples; allowed: labels "
                          f"0..C−1 with C at most {max(MAX_CLASSES, samples)} (relabel the classes 0, 1, 2, ...)")


def load_data(cfg: DatasetSettings | Mapping[str, Any], device: torch.device, source: Source | None = None) -> Data:
    """Read the splits of the dataset `cfg` names onto `device`: the first `train_limit` /
    `test_limit` samples (null: all), then `val_size` samples of the training set held out
    as a validation split, drawn with `val_seed` (not the run's seed, so that runs of
    several seeds are judged on the same samples)."""
    settings = read_node("dataset", cfg, DatasetSettings)
    source = source or open_dataset(settings)
    train, test = source.read(True, settings.train_limit, device), source.read(False, settings.test_limit, device)
    val = None
    if settings.val_size is not None:
        train, val = _hold_out(train, settings.val_size, settings.val_seed)
    if source.spec.num_classes is not None:
        check_num_classes(f"dataset {source.spec.name}: num_classes={source.spec.num_classes}",
                          source.spec.num_classes, len(train) + len(test) + (len(val) if val is not None else 0))
    for which, split in (("training", train), ("validation", val), ("test", test)):
        if split is not None:
            _check_split(source.spec, split, which)
    return Data(settings.name, train, test, val)


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
