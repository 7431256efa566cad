"""Finished (or not) runs on disk: find the run directories under some paths, read each
into a `Run`, and name the config keys that set them apart.

Only JSON, CSV and YAML are read, never torch, so hundreds of runs load in a second.
A folder is a run when it holds `.hydra/`, `summary.json` or `metrics.csv` (an MLflow
store's copies of those files are not: `is_tracker_store`); a run's
status comes from its summary.json, or is `incomplete` (none yet: still running, or
killed) or `broken` (unreadable).
"""

import contextlib
import csv
import json
import math
import os
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, TypeGuard

import yaml

from regrun.config import flatten, to_plain
from regrun.errors import RegrunError, is_number
from regrun.layout import (
    BROKEN,
    COMPLETED,
    DENSITY,
    DIVERGED,
    EPOCH,
    FAILED,
    HYDRA,
    HYDRA_CONFIG,
    HYDRA_OVERRIDES,
    HYDRA_SETTINGS,
    INCOMPLETE,
    INTERRUPTED,
    LAYER_SPARSITY,
    LEVEL,
    METRICS,
    PRUNE,
    PRUNE_GLOBAL,
    PRUNE_SPARSITY,
    SCOPE,
    SUMMARY,
    TARGETS,
    finetuned,
    penalty_targets,
    prune_column,
    split_figure,
)

RUN_MARKERS = (HYDRA, SUMMARY, METRICS)
# What marks an MLflow store's folders (its file store's layout, and any store's artifact root).
MLFLOW_TRASH, MLFLOW_META, MLFLOW_ARTIFACTS = ".trash", "meta.yaml", "artifacts"
MLFLOW_RUN_ID = re.compile(r"[0-9a-f]{32}")
STATUSES = (COMPLETED, INTERRUPTED, DIVERGED, FAILED)  # what a run writes in summary.json

# A differing key that a run lacks (e.g. a target only some runs have) shows as this.
MISSING = None

LAMBDA_KEY = re.compile(r"reg\.targets\.[^.]+\.lambda")  # a target's λ among the config keys


@dataclass
class Run:
    """One run directory as read from disk; figures are those of its summary.json."""

    path: Path
    status: str
    error: str | None = None
    config: dict[str, Any] = field(default_factory=dict)
    overrides: list[str] = field(default_factory=list)
    final: dict[str, Any] = field(default_factory=dict)
    targeted_modules: list[str] = field(default_factory=list)  # modules whose outputs a target penalizes
    warnings: list[str] = field(default_factory=list)  # the run's diagnostics (measure/diagnostics.py)
    task: dict[str, Any] = field(default_factory=dict)  # summary.json's `task`: name, figures, headline
    pruning: list[dict[str, Any]] = field(default_factory=list)  # prune.json's rows (regrun prune)
    # per targeted activation module, each unit's firing density on the test set (summary.json)
    densities: dict[str, list[float]] = field(default_factory=dict)

    @property
    def headline(self) -> str | None:
        """The column that sums the run up (`test_acc`, `test_r2`, ...), from its task; runs
        written before tasks existed were classifications with `test_acc`."""
        headline = self.task.get("headline")
        if isinstance(headline, str):
            return headline
        acc = split_figure("test", "acc")
        return acc if acc in self.final else None

    @property
    def completed(self) -> bool:
        """Only completed runs enter means and plots; the others are listed with their status."""
        return self.status == COMPLETED

    @property
    def target_names(self) -> list[str]:
        """The regularization targets, in order, from the penalty figures (`penalty.<t>.raw`)."""
        return penalty_targets(self.final)

    @cached_property
    def metrics(self) -> list[dict[str, float | None]]:
        """metrics.csv as rows of numbers (None for a blank cell); [] when absent or unreadable."""
        try:
            with open(self.path / METRICS, newline="") as f:
                # A ragged row has a None key (extra cells) or None values (missing ones): dropped.
                return [{key: _number(value) for key, value in row.items() if isinstance(key, str)}
                        for row in csv.DictReader(f)]
        except (OSError, csv.Error, UnicodeDecodeError):
            return []

    @cached_property
    def job_num(self) -> int | None:
        """Hydra's job number within its sweep (from .hydra/hydra.yaml), None outside a sweep."""
        try:
            with open(self.path / HYDRA / HYDRA_SETTINGS) as f:
                num = yaml.load(f, Loader=_YamlLoader)["hydra"]["job"]["num"]
        except (OSError, ValueError, yaml.YAMLError, KeyError, TypeError):  # ValueError: not UTF-8
            return None
        return num if isinstance(num, int) else None


