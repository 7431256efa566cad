"""`regrun resume RUN_DIR [key=value ...]`: continue a run from its last checkpoint.

The run's own config (config.json) is used, in the same directory; its metrics rows are
kept and the new epochs appended. A few settings may change on resume (more epochs,
another device, data moved); anything else is refused (regrun/rundir/resume.py).
"""

import argparse
import logging
import sys
from pathlib import Path

from rich.logging import RichHandler

from regrun.console import shared_console
from regrun.errors import RegrunError
from regrun.jobs.signals import STOP, StopNow, exit_code
from regrun.layout import CONFIG, LOG
from regrun.rundir.lock import one_writer
from regrun.rundir.resume import RESUMABLE, prepare, require_run

log = logging.getLogger(__name__)


def main(argv: list[str]) -> int:
    """Parse the command line, check the run can continue, and continue it."""
    parser = argparse.ArgumentParser(prog="regrun resume", description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", type=Path, help=f"a run directory (one holding {CONFIG})")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help=f"allowed: {', '.join(RESUMABLE)}")
    args = parser.parse_args(argv)
    try:
        require_run(args.run_dir)  # before the lock, which would create a file in any folder
        with one_writer(args.run_dir):  # held from the first read to the last write
            from regrun.jobs.run import run  # torch: after a second writer has been refused

            cfg, checkpoint = prepare(args.run_dir, args.overrides)
            _log_to(args.run_dir)
            if checkpoint is None:
                log.warning("%s has no checkpoint: training starts again from the first step", args.run_dir)
            with STOP.immediate():  # a stop signal in start-up (a tracking server's wait) ends it at once
                summary = run(cfg, args.run_dir, checkpoint, resume=True)
    except StopNow:  # before training continued: the loop polls for stops once it runs
        print(f"regrun resume: interrupted by {STOP.name} before training continued; "
              "the checkpoint is as it was", file=sys.stderr)
        return STOP.exit_code
    except RegrunError as err:
        print(f"regrun resume: error: {err}", file=sys.stderr)
        return 2
    return exit_code(summary["status"])


def _log_to(run_dir: Path) -> None:
    """Log as a Hydra job does: rich on the console, and appended to the run's regrun.log."""
    try:
        file = logging.FileHandler(run_dir / LOG)
    except OSError as err:
        raise RegrunError(f"cannot write {run_dir / LOG}: {err.strerror}") from err
    file.setFormatter(logging.Formatter("[%(asctime)s][%(name)s][%(levelname)s] - %(message)s"))
    console = RichHandler(console=shared_console(), show_path=False)
    logging.basicConfig(level=logging.INFO, format="%(message)s", handlers=[console, file], force=True)
