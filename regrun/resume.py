"""`regrun resume RUN_DIR [key=value ...]`: continue a run from its last checkpoint.

The run's own config (config.json) is used, in the same directory; its metrics rows are
kept and the new epochs appended. A few settings may change on resume because they do
not change what the checkpoint means (e.g. more epochs, another device, data moved);
anything else is refused, as is a checkpoint whose config differs from the run's.
"""

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException
from rich.logging import RichHandler

from regrun.console import shared_console
from regrun.errors import RegrunError, choices
from regrun.runs import flatten

log = logging.getLogger(__name__)

# Keys a resume may override: none of them changes the training trajectory so far.
RESUMABLE = ("trainer.epochs", "trainer.device", "trainer.log_every", "trainer.eval_every",
             "trainer.eval_batch_size", "trainer.checkpoint_every", "dataset.root", "dataset.download")


def main(argv: list[str]) -> int:
    """Parse the command line, check the run can continue, and continue it."""
    parser = argparse.ArgumentParser(prog="regrun resume", description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", type=Path, help="a run directory (one holding config.json)")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help=f"allowed: {', '.join(RESUMABLE)}")
    args = parser.parse_args(argv)
    from regrun.cli import exit_code  # the one mapping of status to exit code
    from regrun.run import run

    try:
        cfg, checkpoint = prepare(args.run_dir, args.overrides)
        _log_to(args.run_dir)
        if checkpoint is None:
            log.warning("%s has no checkpoint: training starts again from the first step", args.run_dir)
        summary = run(cfg, args.run_dir, checkpoint, resume=True)
    except RegrunError as err:
        print(f"regrun resume: error: {err}", file=sys.stderr)
        return 2
    return exit_code(summary["status"])


def prepare(run_dir: Path, overrides: list[str]) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """The config to continue with and the checkpoint to continue from (None: start again)."""
    from regrun.checkpoint import NAME, load_checkpoint

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


def _log_to(run_dir: Path) -> None:
    """Log as a Hydra job does: rich on the console, and appended to the run's regrun.log."""
    file = logging.FileHandler(run_dir / "regrun.log")
    file.setFormatter(logging.Formatter("[%(asctime)s][%(name)s][%(levelname)s] - %(message)s"))
    console = RichHandler(console=shared_console(), show_path=False)
    logging.basicConfig(level=logging.INFO, format="%(message)s", handlers=[console, file], force=True)