# libyaml's loader where installed: about ten times faster on the files of many runs.
_YamlLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _number(text: Any) -> float | None:
    try:
        return float(text) if isinstance(text, str) and text else None
    except ValueError:
        return None


def find_runs(paths: Iterable[str | Path]) -> list[Run]:
    """The runs at or under each path, each once, in natural path order (9 before 10).

    A path that does not exist, or holds no run, is a RegrunError naming it.
    """
    found: dict[Path, None] = {}
    for given in paths:
        path = Path(given)
        if not path.exists():
            raise RegrunError(f"{given}: no such file or directory")
        if not path.is_dir():
            raise RegrunError(f"{given} is not a directory; give run directories, sweep roots or a folder holding them")
        dirs = [p.resolve() for p in _run_dirs(path)]
        if not dirs:
            raise RegrunError(f"no run found under {given}")
        found.update(dict.fromkeys(dirs))
    return [read_run(p) for p in sorted(found, key=natural_key)]


def _run_dirs(path: Path, seen: set[str] | None = None) -> Iterator[Path]:
    """Run directories at or below `path`, without descending into a run, a hidden folder or
    an MLflow store (a path given is read as it is), nor twice into one folder (a symbolic
    link back up the tree is not followed round)."""
    seen = set() if seen is None else seen
    real = os.path.realpath(path)
    if real in seen:
        return
    seen.add(real)
    if is_run_dir(path):
        yield path
        return
    try:
        entries = sorted(os.scandir(path), key=lambda e: natural_key(e.name))
    except OSError:
        return
    for entry in entries:
        if not entry.name.startswith(".") and _is_dir(entry) and not is_tracker_store(Path(entry.path)):
            yield from _run_dirs(Path(entry.path), seen)


def _is_dir(entry: os.DirEntry) -> bool:
    try:
        return entry.is_dir()
    except OSError:  # a symbolic link that loops, a folder we may not read
        return False


def is_tracker_store(path: Path) -> bool:
    """Whether `path` is (in) an MLflow store: its runs' artifacts are copies of run
    directories' files (summary.json, metrics.csv) that must not count as runs again.

    A file store's root holds `.trash`, its experiments and runs a `meta.yaml`; a run's
    artifacts folder, in any store's artifact root, is `<32-hex run id>/artifacts`.
    """
    if (path / MLFLOW_TRASH).is_dir() or (path / MLFLOW_META).is_file():
        return True
    return path.name == MLFLOW_ARTIFACTS and MLFLOW_RUN_ID.fullmatch(path.parent.name) is not None


def is_run_dir(path: Path) -> bool:
    """Whether `path` is a run directory (holds .hydra/, summary.json or metrics.csv)."""
    return any((path / marker).exists() for marker in RUN_MARKERS)


