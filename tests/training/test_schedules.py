"""λ schedules against their closed forms."""

import math

import pytest
from conftest import StopAfter

from regrun.errors import RegrunError
from regrun.schema import parse
from regrun.training.schedules import Schedule

PER_EPOCH, EPOCHS = 10, 4  # 40 steps, numbered 1..40


def factors(schedule: Schedule) -> list[float]:
    return [schedule.factor(step, PER_EPOCH, EPOCHS) for step in range(1, PER_EPOCH * EPOCHS + 1)]


def test_the_default_schedule_is_full_strength_at_every_step() -> None:
    assert Schedule().constant
    assert factors(Schedule()) == [1.0] * 40


def test_warmup_rises_linearly_from_zero_and_is_full_from_step_n_on() -> None:
    got = factors(Schedule(warmup_steps=8))
    assert got[:8] == pytest.approx([k / 8 for k in range(1, 9)])
    assert got[7:] == [1.0] * 33


def test_a_window_switches_the_penalty_off_outside_its_epochs() -> None:
    got = factors(Schedule(start_epoch=2, end_epoch=3))
    assert got[:10] == [0.0] * 10 and got[30:] == [0.0] * 10
    assert got[10:30] == [1.0] * 20


def test_warmup_starts_with_the_window() -> None:
    got = factors(Schedule(start_epoch=2, warmup_steps=4))
    assert got[9:15] == pytest.approx([0.0, 0.25, 0.5, 0.75, 1.0, 1.0])


def test_linear_decay_falls_to_decay_to_at_the_last_step() -> None:
    got = factors(Schedule(decay="linear", decay_to=0.2))
    assert got == pytest.approx([1.0 - 0.8 * (s - 1) / 39 for s in range(1, 41)])
    assert got[-1] == pytest.approx(0.2)


def test_cosine_decay_follows_half_a_period() -> None:
    got = factors(Schedule(decay="cosine"))
    assert got == pytest.approx([0.5 * (1 + math.cos(math.pi * (s - 1) / 39)) for s in range(1, 41)])
    assert got[0] == 1.0 and got[-1] == pytest.approx(0.0, abs=1e-12)


def test_an_end_epoch_past_the_last_epoch_ends_with_training() -> None:
    assert factors(Schedule(end_epoch=9, decay="linear")) == factors(Schedule(decay="linear"))


@pytest.mark.parametrize(("spec", "message"), [
    ({"warmup_steps": -1}, "t.warmup_steps must be an integer ≥ 0, got -1"),
    ({"warmup_steps": "10"}, "t.warmup_steps must be an integer ≥ 0, got '10'"),
    ({"start_epoch": 0}, "t.start_epoch must be a positive integer, got 0"),
    ({"start_epoch": 3, "end_epoch": 2}, "t.end_epoch must be an integer ≥ 3 (start_epoch), got 2"),
    ({"decay": "exp"}, "t.decay: unknown decay 'exp'; allowed: none, linear, cosine"),
    ({"decay": "linear", "decay_to": 2}, "t.decay_to must be a number in [0, 1] (a fraction of lambda), got 2"),
    ({"decay_to": 0.5}, "t.decay_to needs t.decay=linear or cosine; allowed decays: none, linear, cosine"),
])
def test_bad_schedule_keys_are_one_line_errors(spec: dict, message: str) -> None:
    with pytest.raises(RegrunError) as err:
        parse("t", spec, Schedule)
    assert str(err.value) == message


# Through a whole run: tiny data of 320 samples, batch 32, so 10 steps per epoch.
LAMBDA = 1e-3
TARGET = "reg.targets.l1_activations"


def scheduled_run(make_cfg, out, *overrides: str, stop=None, monkeypatch=None) -> list[dict]:
    from regrun.jobs.run import run

    cfg = make_cfg("reg=l1_activations", f"{TARGET}.lambda={LAMBDA}", *overrides)
    run(cfg, out)
    return RunDirRows(out)


def RunDirRows(out) -> list[dict]:
    from regrun.rundir.files import RunDir

    return RunDir(out).read_metrics()


def test_a_warmup_run_reports_lambda_rising_to_its_full_value(make_cfg, tmp_path) -> None:
    rows = scheduled_run(make_cfg, tmp_path / "run", f"{TARGET}.warmup_steps=15", "trainer.epochs=3")
    assert [r["lambda.l1_activations"] for r in rows] == pytest.approx([LAMBDA * 10 / 15, LAMBDA, LAMBDA])


def test_a_window_run_has_no_penalty_outside_its_epochs(make_cfg, tmp_path) -> None:
    rows = scheduled_run(make_cfg, tmp_path / "run", f"{TARGET}.start_epoch=2", f"{TARGET}.end_epoch=2",
                         "trainer.epochs=3")
    assert [r["lambda.l1_activations"] for r in rows] == [0.0, LAMBDA, 0.0]
    weighted = [r["penalty.l1_activations.weighted"] for r in rows]
    assert weighted[0] == weighted[2] == 0.0 and weighted[1] > 0
    assert all(r["penalty.l1_activations.raw"] > 0 for r in rows)  # measured all along, applied in the window


def test_a_run_stopped_mid_warmup_resumes_to_the_figures_of_an_unbroken_run(make_cfg, tmp_path, monkeypatch) -> None:
    from regrun.jobs import run as run_module
    from regrun.rundir.resume import prepare

    overrides = (f"{TARGET}.warmup_steps=25", "trainer.epochs=3")
    unbroken = scheduled_run(make_cfg, tmp_path / "unbroken", *overrides)
    monkeypatch.setattr(run_module, "STOP", StopAfter(14))  # 14 steps: part-way through epoch 2
    stopped = run_module.run(make_cfg("reg=l1_activations", f"{TARGET}.lambda={LAMBDA}", *overrides), tmp_path / "cut")
    assert stopped["status"] == "interrupted"
    monkeypatch.setattr(run_module, "STOP", StopAfter(10**9))
    cfg, checkpoint = prepare(tmp_path / "cut", [])
    assert run_module.run(cfg, tmp_path / "cut", checkpoint, resume=True)["status"] == "completed"
    strip = lambda rows: [{k: v for k, v in r.items() if k != "epoch_time_s"} for r in rows]  # noqa: E731
    assert strip(RunDirRows(tmp_path / "cut")) == strip(unbroken)


def test_a_window_that_starts_after_the_last_epoch_is_refused(make_cfg, tmp_path) -> None:
    from regrun.jobs.run import run

    with pytest.raises(RegrunError, match=r"start_epoch=4 is after the last epoch \(trainer.epochs=3\); allowed: 1 to 3"):
        run(make_cfg("reg=l1_activations", f"{TARGET}.start_epoch=4", "trainer.epochs=3"), tmp_path / "run")
