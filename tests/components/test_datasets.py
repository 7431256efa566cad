"""Dataset loading: torchvision's layouts and file names, .gz files, CIFAR's pickles, tensor
files, the toy regression, the validation split; missing or bad files, batches."""

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import write_cifar, write_dataset, write_pickle, write_tensors

from regrun.components.datasets import (
    CIFAR_MEAN,
    CIFAR_STD,
    DATASETS,
    IDX_DATASETS,
    Split,
    batches,
    chunks,
    load_data,
    open_dataset,
)
from regrun.errors import RegrunError


def cfg(root: Path, **kw: object) -> dict:
    return {"name": "mnist", "root": str(root), "download": False} | kw


@pytest.mark.parametrize("name", sorted(IDX_DATASETS))
def test_files_and_folders_are_torchvisions(name: str) -> None:
    from torchvision import datasets

    info = IDX_DATASETS[name]
    cls = getattr(datasets, info.folder)
    assert info.raw_dir("/r") == Path("/r") / cls.__name__ / "raw"
    assert info.raw_files() == [Path(url).name.removesuffix(".gz") for url, _ in cls.resources]


def test_reads_what_torchvision_reads(tiny_root: Path) -> None:
    from torchvision import datasets

    data = load_data(cfg(tiny_root), torch.device("cpu"))
    theirs = datasets.MNIST(str(tiny_root), train=True, download=False)
    info = IDX_DATASETS["mnist"]
    assert torch.equal(data.train.y, theirs.targets)
    assert torch.allclose(data.train.x, (theirs.data.unsqueeze(1).float() / 255 - info.mean) / info.std)


def test_loads_normalised_tensors(tiny_root: Path) -> None:
    data = load_data(cfg(tiny_root), torch.device("cpu"))
    assert data.train.x.dtype == torch.float32 and data.train.y.dtype == torch.int64
    info = IDX_DATASETS["mnist"]
    pixel = (torch.tensor(250.0) / 255 - info.mean) / info.std
    assert data.train.x.max().item() == pytest.approx(pixel.item())
    assert set(data.train.y.tolist()) <= set(range(10))


def test_limits_keep_the_first_samples(tiny_root: Path) -> None:
    full = load_data(cfg(tiny_root), torch.device("cpu"))
    part = load_data(cfg(tiny_root, train_limit=50, test_limit=10), torch.device("cpu"))
    assert len(part.train) == 50 and len(part.test) == 10
    assert torch.equal(part.train.x, full.train.x[:50])


def test_gz_files_are_unpacked(tmp_path: Path) -> None:
    write_dataset(tmp_path, "FashionMNIST", compress=True)
    data = load_data(cfg(tmp_path, name="fashion_mnist"), torch.device("cpu"))
    assert len(data.train) == 320
    assert (tmp_path / "FashionMNIST/raw/train-images-idx3-ubyte").is_file()


