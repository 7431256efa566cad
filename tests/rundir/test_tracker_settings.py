"""Logger settings checked with the rest of the config, the trackers' places before any file,
a tracking server that does not answer (refused, silent, not MLflow's), a stop signal while
a run waits for one, and what trackers make of a run: its job's name, its parameters."""

import json
import logging
import os
import signal
import socket
import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import REGRUN, regrun

from regrun.analysis.runs import find_runs
from regrun.errors import RegrunError
from regrun.jobs.run import run
from regrun.jobs.signals import StopNow, StopRequest
from regrun.rundir.trackers import Job, Loggers, check_loggers, job_of, param_value
from regrun.rundir.trackers.common import record_sweep, short_overrides
from regrun.rundir.trackers.settings import reach_server

ELSE = "start the tracking server or choose another URI (null: a file store beside the runs)"


@pytest.fixture
def closed_port() -> int:
    """A local TCP port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def silent_server() -> Iterator[socket.socket]:
    """A listening socket that never answers: connections complete in its backlog, then wait."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        sock.settimeout(120)
        yield sock


def written(out: Path) -> list[str]:
    """What a run wrote in its folder, but the lock (`jobs.run.run` leaves it; the command does not)."""
    return sorted(p.name for p in out.iterdir() if p.name != ".lock") if out.exists() else []


def url(sock: socket.socket) -> str:
    return f"http://127.0.0.1:{sock.getsockname()[1]}"


@pytest.mark.parametrize("overrides, message", [
    (["logger=tensorboard", "logger.tensorboard.histograms=sometimes"],
     "logger.tensorboard.histograms must be true or false, got 'sometimes'"),
    (["logger=tensorboard", "logger.tensorboard.densities=1"], "logger.tensorboard.densities must be true or false, got 1"),
    (["logger=tensorboard", "logger.tensorboard.dir=' '"],
     "logger.tensorboard.dir must name a folder (relative: in the run directory), got ' '"),
    (["logger=mlflow", "logger.mlflow.experiment=''"], "logger.mlflow.experiment must name an MLflow experiment, got ''"),
    (["logger=mlflow", "logger.mlflow.tracking_uri=htp://localhost:5000"],
     "logger.mlflow.tracking_uri=htp://localhost:5000: unknown scheme 'htp'; allowed: a path, file:, sqlite:, "
     "postgresql:, mysql:, mssql:, http:, https:, databricks:, databricks-uc:, uc: (or a scheme an installed MLflow "
     "plugin registers)"),
    (["logger=mlflow", "logger.mlflow.tracking_uri=http://"],
     "logger.mlflow.tracking_uri=http://: no host; allowed: http://HOST[:PORT][/PATH]"),
    (["logger=mlflow", "logger.mlflow.tracking_uri=''"],
     "logger.mlflow.tracking_uri must be a path or an MLflow tracking URI, got ''; null: a store beside the runs"),
    (["logger=mlflow", "logger.mlflow.timeout=0"], "logger.mlflow.timeout must be a number in (0, 300], got 0"),
    (["logger=mlflow", "logger.mlflow.artifacts=yes"], "logger.mlflow.artifacts must be true or false, got 'yes'"),
    (["logger=mlflow", "+logger.mlflow.run_name=x"],
     "logger.mlflow.run_name: unknown key; allowed: tracking_uri, experiment, artifacts, timeout"),
])
def test_a_bad_logger_setting_is_one_line_and_nothing_is_written(make_cfg: Callable[..., dict], tmp_path: Path,
                                                                 overrides: list[str], message: str) -> None:
    with pytest.raises(RegrunError) as err:
        check_loggers(make_cfg(*overrides))
    assert str(err.value) == message
    out = tmp_path / "run"
    with pytest.raises(RegrunError) as err:
        run(make_cfg(*overrides), out)
    assert str(err.value) == message
    assert written(out) == []


def test_a_tensorboard_dir_that_cannot_be_written_is_refused_before_any_file(make_cfg: Callable[..., dict],
                                                                          tmp_path: Path) -> None:
    (tmp_path / "a_file").write_text("")
    where = tmp_path / "a_file" / "tb"
    out = tmp_path / "run"
    with pytest.raises(RegrunError) as err:
        run(make_cfg("logger=tensorboard", f"logger.tensorboard.dir={where}"), out)
    assert str(err.value) == (f"logger.tensorboard.dir={where}: cannot write {where} ({tmp_path / 'a_file'} is not "
                              "a directory); allowed: a folder under a writable directory")
    assert written(out) == []


