"""Shared fixtures: tiny IDX datasets written on the fly, and composed configs."""

import gzip
import struct
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
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


@pytest.fixture(scope="session")
def tiny_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data root with tiny MNIST, FashionMNIST and KMNIST folders."""
    root = tmp_path_factory.mktemp("data")
    for folder in ("MNIST", "FashionMNIST", "KMNIST"):
        write_dataset(root, folder)
    return root


@pytest.fixture
def make_cfg(tiny_root: Path) -> Callable[..., dict]:
    """Compose the real conf/ with overrides into plain data, on the tiny data, on CPU."""

    def _make(*overrides: str) -> dict:
        base = [f"dataset.root={tiny_root}", "dataset.download=false", "trainer.device=cpu",
                "trainer.epochs=1", "trainer.batch_size=32"]
        with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
            cfg = compose(config_name="config", overrides=base + list(overrides))
        return OmegaConf.to_container(cfg, resolve=True)

    return _make
