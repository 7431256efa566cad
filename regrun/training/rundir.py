"""The run directory: the files a run leaves for people and for `regrun compare`.

    config.json    the resolved config, written once it is validated
    targets.json   the resolved targets, written before training
    metrics.csv    one row per epoch (rewritten atomically after each epoch)
    checkpoint.pt  all that `regrun resume` needs (see regrun/checkpoint.py)
    summary.json   status (completed | interrupted | diverged | failed), final figures,
                   loss breakdown, per-layer sparsity, targets, environment, config
    model.pt       the model's state dict, when the run completed
"""

import csv
import io
import json
import os
import platform
import sys
from collections.abc import Mapping, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

import torch
from torch import nn

from regrun.errors import RegrunError
from regrun.training.targets import Target


def atomic_write(path: Path, text: str) -> None:
    """Write through a temporary file and a rename, so a reader never sees half a file."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


class RunDir:
    """Writes a run's files into one directory."""

    def __init__(self, path: Path):
        self.path = path
        try:
            path.mkdir(parents=True, exist_ok=True)
            atomic_write(path / ".writable", "")
            (path / ".writable").unlink()
        except OSError as err:
            raise RegrunError(f"output directory {path} cannot be written ({err.strerror}); set hydra.run.dir=DIR") from err
        self.rows: list[dict] = []

    def write_json(self, name: str, data: Any) -> None:
        """Write `data` as indented JSON to `name`."""
        atomic_write(self.path / name, json.dumps(data, indent=2, default=str) + "\n")

    def read_metrics(self) -> list[dict[str, Any]]:
        """The rows of an existing metrics.csv, numbers parsed; [] when there is none."""
        try:
            with open(self.path / "metrics.csv", newline="") as f:
                return [{k: _number(v) for k, v in row.items() if v != ""} for row in csv.DictReader(f)]
        except FileNotFoundError:
            return []

    def append_metrics(self, row: Mapping[str, Any]) -> None:
        """Add an epoch's row to metrics.csv (replacing a row of the same epoch, which a
        resumed run computes again); a column first seen later is added to the header."""
        kept = [r for r in self.rows if r["epoch"] != row["epoch"]]
        self.rows = sorted([*kept, dict(row)], key=lambda r: r["epoch"])
        columns = list(dict.fromkeys(key for r in self.rows for key in r))
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=columns, restval="", lineterminator="\n")
        writer.writeheader()
        writer.writerows(self.rows)
        atomic_write(self.path / "metrics.csv", out.getvalue())

    def save_model(self, model: nn.Module) -> None:
        """Save the model's state dict (as CPU tensors) to model.pt."""
        # CPU copies, so that a model trained on a GPU loads on any machine.
        torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, self.path / "model.pt")


def _number(text: str) -> int | float | str:
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def environment(device: torch.device, seed: int, wall_time_s: float) -> dict[str, Any]:
    """Versions, machine and device facts that make a run's figures interpretable."""
    packages = ("regrun", "torch", "torchvision", "hydra-core", "omegaconf", "rich", "numpy")
    versions = {}
    for name in packages:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return {
        "python": sys.version.split()[0], "platform": platform.platform(), "packages": versions,
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
        "torch_threads": torch.get_num_threads(), "seed": seed, "wall_time_s": wall_time_s,
        "argv": sys.argv,
    }


def loss_breakdown(row: Mapping[str, float], lambdas: Mapping[str, float]) -> dict[str, Any]:
    """Task loss, each penalty raw/λ/weighted, and the total, from a metrics row."""
    return {
        "task": row["train_task_loss"],
        "penalties": {name: {"raw": row[f"penalty.{name}.raw"], "lambda": lam,
                             "weighted": row[f"penalty.{name}.weighted"]} for name, lam in lambdas.items()},
        "penalty_total": row["train_penalty_total"],
        "total": row["train_total_loss"],
        "note": "means over the last epoch's training steps; total = task + Σ weighted",
    }


def mark_targeted(activations: Mapping[str, dict], weights: Sequence[dict], targets: Sequence[Target]) -> None:
    """Add to each per-layer row the names of the targets that penalize it."""
    for name, row in activations.items():
        row["targeted_by"] = [t.name for t in targets if t.on_activations and name in t.modules]
    for row in weights:
        row["targeted_by"] = [t.name for t in targets if row["name"] in t.params]
