"""Shared fixtures: tiny datasets written on the fly (IDX, CIFAR pickles, tensor files), and
composed configs."""

import gzip
import pickle
import struct
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from regrun.cli import conf_dir

IDX_TYPE_UBYTE = 0x08


def write_idx(path: Path, array: np.ndarray, compress: bool = False) -> None:
    """Write a uint8 array in the IDX format torchvision's MNIST classes read."""
    header = struct.pack(">BBBB", 0, 0, IDX_TYPE_UBYTE, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    payload = header + array.astype(np.uint8).tobytes()
    if compress:
        path = path.with_name(path.name + ".gz")
        payload = gzip.compress(payload)
    path.write_bytes(payload)


def make_images(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Learnable 28×28 images: class k lights up row band k, plus noise."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, n).astype(np.uint8)
    images = rng.integers(0, 60, (n, 28, 28)).astype(np.uint8)
    for i, k in enumerate(labels):
        images[i, 2 + 2 * k: 4 + 2 * k, 4:24] = 250
    return images, labels


def write_dataset(root: Path, folder: str = "MNIST", n_train: int = 320, n_test: int = 160, compress: bool = False) -> Path:
    """A tiny dataset in torchvision's layout, <root>/<folder>/raw/; returns root."""
    raw = root / folder / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for prefix, n, seed in (("train", n_train, 0), ("t10k", n_test, 1)):
        images, labels = make_images(n, seed)
        write_idx(raw / f"{prefix}-images-idx3-ubyte", images, compress)
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", labels, compress)
    return root


def write_pickle(path: Path, value: object, python2_names: bool = True) -> None:
    """Pickle with protocol 2 as the CIFAR files are; with `python2_names`, numpy's array
    rebuilder is spelled as in the real files (numpy.core.multiarray), not as numpy 2 spells it."""
    data = pickle.dumps(value, protocol=2)
    if python2_names:
        data = data.replace(b"numpy._core.multiarray\n", b"numpy.core.multiarray\n")
    path.write_bytes(data)


def write_cifar(root: Path, per_batch: int = 20, n_test: int = 40) -> Path:
    """Tiny CIFAR-10 in torchvision's layout, <root>/cifar-10-batches-py/; returns root.

    Learnable: class k brightens channel k % 3 of row band k."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for name, n in [*((f"data_batch_{i}", per_batch) for i in range(1, 6)), ("test_batch", n_test)]:
        labels = rng.integers(0, 10, n)
        images = rng.integers(0, 60, (n, 3, 32, 32)).astype(np.uint8)
        for i, k in enumerate(labels):
            images[i, k % 3, 3 * k: 3 * k + 3] = 250
        write_pickle(folder / name, {"batch_label": name, "labels": [int(k) for k in labels],
                                     "data": images.reshape(n, 3072), "filenames": [f"{i}.png" for i in range(n)]})
    write_pickle(folder / "batches.meta", {"num_cases_per_batch": per_batch, "num_vis": 3072,
                                           "label_names": [f"class{k}" for k in range(10)]})
    return root


def write_tensors(path: Path, targets: str = "labels", n_train: int = 64, n_test: int = 32, **extra: object) -> Path:
    """A tensors file (.npz or .pt by `path`'s suffix) of 3×4 inputs; targets "labels"
    (integers 0..2, from the inputs) or "values" (floats (N, 2), a linear map of them)."""
    rng = np.random.default_rng(0)
    arrays: dict[str, object] = {}
    for split, n in (("train", n_train), ("test", n_test)):
        x = rng.normal(size=(n, 3, 4)).astype(np.float32)
        y = (x[:, 0, 0] > 0).astype(np.int64) + (x[:, 1, 0] > 0) if targets == "labels" else \
            np.stack([x[:, 0, 0] + x[:, 1, 1], x[:, 2, 3]], axis=1)
        arrays |= {f"x_{split}": x, f"y_{split}": y}
    arrays |= extra
    if path.suffix == ".pt":
        torch.save({k: torch.as_tensor(v) if isinstance(v, np.ndarray) else v for k, v in arrays.items()}, path)
    else:
        np.savez(path, **arrays)
    return path


@pytest.fixture(scope="session")
def tiny_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data root with tiny MNIST, FashionMNIST, KMNIST and CIFAR-10 folders."""
    root = tmp_path_factory.mktemp("data")
    for folder in ("MNIST", "FashionMNIST", "KMNIST"):
        write_dataset(root, folder)
    return write_cifar(root)


@pytest.fixture(scope="session")
def tensors_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny .npz of integer labels (classification)."""
    return write_tensors(tmp_path_factory.mktemp("tensors") / "data.npz")


@pytest.fixture
def make_cfg(tiny_root: Path, tensors_file: Path) -> Callable[..., dict]:
    """Compose the real conf/ with overrides into plain data, on the tiny data, on CPU.

    The dataset node's root, download and path point at the tiny files, where the chosen
    dataset has those keys and the overrides do not set them."""

    def _make(*overrides: str) -> dict:
        base = ["trainer.device=cpu", "trainer.epochs=1", "trainer.batch_size=32"]
        with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
            cfg = compose(config_name="config", overrides=base + list(overrides))
        cfg = OmegaConf.to_container(cfg, resolve=True)
        tiny = {"root": str(tiny_root), "download": False, "path": str(tensors_file)}
        for key, value in tiny.items():
            if key in cfg["dataset"] and not any(o.startswith(f"dataset.{key}=") for o in overrides):
                cfg["dataset"][key] = value
        return cfg

    return _make
