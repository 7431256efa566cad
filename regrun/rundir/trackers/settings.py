"""The `logger` node, checked with the rest of the config, and the trackers' places checked
before a run writes a file: a folder TensorBoard can write, a store MLflow can reach.

`check_loggers` reads each tracker's options as a frozen dataclass (regrun/schema.py's
`parse`: types, ranges, unknown keys, one line each) and what spans a value (an empty
experiment name, a URI whose scheme no MLflow store takes). `reach_loggers` then looks at
the places a run would write to, knowing its folder: the TensorBoard folder must lie under
a writable directory, a local MLflow store's folder too, and a tracking server (an http or
https URI) must answer within `logger.mlflow.timeout` seconds.

An unreachable tracking server is a one-line error (exit 2) before the run writes anything,
as any other setting that cannot work: a run that goes on without its tracker would leave
a sweep's worth of runs missing from the place the user looks at. The wait is in a thread
that the main thread joins, so a stop signal ends it at once (`StopNow` in start-up: the run
ends `interrupted`, exit 130/143), however the name lookup or the connection hangs.
"""

import importlib.util
import math
import os
import socket
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Annotated, Any

from regrun.errors import RegrunError, choices, one_line
from regrun.layout import METRICS, MLFLOW, SUMMARY, TENSORBOARD
from regrun.rundir.trackers.common import Job, require
from regrun.schema import Range, parse

# MLflow's tracking stores by URI scheme (mlflow/tracking/_tracking_service/utils.py); a
# plugin adds its own through the entry point group below. A plain path is a file store.
FILE_SCHEMES = ("", "file")
DATABASE_SCHEMES = ("sqlite", "postgresql", "mysql", "mssql")  # each also as <db>+<driver>
SERVER_SCHEMES = ("http", "https")
OTHER_SCHEMES = ("databricks", "databricks-uc", "uc")
STORE_PLUGINS = "mlflow.tracking_store"
DATABASE_PACKAGES = ("sqlalchemy", "alembic")  # what MLflow's database stores need (mlflow-skinny has neither)
HEALTH = "health"  # the MLflow server's liveness endpoint, relative to the tracking URI


@dataclass(frozen=True)
class TensorBoardSettings:
    """`logger.tensorboard`: where the event files go and which histograms they get."""

    # Relative: inside the run directory, or for a sweep's job in the sweep root, one
    # folder per job named by it (TensorBoard names runs by folder). Absolute: that folder.
    dir: str = TENSORBOARD
    histograms: bool = True  # a histogram of every parameter tensor at each epoch
    densities: bool = True  # a histogram of the firing densities of each targeted activation module's units

    def validate(self, where: str) -> None:
        """A folder name that is not blank."""
        if not self.dir.strip():
            raise RegrunError(f"{where}.dir must name a folder (relative: in the run directory), got {self.dir!r}")


@dataclass(frozen=True)
class MLflowSettings:
    """`logger.mlflow`: the store, the experiment, the artifacts and how long to wait for a server."""

    tracking_uri: str | None = None  # null: a file store `mlruns` beside the run (a sweep's: in its root)
    experiment: str = "regrun"
    artifacts: bool = True
    # Seconds a tracking server (http/https URI) may take to answer at start-up, and each
    # of MLflow's requests later (MLFLOW_HTTP_REQUEST_TIMEOUT, unless set). 5: with the
    # command's start-up, an unreachable server is said within 15 s.
    timeout: Annotated[float, Range(0, 300, lo_open=True)] = 5

    def validate(self, where: str) -> None:
        """A named experiment; a URI whose scheme a store takes, with the packages it needs."""
        if not self.experiment.strip():
            raise RegrunError(f"{where}.experiment must name an MLflow experiment, got {self.experiment!r}")
        if self.tracking_uri is not None:
            check_uri(f"{where}.tracking_uri", self.tracking_uri)


TrackerSettings = TensorBoardSettings | MLflowSettings
SETTINGS: dict[str, type[TensorBoardSettings] | type[MLflowSettings]] = {
    "tensorboard": TensorBoardSettings, "mlflow": MLflowSettings}


