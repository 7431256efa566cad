"""A sparse code's figures: which units fire in a step, the units dead over a window of
training steps, L0, and the sparse-autoencoder preset's columns in metrics.csv and compare."""

import csv
from pathlib import Path

import pytest
import torch

from regrun.analysis.compare import compare_runs
from regrun.analysis.runs import find_runs
from regrun.jobs.run import build, run, training_data
from regrun.measure.firing import firing, window_dead
from regrun.training.targets import resolve_target


def test_a_unit_fires_when_any_sample_or_position_is_non_zero_at_any_call() -> None:
    dense = torch.tensor([[0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 0.0, -2.0]])
    conv = torch.zeros(2, 3, 2, 2)
    conv[1, 2, 0, 1] = 0.5
    fired = firing({"fc": [dense], "conv": [conv], "twice": [dense, dense.flip(1)], "flat": [torch.zeros(3)]})
    assert fired["fc"].tolist() == [False, True, False, True]
    assert fired["conv"].tolist() == [False, False, True]
    assert fired["twice"].tolist() == [True, True, True, True]  # its second call fires units 0 and 2
    assert fired["flat"].tolist() == [False]  # an output of shape (B,) is one unit


def test_units_idle_for_the_window_count_as_dead_and_none_before_the_window_has_passed() -> None:
    target = resolve_target(torch.nn.Sequential(torch.nn.Linear(2, 4), torch.nn.ReLU()), "code",
                            {"layers": ["1"], "site": "activations", "penalty": "l1", "lambda": 1.0})
    last = {"1": torch.tensor([0, 3, 7, 10])}  # 0: never fired
    assert window_dead([target], last, step=10, window=5) == {"sparsity.code.train_dead_frac": 0.5}  # 0 and 3
    assert window_dead([target], last, step=10, window=8) == {"sparsity.code.train_dead_frac": 0.25}
    assert window_dead([target], last, step=4, window=5) == {"sparsity.code.train_dead_frac": 0.0}


def test_train_dead_frac_is_what_replaying_the_batches_gives(make_cfg, tmp_path: Path) -> None:
    # lr 0 keeps the model as initialised, so which act1 units fire at each step follows
    # from the batches alone: replay the run's shuffle and count by hand.
    cfg = make_cfg("reg=l1_activations", "reg.targets.l1_activations.layers=[act1]", "model.hidden=[32]",
                   "optimizer.lr=0", "optimizer.weight_decay=0", "trainer.epochs=2", "trainer.batch_size=2",
                   "sparsity.dead_window=1", "dataset.train_limit=320")
    setup = build(cfg)
    data = training_data(setup)
    shuffle = torch.Generator().manual_seed(cfg["seed"])
    last, step, expected = torch.zeros(32, dtype=torch.long), 0, []
    for _ in range(2):
        order = torch.randperm(len(data.train), generator=shuffle)
        for start in range(0, len(data.train), 2):
            step += 1
            with torch.no_grad():
                hidden = setup.model.act1(setup.model.fc1(setup.model.flatten(data.train.x[order[start:start + 2]])))
            last = torch.where((hidden != 0).any(0), step, last)
        expected.append(((step - last) >= 1).float().mean().item())
    run(cfg, tmp_path)
    with open(tmp_path / "metrics.csv") as f:
        got = [float(row["sparsity.l1_activations.train_dead_frac"]) for row in csv.DictReader(f)]
    assert got == pytest.approx(expected)
    assert max(expected) > 0  # the window found dead units: the check is not vacuous


def test_the_sparse_autoencoder_preset_reports_l0_dead_units_and_fvu(make_cfg, tmp_path: Path) -> None:
    overrides = ("experiment=sparse_autoencoder", "model.channels=[4]", "model.code_size=16",
                 "reg.targets.l1_code.warmup_steps=5", "trainer.epochs=2", "trainer.batch_size=32",
                 "sparsity.dead_window=5")
    summary = run(make_cfg(*overrides), tmp_path / "run")
    with open(tmp_path / "run" / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    for column in ("sparsity.l1_code.l0", "sparsity.l1_code.dead_frac", "sparsity.l1_code.train_dead_frac",
                   "test_fvu"):
        assert all(row[column] != "" for row in rows), column  # every epoch
    code = summary["sparsity"]["activations"]["code"]
    width = code["shape"][0]
    assert width == 16
    assert summary["final"]["sparsity.l1_code.l0"] == pytest.approx((1 - code["zero_frac"]) * width)
    assert summary["final"]["sparsity.l1_code.dead_frac"] == code["dead_units"] / width
    assert len(code["density"]) == width and all(0 <= d <= 1 for d in code["density"])
    runs = find_runs([tmp_path])
    comparison = compare_runs(runs)
    for column in ("sparsity.l1_code.l0", "sparsity.l1_code.train_dead_frac", "test_fvu"):
        assert column in comparison.columns, column
    assert runs[0].densities == {"code": code["density"]}  # what the firing-density histogram draws
