"""What `regrun resume` checks before a run continues: the config to continue with, the
keys a resume may change, and the checkpoint's compatibility with the run.

The run's own config (config.json) is used, in the same directory; its metrics rows are
kept and the new epochs appended. A few settings may change on resume because they do
not change what the checkpoint means (e.g. more epochs, another device, data moved);
anything else is refused, as is a checkpoint whose config differs from the run's.
"""

import json
from pathlib import Path
from typing import Any

import yaml
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from regrun.config import flatten, to_plain
from regrun.errors import RegrunError, choices, positive_int
from regrun.layout import CHECKPOINT, COMPLETED, CONFIG, DIVERGED, FAILED, SEED, SUMMARY
from regrun.rundir.lock import FolderInUse, holder

# Keys a resume may override: none of them changes the training trajectory so far.
RESUMABLE = ("trainer.epochs", "trainer.device", "trainer.log_every", "trainer.log_steps", "trainer.eval_every",
             "trainer.eval_batch_size", "trainer.checkpoint_every", "dataset.root", "dataset.download",
             "prune.at_end", "prune.levels", "prune.per_layer", "prune.layers", "prune.types", "prune.exclude",
             # a tracking server that moved, or answers slower: the run's MLflow logger reaches it anew
             "logger.mlflow.tracking_uri", "logger.mlflow.timeout")
# The sections of config.json a run reads; one missing means the file is not a run's config.
SECTIONS = ("trainer", "dataset", "model", "optimizer", "reg")


def prepare(run_dir: Path, overrides: list[str]) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """The config to continue with and the checkpoint to continue from (None: start again).

    Any bytes in the run's files end here in a one-line RegrunError, never a traceback."""
    from regrun.rundir.checkpoint import load_checkpoint

    cfg = read_config(run_dir)
    summary = read_summary(run_dir)
    status = summary.get("status")
    if status == DIVERGED or (status == FAILED and not summary.get("resumable")):
        raise RegrunError(f"{run_dir} {status} ({summary.get('error')}); resuming would fail the same way, "
                          "start a new run with a changed config")
    cfg = _with_overrides(cfg, overrides)
    epochs = positive_int("trainer.epochs", cfg["trainer"].get("epochs"))
    checkpoint = load_checkpoint(run_dir / CHECKPOINT) if (run_dir / CHECKPOINT).exists() else None
    if checkpoint:
        _check_compatible(checkpoint["config"], cfg, run_dir)
        if checkpoint["epoch"] >= epochs:
            raise RegrunError(f"{run_dir} has done all {checkpoint['epoch']} epochs of trainer.epochs="
                              f"{epochs}; to train longer: regrun resume {run_dir} trainer.epochs=N")
    return cfg, checkpoint


def holds_run(out: Path) -> bool:
    """Whether `out` holds a run already (its config.json, even a dangling link to one)."""
    return (out / CONFIG).exists() or (out / CONFIG).is_symlink()


def continuation(cfg: dict[str, Any], run_dir: Path) -> tuple[dict[str, Any], dict[str, Any] | None] | None:
    """How a job whose folder already holds a run continues it: the config and checkpoint
    to continue with (as `prepare` gives them), or None when the run completed (nothing to
    do). Another config is refused, so nothing written is overwritten."""
    if differing := differing_keys(read_config(run_dir), cfg):
        raise RegrunError(f"{run_dir} already holds another run ({differing[0]} differs); choose another "
                          "hydra.run.dir, or continue that run with: regrun resume " + str(run_dir))
    summary = read_summary(run_dir)
    if summary.get("status") == COMPLETED and isinstance(summary.get("final"), dict):
        return None
    return prepare(run_dir, [])


def require_run(run_dir: Path) -> None:
    """Refuse, before anything is written, a path that is not a run directory, or one that
    another process is writing."""
    if not run_dir.is_dir():
        raise RegrunError(f"{run_dir}: no such directory; pass a run directory such as outputs/runs/DATE/TIME")
    if who := holder(run_dir):  # still being written, perhaps before its config.json
        raise FolderInUse(f"{run_dir} is in use by another regrun process ({who}); one writer per run "
                          "folder: wait until it ends")
    if not (run_dir / CONFIG).exists() and not (run_dir / CONFIG).is_symlink():
        raise RegrunError(f"{run_dir} holds no regrun run (no {CONFIG}); pass a run directory, "
                          "or a sweep's job directory such as outputs/multiruns/DATE/TIME/0")


def read_config(run_dir: Path) -> dict[str, Any]:
    """The run's config.json, checked to be a regrun config: an object with the sections a
    run reads; anything else (garbage, another shape, a symlink loop) is a one-line error."""
    require_run(run_dir)
    path = run_dir / CONFIG
    try:
        cfg = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as err:
        reason = err.strerror if isinstance(err, OSError) else str(err).splitlines()[0][:120]
        raise RegrunError(f"{path} is unreadable ({reason}); this run cannot be continued, start a new one") from err
    if not isinstance(cfg, dict) or not isinstance(cfg.get(SEED), int) or \
            not all(isinstance(cfg.get(key), dict) for key in SECTIONS):
        raise RegrunError(f"{path} is not a regrun config (expected an object with seed and the sections "
                          f"{', '.join(SECTIONS)}); this run cannot be continued, start a new one")
    return cfg


def read_summary(run_dir: Path) -> dict[str, Any]:
    """The run's summary.json as an object; {} when it is absent or unreadable (a run killed
    before it finished, or a damaged file: the checkpoint, checked apart, is what counts)."""
    try:
        summary = json.loads((run_dir / SUMMARY).read_text())
    except (OSError, UnicodeDecodeError, ValueError):
        return {}
    return summary if isinstance(summary, dict) else {}


def _with_overrides(cfg: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    for override in overrides:
        key = override.split("=", 1)[0]
        if "=" not in override or key not in RESUMABLE:
            raise RegrunError(f"{override!r}: a resume can change only {choices(RESUMABLE)} "
                              "(anything else would not continue the same run)")
        if key.startswith("logger.mlflow.") and "mlflow" not in (cfg.get("logger") or {}):
            raise RegrunError(f"{override!r}: the run has no MLflow logger (logger=mlflow) to change; "
                              "a resume cannot add a tracker")
    try:
        merged = OmegaConf.merge(OmegaConf.create(cfg), OmegaConf.from_dotlist(overrides))
    except (OmegaConfBaseException, yaml.YAMLError) as err:  # yaml's: an unclosed [ or {
        raise RegrunError(f"bad override {overrides}: {str(err).splitlines()[0]}") from err
    assert isinstance(merged, DictConfig), "a mapping merged with dotted keys stays one"
    return to_plain(merged, resolve=False)


def differing_keys(saved: dict[str, Any], cfg: dict[str, Any]) -> list[str]:
    """The dotted keys whose values differ between two configs, ignoring those a resume may change."""
    ours, theirs = flatten(cfg), flatten(saved)
    return sorted(k for k in ours.keys() | theirs.keys() if k not in RESUMABLE and ours.get(k) != theirs.get(k))


def _check_compatible(saved: dict[str, Any], cfg: dict[str, Any], run_dir: Path) -> None:
    """The checkpoint must come from this run's config, up to the keys a resume may change."""
    if differing := differing_keys(saved, cfg):
        key = differing[0]
        raise RegrunError(f"{run_dir}/{CHECKPOINT} was written by an incompatible config: {key} is "
                          f"{flatten(saved).get(key)!r} there and {flatten(cfg).get(key)!r} in {CONFIG} "
                          f"({len(differing)} key(s) differ)")