def check_loggers(cfg: Mapping[str, Any]) -> dict[str, TrackerSettings]:
    """The `logger` node, validated: tracker name → its settings, defaults filled in."""
    node = cfg.get("logger") or {}
    if not isinstance(node, Mapping):
        raise RegrunError(f"logger must be a mapping of tracker name to options, got {node!r}")
    for name in node:
        if name not in SETTINGS:
            raise RegrunError(f"logger.{name}: unknown logger; allowed: {choices(SETTINGS)} "
                              f"({METRICS} and {SUMMARY} are always written)")
    return {name: parse(f"logger.{name}", node[name] or {}, SETTINGS[name]) for name in node}


def scheme_of(uri: str) -> str:
    """The URI's scheme as MLflow picks its store: '' for a path, 'postgresql' for postgresql+psycopg2://."""
    if uri == "databricks":
        return uri
    scheme = urllib.parse.urlparse(uri).scheme.lower()
    return scheme.split("+", 1)[0] if scheme.split("+", 1)[0] in DATABASE_SCHEMES else scheme


def check_uri(where: str, uri: str) -> None:
    """A tracking URI MLflow has a store for: a path, file:, a database, http(s), Databricks, a plugin's."""
    if not uri.strip():
        raise RegrunError(f"{where} must be a path or an MLflow tracking URI, got ''; null: a store beside the runs")
    scheme = scheme_of(uri)
    known = (*FILE_SCHEMES, *DATABASE_SCHEMES, *SERVER_SCHEMES, *OTHER_SCHEMES)
    if scheme not in known and scheme not in _plugin_schemes():
        allowed = choices(f"{s}:" for s in known if s)
        raise RegrunError(f"{where}={uri}: unknown scheme {scheme!r}; allowed: a path, {allowed} "
                          f"(or a scheme an installed MLflow plugin registers)")
    if scheme in SERVER_SCHEMES and not urllib.parse.urlparse(uri).hostname:
        raise RegrunError(f"{where}={uri}: no host; allowed: {scheme}://HOST[:PORT][/PATH]")
    if scheme in DATABASE_SCHEMES and (missing := [p for p in DATABASE_PACKAGES if importlib.util.find_spec(p) is None]):
        raise RegrunError(f"{where}={uri}: a {scheme} store needs {' and '.join(missing)}, not installed; "
                          f"install with: pip install {' '.join(missing)}")


def _plugin_schemes() -> set[str]:
    return {ep.name for ep in metadata.entry_points(group=STORE_PLUGINS)}


def store_uri(settings: MLflowSettings, job: Job) -> str:
    """The run's tracking URI: the configured one (a path made an absolute file: URI, so a
    sweep's processes agree), else a file store `mlruns` in the sweep's root or beside the run."""
    uri = settings.tracking_uri
    if uri is None:
        return ((job.sweep or job.out.resolve().parent) / MLFLOW).as_uri()
    return Path(uri).resolve().as_uri() if scheme_of(uri) == "" else uri


def local_store(uri: str) -> Path | None:
    """The folder a file: or sqlite: store writes into; None for a server or a remote database."""
    scheme = scheme_of(uri)
    parsed = urllib.parse.urlparse(uri)
    if scheme in FILE_SCHEMES:
        return Path(urllib.request.url2pathname(parsed.path))
    if scheme == "sqlite" and parsed.path not in ("", "/", "/:memory:"):
        # sqlite:///relative.db and sqlite:////absolute.db (SQLAlchemy's spelling)
        return Path(parsed.path[1:]).absolute().parent
    return None


def event_dir(settings: TensorBoardSettings, job: Job) -> Path:
    """The folder of a run's event files: `dir` in the run directory, or for a sweep's job
    `dir` in the sweep root and in it one folder named by the job (TensorBoard names its
    runs by their folders: `2_l1.lambda=0.001`, not `2/tb`)."""
    base = Path(settings.dir).expanduser()
    if job.sweep is None:
        return base if base.is_absolute() else job.out / base
    return (base if base.is_absolute() else job.sweep / base) / job.name


def sweep_event_dir(settings: TensorBoardSettings, sweep: Path) -> Path:
    """The folder of a sweep's own events (the HParams experiment, the trade-off plot)."""
    base = Path(settings.dir).expanduser()
    return base if base.is_absolute() else sweep / base


def check_writable(where: str, value: str, folder: Path) -> None:
    """A one-line error unless `folder` is, or can be created as, a directory this process may write."""
    existing = folder.absolute()
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        what = "not a directory" if not existing.is_dir() else "not writable"
        raise RegrunError(f"{where}={value}: cannot write {folder} ({existing} is {what}); "
                          "allowed: a folder under a writable directory")


