"""The run directory: the files a run leaves for people and for `regrun compare`.

    config.json    the resolved config, written once it is validated
    targets.json   the resolved targets, written before training
    metrics.csv    one row per epoch (rewritten atomically after each epoch)
    checkpoint.pt  all that `regrun resume` needs (see regrun/checkpoint.py)
    summary.json   status (completed | interrupted | diverged | failed), final figures,
                   loss breakdown, per-layer sparsity, targets, environment, config
    model.pt       the model's state dict, when the run completed
"""

import contextlib
import csv
import io
import json
import math
import os
import platform
import sys
import traceback
from collections.abc import Callable, Mapping, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any, BinaryIO, cast

import torch
from torch import nn

from regrun.errors import RegrunError
from regrun.layout import (
    EPOCH,
    FAILED,
    METRICS,
    MODEL,
    PENALTY_TOTAL,
    SEED,
    STEP,
    STEPS,
    SUMMARY,
    TASK_LOSS,
    TOTAL_LOSS,
    penalty_column,
)
from regrun.training.targets import Target


class WriteFailed(RegrunError):
    """A run file could not be written (disk full, permissions, the folder removed)."""


class _Recording:
    """A file that remembers the OSError of a failed write: torch's writer reports one
    only as "unexpected pos", and the reason is what a user needs."""

    def __init__(self, file: BinaryIO):
        self.file = file
        self.error: OSError | None = None

    def write(self, data: bytes) -> int:
        try:
            return self.file.write(data)
        except OSError as err:
            self.error = err
            raise

    def flush(self) -> None:
        self.file.flush()


def write_atomically(path: Path, write: Callable[[BinaryIO], object]) -> None:
    """Write `path` through a temporary file beside it and a rename, so a reader (or a
    resume) never sees half a file; on failure the temporary file is removed, the old
    `path` is left as it was, and a one-line `WriteFailed` names `path` and the reason."""
    tmp = path.with_name(f".{path.name}.tmp")
    recording = None
    try:
        with open(tmp, "wb") as file:
            recording = _Recording(file)
            write(cast(BinaryIO, recording))  # it writes as the file does
        os.replace(tmp, path)
    except (OSError, RuntimeError) as err:  # RuntimeError: torch.save's report of a failed write
        cause = recording.error if recording and recording.error else err
        if isinstance(cause, RuntimeError):
            raise
        with contextlib.suppress(OSError):  # the folder itself may be gone
            tmp.unlink(missing_ok=True)
        raise WriteFailed(f"cannot write {path}: {cause.strerror or cause}") from err


def atomic_write(path: Path, text: str) -> None:
    """Write text through a temporary file and a rename (see `write_atomically`)."""
    write_atomically(path, lambda file: file.write(text.encode()))


def record_failure(path: Path, error: Exception | str, cfg: Any) -> bool:
    """Write a `failed` summary saying why, if the disk still allows it; True if written.

    A write failure (disk full, permissions) is marked resumable: the last checkpoint is
    intact, and once the cause is fixed `regrun resume` continues from it."""
    summary = {"status": FAILED, "error": str(error) or type(error).__name__, "config": cfg}
    if isinstance(error, WriteFailed):
        summary["resumable"] = True
    try:
        atomic_write(path / SUMMARY, json.dumps(summary, indent=2, default=str) + "\n")
    except RegrunError:
        return False
    return True


def append_traceback(log: Path, err: BaseException) -> None:
    """Add the traceback of a failure to the run's log, for whoever reads why it failed (the
    console gets one line); a log that cannot be written is left as it is."""
    with contextlib.suppress(OSError), open(log, "a") as f:
        f.write("".join(traceback.format_exception(err)))