def natural_key(value: str | Path) -> list[Any]:
    """Sort key that orders the digit runs of a name as numbers: job 9 before job 10."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", str(value))]


def read_run(path: Path) -> Run:
    """Read one run directory; never raises: what cannot be read becomes the run's status."""
    overrides = _read_overrides(path)
    summary_path = path / SUMMARY
    if not summary_path.exists() and not summary_path.is_symlink():  # a looping link is read, and broken
        config, error = _hydra_config(path)
        return Run(path, BROKEN, error, config, overrides) if error else _unfinished(path, config, overrides)
    try:
        summary = json.loads(summary_path.read_text())
        _check_summary(summary)
    except (OSError, UnicodeDecodeError, ValueError) as err:
        config, _ = _hydra_config(path)
        return Run(path, BROKEN, f"{SUMMARY} unreadable: {err}", config, overrides)
    config = summary.get("config")
    if not isinstance(config, dict):
        config, _ = _hydra_config(path)
    error = summary.get("error")
    final = {key: value for key, value in (summary.get("final") or {}).items() if is_number(value)}
    task = summary.get("task")
    run = Run(path, summary["status"], None if error is None else str(error), config, overrides,
              final, _targeted_modules(summary.get("targets")), _warnings(summary.get("warnings")),
              task if isinstance(task, dict) else {})
    if run.completed:
        run.pruning = read_pruning(path)
        run.final |= prune_figures(run.pruning, run.headline)
        run.densities = _densities(summary.get(LAYER_SPARSITY), run.targeted_modules)
    return run


def _densities(tables: Any, modules: Sequence[str]) -> dict[str, list[float]]:
    """Each of `modules`' units' firing density from summary.json's per-layer tables, where
    the tables hold a list of numbers in [0, 1] for it."""
    activations = tables.get("activations") if isinstance(tables, dict) else None
    found = {}
    for module in modules:
        row = activations.get(module) if isinstance(activations, dict) else None
        density = row.get(DENSITY) if isinstance(row, dict) else None
        if isinstance(density, list) and density and all(is_finite(d) and 0 <= d <= 1 for d in density):
            found[module] = [float(d) for d in density]
    return found


def read_pruning(path: Path) -> list[dict[str, Any]]:
    """The rows of a run's prune.json that have a scope, a level and a sparsity; [] when
    it has none (never pruned) or it is unreadable."""
    try:
        rows = json.loads((path / PRUNE).read_text())
    except (OSError, UnicodeDecodeError, ValueError):
        return []
    return [row for row in rows if isinstance(row, dict) and isinstance(row.get(SCOPE), str)
            and is_finite(row.get(LEVEL)) and is_finite(row.get(PRUNE_SPARSITY))] if isinstance(rows, list) else []


def prune_figures(rows: Sequence[dict[str, Any]], headline: str | None) -> dict[str, float]:
    """The headline figure at each level of global pruning, as compare's columns
    (`prune90_test_acc`), and after fine-tuning where the row has it (`prune90_finetuned_test_acc`)."""
    if not headline:
        return {}
    figures = {}
    for row in rows:
        if row[SCOPE] == PRUNE_GLOBAL and row[LEVEL] > 0:
            for figure in (headline, finetuned(headline)):
                if is_number(row.get(figure)):
                    figures[prune_column(row[LEVEL], figure)] = row[figure]
    return figures


def _check_summary(summary: Any) -> None:
    """A ValueError unless `summary` has the shape regrun writes: an object with a known
    status and, if any, an object as its final figures."""
    if not isinstance(summary, dict):
        raise ValueError(f"a JSON {type(summary).__name__}, not an object")
    if summary.get("status") not in STATUSES:
        raise ValueError(f"status {summary.get('status')!r} is not one of {', '.join(STATUSES)}")
    if not isinstance(summary.get("final", {}), dict | None):
        raise ValueError(f"final is a JSON {type(summary['final']).__name__}, not an object")


def _unfinished(path: Path, config: dict[str, Any], overrides: list[str]) -> Run:
    """A run without summary.json (still running, or killed): its figures are those of its
    last metrics row, as they stand, and its error says how far it got."""
    run = Run(path, INCOMPLETE, f"no {SUMMARY} (still running, or killed)", config, overrides)
    if run.metrics:
        run.final = {key: value for key, value in run.metrics[-1].items() if value is not None}
        epochs = flatten(config).get("trainer.epochs", "?")
        run.error = f"{run.error}; last metrics row: epoch {run.final.get(EPOCH, 0):.0f} of {epochs}"
    # Killed before the targets were resolved: no module is known to be penalized.
    with contextlib.suppress(OSError, UnicodeDecodeError, ValueError):
        run.targeted_modules = _targeted_modules(json.loads((path / TARGETS).read_text()))
    return run


