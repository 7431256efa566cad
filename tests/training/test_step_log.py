"""steps.csv (trainer.log_steps=N): one row every N optimisation steps with that step's own
loss terms and λ, consistent with the epoch means of metrics.csv, continued exactly by a
resumed run, and written by each member of a fused group as by its run alone."""

import csv
import math
from pathlib import Path

import pytest
from conftest import StopAfter

from regrun.jobs import run as run_module
from regrun.jobs.fused_group import prepare_member, train_group
from regrun.rundir.files import RunDir
from regrun.rundir.resume import prepare as prepare_resume

TARGET = "reg.targets.l1_activations"
# Tiny data: 320 samples, batch 32, so 10 steps an epoch.
BASE = ("reg=l1_activations", f"{TARGET}.lambda=1e-3", "trainer.epochs=2")


def steps(out: Path) -> list[dict[str, float]]:
    with open(out / "steps.csv", newline="") as f:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]


def test_every_step_logged_averages_to_the_epochs_metrics_row(make_cfg, tmp_path: Path) -> None:
    run_module.run(make_cfg(*BASE, "trainer.log_steps=1"), tmp_path)
    rows = steps(tmp_path)
    assert [r["step"] for r in rows] == list(range(1, 21))
    assert [r["epoch"] for r in rows] == [1] * 10 + [2] * 10
    for epoch_row in RunDir(tmp_path).read_metrics():
        mine = [r for r in rows if r["epoch"] == epoch_row["epoch"]]
        for column in ("train_task_loss", "penalty.l1_activations.raw", "penalty.l1_activations.weighted",
                       "train_penalty_total", "train_total_loss"):
            assert math.fsum(r[column] for r in mine) / len(mine) == pytest.approx(epoch_row[column], rel=1e-6)
    for r in rows:  # each row's own terms add up, at the λ in effect
        assert r["train_total_loss"] == pytest.approx(r["train_task_loss"] + r["penalty.l1_activations.weighted"])
        assert r["penalty.l1_activations.weighted"] == pytest.approx(1e-3 * r["penalty.l1_activations.raw"], rel=1e-6)


def test_every_nth_step_shows_a_warmup_rising_step_by_step(make_cfg, tmp_path: Path) -> None:
    run_module.run(make_cfg(*BASE, "trainer.log_steps=3", f"{TARGET}.warmup_steps=12", "trainer.log_every=7"),
                   tmp_path)
    rows = steps(tmp_path)
    assert [r["step"] for r in rows] == [3, 6, 9, 12, 15, 18]  # whatever log_every is
    assert [r["lambda.l1_activations"] for r in rows] == pytest.approx([1e-3 * min(1, s / 12) for s in
                                                                        (3, 6, 9, 12, 15, 18)])


def test_no_steps_file_unless_asked(make_cfg, tmp_path: Path) -> None:
    run_module.run(make_cfg(*BASE), tmp_path)
    assert not (tmp_path / "steps.csv").exists()


def test_a_resumed_run_logs_the_steps_of_an_unbroken_one(make_cfg, tmp_path: Path, monkeypatch) -> None:
    cfg = make_cfg(*BASE, "trainer.log_steps=2")
    run_module.run(cfg, tmp_path / "unbroken")
    monkeypatch.setattr(run_module, "STOP", StopAfter(13))  # part-way through epoch 2
    assert run_module.run(cfg, tmp_path / "cut")["status"] == "interrupted"
    # A process killed between checkpoints leaves steps.csv ahead of its checkpoint: those
    # steps are taken again, so the resume drops them and logs them anew.
    (tmp_path / "cut" / "steps.csv").write_text((tmp_path / "unbroken" / "steps.csv").read_text())
    monkeypatch.setattr(run_module, "STOP", StopAfter(10**9))
    resumed, checkpoint = prepare_resume(tmp_path / "cut", [])
    assert run_module.run(resumed, tmp_path / "cut", checkpoint, resume=True)["status"] == "completed"
    assert steps(tmp_path / "cut") == steps(tmp_path / "unbroken")


def test_fused_members_log_their_own_steps_as_alone(make_cfg, tmp_path: Path) -> None:
    cfgs = [make_cfg(*BASE[:1], f"{TARGET}.lambda={lam}", "trainer.epochs=2", "trainer.log_steps=5")
            for lam in (0.0, 1e-2)]
    outs = [tmp_path / f"fused{i}" for i in range(2)]
    cache: dict = {}
    train_group([prepare_member(cfg, out, cache) for cfg, out in zip(cfgs, outs)])
    for i, cfg in enumerate(cfgs):
        run_module.run(cfg, tmp_path / f"alone{i}")
        fused, alone = steps(outs[i]), steps(tmp_path / f"alone{i}")
        assert [r["step"] for r in fused] == [r["step"] for r in alone] == [5, 10, 15, 20]
        for mine, theirs in zip(fused, alone):
            for key, value in theirs.items():
                assert mine[key] == pytest.approx(value, rel=2e-4, abs=1e-7), key