class RunDir:
    """Writes a run's files into one directory."""

    def __init__(self, path: Path):
        self.path = path
        try:
            path.mkdir(parents=True, exist_ok=True)
            atomic_write(path / ".writable", "")
            (path / ".writable").unlink()
        except (OSError, WriteFailed) as err:
            reason = err.strerror if isinstance(err, OSError) else str(err).rsplit(": ", 1)[-1]
            raise RegrunError(f"output directory {path} cannot be written ({reason}); set hydra.run.dir=DIR") from err
        self.rows: list[dict] = []

    def write_json(self, name: str, data: Any) -> None:
        """Write `data` as indented JSON to `name`."""
        atomic_write(self.path / name, json.dumps(data, indent=2, default=str) + "\n")

    def read_metrics(self) -> list[dict[str, Any]]:
        """The rows of an existing metrics.csv, numbers parsed; [] when there is none.

        Rows without an integer epoch are dropped (a resume computes them again); a file
        that cannot be read as CSV at all is a one-line error."""
        path = self.path / METRICS
        try:
            with open(path, newline="") as f:
                rows = [{k: _number(v) for k, v in row.items() if isinstance(k, str) and isinstance(v, str) and v}
                        for row in csv.DictReader(f)]
        except FileNotFoundError:
            return []
        except (OSError, csv.Error, UnicodeDecodeError) as err:
            raise RegrunError(f"{path}: unreadable ({err}); move it away, and the checkpoint's "
                              "rows are used") from err
        return [row for row in rows if isinstance(row.get(EPOCH), int)]

    def append_metrics(self, row: Mapping[str, Any]) -> None:
        """Add an epoch's row to metrics.csv (replacing a row of the same epoch, which a
        resumed run computes again); a column first seen later is added to the header."""
        kept = [r for r in self.rows if r[EPOCH] != row[EPOCH]]
        self.rows = sorted([*kept, dict(row)], key=lambda r: r[EPOCH])
        columns = list(dict.fromkeys(key for r in self.rows for key in r))
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=columns, restval="", lineterminator="\n")
        writer.writeheader()
        writer.writerows(self.rows)
        atomic_write(self.path / METRICS, out.getvalue())

    def append_steps(self, row: Mapping[str, Any]) -> None:
        """Add a step's row to steps.csv (its header written with the first row). Appended,
        not rewritten: a run logs many steps and each row is final once written."""
        path = self.path / STEPS
        new = not path.exists() or path.stat().st_size == 0
        try:
            with open(path, "a", newline="") as f:
                writer = csv.DictWriter(f, fieldnames=list(row), restval="", lineterminator="\n")
                if new:
                    writer.writeheader()
                writer.writerow(row)
        except OSError as err:
            raise WriteFailed(f"cannot write {path}: {err.strerror}") from err

    def trim_steps(self, last_step: int) -> None:
        """Drop the steps.csv rows after `last_step`: a run continued from its checkpoint takes
        those steps again, and logs them again."""
        path = self.path / STEPS
        try:
            with open(path, newline="") as f:
                reader = csv.DictReader(f)
                columns, rows = reader.fieldnames or [], [r for r in reader if _step(r) <= last_step]
        except FileNotFoundError:
            return
        except (OSError, csv.Error, UnicodeDecodeError) as err:
            raise RegrunError(f"{path}: unreadable ({err}); move it away to continue the run") from err
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=columns, restval="", lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        atomic_write(path, out.getvalue())

    def save_model(self, model: nn.Module) -> None:
        """Save the model's state dict (as CPU tensors) to model.pt."""
        # CPU copies, so that a model trained on a GPU loads on any machine.
        state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
        write_atomically(self.path / MODEL, lambda file: torch.save(state, file))


def _step(row: Mapping[str, Any]) -> float:
    """A steps.csv row's step; a row torn by a kill counts as after every step."""
    step = _number(row.get(STEP) or "")
    return step if isinstance(step, int) else math.inf


def _number(text: str) -> int | float | str:
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def environment(device: torch.device, seed: int, wall_time_s: float, optimizer: str) -> dict[str, Any]:
    """Versions, machine and device facts that make a run's figures interpretable;
    `optimizer`: how its optimizer stepped (fused, foreach, for-loop)."""
    packages = ("regrun", "torch", "torchvision", "hydra-core", "omegaconf", "rich", "numpy")
    versions: dict[str, str | None] = {}
    for name in packages:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return {
        "python": sys.version.split()[0], "platform": platform.platform(), "packages": versions,
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
        "torch_threads": torch.get_num_threads(), "optimizer_implementation": optimizer, SEED: seed,
        "wall_time_s": wall_time_s,
        "argv": sys.argv,
    }


def loss_breakdown(row: Mapping[str, float], lambdas: Mapping[str, float]) -> dict[str, Any]:
    """Task loss, each penalty raw/λ/weighted, and the total, from a metrics row."""
    return {
        "task": row[TASK_LOSS],
        "penalties": {name: {"raw": row[penalty_column(name, "raw")], "lambda": lam,
                             "weighted": row[penalty_column(name, "weighted")]} for name, lam in lambdas.items()},
        "penalty_total": row[PENALTY_TOTAL],
        "total": row[TOTAL_LOSS],
        "note": "means over the last epoch's training steps; total = task + Σ weighted",
    }


def mark_targeted(activations: Mapping[str, dict], weights: Sequence[dict], targets: Sequence[Target]) -> None:
    """Add to each per-layer row the names of the targets that penalize it."""
    for name, row in activations.items():
        row["targeted_by"] = [t.name for t in targets if t.on_activations and name in t.modules]
    for row in weights:
        row["targeted_by"] = [t.name for t in targets if row["name"] in t.params]
