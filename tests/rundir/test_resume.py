"""Runs that survive interruption: SIGKILL then `regrun resume`, SIGTERM at a step boundary,
divergence, a stopped sweep, and folders that are never shared or overwritten."""

import csv
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch
from conftest import REGRUN, regrun, write_dataset

pytestmark = pytest.mark.heavy  # many whole processes: `make test-heavy`

TIMING = {"epoch_time_s"}  # the only column allowed to differ between a resumed run and an unbroken one


@pytest.fixture(scope="module")
def mid_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Data big enough that a run can be stopped part-way: 1200 train samples, 75 steps an epoch."""
    return write_dataset(tmp_path_factory.mktemp("mid"), n_train=1200, n_test=200)


def args(root: Path, out: Path, *extra: str) -> list[str]:
    return ["reg=l1_activations", "model.hidden=[64,32]", "model.dropout=0.1", f"dataset.root={root}", "dataset.download=false",
            "trainer.device=cpu", "trainer.batch_size=16", f"hydra.run.dir={out}", *extra]


def start(argv: list[str], cwd: Path) -> subprocess.Popen:
    env = os.environ | {"COLUMNS": "160"}
    log = open(cwd / f"console-{time.monotonic_ns()}.log", "w")  # a file, not a pipe nobody drains
    return subprocess.Popen([REGRUN, *argv], cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT, text=True)


def metrics(run: Path) -> list[dict]:
    with open(run / "metrics.csv") as f:
        return [{k: v for k, v in row.items() if k not in TIMING} for row in csv.DictReader(f)]


def wait_for(condition, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert proc.poll() is None, "the run ended before it could be stopped"
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


@pytest.fixture(scope="module")
def unbroken(mid_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The reference: the same config run start to end without a stop."""
    out = tmp_path_factory.mktemp("ref") / "run"
    proc = regrun(*args(mid_root, out, "trainer.epochs=4"), cwd=out.parent)
    assert proc.returncode == 0, proc.stderr
    return out