def reach_loggers(loggers: Mapping[str, TrackerSettings], job: Job) -> None:
    """Check, writing nothing, that each tracker can start for `job`: its folders writable,
    its tracking server answering (see the module's docstring)."""
    for name, settings in loggers.items():
        if isinstance(settings, TensorBoardSettings):
            check_writable(f"logger.{name}.dir", settings.dir, event_dir(settings, job))
        else:
            reach_store(f"logger.{name}.tracking_uri", store_uri(settings, job), settings)


def reach_store(where: str, uri: str, settings: MLflowSettings) -> None:
    """A local store's folder writable; a server answering as MLflow's within the timeout."""
    if (folder := local_store(uri)) is not None:
        check_writable(where, uri, folder)
    elif scheme_of(uri) in SERVER_SCHEMES:
        reach_server(where, uri, settings.timeout, lambda: _mlflow_answers(uri, settings))


# MLflow's own HTTP client retries for about four minutes (7 retries, backoff 2); a run
# waits seconds instead. Set only where the user has not set them.
HTTP_RETRIES, HTTP_BACKOFF = "1", "1"


def client(uri: str, timeout: float) -> Any:
    """An MlflowClient for `uri`, its HTTP waits bounded by `timeout` seconds a request."""
    require("mlflow", "mlflow", "mlflow")
    from mlflow.tracking import MlflowClient

    if scheme_of(uri) in FILE_SCHEMES:
        # MLflow keeps its file store in maintenance mode and refuses it unless asked.
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", str(math.ceil(timeout)))
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", HTTP_RETRIES)
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", HTTP_BACKOFF)
    return MlflowClient(tracking_uri=uri)


def _mlflow_answers(uri: str, settings: MLflowSettings) -> None:
    """MLflow's first request of a run (its experiment by name): an MLflow server answers
    it, a web server that is not one (or a proxy's catch-all page) does not."""
    client(uri, settings.timeout).get_experiment_by_name(settings.experiment)


ELSE = "start the tracking server or choose another URI (null: a file store beside the runs)"


def reach_server(where: str, uri: str, timeout: float, answers: Callable[[], None] | None = None) -> None:
    """A one-line error unless an HTTP server answers at `uri` within `timeout` seconds, and
    then `answers()` returns (the tracker's own first request) within what is left of them.

    The server's liveness page (`/health`) is asked first, for a plain reason when nothing
    listens: refused, an unknown host, no answer; any status but a 5xx counts (a proxy's
    502 means the server behind it is down). The requests run in a daemon thread so that
    the main thread's wait, `join`, lets a stop signal's handler raise there and then (a
    name lookup or a connection inside C would hold it).
    """
    outcome: dict[str, Any] = {}

    def attempt() -> None:
        try:
            with urllib.request.urlopen(f"{uri.rstrip('/')}/{HEALTH}", timeout=timeout) as response:
                outcome["status"] = response.status
        except urllib.error.HTTPError as err:
            outcome["status"] = err.code
        except (OSError, ValueError) as err:  # URLError, a timeout, a refused connection, a bad URL
            outcome["error"] = err
            return
        if outcome["status"] < 500 and answers is not None:
            try:
                answers()
            except Exception as err:
                outcome["refused"] = err

    probe = threading.Thread(target=attempt, name="regrun-tracking-probe", daemon=True)
    probe.start()
    probe.join(timeout)
    if probe.is_alive() or isinstance(outcome.get("error"), socket.timeout | TimeoutError):
        raise RegrunError(f"{where}={uri}: no answer within {timeout:g} s (logger.mlflow.timeout); {ELSE}")
    if "error" in outcome:
        raise RegrunError(f"{where}={uri}: cannot reach the tracking server: {_reason(outcome['error'])}; {ELSE}")
    if outcome["status"] >= 500:
        raise RegrunError(f"{where}={uri}: the tracking server answers HTTP {outcome['status']}; {ELSE}")
    if "refused" in outcome:
        raise RegrunError(f"{where}={uri}: no MLflow tracking server answers there ({one_line(outcome['refused'])}); "
                          f"{ELSE}")


def _reason(err: BaseException) -> str:
    reason = getattr(err, "reason", err)  # URLError wraps the socket's error
    if isinstance(reason, ConnectionRefusedError):
        return "connection refused"
    if isinstance(reason, socket.gaierror):
        return f"unknown host ({reason.strerror})"
    return str(reason).strip().splitlines()[0] if str(reason).strip() else type(reason).__name__
