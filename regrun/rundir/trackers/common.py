"""What every tracker shares: the interface a run calls, the figures of a metrics row,
the config as parameters, and who the run is (its job in a sweep, its source).

Kept free of torch and of the trackers' libraries: the sweep's callback and the config
check read these before any tracker starts.
"""

import contextlib
import functools
import getpass
import importlib
import json
import os
import re
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import yaml

from regrun.config import flatten
from regrun.errors import RegrunError, is_number
from regrun.layout import EPOCH, HYDRA, HYDRA_SETTINGS, STEP, lambda_column

STEPS_GROUP = "steps"  # the trackers' name for the figures of steps.csv, apart from the epochs'
MULTIRUN_CONFIG = "multirun.yaml"  # what Hydra's basic sweeper writes in the sweep root: the command line's overrides
# What the sweep's callback (regrun/cli/sweep_trackers.py) leaves in its root for the jobs,
# whatever sweeper runs them (Optuna's writes no multirun.yaml): the command line's
# overrides, MLflow's parent run.
SWEEP_FILE = ".regrun_trackers.json"
SWEEP = "MULTIRUN"  # hydra.mode of a sweep's job
NAME_LENGTH = 120  # a job's name is a folder's name too (TensorBoard names runs by folder)

ParamValue = bool | int | float | str


class MetricLogger(Protocol):
    """What the run tells a tracker (torchtune's MetricLoggerInterface, by rows)."""

    def log_row(self, row: Mapping[str, Any]) -> None:
        """One epoch's metrics row, as metrics.csv gets it."""

    def log_step(self, row: Mapping[str, Any]) -> None:
        """One step's row, as steps.csv gets it (trainer.log_steps): its loss terms and λ."""

    def log_densities(self, step: int, densities: Mapping[str, Sequence[float]]) -> None:
        """Per targeted activation module, each unit's firing density on the test set (the
        fraction of its entries that are non-zero) at an evaluated epoch's global step."""

    def log_summary(self, summary: Mapping[str, Any]) -> None:
        """summary.json's content, once the run has ended (any status)."""

    def close(self) -> None:
        """Flush and release; called once, last, also when the run failed."""


def figures(row: Mapping[str, Any], lambdas: Mapping[str, float]) -> dict[str, float]:
    """The row's numbers, λ of each target included, without the epoch and step counters."""
    numbers = {k: float(v) for k, v in row.items() if is_number(v) and k not in (EPOCH, STEP)}
    return {lambda_column(t): float(lam) for t, lam in lambdas.items()} | numbers


def tag(key: str) -> str:
    """A TensorBoard tag, grouped by kind: penalty.l1.raw → penalty/l1.raw, test_acc → test/acc."""
    head, dot, rest = key.partition(".")
    if dot:
        return f"{head}/{rest}"
    split, _, figure = key.partition("_")
    return f"{split}/{figure}" if figure else key


def param_value(value: Any) -> ParamValue | None:
    """A config value as trackers take a parameter: numbers, strings and booleans as they
    are, a list of them joined by commas (`act*`, `256,128`), other lists as compact JSON,
    and None (or an empty mapping) as nothing at all: no "None", no "['act*']"."""
    if value is None or (isinstance(value, Mapping) and not value):
        return None
    if isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, Sequence) and all(isinstance(v, bool | int | float | str) for v in value) and value:
        return ",".join(str(v) for v in value)
    return json.dumps(value, separators=(",", ":"), default=str)


def param_values(cfg: Mapping[str, Any]) -> dict[str, ParamValue]:
    """The config as flat `key: value` parameters (see `param_value`), unset keys left out."""
    values = {key: param_value(value) for key, value in flatten(cfg).items()}
    return {key: value for key, value in values.items() if value is not None}


def target_lambdas(cfg: Mapping[str, Any]) -> dict[str, float]:
    """The configured λ of each target (validated by then: the targets are resolved first)."""
    targets = (cfg.get("reg") or {}).get("targets") or {}
    return {name: spec["lambda"] for name, spec in targets.items() if is_number(spec.get("lambda"))}


