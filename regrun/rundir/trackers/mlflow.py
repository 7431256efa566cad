"""MLflow: a run per regrun run, nested under a parent run per sweep.

A run gets the config as parameters (settings of None left out, lists joined by commas),
each epoch's figures as metrics at the global step, MLflow's standard tags (user, source,
the git commit of the working directory), the run directory's small files as artifacts,
and its end: FINISHED, KILLED (interrupted) or FAILED. A resumed run continues its MLflow
run (found by the run-directory tag), its metrics at the global steps that follow. A sweep's parent run is started by
the sweep's callback before its jobs (regrun/cli/sweep_trackers.py), which leaves its id in
the sweep root (common.py's SWEEP_FILE) for the jobs, in whatever process they run, to nest under
(tag mlflow.parentRunId); at the sweep's end it gets the summary and the trade-off plots.

The default store is a file store, `mlruns`, in the sweep root (beside the runs for a run of
its own): the one local store that needs no database packages. `regrun compare` never
reads it as runs (analysis/runs.py skips MLflow's folders). A tracking server is reached
with short timeouts (settings.py checks it answers before the run starts), so a server
that goes away costs a run seconds, not MLflow's default four minutes of retries.
"""

import logging
import re
import shlex
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from regrun.errors import RegrunError, one_line
from regrun.layout import COMPLETED, CONFIG, INTERRUPTED, METRICS, PRUNE, STEP, SUMMARY, TARGETS
from regrun.rundir.trackers.common import (
    STEPS_GROUP,
    Job,
    ParamValue,
    figures,
    param_values,
    record_sweep,
    source_tags,
    sweep_record,
    target_lambdas,
)
from regrun.rundir.trackers.settings import (
    FILE_SCHEMES,
    SERVER_SCHEMES,
    MLflowSettings,
    client,
    local_store,
    scheme_of,
    store_uri,
)

log = logging.getLogger(__name__)
SWEEP_ENTRY = "mlflow"  # the sweep record's entry: the parent run's store, experiment and id
RUN_DIR_TAG, SWEEP_TAG, JOB_TAG, ROLE_TAG = "regrun.run_dir", "regrun.sweep_dir", "regrun.job", "regrun.role"
RESUMED_TAG = "regrun.resumed"  # the settings a resume changed, which MLflow's parameters cannot
PARENT_TAG, NOTE_TAG = "mlflow.parentRunId", "mlflow.note.content"  # MLflow's nesting and description tags
MAX_PARAMS, MAX_METRICS = 100, 1000  # what one log_batch call takes
MAX_PARAM_VALUE = 6000  # MLflow's limit on a parameter's length
NOT_A_KEY = re.compile(r"[^\w\-. /]")  # MLflow's keys: letters, digits, _ - . space /
def experiment_id(mlflow: Any, name: str) -> str:
    """The experiment's id, created when missing (a parallel job may create it first)."""
    found = mlflow.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    try:
        return mlflow.create_experiment(name)
    except Exception:  # created meanwhile by another job of the sweep
        found = mlflow.get_experiment_by_name(name)
        if found is None:
            raise
        return found.experiment_id


def param_key(key: str) -> str:
    """A config key as an MLflow parameter's name (a character MLflow refuses becomes _)."""
    return NOT_A_KEY.sub("_", key)


def param_text(value: ParamValue) -> str:
    """A parameter's value as MLflow stores it (its text, as mlflow.log_param writes it), cut to MLflow's limit."""
    return str(value)[:MAX_PARAM_VALUE]


