"""Shared fixtures: tiny datasets written on the fly (IDX, CIFAR pickles, tensor files),
composed configs, a user's model file."""

import gzip
import os
import pickle
import signal
import struct
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from regrun.config import conf_dir
from regrun.jobs.signals import StopRequest

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


# A model of the user's own, as a file in the working directory: residual blocks in a
# ModuleList, not nn.Sequential, and one activation module (`act`) called twice per forward.
# Beside it, factories that go wrong in each way `model.factory` reports.
USER_MODELS = '''
import math

from torch import nn

WIDTH = 16


class Block(nn.Module):
    """x + fc2(act(fc1(x)))"""

    def __init__(self, width):
        super().__init__()
        self.fc1, self.act, self.fc2 = nn.Linear(width, width), nn.ReLU(), nn.Linear(width, width)

    def forward(self, x):
        return x + self.fc2(self.act(self.fc1(x)))


class ResNet(nn.Module):
    def __init__(self, input_shape, num_outputs, width, depth):
        super().__init__()
        self.stem = nn.Linear(math.prod(input_shape), width)
        self.act = nn.ReLU()  # after the stem and again before the head
        self.blocks = nn.ModuleList(Block(width) for _ in range(depth))
        self.head = nn.Linear(width, num_outputs)

    def forward(self, x):
        h = self.act(self.stem(x.flatten(1)))
        for block in self.blocks:
            h = block(h)
        return self.head(self.act(h))


def make_net(shape, outputs, width=WIDTH, depth=2):
    return ResNet(shape, outputs, width, depth)


def returns_dict(shape, outputs):
    return {"not": "a module"}


def explodes(shape, outputs):
    raise RuntimeError("out of memory\\nsecond line")
'''
# A model of the user's own that waits where the test wants to send its signal: in its
# factory (start-up) while `slow_start` exists, in an evaluation batch (of 7 samples:
# the check of the model's output uses 2) while `slow_eval` exists.
SLOW_MODELS = '''
import math
import time
from pathlib import Path

from torch import nn


class Net(nn.Module):
    def __init__(self, shape, outputs):
        super().__init__()
        self.flatten, self.fc, self.act, self.head = nn.Flatten(), nn.Linear(math.prod(shape), 16), nn.ReLU(), \\
            nn.Linear(16, outputs)

    def forward(self, x):
        if not self.training and x.shape[0] == 7 and Path("slow_eval").exists():
            Path("evaluating").touch()
            time.sleep(0.2)
        return self.head(self.act(self.fc(self.flatten(x))))


def net(shape, outputs):
    if Path("slow_start").exists():
        Path("starting").touch()
        time.sleep(120)
    return Net(shape, outputs)
'''


# Models that end the process their own way: sys.exit in a factory, at import, or in a
# forward (in training at step `step`, in an evaluation, or on the example batch).
EXITING_MODELS = '''
import math
import sys

from torch import nn


def exits(shape, outputs):
    sys.exit(0)


class Net(nn.Module):
    def __init__(self, shape, outputs, where, step):
        super().__init__()
        self.fc = nn.Linear(math.prod(shape), outputs)
        self.where, self.step, self.steps = where, step, 0

    def forward(self, x):
        self.steps += self.training
        if self.where == "check" or (self.where == "train" and self.training and self.steps == self.step) or \\
                (self.where == "eval" and not self.training and x.shape[0] > 2):
            sys.exit(7)
        return self.fc(x.flatten(1))


def net(shape, outputs, where="train", step=3):
    return Net(shape, outputs, where, step)
'''
# Penalty functions for `penalty: my_penalties:NAME`, good and bad.
USER_PENALTIES = '''
def squared_l1(x, dims=None):
    """(Σ|x|)²"""
    return (x.abs().sum() if dims is None else x.abs().sum(dim=dims)).square()


def no_dims(x):
    return x.abs().sum()


def vector(x, dims=None):
    return x.abs()


def raises(x, dims=None):
    raise ValueError("bad penalty")


def nan(x, dims=None):
    return x.sum() * float("nan")


def two_tensors(x, y, dims=None):
    return (x - y).sum()


NOT_A_FUNCTION = 3
'''

FAILING_MODULES = {
    "my_penalties.py": USER_PENALTIES,
    "needs_missing_package.py": "import package_that_is_not_installed\n",
    "fails_on_import.py": "raise RuntimeError('no GPU here')\n",
    "bad_syntax.py": "def make_net(:\n",
    "exits_on_import.py": "import sys\n\nsys.exit(3)\n",
    "exiting_models.py": EXITING_MODELS,
}


@pytest.fixture
def user_models(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A working directory holding my_models.py (USER_MODELS) and FAILING_MODULES; the
    modules imported from it and its sys.path entry are gone afterwards."""
    folder = tmp_path / "work"
    folder.mkdir()
    (folder / "my_models.py").write_text(USER_MODELS)
    for name, text in FAILING_MODULES.items():
        (folder / name).write_text(text)
    monkeypatch.chdir(folder)
    monkeypatch.setattr(sys, "path", list(sys.path))
    yield folder
    for name in ["my_models", *(Path(n).stem for n in FAILING_MODULES)]:
        sys.modules.pop(name, None)


TINY_PLUGIN = ("import math\nfrom torch import nn\n\n\n"
               "def tiny(input_shape, num_outputs, width=1):\n"
               "    return nn.Linear(width * math.prod(input_shape), num_outputs)\n")


def write_plugin(root: Path, code: str = TINY_PLUGIN) -> Path:
    """An installed package, as site-packages holds it, whose entry point registers model
    `tiny` from a module of `code`."""
    site = root / "site"
    (site / "tiny_plugin-0.1.dist-info").mkdir(parents=True)
    (site / "tiny_plugin-0.1.dist-info" / "METADATA").write_text("Metadata-Version: 2.1\nName: tiny-plugin\nVersion: 0.1\n")
    (site / "tiny_plugin-0.1.dist-info" / "entry_points.txt").write_text("[regrun.models]\ntiny = tiny_plugin:tiny\n")
    (site / "tiny_plugin.py").write_text(code)
    return site


@pytest.fixture
def keep_signal_handlers() -> Iterator[None]:
    """regrun's main() installs its stop handlers; give pytest its own back afterwards."""
    saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    yield
    for s, handler in saved.items():
        signal.signal(s, handler)


@pytest.fixture
def request_(keep_signal_handlers: None) -> Iterator[StopRequest]:
    """A stop request with its handlers installed; pytest's own handlers put back afterwards."""
    stop = StopRequest()
    stop.install()
    yield stop


REGRUN = str(Path(sys.executable).parent / "regrun")  # the console script beside this Python


def regrun(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """Run the real `regrun` command in a subprocess, as a user would."""
    env = os.environ | {"COLUMNS": "160", "HYDRA_FULL_ERROR": ""}
    return subprocess.run([REGRUN, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


class StopAfter:
    """Stands in for the process's stop request (regrun.jobs.run.STOP): true from the n-th check on."""

    name = "SIGTERM"

    def __init__(self, n: int) -> None:
        self.calls, self.n = 0, n

    def __call__(self) -> bool:
        self.calls += 1
        return self.calls > self.n