def test_an_unreachable_tracking_server_is_one_line_before_any_file(make_cfg: Callable[..., dict], tmp_path: Path,
                                                                 closed_port: int) -> None:
    uri = f"http://127.0.0.1:{closed_port}"
    out = tmp_path / "run"
    with pytest.raises(RegrunError) as err:
        run(make_cfg("logger=mlflow", f"logger.mlflow.tracking_uri={uri}"), out)
    assert str(err.value) == f"logger.mlflow.tracking_uri={uri}: cannot reach the tracking server: connection refused; {ELSE}"
    assert written(out) == []


def test_the_command_refuses_an_unreachable_server_in_one_line_and_writes_no_run(
        tiny_root: Path, tmp_path: Path, closed_port: int) -> None:
    uri = f"http://127.0.0.1:{closed_port}"
    out = tmp_path / "run"
    proc = regrun("logger=mlflow", f"logger.mlflow.tracking_uri={uri}", f"dataset.root={tiny_root}",
                  "dataset.download=false", "trainer.device=cpu", "trainer.epochs=1", f"hydra.run.dir={out}", cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"regrun: error: logger.mlflow.tracking_uri={uri}: cannot reach the tracking server: connection refused; {ELSE}"]
    assert not out.exists()


def test_a_server_that_does_not_answer_is_given_up_after_the_timeout(silent_server: socket.socket) -> None:
    with pytest.raises(RegrunError) as err:
        reach_server("logger.mlflow.tracking_uri", url(silent_server), 0.5)
    assert str(err.value) == (f"logger.mlflow.tracking_uri={url(silent_server)}: no answer within 0.5 s "
                              f"(logger.mlflow.timeout); {ELSE}")


class Answering:
    """A local HTTP server answering every request with one status, in a thread."""

    def __init__(self, status: int) -> None:
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(status)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.uri = f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.mark.parametrize("status, reason", [
    (502, "the tracking server answers HTTP 502"),
    (404, "no MLflow tracking server answers there (MlflowException: API request to endpoint "
          "/api/2.0/mlflow/experiments/get-by-name failed with error code 404 != 200. Response body: '')"),
])
def test_a_server_that_is_not_a_working_mlflow_server_is_refused(make_cfg: Callable[..., dict], tmp_path: Path,
                                                                 status: int, reason: str) -> None:
    server = Answering(status)
    try:
        with pytest.raises(RegrunError) as err:
            run(make_cfg("logger=mlflow", f"logger.mlflow.tracking_uri={server.uri}"), tmp_path / "run")
    finally:
        server.close()
    assert str(err.value) == f"logger.mlflow.tracking_uri={server.uri}: {reason}; {ELSE}"


def test_a_stop_signal_ends_the_wait_for_a_server_at_once(request_: StopRequest, silent_server: socket.socket) -> None:
    def stop_once_connected() -> None:
        connection, _ = silent_server.accept()  # the probe is connected and waits for an answer
        os.kill(os.getpid(), signal.SIGTERM)
        connection.close()

    threading.Thread(target=stop_once_connected, daemon=True).start()
    # A timeout far beyond the test's patience: only the signal can end the wait with StopNow.
    with pytest.raises(StopNow), request_.immediate():
        reach_server("logger.mlflow.tracking_uri", url(silent_server), 300)
    assert request_.name == "SIGTERM"


def sigterm_while_waiting(proc: subprocess.Popen, server: socket.socket) -> str:
    """SIGTERM to the command once it waits for the silent server's answer; its stderr."""
    try:
        connection, _ = server.accept()  # it waits for the server now
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=60)
        connection.close()
    finally:
        proc.kill()
    return stderr


