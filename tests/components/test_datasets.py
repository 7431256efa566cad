"""Dataset loading: torchvision's layout and file names, .gz files, missing or bad files, batches."""

from pathlib import Path

import pytest
import torch

from regrun.components.datasets import DATASETS, Split, batches, chunks, load_data
from regrun.errors import RegrunError

from conftest import write_dataset


def cfg(root: Path, **kw: object) -> dict:
    return {"name": "mnist", "root": str(root), "download": False} | kw


@pytest.mark.parametrize("name", sorted(DATASETS))
def test_files_and_folders_are_torchvisions(name: str) -> None:
    from torchvision import datasets

    info = DATASETS[name]
    cls = getattr(datasets, info.folder)
    assert info.raw_dir("/r") == Path("/r") / cls.__name__ / "raw"
    assert info.raw_files() == [Path(url).name.removesuffix(".gz") for url, _ in cls.resources]


def test_reads_what_torchvision_reads(tiny_root: Path) -> None:
    from torchvision import datasets

    data = load_data(cfg(tiny_root), torch.device("cpu"))
    theirs = datasets.MNIST(str(tiny_root), train=True, download=False)
    info = DATASETS["mnist"]
    assert torch.equal(data.train.y, theirs.targets)
    assert torch.allclose(data.train.x, (theirs.data.unsqueeze(1).float() / 255 - info.mean) / info.std)


def test_loads_normalised_tensors(tiny_root: Path) -> None:
    data = load_data(cfg(tiny_root), torch.device("cpu"))
    assert data.train.x.dtype == torch.float32 and data.train.y.dtype == torch.int64
    info = DATASETS["mnist"]
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

    from regrun.components import datasets

    raw = write_dataset(tmp_path / "data", compress=True) / "MNIST" / "raw"
    (raw / "train-labels-idx1-ubyte").write_bytes(datasets.gzip.decompress((raw / "train-labels-idx1-ubyte.gz").read_bytes()))
    before = {p.name: p.read_bytes() for p in raw.iterdir()}

    def read_only(path: object, mode: str = "r", *args: object, **kwargs: object) -> object:
        if "w" in mode and Path(str(path)).parent == raw:  # as a read-only mount answers
            raise PermissionError(13, "Permission denied", str(path))
        return builtins.open(path, mode, *args, **kwargs)

    monkeypatch.setattr(datasets, "open", read_only, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    data = load_data(cfg(tmp_path / "data"), torch.device("cpu"))
    assert len(data.train) == 320 and len(data.test) == 160
    assert {p.name: p.read_bytes() for p in raw.iterdir()} == before  # the data folder untouched
    cached = datasets.unpack_dir(raw)
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

    monkeypatch.setattr(type(DATASETS["mnist"]), "download", no_network)
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
    with pytest.raises(RegrunError, match="unknown dataset 'cifar'; allowed: mnist, fashion_mnist, kmnist"):
        load_data(cfg(tmp_path, name="cifar"), torch.device("cpu"))


def test_batches_cover_every_sample_once_and_are_seeded() -> None:
    split = Split(torch.arange(10.0).view(10, 1), torch.arange(10))
    first = [y.tolist() for _, y in batches(split, 4, torch.Generator().manual_seed(0))]
    again = [y.tolist() for _, y in batches(split, 4, torch.Generator().manual_seed(0))]
    assert first == again and [len(b) for b in first] == [4, 4, 2]
    assert sorted(sum(first, [])) == list(range(10))
    assert [y.tolist() for _, y in chunks(split, 6)] == [list(range(6)), list(range(6, 10))]
