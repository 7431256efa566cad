"""The optimizer presets are torch's own defaults, except where the preset says why."""

import inspect

import pytest
import torch
import yaml

from regrun.components.optimizers import OPTIMIZERS
from regrun.config import conf_dir

# Keys whose preset value differs from torch's default; the line must carry a comment that says why.
DEVIATIONS = {("sgd", "lr"), ("adamw", "weight_decay")}
NOT_OPTIONS = {"name", "groups"}


def preset(name: str) -> tuple[dict, list[str]]:
    path = conf_dir() / "optimizer" / f"{name}.yaml"
    return yaml.safe_load(path.read_text()), path.read_text().splitlines()


@pytest.mark.parametrize("name", sorted(p.stem for p in (conf_dir() / "optimizer").glob("*.yaml")))
def test_preset_values_are_torchs_defaults_unless_commented(name: str) -> None:
    values, lines = preset(name)
    defaults = inspect.signature(OPTIMIZERS[values["name"]]).parameters
    for key, value in values.items():
        if key in NOT_OPTIONS:
            continue
        default = defaults[key].default
        default = list(default) if isinstance(default, tuple) else default
        if (name, key) in DEVIATIONS:
            assert value != default, f"{name}.{key} is torch's default now: drop it from DEVIATIONS"
            line = next(line for line in lines if line.startswith(f"{key}:"))
            assert "#" in line or lines[lines.index(line) - 1].startswith("#"), f"{name}.{key}: say why it is not torch's"
        else:
            assert value == default, f"{name}.{key}={value!r}, torch's default is {default!r}"


def test_plain_sgd_is_torchs_sgd(make_cfg) -> None:
    """optimizer=sgd optimizer.lr=0.2 (thread 003's optimizer) is torch.optim.SGD(params, lr=0.2)."""
    from regrun.training.param_groups import build_grouped_optimizer

    cfg = make_cfg("optimizer=sgd", "optimizer.lr=0.2")
    model = torch.nn.Linear(3, 2)
    built, _ = build_grouped_optimizer(model, cfg["optimizer"])
    reference = torch.optim.SGD(model.parameters(), lr=0.2)
    ours = {k: v for k, v in built.param_groups[0].items() if k != "params"}
    theirs = {k: v for k, v in reference.param_groups[0].items() if k != "params"}
    assert {k: ours[k] for k in theirs if k not in ("fused", "foreach")} == \
        {k: v for k, v in theirs.items() if k not in ("fused", "foreach")}
