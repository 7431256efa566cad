"""The `regrun` command: a Hydra app over the configs in conf/, plus subcommands.

    regrun model=mlp reg=l1_activations        one run
    regrun -m reg.targets.l1_activations.lambda=0,1e-4,1e-3   a sweep (Hydra multirun)
    regrun compare PATH...                     tables and plots over finished runs
    regrun resume RUN_DIR                      continue a run from its last checkpoint
"""

import importlib
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from regrun.errors import RegrunError


def conf_dir() -> Path:
    """The config folder: inside the installed package, or conf/ of a source checkout."""
    packaged = Path(__file__).parent / "conf"
    return packaged if packaged.is_dir() else Path(__file__).resolve().parent.parent / "conf"


def job(cfg: DictConfig) -> None:
    """One Hydra job: resolve the config to plain data and run it in Hydra's output dir."""
    from regrun.run import run  # torch imports late, so `regrun --help` stays quick

    try:
        plain = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
    except OmegaConfBaseException as err:  # a missing value (???) or a broken ${...}
        fail(str(err).splitlines()[0])
    try:
        run(plain, Path(HydraConfig.get().runtime.output_dir))
    except RegrunError as err:
        fail(str(err))


def fail(message: str) -> None:
    """Print a one-line error and exit 2 (a usage error, as argparse does)."""
    print(f"regrun: error: {message}", file=sys.stderr)
    raise SystemExit(2)


# Subcommand name → module with a `main(argv) -> int`. Hydra owns the rest of the command
# line, so these are dispatched before it parses sys.argv (hydra#409).
SUBCOMMANDS = {"compare": "regrun.compare", "resume": "regrun.resume"}


def main() -> None:
    """Entry point of the `regrun` console script."""
    if len(sys.argv) > 1 and sys.argv[1] in SUBCOMMANDS:
        command = importlib.import_module(SUBCOMMANDS[sys.argv[1]])
        raise SystemExit(command.main(sys.argv[2:]))
    # config_path must be absolute: relative paths resolve against the package when the
    # app runs as a console script (hydra#2125).
    app = hydra.main(config_path=str(conf_dir()), config_name="config", version_base="1.3")(job)
    app()
