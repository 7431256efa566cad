"""`hydra/launcher=fused` through the real `regrun` command on tiny data: every job gets the
run directory a basic-launcher job gets, with the same figures; jobs that cannot be fused run
as the basic launcher runs them."""

import csv
import json
import math
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from conftest import REGRUN, regrun

pytestmark = pytest.mark.heavy  # many whole processes: `make test-heavy`

LAMBDA = "reg.targets.l1_activations.lambda"
RUN_FILES = (".hydra/config.yaml", ".hydra/hydra.yaml", ".hydra/overrides.yaml", "config.json", "targets.json",
             "metrics.csv", "checkpoint.pt", "summary.json", "model.pt", "regrun.log")
TOLERANCE = {"rel_tol": 2e-4, "abs_tol": 1e-3}  # float summation order only (tests/training/test_fused.py)


def sweep(root: Path, sweep_dir: Path, *args: str) -> subprocess.CompletedProcess:
    return regrun("-m", "reg=l1_activations", "model.hidden=[32,16]", f"dataset.root={root}", "dataset.download=false",
                  "trainer.device=cpu", "trainer.epochs=1", "trainer.batch_size=32", f"hydra.sweep.dir={sweep_dir}",
                  *args, cwd=sweep_dir.parent)


def summary_rows(sweep_dir: Path) -> list[dict[str, str]]:
    with open(sweep_dir / "summary.csv") as f:
        return list(csv.DictReader(f))


def test_a_fused_sweep_writes_every_jobs_run_directory_with_the_basic_launchers_figures(
        tiny_root: Path, tmp_path: Path) -> None:
    grid = (f"{LAMBDA}=0,1e-3,1e-2", "seed=0,1")
    fused = sweep(tiny_root, tmp_path / "fused", *grid, "hydra/launcher=fused", "hydra.launcher.max_models=4")
    assert fused.returncode == 0, fused.stdout[-3000:] + fused.stderr[-3000:]
    assert "#0/1/2/3/4/5 fused" in fused.stdout + fused.stderr
    assert "at most 4 members at once (max_models=4)" in fused.stdout + fused.stderr
    basic = sweep(tiny_root, tmp_path / "basic", *grid)
    assert basic.returncode == 0, basic.stderr[-3000:]
    for job in range(6):
        for name in RUN_FILES:
            assert (tmp_path / "fused" / str(job) / name).is_file(), (job, name)
    ours, theirs = summary_rows(tmp_path / "fused"), summary_rows(tmp_path / "basic")
    assert [(r["job"], r["overrides"], r["status"]) for r in ours] == [(r["job"], r["overrides"], r["status"]) for r in theirs]
    for mine, reference in zip(ours, theirs):
        for key in ("train_task_loss", "train_total_loss", "test_loss", "test_acc", "penalty.l1_activations.raw"):
            assert math.isclose(float(mine[key]), float(reference[key]), **TOLERANCE), (mine["job"], key)
    log = (tmp_path / "fused" / "4" / "regrun.log").read_text()
    assert "fused group of 2 runs (4, 5)" in log and "epoch 1/1" in log  # the second chunk, and its own line


def test_jobs_that_cannot_be_fused_run_as_the_basic_launcher_runs_them(tiny_root: Path, tmp_path: Path) -> None:
    # λ < 0 is refused as in a job alone; the jobs with dropout train alone; the rest fuse.
    proc = sweep(tiny_root, tmp_path / "sweep", f"{LAMBDA}=0,1e-3,-1", "model.dropout=0,0.2", "hydra/launcher=fused")
    assert proc.returncode == 2, proc.stderr[-3000:]  # a sweep exits as its worst job: a refused config
    rows = summary_rows(tmp_path / "sweep")  # jobs in Hydra's order: λ 0 (dropout 0, 0.2), λ 1e-3 (...), λ −1 (...)
    assert [r["status"] for r in rows] == ["completed"] * 4 + ["failed"] * 2
    assert "lambda must be a finite number ≥ 0" in rows[4]["error"]
    assert "#0/2 fused" in proc.stdout + proc.stderr and "#4 alone" in proc.stdout + proc.stderr  # a refused config runs alone
    assert f"training as one fused group: job #0 ({tmp_path / 'sweep' / '0'}), job #2" in proc.stdout + proc.stderr
    assert "trains alone: its model has dropout" in proc.stdout + proc.stderr
    for job in (1, 3):  # the dropout jobs: alone, with every file a run writes
        for name in RUN_FILES:
            assert (tmp_path / "sweep" / str(job) / name).is_file(), (job, name)


def test_a_bad_max_models_is_one_line_before_any_job(tiny_root: Path, tmp_path: Path) -> None:
    proc = sweep(tiny_root, tmp_path / "sweep", f"{LAMBDA}=0,1e-3", "hydra/launcher=fused", "hydra.launcher.max_models=0")
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == \
           "regrun: error: hydra.launcher.max_models must be a positive integer, got 0"
    assert not any((tmp_path / "sweep").glob("*/config.json"))


