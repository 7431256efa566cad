"""Checkpoints: all a run needs to continue exactly, in one file written atomically.

checkpoint.pt holds the run's config, the model and optimizer states, every RNG state
(Python, NumPy, torch CPU and CUDA, and the batch shuffler's), where training stands (epochs
done, and the batches done and running sums of an epoch stopped part-way), the global step
(the position of any step-driven schedule), the step each targeted unit last fired in (its
dead-in-training window), and the metrics rows so far. It is loaded with
`weights_only=True`: plain containers and tensors, never pickled code.
"""

import pickle
import random
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from torch import nn

from regrun.errors import RegrunError
from regrun.layout import CHECKPOINT, MODEL
from regrun.rundir.files import write_atomically
from regrun.training.loop import EpochProgress, TrainState

FORMAT = 1
# What `save_checkpoint` writes, all of which a resume reads.
KEYS = ("format", "config", "model", "optimizer", "rng", "shuffle", "epoch", "epoch_start", "partial", "step",
        "metrics")


def rng_states() -> dict[str, Any]:
    """The global RNG states, as plain data and tensors."""
    kind, keys, pos, has_gauss, gauss = cast(tuple[str, np.ndarray, int, int, float], np.random.get_state())
    return {
        "python": random.getstate(),
        "numpy": [kind, keys.tolist(), pos, has_gauss, gauss],
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def restore_rng(states: Mapping[str, Any]) -> None:
    """Put back the global RNG states saved by `rng_states`."""
    random.setstate(states["python"])
    kind, keys, pos, has_gauss, gauss = states["numpy"]
    np.random.set_state((kind, np.array(keys, dtype=np.uint32), pos, has_gauss, gauss))
    torch.set_rng_state(states["torch"])
    if states["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def save_checkpoint(path: Path, config: Mapping[str, Any], model: nn.Module, optimizer: torch.optim.Optimizer,
                    state: TrainState, step: int, rows: Sequence[Mapping[str, Any]]) -> None:
    """Write the checkpoint through a temporary file and a rename: a kill never leaves half a
    file, and a failed write (disk full) leaves the last good checkpoint as it was."""
    partial = state.partial
    payload = {
        "format": FORMAT,
        "config": dict(config),
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "rng": rng_states(),
        "shuffle": state.shuffle.get_state(),
        "epoch": state.epoch,
        "epoch_start": state.epoch_start,
        "partial": None if partial is None else {"batches": partial.batches, "sums": partial.sums.cpu()},
        "step": step,
        "metrics": [dict(row) for row in rows],
        "last_fired": {name: steps.cpu() for name, steps in state.last_fired.items()},
    }
    write_atomically(path, lambda file: torch.save(payload, file))


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Read a checkpoint safely (`weights_only=True`); an unreadable one is a one-line error."""
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, EOFError, pickle.UnpicklingError) as err:
        raise RegrunError(f"{path}: not a readable regrun checkpoint ({_load_failure(err)})") from err
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        found = payload.get("format") if isinstance(payload, dict) else type(payload).__name__
        raise RegrunError(f"{path}: checkpoint format {found!r}; this regrun reads format {FORMAT}")
    if missing := [key for key in KEYS if key not in payload]:
        raise RegrunError(f"{path}: not a whole regrun checkpoint (no {', '.join(missing)})")
    if not isinstance(payload["config"], dict) or not isinstance(payload["epoch"], int):
        raise RegrunError(f"{path}: not a whole regrun checkpoint (its config or epoch is of the wrong type)")
    return payload


def _load_failure(err: Exception) -> str:
    """Why torch.load failed, in a few words. torch's weights-only refusal opens with advice
    to load with weights_only=False, which a corrupt or foreign file must never be given:
    keep only its reason."""
    text = str(err).strip()
    if "WeightsUnpickler error:" in text:
        reason = text.split("WeightsUnpickler error:", 1)[1].split("Check the documentation", 1)[0]
        return f"corrupt, or holds more than plain data and tensors: {' '.join(reason.split())}"
    return text.splitlines()[0].split(". ")[0][:200] if text else type(err).__name__  # its first sentence


def restore(payload: Mapping[str, Any], model: nn.Module, optimizer: torch.optim.Optimizer,
            device: torch.device) -> TrainState:
    """Load model, optimizer and RNG states from a checkpoint; returns where training stands."""
    try:
        model.load_state_dict(payload["model"])
        optimizer.load_state_dict(payload["optimizer"])
    except (RuntimeError, ValueError, KeyError) as err:
        first = str(err).strip().splitlines()
        detail = " ".join(line.strip() for line in first[:3])[:300]
        raise RegrunError(f"the checkpoint does not fit the model and optimizer of this config: {detail}") from err
    restore_rng(payload["rng"])
    shuffle = torch.Generator()
    shuffle.set_state(payload["shuffle"])
    partial = payload["partial"]
    return TrainState(
        shuffle=shuffle, epoch=payload["epoch"], epoch_start=payload["epoch_start"],
        partial=None if partial is None else EpochProgress(partial["batches"], partial["sums"].to(device)),
        # absent from checkpoints written before units' firing was tracked: counted afresh
        last_fired={name: steps.to(device) for name, steps in (payload.get("last_fired") or {}).items()},
    )


def final_model_state(run_dir: Path) -> dict[str, torch.Tensor]:
    """A completed run's final model as a state dict: its model.pt, else its last checkpoint's
    model (a checkpoint is written after the last epoch). Read safely, as `load_checkpoint` does."""
    path = run_dir / MODEL
    if not path.exists() and not (run_dir / CHECKPOINT).exists():
        raise RegrunError(f"{run_dir} holds no trained model (neither {MODEL} nor {CHECKPOINT})")
    if not path.exists():
        return load_checkpoint(run_dir / CHECKPOINT)["model"]
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, EOFError, pickle.UnpicklingError) as err:
        raise RegrunError(f"{path}: not a readable model state ({_load_failure(err)})") from err
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise RegrunError(f"{path}: not a model state dict (a mapping of names to tensors)")
    return state