def require(module: str, name: str, extra: str) -> Any:
    """Import a tracker's library, or a one-line error naming the extra that installs it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise RegrunError(f"logger={name} needs the {extra} package, which is not installed; "
                          f"install it with: pip install 'regrun[{extra}]'") from None


@dataclass(frozen=True)
class Job:
    """Who a run is to the trackers: a job of a sweep (its number, and the overrides that set
    it apart from the sweep's other jobs) or a run of its own."""

    out: Path  # the run directory
    sweep: Path | None = None  # the sweep's root folder, for a sweep's job
    num: int | None = None
    overrides: list[str] = field(default_factory=list)  # the job's command-line overrides
    swept: list[str] = field(default_factory=list)  # those of them the sweep varies
    continues: bool = False  # the run directory held this run before (a resume, a requeue)

    @property
    def name(self) -> str:
        """'2_l1_activations.lambda=0.001' for a sweep's job (its number and what the sweep
        varies); '<date>/<time>', its folder and the folder above, for a run of its own."""
        if self.sweep is None:
            return f"{self.out.parent.name}/{self.out.name}"
        return folder_name(f"{self.num}_{','.join(short_overrides(self.swept))}" if self.swept else str(self.num))


def folder_name(text: str) -> str:
    """`text` as one folder's name: no path separator, at most NAME_LENGTH characters."""
    return re.sub(r"[/\\\x00]", "_", text)[:NAME_LENGTH]


def short_overrides(overrides: Sequence[str]) -> list[str]:
    """Each `key=value` with its key cut to its last two dotted parts where no other key of
    the list ends the same way: reg.targets.l1.lambda=0.1 → l1.lambda=0.1."""
    keys = [o.split("=", 1)[0] for o in overrides]
    short = []
    for override, key in zip(overrides, keys):
        parts = key.split(".")
        cut = ".".join(parts[-2:])
        unique = len(parts) > 2 and not any(k != key and (k == cut or k.endswith("." + cut)) for k in keys)
        short.append(cut + override[len(key):] if unique else override)
    return short


def job_of(out: Path) -> Job:
    """The run directory's job, from what Hydra wrote: .hydra/hydra.yaml (the mode, the job's
    number and overrides) and, for a sweep, the sweep root's multirun.yaml (the overrides as
    given, `lambda=0,0.1`): the job's own overrides that are not among those are its sweep's
    values. A folder without Hydra's files (the Python API's `jobs.run`) is a run of its own."""
    hydra = _read_yaml(out / HYDRA / HYDRA_SETTINGS).get("hydra")
    if not isinstance(hydra, Mapping):
        return Job(out)
    overrides = [str(o) for o in (hydra.get("overrides") or {}).get("task") or []]
    num = (hydra.get("job") or {}).get("num")
    if hydra.get("mode") != SWEEP or not isinstance(num, int):
        return Job(out, overrides=overrides)
    sweep = sweep_root(out, hydra)
    given = sweep_record(sweep).get("overrides")
    if not isinstance(given, list):
        given = ((_read_yaml(sweep / MULTIRUN_CONFIG).get("hydra") or {}).get("overrides") or {}).get("task") or []
    common = fixed_keys([str(o) for o in given])
    return Job(out, sweep, num, overrides, [o for o in overrides if override_key(o) not in common])


def fixed_keys(overrides: Sequence[str]) -> set[str]:
    """The keys a sweep's command line sets to one value (Hydra's grammar: `a=1,2`,
    `a=range(3)`, `a=choice(x,y)` sweep; `a=[1,2]` and `a='1,2'` do not)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    try:
        parsed = OverridesParser.create().parse_overrides(list(overrides))
    except Exception:  # not Hydra's grammar (Hydra would have refused it): judge no key fixed
        return set()
    return {o.key_or_group for o in parsed if not o.is_sweep_override()}


def override_key(override: str) -> str:
    """The key an override sets, without Hydra's +, ++ or ~ and its @package: `+a.b=1` → a.b."""
    return override.split("=", 1)[0].lstrip("+~").split("@", 1)[0]


def sweep_record(sweep: Path) -> dict[str, Any]:
    """What the sweep's callback recorded in its root (SWEEP_FILE); {} when nothing is."""
    try:
        record = json.loads((sweep / SWEEP_FILE).read_text())
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


def record_sweep(sweep: Path, **entries: Any) -> None:
    """Add `entries` to the sweep's record (written whole: a job never reads half of it)."""
    sweep.mkdir(parents=True, exist_ok=True)
    partial = sweep / f"{SWEEP_FILE}.partial"
    partial.write_text(json.dumps(sweep_record(sweep) | entries, indent=1))
    partial.replace(sweep / SWEEP_FILE)


def sweep_root(out: Path, hydra: Mapping[str, Any]) -> Path:
    """The sweep's folder: hydra.sweep.dir where it was written resolved, else the folder above the job's."""
    where = (hydra.get("sweep") or {}).get("dir")
    return Path(where).resolve() if isinstance(where, str) and "${" not in where else out.resolve().parent


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        with open(path) as f:
            loaded = yaml.load(f, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except (OSError, ValueError, yaml.YAMLError):
        return {}
    return loaded if isinstance(loaded, dict) else {}


@functools.cache
def source_tags() -> dict[str, str]:
    """MLflow's standard tags for where a run comes from, as its own fluent API sets them:
    the user, the program (a script that calls regrun's API, or `regrun`), and the commit
    of the git repository of the working directory (the user's project), when it is one."""
    tags = {"mlflow.source.type": "LOCAL", "mlflow.source.name": _program()}
    with contextlib.suppress(KeyError, OSError):  # a container's uid with no name: no user tag
        tags["mlflow.user"] = getpass.getuser()
    if commit := _git("rev-parse", "HEAD"):
        tags["mlflow.source.git.commit"] = commit
        if branch := _git("rev-parse", "--abbrev-ref", "HEAD"):
            tags["mlflow.source.git.branch"] = branch
    return tags


def _program() -> str:
    script = Path(sys.argv[0]) if sys.argv and sys.argv[0] else None
    if script is not None and script.suffix == ".py" and script.is_file() and "site-packages" not in script.parts:
        return str(script.resolve())
    return "regrun"


def _git(*args: str) -> str | None:
    """`git ARGS` in the working directory: its one line of output, or None (no git, no repository)."""
    try:
        done = subprocess.run(["git", *args], capture_output=True, text=True, timeout=5, cwd=os.getcwd())
    except (OSError, subprocess.SubprocessError):
        return None
    line = done.stdout.strip()
    return line if done.returncode == 0 and line and "\n" not in line else None