class MLflowLogger:
    """An MLflow run for one regrun run (see the module's docstring)."""

    ARTIFACTS = (CONFIG, TARGETS, METRICS, SUMMARY, PRUNE)

    def __init__(self, settings: MLflowSettings, cfg: Mapping[str, Any], model: Any, job: Job):
        uri = store_uri(settings, job)
        self.client = client(uri, settings.timeout)
        self.out, self.artifacts, self.lambdas = job.out, settings.artifacts, target_lambdas(cfg)
        self.uri, self.in_sweep = uri, job.sweep is not None
        self.ended = False
        try:
            self.run_id = self._start(uri, settings, cfg, job)
        except RegrunError:
            raise
        except Exception as err:  # a store that refuses: permissions, a server's error, a database's
            raise RegrunError(f"logger.mlflow: cannot start a run in {uri}: {one_line(err)}") from err

    def _start(self, uri: str, settings: MLflowSettings, cfg: Mapping[str, Any], job: Job) -> str:
        from mlflow.entities import Param

        experiment = experiment_id(self.client, settings.experiment)
        params = [Param(param_key(k), param_text(v)) for k, v in param_values(cfg).items()]
        if job.continues and (earlier := self._earlier_run(experiment, job.out)) is not None:
            return self._continue(earlier, params)
        tags = source_tags() | {RUN_DIR_TAG: str(job.out.resolve()), NOTE_TAG: shlex.join(["regrun", *job.overrides])}
        if job.sweep is not None:
            tags |= {SWEEP_TAG: str(job.sweep), JOB_TAG: str(job.num)}
            if parent := sweep_parent(job.sweep, uri, experiment):
                tags[PARENT_TAG] = parent
        run_id = self.client.create_run(experiment, run_name=job.name, tags=tags).info.run_id
        self._log_params(run_id, params)
        return run_id

    def _log_params(self, run_id: str, params: Sequence[Any]) -> None:
        for start in range(0, len(params), MAX_PARAMS):
            self.client.log_batch(run_id, params=list(params[start:start + MAX_PARAMS]))

    def _earlier_run(self, experiment: str, out: Path) -> Any | None:
        """The MLflow run this run directory started before (it continues: `regrun resume`, a
        requeue): the run tagged with its folder, if there is one in this store. Searched only
        then, so that a fresh run's start costs no scan of the store's runs."""
        folder = str(out.resolve())
        if "'" in folder:  # not expressible in MLflow's filter strings: a fresh MLflow run
            return None
        found = self.client.search_runs([experiment], filter_string=f"tags.`{RUN_DIR_TAG}` = '{folder}'",
                                        max_results=1)
        return found[0] if found else None

    def _continue(self, earlier: Any, params: Sequence[Any]) -> str:
        """Go on with the earlier MLflow run: running again, its charts continued at the global
        steps that follow. MLflow's parameters cannot change, so a setting the resume changed
        (trainer.epochs) is said in the tag regrun.resumed ('trainer.epochs=4'); new ones are added."""
        run_id, logged = earlier.info.run_id, earlier.data.params
        self.client.update_run(run_id, status="RUNNING")
        self._log_params(run_id, [p for p in params if p.key not in logged])
        if changed := [f"{p.key}={p.value}" for p in params if p.key in logged and logged[p.key] != p.value]:
            self.client.set_tag(run_id, RESUMED_TAG, " ".join(changed))
        return run_id

    def log_row(self, row: Mapping[str, Any]) -> None:
        """The row's figures as metrics at the epoch's global step."""
        self._metrics(figures(row, self.lambdas), row[STEP])

    def log_step(self, row: Mapping[str, Any]) -> None:
        """The step's figures as metrics `steps.<column>` at its global step."""
        self._metrics({f"{STEPS_GROUP}.{k}": v for k, v in figures(row, {}).items()}, row[STEP])

    def _metrics(self, values: Mapping[str, float], step: int) -> None:
        from mlflow.entities import Metric

        stamp = int(time.time() * 1000)
        metrics = [Metric(param_key(k), v, stamp, step) for k, v in values.items()]
        for start in range(0, len(metrics), MAX_METRICS):
            self.client.log_batch(self.run_id, metrics=metrics[start:start + MAX_METRICS])

    def log_densities(self, step: int, densities: Mapping[str, Sequence[float]]) -> None:
        """Nothing: MLflow has no histograms (summary.json, an artifact, holds the final densities)."""

    def log_summary(self, summary: Mapping[str, Any]) -> None:
        """The status as a tag and the run's end; the run directory's small files as artifacts."""
        self.client.set_tag(self.run_id, "regrun.status", summary["status"])
        if self.artifacts:
            for name in self.ARTIFACTS:
                if (self.out / name).exists():
                    self.client.log_artifact(self.run_id, str(self.out / name))
        self.client.set_terminated(self.run_id, END_STATUS.get(summary["status"], "FAILED"))
        self.ended = True
        if not self.in_sweep:  # a sweep says it once, at its end
            log_ui(self.uri)

    def close(self) -> None:
        """A run that ended without a summary (a crash) is marked failed."""
        if not self.ended:
            self.client.set_terminated(self.run_id, "FAILED")


