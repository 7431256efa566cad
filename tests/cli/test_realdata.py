"""Real MNIST from ../shared/data (or $REGRUN_DATA_ROOT): slower checks, `make test-real`."""

import json
import os
from pathlib import Path

import pytest
from conftest import regrun

ROOT = Path(os.environ.get("REGRUN_DATA_ROOT", Path(__file__).resolve().parents[3] / "shared" / "data")).resolve()
pytestmark = [
    pytest.mark.realdata,
    pytest.mark.skipif(not (ROOT / "MNIST" / "raw" / "train-images-idx3-ubyte").is_file(), reason=f"no MNIST in {ROOT}"),
]


def train(tmp_path: Path, name: str, *args: str) -> dict:
    out = tmp_path / name
    proc = regrun("model=mlp", "reg=l1_activations", f"dataset.root={ROOT}", "dataset.download=false",
                  "trainer.epochs=1", "trainer.device=cpu", f"hydra.run.dir={out}", *args, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    return json.loads((out / "summary.json").read_text())


def test_one_epoch_mlp_l1_activations_reaches_95_percent(tmp_path: Path) -> None:
    summary = train(tmp_path, "default")
    assert summary["final"]["test_acc"] >= 0.95
    losses = summary["loss_breakdown"]
    assert losses["total"] == pytest.approx(losses["task"] + losses["penalty_total"])


def test_larger_lambda_makes_the_targeted_layer_sparser(tmp_path: Path) -> None:
    """L1 on act1 only: its test-set zero fraction rises well above the unregularized run's."""
    one_layer = "reg.targets.l1_activations.layers=[act1]"
    plain = train(tmp_path, "lam0", one_layer, "reg.targets.l1_activations.lambda=0")
    strong = train(tmp_path, "lam1e-2", one_layer, "reg.targets.l1_activations.lambda=1e-2")
    before = plain["sparsity"]["activations"]["act1"]["zero_frac"]
    after = strong["sparsity"]["activations"]["act1"]["zero_frac"]
    assert after >= before + 0.15, (before, after)
    assert strong["final"]["test_acc"] >= 0.9


def test_thread_004s_recipe_ends_with_its_three_warnings(tmp_path: Path) -> None:
    """The thread's collapse to chance, as the preset trains it on real MNIST (5 epochs)."""
    out = tmp_path / "thread_004"
    proc = regrun("experiment=l1_all_params_collapse", f"dataset.root={ROOT}", "dataset.download=false",
                  "trainer.device=cpu", f"hydra.run.dir={out}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    warnings = json.loads((out / "summary.json").read_text())["warnings"]
    assert [w["code"] for w in warnings] == ["penalty_dominates", "chance_level", "subgradient_l1"]
