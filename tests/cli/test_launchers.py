"""Sweeps on other engines: Hydra's joblib, submitit and Ray launchers and its Optuna sweeper,
through the real `regrun` console script on tiny generated data.

Every engine must write the run directories the basic launcher writes, with the same figures,
so that the sweep summary and `regrun compare` read them all alike.
"""

import csv
import json
import math
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from regrun.cli.compare import main as compare_main
from regrun.jobs.objective import objective

pytestmark = pytest.mark.heavy  # many whole processes: `make test-heavy`

REGRUN = str(Path(sys.executable).parent / "regrun")
LAMBDA = "reg.targets.l1_activations.lambda"
# Thread limits an engine may set for its workers; dropped from the tests' environment, so that
# what a job sees is the engine's own choice and not the caller's.
THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
NO_SUMMARY = "~hydra.callbacks.sweep_summary"  # skips the sweep summary's plot where a test needs no summary.csv


def regrun(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if k not in THREAD_VARS} | {"COLUMNS": "160", "HYDRA_FULL_ERROR": "1"}
    return subprocess.run([REGRUN, *args], cwd=cwd, env=base | (env or {}), capture_output=True, text=True,
                          timeout=300)


def sweep(root: Path, sweep_dir: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """`regrun -m` over λ = 0, 1e-3 with L1 on the activations, one epoch of the tiny data on CPU."""
    proc = regrun("-m", "reg=l1_activations", f"{LAMBDA}=0,1e-3", f"dataset.root={root}", "dataset.download=false",
                  "trainer.device=cpu", "trainer.epochs=1", "trainer.batch_size=32", f"hydra.sweep.dir={sweep_dir}",
                  *args, cwd=sweep_dir.parent, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def summaries(sweep_dir: Path, jobs: int = 2) -> list[dict]:
    """summary.json of jobs 0 … jobs-1, each of them completed."""
    found = [json.loads((sweep_dir / str(job) / "summary.json").read_text()) for job in range(jobs)]
    assert [s["status"] for s in found] == ["completed"] * jobs
    return found


def metrics(run_dir: Path) -> list[dict[str, str]]:
    """metrics.csv without its one column that measures the machine rather than the run."""
    with open(run_dir / "metrics.csv") as f:
        return [{k: v for k, v in row.items() if k != "epoch_time_s"} for row in csv.DictReader(f)]


def summary_rows(sweep_dir: Path) -> list[dict[str, str]]:
    """summary.csv, written by the sweep summary callback in the main process when the sweep ends."""
    with open(sweep_dir / "summary.csv") as f:
        return list(csv.DictReader(f))


def test_joblib_gives_each_job_its_share_of_the_cores_and_the_basic_launchers_figures(
        tiny_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    pytest.importorskip("hydra_plugins.hydra_joblib_launcher")
    import joblib
    n_jobs = 2
    sweep(tiny_root, tmp_path / "joblib", "hydra/launcher=joblib", f"hydra.launcher.n_jobs={n_jobs}", NO_SUMMARY)
    # joblib's loky backend starts its workers with OMP_NUM_THREADS = cpu_count // n_jobs (at
    # least 1), counting the CPUs as loky does: affinity and cgroup quota included.
    expected_threads = max(1, joblib.cpu_count() // n_jobs)
    assert [s["environment"]["torch_threads"] for s in summaries(tmp_path / "joblib")] == [expected_threads] * 2
    # The basic launcher at the same thread count: the same float operations in the same
    # order, so the same figures to the last bit (another thread count changes the last digits).
    sweep(tiny_root, tmp_path / "basic", NO_SUMMARY, env={"OMP_NUM_THREADS": str(expected_threads)})
    for job in ("0", "1"):
        assert metrics(tmp_path / "joblib" / job) == metrics(tmp_path / "basic" / job)
    # `regrun compare` reads the workers' runs as the basic launcher's, figure for figure.
    assert compare_main([str(tmp_path / "joblib"), str(tmp_path / "basic"), "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == 4 and {row["status"] for row in rows} == {"completed"}
    figures = {(Path(row["path"]).parent.name, row[LAMBDA]): {k: v for k, v in row.items() if k not in ("run", "path")}
               for row in rows}
    for lam in (0, 1e-3):
        assert figures[("joblib", lam)] == figures[("basic", lam)]


def test_submitit_local_runs_each_job_as_a_submitit_job(tiny_root: Path, tmp_path: Path) -> None:
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    sweep_dir = tmp_path / "submitit"
    # One thread per job: submitit_local starts every job at once, as many as the sweep has.
    sweep(tiny_root, sweep_dir, "hydra/launcher=submitit_local", "hydra.launcher.timeout_min=5", NO_SUMMARY,
          env={"OMP_NUM_THREADS": "1"})
    finals = [s["final"] for s in summaries(sweep_dir)]
    assert finals[0]["penalty.l1_activations.weighted"] == 0 < finals[1]["penalty.l1_activations.weighted"]
    # Each job ran in a process of submitit's, which pickled its result for the launcher.
    assert len(list(sweep_dir.glob(".submitit/*/*_result.pkl"))) == 2


def test_slurm_preset_makes_an_sbatch_script(tiny_root: Path, tmp_path: Path) -> None:
    """The preset passes submitit's checks and asks Slurm for what its comments say; a stand-in
    `sbatch` keeps the script it is given and refuses it, so no job runs."""
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = tmp_path / "submitted.sh"
    (bin_dir / "sbatch").write_text(f'#!/bin/sh\ncp "$1" {script}\necho "sbatch: no cluster here" >&2\nexit 1\n')
    (bin_dir / "srun").write_text("#!/bin/sh\nexit 1\n")  # submitit looks for srun before it submits
    for tool in bin_dir.iterdir():
        tool.chmod(0o755)
    proc = regrun("-m", "hydra/launcher=slurm", "hydra.launcher.partition=gpu",
                  "+hydra.launcher.additional_parameters.account=my_lab", "reg=l1_activations",
                  f"{LAMBDA}=0,1e-4,1e-3", f"dataset.root={tiny_root}", f"hydra.sweep.dir={tmp_path / 'sweep'}",
                  cwd=tmp_path, env={"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"})
    assert proc.returncode != 0 and "sbatch: no cluster here" in proc.stderr
    lines = script.read_text().splitlines()
    for wanted in ("#SBATCH --array=0-2%3", "#SBATCH --time=60", "#SBATCH --partition=gpu", "#SBATCH --cpus-per-task=4",
                   "#SBATCH --gpus-per-node=1", "#SBATCH --mem=8GB", "#SBATCH --signal=USR2@120",
                   "#SBATCH --account=my_lab", "export OMP_NUM_THREADS=4"):
        assert wanted in lines, wanted
    assert any(line.startswith("srun ") and "submitit.core._submit" in line for line in lines)


def test_optuna_lambda_search_maximizes_the_objective_the_jobs_return(tiny_root: Path, tmp_path: Path) -> None:
    pytest.importorskip("hydra_plugins.hydra_optuna_sweeper")
    sweep_dir = tmp_path / "optuna"
    proc = regrun("-m", "hydra/sweeper=lambda_search", "hydra.sweeper.n_trials=3", "reg=l1_activations",
                  "objective.constraint=sparsity.l1_activations.zero_frac", "objective.min=0.55",
                  f"dataset.root={tiny_root}", "dataset.download=false", "trainer.device=cpu", "trainer.epochs=1",
                  "trainer.batch_size=32", f"hydra.sweep.dir={sweep_dir}", NO_SUMMARY, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = yaml.safe_load((sweep_dir / "optimization_results.yaml").read_text())
    assert sorted(p.name for p in sweep_dir.iterdir() if p.is_dir()) == ["0", "1", "2"]
    # The sweeper's best is the best of the scores the runs earned, and its λ is that run's.
    scores = {}
    for summary in summaries(sweep_dir, jobs=3):
        config = summary["config"]
        scores[config["reg"]["targets"]["l1_activations"]["lambda"]] = objective(summary)
    best_lambda = result["best_params"][LAMBDA]
    assert 1e-6 <= best_lambda <= 1e-1
    assert result["best_value"] == pytest.approx(max(scores.values())) == pytest.approx(scores[best_lambda])
    assert len(set(scores)) == 3 and all(math.isfinite(s) for s in scores.values())


@pytest.mark.slow
def test_ray_runs_the_sweep_on_a_local_ray_instance(tiny_root: Path, tmp_path: Path) -> None:
    pytest.importorskip("hydra_plugins.hydra_ray_launcher", reason="needs the ray extra: make test-slow")
    sweep_dir = tmp_path / "ray"
    sweep(tiny_root, sweep_dir, "hydra/launcher=ray", "+hydra.launcher.ray.init.num_cpus=2",
          env={"RAY_USAGE_STATS_ENABLED": "0"})
    # Ray starts each task's worker with OMP_NUM_THREADS = its num_cpus, 1 by default.
    assert [s["environment"]["torch_threads"] for s in summaries(sweep_dir)] == [1, 1]
    assert [(r["job"], r["status"]) for r in summary_rows(sweep_dir)] == [("0", "completed"), ("1", "completed")]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def ray_head(tmp_path: Path) -> Iterator[dict[str, str]]:
    """A one-node Ray cluster, started as on a cluster's head node; yields what a driver needs
    to join it: its address and its token (Ray's `ray start` turns on token authentication)."""
    pytest.importorskip("hydra_plugins.hydra_ray_launcher", reason="needs the ray extra: make test-slow")
    port = free_port()
    env = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32), "RAY_USAGE_STATS_ENABLED": "0"}
    log = tmp_path / "ray_head.log"
    with open(log, "w") as out:
        head = subprocess.Popen([str(Path(sys.executable).parent / "ray"), "start", "--head", "--block", f"--port={port}",
                                 "--num-cpus=2", "--include-dashboard=false", "--disable-usage-stats"],
                                env=os.environ | env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while "Ray runtime started" not in log.read_text():
            assert head.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.5)
        yield env | {"RAY_ADDRESS": f"127.0.0.1:{port}"}
    finally:
        head.terminate()  # `ray start --block` stops the processes it started, then exits
        head.wait(timeout=60)
        # ...but leaves the file naming the cluster, which a later ray.init() would try to join.
        current = Path(tempfile.gettempdir()) / "ray" / "ray_current_cluster"
        if current.exists() and current.read_text().strip().endswith(f":{port}"):
            current.unlink()


@pytest.mark.slow
def test_ray_cluster_preset_joins_a_running_cluster(tiny_root: Path, tmp_path: Path, ray_head: dict[str, str]) -> None:
    sweep_dir = tmp_path / "ray_cluster"
    proc = sweep(tiny_root, sweep_dir, "hydra/launcher=ray_cluster", NO_SUMMARY, env=ray_head)
    assert "Connecting to existing Ray cluster" in proc.stdout + proc.stderr
    assert [s["environment"]["torch_threads"] for s in summaries(sweep_dir)] == [1, 1]