def _read_overrides(path: Path) -> list[str]:
    try:
        with open(path / HYDRA / HYDRA_OVERRIDES) as f:
            overrides = yaml.load(f, Loader=_YamlLoader)
    except (OSError, ValueError, yaml.YAMLError):
        return []
    return [str(o) for o in overrides] if isinstance(overrides, list) else []


def _hydra_config(path: Path) -> tuple[dict[str, Any], str | None]:
    """The job config Hydra wrote before the job started, resolved where it can be.

    Returns (config, error); a run without .hydra/config.yaml has an empty config and no error.
    """
    file = path / HYDRA / HYDRA_CONFIG
    if not file.exists():
        return {}, None
    from omegaconf import DictConfig, OmegaConf  # only runs without a readable summary.json need it

    try:
        cfg = OmegaConf.load(file)
    except Exception as err:  # OmegaConf raises yaml's and its own errors alike
        return {}, f"{HYDRA}/{HYDRA_CONFIG} unreadable: {str(err).splitlines()[0]}"
    if not isinstance(cfg, DictConfig):
        return {}, f"{HYDRA}/{HYDRA_CONFIG} holds a list, not a config"
    try:
        return to_plain(cfg), None
    except Exception:  # e.g. ${now:...} or ${hydra:...}, which resolve only inside Hydra
        return to_plain(cfg, resolve=False), None


def _warnings(warnings: Any) -> list[str]:
    """The messages of summary.json's `warnings` records; anything else there is ignored."""
    if not isinstance(warnings, list):
        return []
    return [str(w["message"]) for w in warnings if isinstance(w, dict) and "message" in w]


def _targeted_modules(targets: Any) -> list[str]:
    """Names of the modules whose outputs are penalized, from summary.json's `targets` rows."""
    if not isinstance(targets, list):
        return []
    return list(dict.fromkeys(row["tensor"] for row in targets if isinstance(row, dict)
                              and row.get("site") == "activations" and isinstance(row.get("tensor"), str)))


def differing_keys(runs: Sequence[Run]) -> list[str]:
    """The flattened config keys whose values are not the same in every run, in config order.

    Runs without a config (broken before Hydra wrote one) are left out of the comparison,
    or every key would differ; so are `hydra.*` keys.
    """
    configs = [flatten(run.config) for run in runs if run.config]
    keys = dict.fromkeys(key for cfg in configs for key in cfg if not key.startswith("hydra."))
    return [key for key in keys if len({canonical(cfg.get(key, MISSING)) for cfg in configs}) > 1]


def canonical(value: Any) -> str:
    """A config value as comparable text: tells 1 from 1.0 from True, and [1, 2] from [2, 1]."""
    return json.dumps(value, sort_keys=True, default=str)


def config_values(run: Run, keys: Sequence[str]) -> dict[str, Any]:
    """The run's values for the dotted config keys, MISSING where it lacks one."""
    flat = flatten(run.config)
    return {key: flat.get(key, MISSING) for key in keys}


def short_names(keys: Sequence[str]) -> dict[str, str]:
    """Each dotted key's shortest suffix of at least two parts that no other key ends with.

    "reg.targets.l1_activations.lambda" → "l1_activations.lambda", "trainer.epochs" stays.
    """
    names = {}
    for key in keys:
        parts = key.split(".")
        for size in range(min(2, len(parts)), len(parts) + 1):
            suffix = ".".join(parts[-size:])
            if not any(other != key and (other == suffix or other.endswith("." + suffix)) for other in keys):
                break
        names[key] = suffix
    return names


def is_finite(value: Any) -> TypeGuard[int | float]:
    """A number that is not NaN or infinite (the figures of a diverged run may be either)."""
    return is_number(value) and math.isfinite(value)
