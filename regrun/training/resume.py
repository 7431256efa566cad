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

from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from regrun.errors import RegrunError, choices
from regrun.config import flatten

# Keys a resume may override: none of them changes the training trajectory so far.
RESUMABLE = ("trainer.epochs", "trainer.device", "trainer.log_every", "trainer.eval_every",
             "trainer.eval_batch_size", "trainer.checkpoint_every", "dataset.root", "dataset.download")


def prepare(run_dir: Path, overrides: list[str]) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """The config to continue with and the checkpoint to continue from (None: start again)."""
    from regrun.training.checkpoint import NAME, load_checkpoint

    cfg = _config(run_dir)
    summary = _summary(run_dir)
    status = summary.get("status")
    if status in ("failed", "diverged"):
        raise RegrunError(f"{run_dir} {status} ({summary.get('error')}); resuming would fail the same way, "
                          "start a new run with a changed config")
    cfg = _with_overrides(cfg, overrides)
    checkpoint = load_checkpoint(run_dir / NAME) if (run_dir / NAME).exists() else None
    if checkpoint:
        _check_compatible(checkpoint["config"], cfg, run_dir)
        if checkpoint["epoch"] >= cfg["trainer"]["epochs"]:
            raise RegrunError(f"{run_dir} has done all {checkpoint['epoch']} epochs of trainer.epochs="
                              f"{cfg['trainer']['epochs']}; to train longer: regrun resume {run_dir} trainer.epochs=N")
    return cfg, checkpoint


def _config(run_dir: Path) -> dict[str, Any]:
    if not run_dir.is_dir():
        raise RegrunError(f"{run_dir}: no such directory; pass a run directory such as outputs/runs/DATE/TIME")
    if not (run_dir / "config.json").is_file():
        raise RegrunError(f"{run_dir} holds no regrun run (no config.json); pass a run directory, "
                          "or a sweep's job directory such as outputs/multiruns/DATE/TIME/0")
    return json.loads((run_dir / "config.json").read_text())


def _summary(run_dir: Path) -> dict[str, Any]:
    try:
        return json.loads((run_dir / "summary.json").read_text())
    except (FileNotFoundError, json.JSONDecodeError):  # killed before it finished: resumable
        return {}


def _with_overrides(cfg: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    for override in overrides:
        key = override.split("=", 1)[0]
        if "=" not in override or key not in RESUMABLE:
            raise RegrunError(f"{override!r}: a resume can change only {choices(RESUMABLE)} "
                              "(anything else would not continue the same run)")
    try:
        merged = OmegaConf.merge(OmegaConf.create(cfg), OmegaConf.from_dotlist(overrides))
    except OmegaConfBaseException as err:
        raise RegrunError(f"bad override {overrides}: {str(err).splitlines()[0]}") from err
    return OmegaConf.to_container(merged)


def differing_keys(saved: dict[str, Any], cfg: dict[str, Any]) -> list[str]:
    """The dotted keys whose values differ between two configs, ignoring those a resume may change."""
    ours, theirs = flatten(cfg), flatten(saved)
    return sorted(k for k in ours.keys() | theirs.keys() if k not in RESUMABLE and ours.get(k) != theirs.get(k))


def _check_compatible(saved: dict[str, Any], cfg: dict[str, Any], run_dir: Path) -> None:
    """The checkpoint must come from this run's config, up to the keys a resume may change."""
    if differing := differing_keys(saved, cfg):
        key = differing[0]
        raise RegrunError(f"{run_dir}/checkpoint.pt was written by an incompatible config: {key} is "
                          f"{flatten(saved).get(key)!r} there and {flatten(cfg).get(key)!r} in config.json "
                          f"({len(differing)} key(s) differ)")