@pytest.mark.parametrize("damage, reason", [
    (lambda data: data[:len(data) // 2], "Compressed file ended before the end-of-stream marker was reached"),
    (lambda data: b"not a gzip file at all", "Not a gzipped file"),
    (lambda data: data[:20] + bytes(64) + data[84:], "invalid"),
])
def test_a_damaged_archive_is_one_line_and_leaves_nothing_behind(tmp_path: Path, damage, reason: str) -> None:
    raw = write_dataset(tmp_path, compress=True) / "MNIST" / "raw"
    packed = raw / "train-images-idx3-ubyte.gz"
    packed.write_bytes(damage(packed.read_bytes()))
    before = sorted(p.name for p in raw.iterdir())
    with pytest.raises(RegrunError) as info:
        load_data(cfg(tmp_path), torch.device("cpu"))
    assert str(info.value).startswith(f"{packed}: not a whole gzip file (") and reason in str(info.value)
    assert sorted(p.name for p in raw.iterdir()) == before  # no partial file, no temporary file


def test_a_read_only_data_folder_is_unpacked_into_the_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import builtins
    import gzip

    from regrun.components.datasets import mnist  # the module that unpacks: its `open` is patched

    raw = write_dataset(tmp_path / "data", compress=True) / "MNIST" / "raw"
    (raw / "train-labels-idx1-ubyte").write_bytes(gzip.decompress((raw / "train-labels-idx1-ubyte.gz").read_bytes()))
    before = {p.name: p.read_bytes() for p in raw.iterdir()}

    def read_only(path: object, mode: str = "r", *args: object, **kwargs: object) -> object:
        if "w" in mode and Path(str(path)).parent == raw:  # as a read-only mount answers
            raise PermissionError(13, "Permission denied", str(path))
        return builtins.open(path, mode, *args, **kwargs)

    monkeypatch.setattr(mnist, "open", read_only, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    data = load_data(cfg(tmp_path / "data"), torch.device("cpu"))
    assert len(data.train) == 320 and len(data.test) == 160
    assert {p.name: p.read_bytes() for p in raw.iterdir()} == before  # the data folder untouched
    cached = mnist.unpack_dir(raw)
    assert cached.parent == tmp_path / "cache" / "regrun" / "unpacked"
    assert (cached / "train-labels-idx1-ubyte").is_symlink()  # already unpacked: used where it is
    assert torch.equal(load_data(cfg(tmp_path / "data"), torch.device("cpu")).train.x, data.train.x)  # reused


def test_missing_files_offline_name_the_folder_and_files(tmp_path: Path) -> None:
    with pytest.raises(RegrunError) as info:
        load_data(cfg(tmp_path), torch.device("cpu"))
    msg = str(info.value)
    assert f"{tmp_path}/MNIST/raw lacks train-images-idx3-ubyte, train-labels-idx1-ubyte" in msg
    assert "dataset.root=DIR" in msg and "\n" not in msg


def test_failed_download_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_network(*args: object, **kwargs: object) -> None:
        raise OSError("network unreachable")

    monkeypatch.setattr(type(IDX_DATASETS["mnist"]), "download", no_network)
    with pytest.raises(RegrunError, match=r"download failed \(OSError\) and .*MNIST/raw lacks"):
        load_data(cfg(tmp_path, download=True), torch.device("cpu"))


def test_corrupt_idx_file_is_one_line(tmp_path: Path) -> None:
    write_dataset(tmp_path)
    (tmp_path / "MNIST/raw/train-images-idx3-ubyte").write_bytes(b"\x00\x00\x08\x03garbage")
    with pytest.raises(RegrunError, match="train-images-idx3-ubyte: not an IDX file of unsigned bytes"):
        load_data(cfg(tmp_path), torch.device("cpu"))


def test_truncated_idx_file_says_how_many_bytes_it_lacks(tmp_path: Path) -> None:
    write_dataset(tmp_path)  # 320 train images of 28×28: a 16-byte header and 250880 bytes
    images = tmp_path / "MNIST/raw/train-images-idx3-ubyte"
    images.write_bytes(images.read_bytes()[:5000])
    with pytest.raises(RegrunError, match=r"5000 bytes, but its header \(320×28×28\) needs 250896"):
        load_data(cfg(tmp_path), torch.device("cpu"))


def test_unknown_dataset_lists_the_known_ones(tmp_path: Path) -> None:
    with pytest.raises(RegrunError, match="unknown dataset 'cifar'; allowed: mnist, fashion_mnist, kmnist, cifar10"):
        load_data(cfg(tmp_path, name="cifar"), torch.device("cpu"))


def test_batches_cover_every_sample_once_and_are_seeded() -> None:
    split = Split(torch.arange(10.0).view(10, 1), torch.arange(10))
    first = [y.tolist() for _, y in batches(split, 4, torch.Generator().manual_seed(0))]
    again = [y.tolist() for _, y in batches(split, 4, torch.Generator().manual_seed(0))]
    assert first == again and [len(b) for b in first] == [4, 4, 2]
    assert sorted(i for batch in first for i in batch) == list(range(10))
    assert [y.tolist() for _, y in chunks(split, 6)] == [list(range(6)), list(range(6, 10))]


def test_every_dataset_names_its_natural_task() -> None:
    assert {name: DATASETS[name].task for name in DATASETS} == {
        "mnist": "classification", "fashion_mnist": "classification", "kmnist": "classification",
        "cifar10": "classification", "tensors": None, "toy_regression": "regression", "teacher": "classification"}


# CIFAR-10


def test_cifar_files_are_torchvisions() -> None:
    from torchvision.datasets import CIFAR10

    from regrun.components.datasets import CIFAR_FOLDER, CIFAR_META, CIFAR_TEST, CIFAR_TRAIN

    assert CIFAR10.base_folder == CIFAR_FOLDER and CIFAR10.meta["filename"] == CIFAR_META
    assert [*CIFAR_TRAIN, *CIFAR_TEST] == [name for name, _ in CIFAR10.train_list + CIFAR10.test_list]


def test_cifar_reads_the_pickles_as_torchvision_does(tmp_path: Path) -> None:
    write_cifar(tmp_path, per_batch=6, n_test=5)
    data = load_data({"name": "cifar10", "root": str(tmp_path), "download": False}, torch.device("cpu"))
    assert data.train.x.shape == (30, 3, 32, 32) and data.test.x.shape == (5, 3, 32, 32)
    # torchvision's own reading: pickle.load(encoding="latin1"), then reshape to N×3×32×32
    with open(tmp_path / "cifar-10-batches-py/data_batch_2", "rb") as f:
        theirs = pickle.load(f, encoding="latin1")
    pixels = torch.tensor(theirs["data"]).view(-1, 3, 32, 32).float() / 255
    mean, std = torch.tensor(CIFAR_MEAN).view(1, 3, 1, 1), torch.tensor(CIFAR_STD).view(1, 3, 1, 1)
    torch.testing.assert_close(data.train.x[6:12], (pixels - mean) / std)
    assert data.train.y[6:12].tolist() == theirs["labels"]


def test_cifar_limit_reads_the_first_samples(tmp_path: Path) -> None:
    write_cifar(tmp_path, per_batch=6, n_test=5)
    full = load_data({"name": "cifar10", "root": str(tmp_path)}, torch.device("cpu"))
    part = load_data({"name": "cifar10", "root": str(tmp_path), "train_limit": 8}, torch.device("cpu"))
    assert torch.equal(part.train.x, full.train.x[:8])


def test_cifar_pickle_of_anything_else_is_refused(tmp_path: Path) -> None:
    import os

    write_cifar(tmp_path, per_batch=2, n_test=2)
    batch = tmp_path / "cifar-10-batches-py/data_batch_3"
    write_pickle(batch, {"data": os.system, "labels": []})  # would call a function on load in a plain unpickler
    with pytest.raises(RegrunError) as info:
        load_data({"name": "cifar10", "root": str(tmp_path)}, torch.device("cpu"))
    assert f"{batch}: not a CIFAR batch (UnpicklingError: refused to unpickle posix.system)" in str(info.value)
    assert "\n" not in str(info.value)


def test_numpy_2_spelling_of_arrays_is_read_too(tmp_path: Path) -> None:
    write_cifar(tmp_path, per_batch=2, n_test=2)
    batch = tmp_path / "cifar-10-batches-py/test_batch"
    images = np.zeros((2, 3072), np.uint8)
    write_pickle(batch, {"data": images, "labels": [3, 4]}, python2_names=False)
    assert b"numpy._core.multiarray" in batch.read_bytes()
    data = load_data({"name": "cifar10", "root": str(tmp_path)}, torch.device("cpu"))
    assert data.test.y.tolist() == [3, 4]


@pytest.mark.parametrize("batch, message", [
    ({"data": np.zeros((2, 3000), np.uint8), "labels": [1, 2]}, "'data' is a uint8 array of shape (2, 3000); expected an N×3072 uint8 array"),
    ({"data": np.zeros((2, 3072), np.uint8), "labels": [1]}, "'labels' should be a list of 2 integers in 0..9"),
    ({"data": np.zeros((2, 3072), np.uint8), "labels": [1, 10]}, "'labels' should be a list of 2 integers in 0..9"),
    ([1, 2], "holds a list, not the dict of a CIFAR batch"),
])
def test_cifar_batch_of_another_shape_is_one_line(tmp_path: Path, batch: object, message: str) -> None:
    write_cifar(tmp_path, per_batch=2, n_test=2)
    write_pickle(tmp_path / "cifar-10-batches-py/test_batch", batch)
    with pytest.raises(RegrunError, match="test_batch: " + message.replace("(", r"\(").replace(")", r"\)")):
        load_data({"name": "cifar10", "root": str(tmp_path)}, torch.device("cpu"))


def test_cifar_truncated_pickle_is_one_line(tmp_path: Path) -> None:
    write_cifar(tmp_path, per_batch=2, n_test=2)
    batch = tmp_path / "cifar-10-batches-py/data_batch_1"
    batch.write_bytes(batch.read_bytes()[:100])
    with pytest.raises(RegrunError, match=r"data_batch_1: not a CIFAR batch \((EOFError|UnpicklingError)"):
        load_data({"name": "cifar10", "root": str(tmp_path)}, torch.device("cpu"))


def test_cifar_missing_files_offline_say_where_to_put_them(tmp_path: Path) -> None:
    with pytest.raises(RegrunError) as info:
        load_data({"name": "cifar10", "root": str(tmp_path)}, torch.device("cpu"))
    assert str(info.value) == (
        f"dataset cifar10: download is off (dataset.download=false) and {tmp_path}/cifar-10-batches-py lacks "
        "data_batch_1, data_batch_2, data_batch_3, data_batch_4, data_batch_5, test_batch, batches.meta; unpack "
        "torchvision's cifar-10-python.tar.gz there, or point dataset.root=DIR at a folder holding cifar-10-batches-py/")


# tensors


@pytest.mark.parametrize("suffix", [".npz", ".pt"])
def test_tensors_with_integer_targets_are_classes(tmp_path: Path, suffix: str) -> None:
    path = write_tensors(tmp_path / f"data{suffix}")
    source = open_dataset({"name": "tensors", "path": str(path)})
    assert source.spec.task == "classification" and source.spec.num_classes == 3
    assert source.spec.input_shape == (3, 4)
    data = load_data({"name": "tensors", "path": str(path)}, torch.device("cpu"), source)
    assert data.train.x.dtype == torch.float32 and data.train.y.dtype == torch.int64
    assert len(data.train) == 64 and len(data.test) == 32


@pytest.mark.parametrize("suffix", [".npz", ".pt"])
def test_tensors_with_float_targets_are_values(tmp_path: Path, suffix: str) -> None:
    path = write_tensors(tmp_path / f"data{suffix}", "values")
    source = open_dataset({"name": "tensors", "path": str(path)})
    assert (source.spec.task, source.spec.targets, source.spec.target_shape) == ("regression", "values", (2,))
    data = load_data({"name": "tensors", "path": str(path)}, torch.device("cpu"), source)
    assert data.train.y.shape == (64, 2) and data.train.y.dtype == torch.float32


def test_tensors_num_classes_entry_counts_classes_never_seen(tmp_path: Path) -> None:
    path = write_tensors(tmp_path / "data.npz", num_classes=np.array(7))
    assert open_dataset({"name": "tensors", "path": str(path)}).spec.num_classes == 7


def arrays(**changes: object) -> dict:
    rng = np.random.default_rng(0)
    base = {"x_train": rng.normal(size=(6, 2)), "y_train": np.arange(6) % 2,
            "x_test": rng.normal(size=(4, 2)), "y_test": np.arange(4) % 2}
    return {k: v for k, v in (base | changes).items() if v is not None}


@pytest.mark.parametrize("changes, message", [
    ({"y_test": None}, "lacks y_test; a tensors file holds x_train, y_train, x_test, y_test (and optionally num_classes)"),
    ({"y_train": np.arange(5) % 2}, "x_train has 6 samples but y_train 5; allowed: as many of each"),
    ({"x_test": np.zeros((4, 3))}, "x_test holds float (3,) samples but x_train float (2,); allowed: the same shape"),
    ({"y_test": np.zeros(4)}, "y_test holds float () samples but y_train integer ()"),
    ({"x_train": np.zeros(6)}, "x_train has shape (6,); allowed: (N, ...) with N samples and at least 1 more axis"),
    ({"x_test": np.zeros((0, 2))}, "x_test is empty; allowed: at least one sample"),
    ({"x_train": np.array([[0.0, 1], [np.nan, 2], [0, 0], [0, 0], [0, 0], [0, 0]])},
     "x_train holds NaN or infinite values (first at sample 1); allowed: finite numbers"),
    ({"y_train": np.array([0, 1, -1, 0, 1, 0])}, "y_train holds integers of shape (6,), from -1; class labels are"),
    ({"x_train": np.zeros((6, 2), bool)}, "x_train has dtype torch.bool; allowed: floating point or integer numbers"),
    ({"num_classes": np.array(1)}, "num_classes=1 but the labels reach 1; allowed: an integer above 1"),
])
def test_bad_tensors_file_is_one_line_naming_file_and_array(tmp_path: Path, changes: dict, message: str) -> None:
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays(**changes))
    with pytest.raises(RegrunError) as info:
        open_dataset({"name": "tensors", "path": str(path)})
    assert str(info.value).startswith(f"{path}: {message}") and "\n" not in str(info.value)


@pytest.mark.parametrize("path, message", [
    (None, "dataset.path: dataset tensors needs a file; set dataset.path=FILE (.npz or .pt)"),
    ("data.csv", "dataset.path=data.csv: unknown file type '.csv'; allowed: .npz, .pt"),
    ("nowhere.npz", "dataset.path=nowhere.npz: no such file"),
])
def test_tensors_path_problems_are_one_line(path: str | None, message: str) -> None:
    with pytest.raises(RegrunError, match=message.replace("(", r"\(").replace(")", r"\)")):
        open_dataset({"name": "tensors", "path": path})


def test_object_arrays_and_pickles_are_refused(tmp_path: Path) -> None:
    npz, pt = tmp_path / "objects.npz", tmp_path / "objects.pt"
    np.savez(npz, **arrays(x_train=np.array([{"a": 1}] * 6, dtype=object)))
    torch.save({**{k: torch.as_tensor(v) for k, v in arrays().items()}, "extra": Path("x")}, pt)
    for path in (npz, pt):
        with pytest.raises(RegrunError, match=f"{path}: not a readable {path.suffix} file of arrays"):
            open_dataset({"name": "tensors", "path": str(path)})


def test_corrupt_npz_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "broken.npz"
    path.write_bytes(b"PK\x03\x04garbage")
    with pytest.raises(RegrunError, match=f"{path}: not a readable .npz file of arrays"):
        open_dataset({"name": "tensors", "path": str(path)})


# toy_regression


def test_toy_regression_is_x_squared_plus_bounded_noise() -> None:
    cfg = {"name": "toy_regression", "train_size": 500, "test_size": 100, "noise": 0.2, "seed": 3}
    data = load_data(cfg, torch.device("cpu"))
    assert data.train.x.shape == (500, 1) and data.test.y.shape == (100, 1)
    for split in (data.train, data.test):
        residual = split.y - split.x.square()
        assert split.x.abs().max() <= 1 and residual.min() >= 0 and residual.max() < 0.2
    again = load_data(cfg | {"test_size": 50}, torch.device("cpu"))
    assert torch.equal(again.train.x, data.train.x)  # the test size leaves the training samples alone
    other = load_data(cfg | {"seed": 4}, torch.device("cpu"))
    assert not torch.equal(other.train.x, data.train.x)


@pytest.mark.parametrize("key, value, message", [
    ("train_size", 0, "dataset.train_size must be a positive integer, got 0"),
    ("noise", -1, "dataset.noise must be a finite number ≥ 0, got -1"),
    ("seed", "a", "dataset.seed must be an integer ≥ 0, got 'a'"),
])
def test_toy_regression_bad_options_are_one_line(key: str, value: object, message: str) -> None:
    with pytest.raises(RegrunError, match=message):
        open_dataset({"name": "toy_regression", key: value})


# teacher


def test_teacher_labels_are_the_argmax_of_one_linear_teacher() -> None:
    cfg = {"name": "teacher", "features": 8, "classes": 3, "train_size": 300, "test_size": 100, "seed": 5}
    data = load_data(cfg, torch.device("cpu"))
    assert data.train.x.shape == (300, 8) and data.test.y.shape == (100,)
    x = torch.cat([data.train.x, data.test.x]) - 0.5
    y = torch.cat([data.train.y, data.test.y])
    assert x.min() + 0.5 >= 0 and x.max() + 0.5 < 1
    # One linear map labels every sample: least squares on one-hot labels of a linear
    # teacher's arg-max separates them as the teacher does on most samples.
    teacher = torch.linalg.lstsq(x, torch.nn.functional.one_hot(y, 3).float()).solution
    assert ((x @ teacher).argmax(1) == y).float().mean() > 0.8
    assert set(y.tolist()) == {0, 1, 2}
    again = load_data(cfg, torch.device("cpu"))
    assert torch.equal(again.train.y, data.train.y) and torch.equal(again.test.x, data.test.x)


# the validation split


@pytest.mark.parametrize("size, count", [(40, 40), (0.25, 80)])
def test_val_split_is_held_out_of_the_training_set(tiny_root: Path, size: float, count: int) -> None:
    full = load_data(cfg(tiny_root), torch.device("cpu"))
    data = load_data(cfg(tiny_root, val_size=size, val_seed=1), torch.device("cpu"))
    assert len(data.val) == count and len(data.train) == 320 - count and len(data.test) == 160
    rows = {tuple(row.tolist()) for row in full.train.x.flatten(1)}
    held, kept = ({tuple(r.tolist()) for r in s.x.flatten(1)} for s in (data.val, data.train))
    assert held | kept == rows and not held & kept
    again = load_data(cfg(tiny_root, val_size=size, val_seed=1), torch.device("cpu"))
    other = load_data(cfg(tiny_root, val_size=size, val_seed=2), torch.device("cpu"))
    assert torch.equal(again.val.x, data.val.x) and not torch.equal(other.val.x, data.val.x)


@pytest.mark.parametrize("size, message", [
    (0, "dataset.val_size must be a sample count ≥ 1, a fraction in (0, 1), or null; got 0"),
    (1.0, "dataset.val_size must be a sample count ≥ 1, a fraction in (0, 1), or null; got 1.0"),
    ("10", "dataset.val_size must be an integer or a number (a sample count ≥ 1 or a fraction in (0, 1)) or null, "
           "got '10'"),
    (True, "dataset.val_size must be an integer or a number (a sample count ≥ 1 or a fraction in (0, 1)) or null, "
           "got True"),
    (320, "dataset.val_size=320 holds out 320 of the 320 training samples; allowed: 1 to 319 samples"),
    (0.001, "dataset.val_size=0.001 holds out 0 of the 320 training samples"),
])
def test_bad_val_size_is_one_line(tiny_root: Path, size: object, message: str) -> None:
    with pytest.raises(RegrunError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_data(cfg(tiny_root, val_size=size), torch.device("cpu"))


# what a file really is, and values that only go wrong once converted


@pytest.mark.parametrize("content, kind", [
    (b"x_train,y_train\n0.5,1\n", "text (starts with 'x_train,y_train')"),
    (b"", "an empty file"),
    (b"\x1f\x8b\x08\x00rest", "a gzip file"),
    (b"\x93NUMPY\x01\x00rest", "a single .npy array"),
    (b"\x00\x01\x02\x03\xff\xfe", "binary data of an unknown kind (starts with b'\\x00\\x01\\x02\\x03\\xff\\xfe')"),
])
def test_a_file_that_is_not_an_archive_is_named_for_what_it_is(tmp_path: Path, content: bytes, kind: str) -> None:
    path = tmp_path / "data.npz"
    path.write_bytes(content)
    with pytest.raises(RegrunError) as info:
        open_dataset({"name": "tensors", "path": str(path)})
    assert str(info.value) == f"{path}: {kind}, not a .npz file of arrays; allowed: a file np.savez wrote"


def test_a_directory_named_npz_is_said_to_be_a_directory(tmp_path: Path) -> None:
    (tmp_path / "data.npz").mkdir()
    with pytest.raises(RegrunError, match=r"dataset.path=\S+data.npz: a directory; allowed: a .npz file$"):
        open_dataset({"name": "tensors", "path": str(tmp_path / "data.npz")})


BEYOND_FLOAT32 = np.zeros((6, 2))
BEYOND_FLOAT32[4, 1] = 1e300  # finite in float64, infinite in float32


@pytest.mark.parametrize("changes, message", [
    ({"x_train": BEYOND_FLOAT32}, "x_train holds values beyond float32's range (largest |value| 1e+300, first at "
                                  "sample 4); allowed: finite numbers within ±3.4e+38, since training runs in float32"),
    ({"y_train": np.array([0, 1, 10**9, 0, 1, 0])},  # an id, not a class index
     "y_train/y_test's largest label is 1000000000: a head of 1000000001 classes for 10 samples; allowed: labels "
     "0..C−1 with C at most 100000 (relabel the classes 0, 1, 2, ...)"),
])
def test_values_that_would_fail_only_in_training_are_refused_when_read(tmp_path: Path, changes: dict,
                                                                       message: str) -> None:
    path = tmp_path / "data.npz"
    np.savez(path, **arrays(**changes))
    with pytest.raises(RegrunError) as info:
        open_dataset({"name": "tensors", "path": str(path)})
    assert str(info.value) == f"{path}: {message}"


def test_many_classes_are_allowed_when_the_samples_are_as_many(tmp_path: Path) -> None:
    path = tmp_path / "many.npz"
    n = 100_002
    np.savez(path, x_train=np.zeros((n, 1), np.float32), y_train=np.arange(n), x_test=np.zeros((1, 1), np.float32),
             y_test=np.zeros(1, np.int64))
    assert open_dataset({"name": "tensors", "path": str(path)}).spec.num_classes == n
