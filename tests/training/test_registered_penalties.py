"""Every registered penalty trains through a config, a plugin's too; l2_norm's reductions."""

import math
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from torch import Tensor

from regrun.components.models import build_model
from regrun.components.penalties import PENALTIES, register_penalty
from regrun.errors import RegrunError
from regrun.jobs.run import run
from regrun.training.targets import resolve_target

ONE_STEP = ("trainer.batch_size=320", "model.hidden=[8]")  # the tiny training set is 320 samples


def power_sum(x: Tensor, dims: tuple[int, ...] | None = None, power: float = 2.0) -> Tensor:
    """Σ|x|^p: a plugin's penalty, with an option."""
    return x.abs().pow(power).sum() if dims is None else x.abs().pow(power).sum(dim=dims)


@pytest.fixture
def plugin(monkeypatch: pytest.MonkeyPatch) -> None:
    """Register `power_sum` for one test; the registry is put back afterwards."""
    monkeypatch.setattr(PENALTIES, "_records", dict(PENALTIES._records))
    register_penalty("power_sum", power_sum, "Σ|x|^p", additive=True, options={"power": (1.0, 4.0)})


def test_a_plugin_penalty_trains_from_a_config(plugin: None, make_cfg: Callable[..., dict], tmp_path: Path) -> None:
    cfg = make_cfg(*ONE_STEP, "+reg.targets.cubes={layers:[fc1],site:weights,penalty:power_sum,power:3,lambda:0.5}")
    summary = run(cfg, tmp_path)
    torch.manual_seed(cfg["seed"])  # the run's initial weights: the one step's penalty is theirs
    initial = build_model(cfg["model"], (1, 28, 28), 10).get_parameter("fc1.weight")
    term = summary["loss_breakdown"]["penalties"]["cubes"]
    assert term["raw"] == pytest.approx(initial.abs().pow(3).sum().item(), rel=1e-5)
    assert term["weighted"] == pytest.approx(0.5 * term["raw"], rel=1e-6)
    assert summary["targets"][0]["formula"] == "Σ|x|^p" and summary["targets"][0]["power"] == 3.0
    trained = torch.load(tmp_path / "model.pt", weights_only=True)["fc1.weight"]
    assert not torch.equal(trained, initial.detach())


def test_a_plugin_option_is_checked_against_its_range(plugin: None, make_cfg: Callable[..., dict], tmp_path: Path) -> None:
    cfg = make_cfg(*ONE_STEP, "+reg.targets.cubes={layers:[fc1],site:weights,penalty:power_sum,power:9,lambda:0.5}")
    with pytest.raises(RegrunError, match=r"^reg.targets.cubes.power must be a number in \[1, 4\], got 9$"):
        run(cfg, tmp_path)


@pytest.mark.parametrize("name, site", [(n, s) for n in PENALTIES for s in ("weights", "activations")
                                        if not (s == "activations" and PENALTIES[n].parameter_only)])
def test_every_registered_penalty_trains_a_step(name: str, site: str, make_cfg: Callable[..., dict], tmp_path: Path) -> None:
    layer = "fc1" if site == "weights" else "act1"
    cfg = make_cfg(*ONE_STEP, f"+reg.targets.t={{layers:[{layer}],site:{site},penalty:{name},lambda:1e-3}}")
    term = run(cfg, tmp_path)["loss_breakdown"]["penalties"]["t"]
    assert math.isfinite(term["raw"]) and term["raw"] > 0


@pytest.mark.parametrize("reduction, expected", [
    ("batch_mean", (5 + 1) / 2),  # per-sample norms, averaged: not the batch's norm over 2
    ("sum", math.sqrt(26)),
    ("mean", math.sqrt(26) / 6),
])
def test_l2_norm_of_activations_is_per_sample_under_batch_mean(reduction: str, expected: float) -> None:
    torch.manual_seed(0)
    mlp = build_model({"name": "mlp", "hidden": [3]}, (1, 28, 28), 10)
    t = resolve_target(mlp, "a", {"layers": "act1", "site": "activations", "penalty": "l2_norm",
                                  "lambda": 0.1, "reduction": reduction})
    out = torch.tensor([[3.0, 4.0, 0.0], [1.0, 0.0, 0.0]])
    assert t.raw(dict(mlp.named_parameters()), {"act1": [out]}).item() == pytest.approx(expected)


def test_l2_norm_over_a_layers_params_sums_each_tensors_norm() -> None:
    """Thread 000's λ·torch.norm(p, 2), per tensor: ‖W‖ + ‖b‖ (documented in penalties.py)."""
    mlp = build_model({"name": "mlp", "hidden": [3]}, (1, 28, 28), 10)
    with torch.no_grad():
        for p in mlp.parameters():
            p.fill_(-2.0)
    t = resolve_target(mlp, "n", {"layers": "fc1", "site": "params", "penalty": "l2_norm", "lambda": 0.1})
    assert t.raw(dict(mlp.named_parameters()), {}).item() == pytest.approx(2 * math.sqrt(784 * 3) + 2 * math.sqrt(3))
