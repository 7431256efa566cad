"""A model of the user's own that cannot train, or that raises part-way: refused before
training in one line, or ended `failed` with one line naming where and when, the
traceback in the run's log."""

import csv
import json
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from regrun.errors import RegrunError
from regrun.jobs.run import run
from regrun.layout import penalty_column

BROKEN_MODELS = '''
import math

import torch
from torch import nn


class Net(nn.Module):
    """flatten → linear; `fault` says what goes wrong."""

    def __init__(self, shape, outputs, fault):
        super().__init__()
        self.fc = nn.Linear(math.prod(shape), outputs)
        self.fault, self.calls = fault, 0

    def forward(self, x):
        out = self.fc(x.flatten(1))
        if self.training:
            self.calls += 1
        if self.fault == "batch":
            return out[:1]
        if self.fault == "integers":
            return out.argmax(1, keepdim=True).expand_as(out)
        if self.fault == "third_step" and self.calls == 3:
            raise RuntimeError("boom at the third step\\nmore detail")
        if self.fault == "evaluation" and not self.training and x.shape[0] > 2:
            raise ValueError("no evaluation for me")
        return out


def make(shape, outputs, fault="none"):
    return Net(shape, outputs, fault)


def frozen(shape, outputs):
    net = Net(shape, outputs, "none")
    for p in net.parameters():
        p.requires_grad_(False)
    return net
'''


@pytest.fixture
def broken_models(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    folder = tmp_path / "work"
    folder.mkdir()
    (folder / "broken_models.py").write_text(BROKEN_MODELS)
    monkeypatch.chdir(folder)
    monkeypatch.setattr(sys, "path", list(sys.path))
    yield
    sys.modules.pop("broken_models", None)


@pytest.mark.parametrize(("model", "message"), [
    (["model.factory=broken_models:make", "+model.fault=batch"],
     "model 'custom': output shape (1, 10) for a batch of 2 samples; its first dimension must be the batch's"),
    (["model.factory=broken_models:make", "+model.fault=integers"],
     "model 'custom' returns torch.int64 outputs; task classification needs floating point"),
    (["model.factory=broken_models:frozen"],
     "model 'custom' has no trainable parameter (none requires a gradient); nothing would train"),
])
def test_a_model_that_cannot_train_is_refused_before_anything_is_written(
        broken_models, make_cfg, tmp_path: Path, model: list[str], message: str) -> None:
    out = tmp_path / "run"
    with pytest.raises(RegrunError) as err:
        run(make_cfg("model=custom", *model), out)
    assert str(err.value).startswith(message)
    assert not out.exists() or [p.name for p in out.iterdir()] == [".lock"]  # its lock, no run file


@pytest.mark.parametrize(("fault", "where"), [
    ("third_step", "the model's forward raised at step 3 (epoch 1, batch 3/10): RuntimeError: boom at the third step"),
    ("evaluation", "the evaluation after epoch 1 failed (the model's forward in eval mode): "
                   "ValueError: no evaluation for me"),
])
def test_a_model_raising_part_way_fails_the_run_in_one_line_naming_where(
        broken_models, make_cfg, tmp_path: Path, fault: str, where: str) -> None:
    out = tmp_path / "run"
    with pytest.raises(RegrunError) as err:
        run(make_cfg("model=custom", "model.factory=broken_models:make", f"+model.fault={fault}"), out)
    assert str(err.value) == f"{where} (traceback in {out / 'regrun.log'})"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "failed" and summary["error"].startswith(where)
    log = (out / "regrun.log").read_text()
    assert "Traceback (most recent call last)" in log and "more detail" * (fault == "third_step") in log


def test_a_penalty_from_the_command_line_trains_and_is_recorded(make_cfg, tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """penalty: MODULE:FUNCTION computes the function's value, with its docstring as the
    formula in targets.json and its raw value in metrics.csv."""
    monkeypatch.chdir(Path(__file__).parents[2])  # the project root: examples.penalties importable
    out = tmp_path / "run"
    cfg = make_cfg("model.hidden=[8]", "+reg.targets.sq={layers: [fc1], site: weights, "
                   "penalty: 'examples.penalties:squared_l1', lambda: 1e-6}")
    summary = run(cfg, out)
    assert summary["status"] == "completed"
    (row,) = json.loads((out / "targets.json").read_text())
    assert (row["penalty"], row["formula"], row["tensor"]) == ("examples.penalties:squared_l1", "(Σ|x|)²", "fc1.weight")
    rows = list(csv.DictReader((out / "metrics.csv").open()))
    assert float(rows[-1][penalty_column("sq", "raw")]) > 0
