"""The sweep summary: a real multirun through the `regrun` script on tiny data, then
`regrun compare` on its folders; and the summary of jobs that did not complete."""

import csv
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
from fake_runs import config, final, write_run
from omegaconf import OmegaConf

from regrun.analysis import plots
from regrun.analysis.sweep import SweepSummary, release_workers, summarize_sweep

REGRUN = str(Path(sys.executable).parent / "regrun")
LAM = "reg.targets.l1_activations.lambda"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def regrun(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = os.environ | {"COLUMNS": "200"}
    return subprocess.run([REGRUN, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def swept(tiny_root: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess]:
    """A λ sweep of one epoch a job, run once for the tests of this file; λ = -1 is a failed job.

    The jobs after the failed one still run, and the sweep exits as its worst job: 2.
    """
    root = tmp_path_factory.mktemp("sweep")
    proc = regrun("-m", "reg=l1_activations", f"{LAM}=0,1e-3,-1,1e-1", "trainer.epochs=1", "trainer.device=cpu",
                  "trainer.batch_size=32", f"dataset.root={tiny_root}", "dataset.download=false",
                  f"hydra.sweep.dir={root / 'multirun'}", cwd=root)
    assert "Traceback" not in proc.stderr, proc.stderr
    return root / "multirun", proc


def test_multirun_end_writes_summary_csv_and_plot(swept: tuple[Path, subprocess.CompletedProcess]) -> None:
    sweep_dir, proc = swept
    rows = read_csv(sweep_dir / "summary.csv")
    assert [(r["job"], r["path"], r["status"], r["error"]) for r in rows] == [
        ("0", "0", "completed", ""), ("1", "1", "completed", ""),
        ("2", "2", "failed", f"{LAM} must be a finite number ≥ 0, got -1"), ("3", "3", "completed", "")]
    assert [f"{LAM}={lam}" in r["overrides"] for r, lam in zip(rows, ("0", "0.001", "-1", "0.1"))] == [True] * 4
    assert rows[2]["test_acc"] == ""
    for row in (rows[0], rows[1], rows[3]):
        summary = json.loads((sweep_dir / row["path"] / "summary.json").read_text())
        assert float(row["test_acc"]) == summary["final"]["test_acc"]
        assert float(row["sparsity.l1_activations.zero_frac"]) == summary["final"]["sparsity.l1_activations.zero_frac"]
    assert (sweep_dir / "tradeoff.png").read_bytes().startswith(PNG_SIGNATURE)
    assert (sweep_dir / "tradeoff_density.png").read_bytes().startswith(PNG_SIGNATURE)  # an activation target
    assert not (sweep_dir / "tradeoff_prune.png").exists()  # nothing pruned
    assert "4 runs" in proc.stdout  # the comparison table, printed when the sweep ends
    assert proc.returncode == 2  # a failed job (a config error) fails the sweep, after all the others ran
    assert f"2: failed: {LAM} must be a finite number ≥ 0, got -1" in proc.stdout


def test_compare_on_the_sweep(swept: tuple[Path, subprocess.CompletedProcess]) -> None:
    sweep_dir, _ = swept
    proc = regrun("compare", str(sweep_dir), "--format", "json", "--sort", "lambda", cwd=sweep_dir)
    assert proc.returncode == 0, proc.stderr
    records = json.loads(proc.stdout)
    assert [(r["run"], r[LAM], r["status"]) for r in records] == [
        ("2", -1, "failed"), ("0", 0.0, "completed"), ("1", 1e-3, "completed"), ("3", 1e-1, "completed")]
    assert list(records[0])[:5] == ["run", "path", LAM, "status", "error"]  # only λ differs
    assert records[0]["test_acc"] is None
    # the check: the targeted activations grow sparser as λ grows
    sparsity = [r["sparsity.l1_activations.zero_frac"] for r in records[1:]]
    assert sparsity == sorted(sparsity) and sparsity[-1] > sparsity[0] + 0.1, sparsity
    for record in records[1:]:
        summary = json.loads((Path(record["path"]) / "summary.json").read_text())
        assert record["sparsity.act1.zero_frac"] == summary["final"]["sparsity.act1.zero_frac"]
        assert record["penalty.l1_activations.weighted"] == summary["final"]["penalty.l1_activations.weighted"]


def test_summary_lists_jobs_that_did_not_complete(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    write_run(tmp_path / "0", config(lam=0.0), final(0.97, 0.5, 0.0), overrides=["lam=0"], job_num=0)
    write_run(tmp_path / "1", config(lam=-1.0), status="failed", overrides=["lam=-1"], job_num=1,
              error="reg.targets.l1_act.lambda must be a finite number ≥ 0, got -1.0")
    write_run(tmp_path / "2", config(lam=1e-2), status=None, metrics=[final(0.5, 0.9)], job_num=2)
    write_run(tmp_path / "3", config(lam=1e-3), final(0.96, 0.8), overrides=["lam=0.001"], job_num=3)
    summarize_sweep(tmp_path)
    rows = read_csv(tmp_path / "summary.csv")
    assert [(r["job"], r["overrides"], r["status"], r["error"], r["test_acc"]) for r in rows] == [
        ("0", "lam=0", "completed", "", "0.97"),
        ("1", "lam=-1", "failed", "reg.targets.l1_act.lambda must be a finite number ≥ 0, got -1.0", ""),
        ("2", "", "incomplete", "no summary.json (still running, or killed); last metrics row: epoch 2 of 2", "0.5"),
        ("3", "lam=0.001", "completed", "", "0.96")]
    assert (tmp_path / "tradeoff.png").read_bytes().startswith(PNG_SIGNATURE)
    assert "1: failed: reg.targets.l1_act.lambda must be" in capsys.readouterr().out


def test_a_failed_plot_leaves_the_csv(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    write_run(tmp_path / "0", config(lam=0.0), final(0.97, 0.5, 0.0), job_num=0)

    def broken_plot(*args: object, **kwargs: object) -> None:
        raise RuntimeError("no fonts")

    monkeypatch.setattr(plots, "plot_runs", broken_plot)
    with caplog.at_level(logging.WARNING):
        summarize_sweep(tmp_path)
    assert len(read_csv(tmp_path / "summary.csv")) == 1 and not (tmp_path / "tradeoff.png").exists()
    assert "tradeoff.png not written: no fonts" in caplog.text


def test_callback_never_raises(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    cfg = OmegaConf.create({"hydra": {"sweep": {"dir": str(tmp_path / "gone")}}})
    with caplog.at_level(logging.WARNING):
        SweepSummary().on_multirun_end(cfg)
    assert f"sweep summary not written: {tmp_path / 'gone'}: no such file or directory" in caplog.text


def test_release_workers_kills_the_idle_joblib_workers() -> None:
    from joblib import Parallel, delayed
    from joblib.externals.loky import reusable_executor

    pids = set(Parallel(n_jobs=2, backend="loky")(delayed(os.getpid)() for _ in range(4)))
    workers = list(reusable_executor._executor._processes.values())
    assert {w.pid for w in workers} >= pids and all(w.is_alive() for w in workers)
    release_workers()
    assert not any(w.is_alive() for w in workers)
    release_workers()  # nothing left to release: a no-op
