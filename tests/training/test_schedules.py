"""λ schedules against their closed forms."""

import math

import pytest

from regrun.errors import RegrunError
from regrun.training.schedules import Schedule, parse_schedule

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
    ({"start_epoch": 0}, "t.start_epoch must be an integer ≥ 1, got 0"),
    ({"start_epoch": 3, "end_epoch": 2}, "t.end_epoch must be an integer ≥ 3, got 2"),
    ({"decay": "exp"}, "t.decay: unknown decay 'exp'; allowed: none, linear, cosine"),
    ({"decay": "linear", "decay_to": 2}, "t.decay_to must be a number in [0, 1] (a fraction of lambda), got 2"),
    ({"decay_to": 0.5}, "t.decay_to needs t.decay=linear or cosine; allowed decays: none, linear, cosine"),
])
def test_bad_schedule_keys_are_one_line_errors(spec: dict, message: str) -> None:
    with pytest.raises(RegrunError) as err:
        parse_schedule("t", spec)
    assert str(err.value) == message
