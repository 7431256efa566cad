"""The real `regrun` console script, end to end on tiny generated IDX files."""

import csv
import json
from pathlib import Path

import pytest
import torch
from conftest import regrun

RUN_FILES = {"metrics.csv", "summary.json", "targets.json", "model.pt", "regrun.log", ".hydra"}


def common(root: Path, out: Path) -> list[str]:
    return [f"dataset.root={root}", "dataset.download=false", "trainer.device=cpu",
            "trainer.batch_size=32", f"hydra.run.dir={out}"]


def test_mlp_l1_activations_writes_the_run_directory(tiny_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    proc = regrun("model=mlp", "reg=l1_activations", "trainer.epochs=2", *common(tiny_root, out), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert {p.name for p in out.iterdir()} >= RUN_FILES
    summary = json.loads((out / "summary.json").read_text())
    losses = summary["loss_breakdown"]
    assert losses["total"] == pytest.approx(losses["task"] + losses["penalties"]["l1_activations"]["weighted"])
    with open(out / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2 and float(rows[-1]["test_acc"]) == summary["final"]["test_acc"]
    for column in ("penalty.l1_activations.raw", "penalty.l1_activations.weighted", "train_total_loss",
                   "test_loss", "sparsity.act1.zero_frac", "sparsity.weights.below_0.001"):
        assert column in rows[0]
    assert "regularization targets" in proc.stdout and "run summary (completed)" in proc.stdout
    assert torch.load(out / "model.pt", weights_only=True)["head.weight"].shape == (10, 128)


def test_cnn_with_l1_activations_runs(tiny_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "cnn"
    proc = regrun("model=cnn", "reg=l1_activations", "trainer.epochs=1", "model.channels=[4,8]",
                  "model.activation=leaky_relu", *common(tiny_root, out), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert [t["tensor"] for t in summary["targets"]] == ["act1", "act2", "act3"]
    assert summary["sparsity"]["activations"]["act1"]["shape"] == [4, 28, 28]


# The console script's own exit code and stderr, on one case; tests/cli/test_errors.py runs
# every case of the table in-process, through the same `main`.
@pytest.mark.parametrize("args, message", [
    (["reg=l1_activations", "reg.targets.l1_activations.layers=[relu1]"],
     "reg.targets.l1_activations.layers: 'relu1' matches no module; the model has: flatten, fc1, act1, fc2, act2, head"),
])
def test_bad_input_is_one_line_on_stderr_and_exit_2(tiny_root: Path, tmp_path: Path, args: list[str], message: str) -> None:
    proc = regrun(*common(tiny_root, tmp_path / "bad"), *args, cwd=tmp_path)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("regrun: error: "), proc.stderr
    assert message in lines[0]
    assert "Traceback" not in proc.stdout + proc.stderr


@pytest.fixture(scope="module")
def sweep(tiny_root: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    """A 2-job sweep whose L1 (λ=1 on every parameter) dominates: its folder and its output lines."""
    tmp = tmp_path_factory.mktemp("sweep")
    sweep = tmp / "sweep"
    proc = regrun("-m", "reg=l1_weights", "reg.targets.l1_weights.lambda=1.0", "reg.targets.l1_weights.site=params",
                  # two runs alike but for how often the bar updates: the same figures, so the same warnings
                  "optimizer.lr=1e-3", "model.hidden=[64,32]", "trainer.log_every=50,60", "trainer.epochs=1",
                  *common(tiny_root, tmp / "unused")[:-1], f"hydra.sweep.dir={sweep}", cwd=tmp)
    assert proc.returncode == 0, proc.stderr
    return sweep, [line for line in (proc.stdout + proc.stderr).splitlines() if line.strip()]


def test_a_sweeps_diagnostics_are_named_on_each_end_line_and_listed_once_under_its_table(
        sweep: tuple[Path, list[str]]) -> None:
    folder, lines = sweep
    for job in range(2):
        codes = [w["code"] for w in json.loads((folder / str(job) / "summary.json").read_text())["warnings"]]
        assert "penalty_dominates" in codes and "chance_level" in codes
        end = next(line for line in lines if f"job #{job} ({folder / str(job)}): completed in " in line)
        assert end.endswith(f"{len(codes)} warnings ({', '.join(codes)})")
    dominant = [line for line in lines if "of the training loss" in line]  # penalty_dominates's text
    assert len(dominant) == 1 and dominant[0].startswith("0, 1: warning: "), "\n".join(lines)


def test_a_sweep_prints_a_line_per_job_start_and_end_then_its_table(sweep: tuple[Path, list[str]]) -> None:
    folder, lines = sweep
    assert len(lines) <= 40, "\n".join(lines)
    for job in range(2):
        assert sum(f"job #{job} ({folder / str(job)}): started" in line for line in lines) == 1
        assert sum(f"job #{job} ({folder / str(job)}): completed in " in line for line in lines) == 1
    assert "run summary" not in "\n".join(lines) and "2 runs" in "\n".join(lines)  # the sweep's table, not the jobs'
    log = (folder / "0" / "regrun.log").read_text()
    assert "sparsity per layer" in log and "regularization targets" in log and "epoch 1/1" in log


def test_unknown_preset_lists_the_available_ones(tmp_path: Path) -> None:
    proc = regrun("reg=l1_everything", cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr == ("regrun: error: reg=l1_everything: no option 'l1_everything' in group reg; allowed: "
                           "elastic_net, group_lasso, l1_activations, l1_code, l1_weights, l2_weights, none "
                           "(reg/NAME.yaml in conf/ or --config-dir)\n")  # one line, the group's options
