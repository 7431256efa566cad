"""Every option of every config group composes and builds; presets combine."""

from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from regrun.cli import conf_dir
from regrun.components.datasets import load_data, open_dataset
from regrun.components.models import build_model
from regrun.components.tasks import resolve_task
from regrun.components.optimizers import build_optimizer
from regrun.training.targets import resolve_targets

GROUPS = ("model", "dataset", "optimizer", "reg", "task")
MODEL_GROUPS = ("model", "optimizer", "reg")  # every option builds with both models on MNIST


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (conf_dir() / group).glob("*.yaml"))


def build_all(cfg: dict) -> tuple[torch.nn.Module, list]:
    spec = open_dataset(cfg["dataset"]).spec
    _, task = resolve_task(cfg.get("task"), spec)
    model = build_model(cfg["model"], spec.input_shape, task.num_outputs(spec))
    targets = resolve_targets(model, cfg["reg"]["targets"])
    build_optimizer(model, cfg["optimizer"])
    return model, targets


def test_every_group_has_options() -> None:
    for group in GROUPS:
        assert options(group), group


@pytest.mark.parametrize("group, option", [(g, o) for g in MODEL_GROUPS for o in options(g)])
@pytest.mark.parametrize("model", ["mlp", "cnn"])
def test_option_composes_and_builds(make_cfg: Callable[..., dict], group: str, option: str, model: str) -> None:
    cfg = make_cfg(f"model={model}", f"{group}={option}")
    built, targets = build_all(cfg)
    logits = built(torch.zeros(2, 1, 28, 28))
    assert logits.shape == (2, 10)
    assert len(targets) == len(cfg["reg"]["targets"])


@pytest.mark.parametrize("option", options("dataset"))
def test_dataset_option_loads(make_cfg: Callable[..., dict], option: str) -> None:
    cfg = make_cfg(f"dataset={option}")["dataset"]
    data = load_data(cfg, torch.device("cpu"))
    assert data.train.x.shape[1:] == open_dataset(cfg).spec.input_shape and len(data.test) > 0


def test_presets_combine_by_merging_targets(make_cfg: Callable[..., dict]) -> None:
    cfg = make_cfg("reg=[l1_activations,l2_weights]")
    assert sorted(cfg["reg"]["targets"]) == ["l1_activations", "l2_weights"]
    _, targets = build_all(cfg)
    assert {t.site for t in targets} == {"activations", "weights"}


def test_one_layer_override(make_cfg: Callable[..., dict]) -> None:
    cfg = make_cfg("reg=l1_activations", "reg.targets.l1_activations.layers=[act1]",
                   "reg.targets.l1_activations.lambda=1e-3")
    _, (target,) = build_all(cfg)
    assert target.modules == ("act1",) and target.lam == 1e-3


def test_new_target_from_the_command_line(make_cfg: Callable[..., dict]) -> None:
    cfg = make_cfg("+reg.targets.fc1_l1={layers:[fc1],site:weights,penalty:l1,lambda:1e-4}")
    _, (target,) = build_all(cfg)
    assert target.params == ("fc1.weight",)


def test_every_config_file_starts_with_a_comment() -> None:
    """Configs are documentation: every group file starts with a comment saying what it is."""
    for path in conf_dir().rglob("*.yaml"):
        assert path.read_text().lstrip().startswith("#"), f"{path} has no header comment"


def test_conf_dir_is_the_checkout_conf() -> None:
    assert conf_dir() == Path(__file__).resolve().parents[2] / "conf"