END_STATUS = {COMPLETED: "FINISHED", INTERRUPTED: "KILLED"}


def ui_command(uri: str) -> str:
    """How to browse the store: `mlflow ui` on it (a file store needs MLflow's opt-in to its
    maintenance mode), or the server's own address."""
    if scheme_of(uri) in SERVER_SCHEMES:
        return f"open {uri} in a browser"
    folder = local_store(uri) if scheme_of(uri) in FILE_SCHEMES else None
    opt_in = "MLFLOW_ALLOW_FILE_STORE=true " if folder is not None else ""
    return f"{opt_in}mlflow ui --backend-store-uri {shlex.quote(str(folder or uri))}"


def log_ui(uri: str) -> None:
    """Log how to open the store in MLflow's UI (mlflow-skinny, the `mlflow` extra, has none)."""
    how = "" if scheme_of(uri) in SERVER_SCHEMES else " (its UI: pip install 'regrun[mlflow-ui]', or pip install mlflow)"
    log.info("MLflow: %s%s", ui_command(uri), how)


def sweep_parent(sweep: Path, uri: str, experiment: str) -> str | None:
    """The id of the sweep's parent run, when the sweep started one in this store and experiment."""
    parent = sweep_record(sweep).get(SWEEP_ENTRY)
    if not isinstance(parent, dict) or parent.get("tracking_uri") != uri or parent.get("experiment_id") != experiment:
        return None
    run_id = parent.get("run_id")
    return run_id if isinstance(run_id, str) else None


def start_sweep(settings: MLflowSettings, sweep: Path, overrides: Sequence[str]) -> str:
    """Start the sweep's parent run and leave its id in the sweep root for the jobs; returns it."""
    uri = store_uri(settings, Job(sweep, sweep=sweep))
    mlflow = client(uri, settings.timeout)
    try:
        experiment = experiment_id(mlflow, settings.experiment)
        tags = source_tags() | {SWEEP_TAG: str(sweep), ROLE_TAG: "sweep",
                                NOTE_TAG: shlex.join(["regrun", "-m", *overrides])}
        run_id = mlflow.create_run(experiment, run_name=f"{sweep.parent.name}/{sweep.name}", tags=tags).info.run_id
    except Exception as err:
        raise RegrunError(f"logger.mlflow: cannot start the sweep's run in {uri}: {one_line(err)}") from err
    record_sweep(sweep, **{SWEEP_ENTRY: {"tracking_uri": uri, "experiment_id": experiment, "run_id": run_id}})
    return run_id


def end_sweep(settings: MLflowSettings, sweep: Path, statuses: Sequence[str], artifacts: Sequence[Path]) -> None:
    """End the sweep's parent run: the jobs' statuses counted as tags, the sweep's summary
    and plots as artifacts; KILLED when a job was interrupted, else FINISHED."""
    uri = store_uri(settings, Job(sweep, sweep=sweep))
    mlflow = client(uri, settings.timeout)
    run_id = sweep_parent(sweep, uri, experiment_id(mlflow, settings.experiment))
    if run_id is None:
        return
    mlflow.set_tag(run_id, "regrun.jobs", str(len(statuses)))
    for status in sorted(set(statuses)):
        mlflow.set_tag(run_id, f"regrun.jobs.{status}", str(statuses.count(status)))
    for path in artifacts:
        if path.exists():
            mlflow.log_artifact(run_id, str(path))
    mlflow.set_terminated(run_id, "KILLED" if INTERRUPTED in statuses else "FINISHED")
    log_ui(uri)