def test_sigkill_then_resume_ends_with_the_figures_of_an_unbroken_run(mid_root: Path, unbroken: Path,
                                                                      tmp_path: Path) -> None:
    out = tmp_path / "run"
    proc = start(args(mid_root, out, "trainer.epochs=4"), tmp_path)
    wait_for(lambda: (out / "metrics.csv").exists() and len(metrics(out)) >= 2, proc)
    proc.kill()  # SIGKILL: no handler runs
    proc.wait()
    assert not (out / "summary.json").exists()
    saved = torch.load(out / "checkpoint.pt", weights_only=True)  # intact after the kill
    assert 1 <= saved["epoch"] < 4  # the kill may land between an epoch's row and its checkpoint
    resumed = regrun("resume", str(out), cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert metrics(out) == metrics(unbroken)
    ours, theirs = (json.loads((run / "summary.json").read_text()) for run in (out, unbroken))
    assert ours["status"] == "completed"
    assert {k: v for k, v in ours["final"].items() if k not in TIMING} == \
           {k: v for k, v in theirs["final"].items() if k not in TIMING}
    assert ours["sparsity"] == theirs["sparsity"]


@pytest.fixture(scope="module")
def long_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Epochs long enough (300 steps) that a stop sent once training has begun lands inside the first."""
    return write_dataset(tmp_path_factory.mktemp("long"), n_train=4800, n_test=200)


def test_sigterm_stops_mid_epoch_and_resume_is_exact(long_root: Path, tmp_path: Path) -> None:
    reference = tmp_path / "reference"
    assert regrun(*args(long_root, reference, "trainer.epochs=2"), cwd=tmp_path).returncode == 0
    out = tmp_path / "run"
    # steps.csv gets its first row at the first step: the stop is sent once training has begun,
    # not during start-up (a stop there ends the run before training, another test's case).
    proc = start(args(long_root, out, "trainer.epochs=2", "trainer.log_steps=10"), tmp_path)
    wait_for(lambda: (out / "steps.csv").exists(), proc)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 128 + signal.SIGTERM
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "interrupted" and "stopped at step" in summary["error"]
    saved = torch.load(out / "checkpoint.pt", weights_only=True)
    assert saved["partial"] is not None and 0 < saved["partial"]["batches"] < 300  # part-way through an epoch
    assert saved["epoch"] == 0 and not (out / "metrics.csv").exists()
    resumed = regrun("resume", str(out), cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert metrics(out) == metrics(reference)


def test_resume_with_more_epochs_extends_the_run_and_keeps_its_rows(mid_root: Path, unbroken: Path,
                                                                    tmp_path: Path) -> None:
    out = tmp_path / "run"
    assert regrun(*args(mid_root, out, "trainer.epochs=2"), cwd=tmp_path).returncode == 0
    refused = regrun("resume", str(out), cwd=tmp_path)
    assert refused.returncode == 2 and "trainer.epochs=N" in refused.stderr
    extended = regrun("resume", str(out), "trainer.epochs=4", cwd=tmp_path)
    assert extended.returncode == 0, extended.stderr
    assert metrics(out) == metrics(unbroken)  # 2 + 2 epochs are the 4 of the unbroken run
    assert json.loads((out / "config.json").read_text())["trainer"]["epochs"] == 4


def test_a_nan_stops_the_run_naming_the_term_and_the_step(mid_root: Path, tmp_path: Path) -> None:
    found = {}
    for log_every in (1, 50):  # where the loop syncs must not change which step is named
        out = tmp_path / f"run{log_every}"
        proc = regrun(*args(mid_root, out, "trainer.epochs=2", "optimizer=sgd", "optimizer.lr=1e6",
                            f"trainer.log_every={log_every}"), cwd=tmp_path)
        assert proc.returncode == 1, proc.stderr
        summary = json.loads((out / "summary.json").read_text())
        assert summary["status"] == "diverged"
        found[log_every] = summary["error"]
        assert not (out / "checkpoint.pt").exists()  # no checkpoint of non-finite weights
    assert found[1] == found[50]
    assert found[1].startswith(("train_task_loss is", "penalty.l1_activations.raw is")) and " at step " in found[1]


def test_sigterm_during_a_sweep_leaves_the_job_interrupted_and_resumable(mid_root: Path, tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    argv = ["-m", "seed=0,1,2", *args(mid_root, tmp_path / "unused", "trainer.epochs=2"), f"hydra.sweep.dir={sweep}"]
    proc = start(argv, tmp_path)
    wait_for(lambda: (sweep / "0" / "metrics.csv").exists(), proc)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 128 + signal.SIGTERM
    statuses = [json.loads((sweep / str(j) / "summary.json").read_text()) for j in range(3)]
    assert [s["status"] for s in statuses] == ["interrupted"] * 3
    assert "not started" in statuses[1]["error"] and "not started" in statuses[2]["error"]
    with open(sweep / "summary.csv") as f:
        rows = list(csv.DictReader(f))
    assert [row["status"] for row in rows] == ["interrupted"] * 3
    for job in ("0", "1"):
        resumed = regrun("resume", str(sweep / job), cwd=tmp_path)
        assert resumed.returncode == 0, resumed.stderr
        assert json.loads((sweep / job / "summary.json").read_text())["status"] == "completed"


def test_runs_in_the_same_second_get_their_own_folders(tiny_root: Path, tmp_path: Path) -> None:
    # Both runs ask for the very same folder name, as two runs started within one second do.
    argv = ["trainer.epochs=1", f"dataset.root={tiny_root}", "dataset.download=false", "trainer.device=cpu",
            f"hydra.run.dir=${{unique_dir:{tmp_path}/runs/12-00-00}}"]
    procs = [start(argv, tmp_path) for _ in range(2)]
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    folders = sorted(p.name for p in (tmp_path / "runs").iterdir())
    assert folders == ["12-00-00", "12-00-00-1"]
    assert all((tmp_path / "runs" / f / "summary.json").exists() for f in folders)


def test_a_folder_holding_another_run_is_never_overwritten(tiny_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    base = ["trainer.epochs=1", f"dataset.root={tiny_root}", "dataset.download=false", "trainer.device=cpu",
            f"hydra.run.dir={out}"]
    assert regrun(*base, cwd=tmp_path).returncode == 0
    before = (out / "summary.json").read_text()
    other = regrun(*base, "seed=7", cwd=tmp_path)
    assert other.returncode == 2 and "already holds another run (seed differs)" in other.stderr
    again = regrun(*base, cwd=tmp_path)  # the same config: the completed run is left as it is
    assert again.returncode == 0
    assert (out / "summary.json").read_text() == before