def stop_when(argv: list[str], appears: Path, cwd: Path) -> None:
    """Run the command, send it SIGTERM once `appears` exists, and check it ends interrupted."""
    with open(cwd / "console.log", "w") as log:
        proc = subprocess.Popen(argv, cwd=cwd, stdout=log, stderr=subprocess.STDOUT, env=os.environ | {"COLUMNS": "160"})
        deadline = time.monotonic() + 180
        while not appears.exists():
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=120) == 128 + signal.SIGTERM


def test_sigterm_checkpoints_every_member_and_each_resumes_alone(tiny_root: Path, tmp_path: Path) -> None:
    sweep_dir = tmp_path / "sweep"
    argv = [REGRUN, "-m", "reg=l1_activations", f"{LAMBDA}=0,1e-3", f"dataset.root={tiny_root}", "trainer.device=cpu",
            "trainer.epochs=200", "trainer.batch_size=32", "hydra/launcher=fused", f"hydra.sweep.dir={sweep_dir}"]
    stop_when(argv, sweep_dir / "1" / "metrics.csv", tmp_path)  # both members are training
    for job in ("0", "1"):
        stopped = json.loads((sweep_dir / job / "summary.json").read_text())
        assert stopped["status"] == "interrupted" and (sweep_dir / job / "checkpoint.pt").exists()
    resumed = regrun("resume", str(sweep_dir / "1"), "trainer.epochs=" + str(_epochs_done(sweep_dir / "1") + 1),
                     cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert json.loads((sweep_dir / "1" / "summary.json").read_text())["status"] == "completed"


def metrics_rows(run_dir: Path) -> list[dict[str, float]]:
    with open(run_dir / "metrics.csv") as f:
        return [{k: float(v) for k, v in row.items() if k != "epoch_time_s"} for row in csv.DictReader(f)]


def test_an_interrupted_fused_sweep_rerun_continues_as_one_group_to_the_uninterrupted_figures(
        tiny_root: Path, tmp_path: Path) -> None:
    # 80 steps an epoch (320 samples, batch 4), 6 epochs: a SIGTERM once the first epoch is
    # written lands part-way through a later one.
    args = ["reg=l1_activations", f"{LAMBDA}=0,1e-4,1e-3,1e-2", "model.hidden=[32,16]", "optimizer=adam",
            f"dataset.root={tiny_root}", "dataset.download=false", "trainer.device=cpu", "trainer.epochs=6",
            "trainer.batch_size=4", "hydra/launcher=fused"]
    stopped = tmp_path / "stopped"
    stop_when([REGRUN, "-m", *args, f"hydra.sweep.dir={stopped}"], stopped / "3" / "metrics.csv", tmp_path)
    positions = set()
    for job in range(4):
        assert json.loads((stopped / str(job) / "summary.json").read_text())["status"] == "interrupted"
        import torch

        saved = torch.load(stopped / str(job) / "checkpoint.pt", weights_only=True)
        positions.add((saved["epoch"], saved["partial"]["batches"] if saved["partial"] else 0))
    assert len(positions) == 1 and positions != {(6, 0)}  # every member stopped at one step, before the end

    again = regrun("-m", *args, f"hydra.sweep.dir={stopped}", cwd=tmp_path)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert "#0/1/2/3 fused" in again.stdout + again.stderr
    assert "training as one fused group: job #0" in again.stdout + again.stderr
    whole = regrun("-m", *args, f"hydra.sweep.dir={tmp_path / 'whole'}", cwd=tmp_path)
    assert whole.returncode == 0, whole.stderr[-3000:]
    for job in range(4):
        assert "resuming at step" in (stopped / str(job) / "regrun.log").read_text()
        assert json.loads((stopped / str(job) / "summary.json").read_text())["status"] == "completed"
        ours, theirs = metrics_rows(stopped / str(job)), metrics_rows(tmp_path / "whole" / str(job))
        assert [row["epoch"] for row in ours] == [row["epoch"] for row in theirs] == [1, 2, 3, 4, 5, 6]
        for mine, reference in zip(ours, theirs):
            for key, value in reference.items():
                assert math.isclose(mine[key], value, rel_tol=1e-6, abs_tol=1e-9), (job, mine["epoch"], key)


def _epochs_done(run_dir: Path) -> int:
    import torch

    return torch.load(run_dir / "checkpoint.pt", weights_only=True)["epoch"]


def test_hydra_finds_the_launcher_and_lists_it(tmp_path: Path) -> None:
    proc = regrun("--hydra-help", cwd=tmp_path)
    assert proc.returncode == 0
    assert "fused" in proc.stdout.split("hydra/launcher:", 1)[1].splitlines()[0]