@pytest.mark.heavy
@pytest.mark.parametrize("sweep", [False, True], ids=["run", "sweep"])
def test_sigterm_while_the_command_waits_for_its_tracking_server_ends_it_interrupted(
        tiny_root: Path, tmp_path: Path, silent_server: socket.socket, sweep: bool) -> None:
    out = tmp_path / "out"
    where = [f"hydra.sweep.dir={out}", "seed=0,1"] if sweep else [f"hydra.run.dir={out}"]
    proc = subprocess.Popen([REGRUN, *(["-m"] if sweep else []), "logger=mlflow", f"logger.mlflow.tracking_uri={url(silent_server)}",
                             "logger.mlflow.timeout=300", f"dataset.root={tiny_root}", "dataset.download=false",
                             "trainer.device=cpu", "trainer.epochs=1", *where],
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    stderr = sigterm_while_waiting(proc, silent_server)
    assert proc.returncode == 143, stderr
    assert "Traceback" not in stderr
    if sweep:  # the sweep's check, before its first job: no job started
        assert stderr.strip().splitlines()[-1] == \
            "regrun: interrupted by SIGTERM before the run started; nothing was written"
        assert not out.exists() or not any(p.is_dir() for p in out.iterdir())
    else:
        written = json.loads((out / "summary.json").read_text())
        assert (written["status"], written["error"]) == (
            "interrupted", "not started: SIGTERM stopped it before training started")


class Failing:
    """A tracker whose every call fails, as one whose server went away."""

    def __getattr__(self, name: str) -> Callable[..., None]:
        def fail(*args: object) -> None:
            raise ConnectionError("server gone\nsecond line")

        return fail


class Recording:
    """A tracker that keeps the rows it gets."""

    def __init__(self) -> None:
        self.rows: list[dict] = []
        self.closed = False

    def log_row(self, row: dict) -> None:
        self.rows.append(row)

    def close(self) -> None:
        self.closed = True


def test_a_tracker_failing_mid_run_is_dropped_with_one_warning_and_the_others_go_on(
        caplog: pytest.LogCaptureFixture) -> None:
    kept = Recording()
    loggers = Loggers({"mlflow": Failing(), "tensorboard": kept})  # type: ignore[dict-item]
    with caplog.at_level(logging.WARNING):
        for epoch in (1, 2):
            loggers.log_row({"epoch": epoch, "step": epoch})
        loggers.close()
    assert kept.rows == [{"epoch": 1, "step": 1}, {"epoch": 2, "step": 2}] and kept.closed
    assert [r.getMessage() for r in caplog.records] == [
        "logger mlflow stopped: ConnectionError: server gone; the run goes on without it "
        "(metrics.csv and summary.json hold every figure)"]


@pytest.mark.parametrize("value, expected", [
    (None, None), ({}, None), (0.001, 0.001), (True, True), ("act*", "act*"), (["act*"], "act*"),
    ([256, 128], "256,128"), ([], "[]"), ([[1, 2], [3]], "[[1,2],[3]]"), ([{"a": 1}], '[{"a":1}]'),
])
def test_a_config_value_as_a_tracker_parameter(value: object, expected: object) -> None:
    assert param_value(value) == expected


def write_hydra_files(out: Path, mode: str, num: int, overrides: list[str], sweep: Path | None = None,
                      given: list[str] | None = None) -> None:
    import yaml

    (out / ".hydra").mkdir(parents=True)
    hydra = {"mode": mode, "job": {"num": num}, "overrides": {"task": overrides},
             "sweep": {"dir": str(sweep) if sweep else "${unique_dir:x}"}}
    (out / ".hydra" / "hydra.yaml").write_text(yaml.safe_dump({"hydra": hydra}))
    if sweep is not None:
        (sweep / "multirun.yaml").write_text(yaml.safe_dump({"hydra": {"overrides": {"task": given}}}))


def test_a_sweeps_job_is_named_by_its_number_and_what_the_sweep_varies(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    out = sweep / "4"
    # Hydra spells a job's values its own way (false → False, 1e-4 → 0.0001): keys decide, not the text.
    write_hydra_files(out, "MULTIRUN", 4, ["reg=l1_weights", "reg.targets.l1_weights.lambda=0.0001", "seed=2",
                                           "dataset.download=False", "+extra.key=1"], sweep,
                      ["reg=l1_weights", "reg.targets.l1_weights.lambda=0,1e-4", "seed=range(3)",
                       "dataset.download=false", "+extra.key=1"])
    job = job_of(out)
    assert (job.sweep, job.num, job.swept) == (sweep.resolve(), 4, ["reg.targets.l1_weights.lambda=0.0001", "seed=2"])
    assert job.name == "4_l1_weights.lambda=0.0001,seed=2"
    alone = tmp_path / "runs" / "12-00-00"
    write_hydra_files(alone, "RUN", 0, ["seed=3"])
    assert job_of(alone) == Job(alone, overrides=["seed=3"]) and job_of(alone).name == "runs/12-00-00"
    assert job_of(tmp_path / "no_hydra") == Job(tmp_path / "no_hydra")


def test_without_hydras_multirun_yaml_the_sweeps_record_names_the_given_overrides(tmp_path: Path) -> None:
    """Optuna's sweeper writes no multirun.yaml; the sweep's callback records the command line itself."""
    sweep = tmp_path / "sweep"
    write_hydra_files(sweep / "0", "MULTIRUN", 0, ["trainer.epochs=1", "optimizer.lr=0.0123"], None)
    assert job_of(sweep / "0").name == "0_trainer.epochs=1,optimizer.lr=0.0123"  # nothing says what is fixed
    record_sweep(sweep, overrides=["trainer.epochs=1"])
    assert job_of(sweep / "0").name == "0_optimizer.lr=0.0123"


def test_short_overrides_cut_keys_only_where_they_stay_unique() -> None:
    assert short_overrides(["reg.targets.a.lambda=1", "reg.targets.b.lambda=2", "optimizer.lr=0.1", "model=cnn"]) == \
        ["a.lambda=1", "b.lambda=2", "optimizer.lr=0.1", "model=cnn"]
    assert short_overrides(["x.a.lambda=1", "y.a.lambda=2"]) == ["x.a.lambda=1", "y.a.lambda=2"]


def test_compare_never_reads_an_mlflow_store_as_runs(tmp_path: Path) -> None:
    """A file store's copies (with meta.yaml and .trash) and another store's artifact root
    (sqlite's mlruns/<experiment>/<run id>/artifacts) hold summary.json and metrics.csv too."""
    summary = json.dumps({"status": "completed", "final": {"test_acc": 0.9}, "config": {"seed": 0}})
    (tmp_path / "0").mkdir()
    (tmp_path / "0" / "summary.json").write_text(summary)
    run_id = "0123456789abcdef0123456789abcdef"
    for store, marks in (("mlruns", True), ("mlartifacts", False)):
        copy = tmp_path / store / "1" / run_id / "artifacts"
        copy.mkdir(parents=True)
        (copy / "summary.json").write_text(summary)
        if marks:
            (tmp_path / store / ".trash").mkdir()
            (tmp_path / store / "1" / "meta.yaml").write_text("name: regrun\n")
    assert [run.path.name for run in find_runs([tmp_path])] == ["0"]


@pytest.mark.parametrize("uri, command", [
    ("file:///data/sweep/mlruns", "MLFLOW_ALLOW_FILE_STORE=true mlflow ui --backend-store-uri /data/sweep/mlruns"),
    ("file:///my%20runs/mlruns", "MLFLOW_ALLOW_FILE_STORE=true mlflow ui --backend-store-uri '/my runs/mlruns'"),
    ("sqlite:///mlflow.db", "mlflow ui --backend-store-uri sqlite:///mlflow.db"),
    ("http://tracking:5000", "open http://tracking:5000 in a browser"),
])
def test_the_ui_command_a_run_prints_for_its_store(uri: str, command: str) -> None:
    """mlflow ui refuses a file store without MLflow's opt-in (checked by hand with mlflow 3.17.2's server)."""
    from regrun.rundir.trackers.mlflow import ui_command

    assert ui_command(uri) == command


def test_mlflows_source_tags_name_the_working_directorys_commit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from regrun.rundir.trackers.common import source_tags

    repo = tmp_path / "project"
    repo.mkdir()
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-C", str(repo)]
    subprocess.run([*git, "init", "-q", "-b", "main"], check=True)
    subprocess.run([*git, "commit", "-q", "--allow-empty", "-m", "first"], check=True)
    commit = subprocess.run([*git, "rev-parse", "HEAD"], check=True, capture_output=True, text=True).stdout.strip()
    monkeypatch.chdir(repo)
    source_tags.cache_clear()
    try:
        tags = source_tags()
    finally:
        source_tags.cache_clear()
    assert tags["mlflow.source.git.commit"] == commit and tags["mlflow.source.git.branch"] == "main"
    assert tags["mlflow.source.type"] == "LOCAL" and tags["mlflow.source.name"] == "regrun"


@pytest.mark.heavy
def test_sigterm_while_a_resume_waits_for_its_tracking_server_ends_it_and_keeps_the_run(
        tiny_root: Path, tmp_path: Path, silent_server: socket.socket) -> None:
    out = tmp_path / "out"
    common = [f"dataset.root={tiny_root}", "dataset.download=false", "trainer.device=cpu"]
    done = subprocess.run([REGRUN, "logger=mlflow", *common, "trainer.epochs=1", f"hydra.run.dir={out}"],
                          cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file() and p.name not in ("regrun.log", ".lock")}
    # resumed against a tracking server (moved there, say) that does not answer
    proc = subprocess.Popen([REGRUN, "resume", str(out), "trainer.epochs=2", f"logger.mlflow.tracking_uri={url(silent_server)}",
                             "logger.mlflow.timeout=300"], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    stderr = sigterm_while_waiting(proc, silent_server)
    assert proc.returncode == 143, stderr
    assert stderr.strip().splitlines()[-1] == ("regrun resume: interrupted by SIGTERM before training continued; "
                                               "the checkpoint is as it was")
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.name in before} == before
