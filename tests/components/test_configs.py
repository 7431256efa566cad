"""Every option of every config group composes and builds; presets combine."""

from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from regrun.components.datasets import load_data, open_dataset
from regrun.components.models import build_model
from regrun.components.tasks import resolve_task
from regrun.config import conf_dir
from regrun.errors import RegrunError
from regrun.training.param_groups import build_grouped_optimizer
from regrun.training.targets import resolve_targets

GROUPS = ("model", "dataset", "optimizer", "reg", "task", "logger", "experiment")
MODEL_GROUPS = ("model", "optimizer", "reg")  # every option builds with every model on MNIST


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (conf_dir() / group).glob("*.yaml"))


def build_all(cfg: dict) -> tuple[torch.nn.Module, list]:
    spec = open_dataset(cfg["dataset"]).spec
    _, task = resolve_task(cfg.get("task"), spec)
    model = build_model(cfg["model"], spec.input_shape, task.num_outputs(spec))
    targets = resolve_targets(model, cfg["reg"]["targets"])
    build_grouped_optimizer(model, cfg["optimizer"])
    return model, targets


def test_every_group_has_options() -> None:
    for group in GROUPS:
        assert options(group), group


@pytest.mark.parametrize("experiment", options("experiment"))
def test_every_experiment_preset_composes_builds_and_trains_a_step(make_cfg: Callable[..., dict], experiment: str,
                                                                    tmp_path) -> None:
    """Each study preset is a whole run: it composes over the defaults and trains (one
    epoch of a few batches on the tiny data; the real figures are in the README)."""
    from regrun.jobs.run import run

    cfg = make_cfg(f"experiment={experiment}")
    _, targets = build_all(cfg)
    assert targets, experiment  # every preset studies a regularizer
    cfg["trainer"] |= {"epochs": 1, "batch_size": 32}
    for key in ("train_size", "train_limit"):
        if key in cfg["dataset"]:
            cfg["dataset"][key] = 64
    assert run(cfg, tmp_path / experiment)["status"] == "completed"


# Presets that select modules by one model's names; with another model they are refused
# in one line. (Every model option alone: tests/components/test_models.py.)
MADE_FOR = {"l1_code": {"autoencoder"}, "l1_activations": {"mlp", "cnn"}}  # code; act*
MODELS_BUILT = ["mlp", "cnn", "autoencoder"]


@pytest.mark.parametrize("group, option", [(g, o) for g in MODEL_GROUPS if g != "model" for o in options(g)])
@pytest.mark.parametrize("model", MODELS_BUILT)
def test_option_composes_and_builds(make_cfg: Callable[..., dict], group: str, option: str, model: str) -> None:
    cfg = make_cfg(f"model={model}", f"{group}={option}")
    if model not in MADE_FOR.get(option, {model}):
        with pytest.raises(RegrunError, match="matches no module"):
            build_all(cfg)
        return
    built, targets = build_all(cfg)
    out = built(torch.zeros(2, 1, 28, 28))
    assert out.shape == ((2, 1, 28, 28) if model == "autoencoder" else (2, 10))
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


@pytest.mark.parametrize("optimizer", options("optimizer"))
def test_the_documented_group_examples_build(make_cfg: Callable[..., dict], optimizer: str) -> None:
    """The examples in conf/optimizer/*.yaml: decay on fc1 alone; no decay on the biases."""
    cfg = make_cfg(f"optimizer={optimizer}", "optimizer.weight_decay=0.05",
                   "+optimizer.groups.fc1_decay={layers:[fc1],site:weights,weight_decay:0.1}",
                   '+optimizer.groups.no_decay={layers:["*"],site:biases,weight_decay:0}')
    model, _ = build_all(cfg)
    optimizer, groups = build_grouped_optimizer(model, cfg["optimizer"])
    assert [(g.name, g.params) for g in groups] == [("default", ("fc2.weight", "head.weight")), ("fc1_decay", ("fc1.weight",)),
                                                    ("no_decay", ("fc1.bias", "fc2.bias", "head.bias"))]
    assert [g["weight_decay"] for g in optimizer.param_groups] == [0.05, 0.1, 0]


def test_every_config_file_starts_with_a_comment() -> None:
    """Configs are documentation: every group file starts with a comment saying what it is."""
    for path in conf_dir().rglob("*.yaml"):
        assert path.read_text().lstrip().startswith("#"), f"{path} has no header comment"


def test_conf_dir_is_the_checkout_conf() -> None:
    assert conf_dir() == Path(__file__).resolve().parents[2] / "conf"


# The one-layer commands the README and the presets' comments show: (model, preset, layer).
ONE_LAYER = [("mlp", "l1_weights", "fc1"), ("mlp", "l2_weights", "fc2"), ("cnn", "l1_weights", "conv2"),
             ("mlp", "l1_activations", "act1"), ("mlp", "elastic_net", "fc1"), ("mlp", "group_lasso", "fc1"),
             ("autoencoder", "l1_code", "code")]


@pytest.mark.parametrize("model, preset, layer", ONE_LAYER)
def test_every_reg_preset_takes_one_layer_as_written(make_cfg: Callable[..., dict], model: str, preset: str,
                                                      layer: str) -> None:
    """`regrun reg=PRESET 'reg.targets.PRESET.layers=[LAYER]'`, with no `+`: the presets hold the key."""
    cfg = make_cfg(f"model={model}", f"reg={preset}", f"reg.targets.{preset}.layers=[{layer}]")
    _, (target,) = build_all(cfg)
    assert target.modules == (layer,)


@pytest.mark.parametrize("preset", [p for p in options("reg") if p != "none"])
def test_every_reg_preset_takes_types_and_exclude(make_cfg: Callable[..., dict], preset: str) -> None:
    """`types` and `exclude` are keys of every preset's target too: a class filter and a left-out layer."""
    model = "autoencoder" if preset == "l1_code" else "mlp"
    cfg = make_cfg(f"model={model}", f"reg={preset}")
    (name, spec), = cfg["reg"]["targets"].items()
    assert {"layers", "types", "exclude"} <= set(spec), preset
    kinds = "[ReLU,LeakyReLU]" if spec["site"] == "activations" else "[Linear]"
    every = make_cfg(f"model={model}", f"reg={preset}", f"reg.targets.{name}.layers=['*']",
                     f"reg.targets.{name}.types={kinds}", f"reg.targets.{name}.exclude=[]")
    _, (target,) = build_all(every)
    left_out = target.modules[0]
    fewer = make_cfg(f"model={model}", f"reg={preset}", f"reg.targets.{name}.layers=['*']",
                     f"reg.targets.{name}.types={kinds}", f"reg.targets.{name}.exclude=[{left_out}]")
    _, (narrowed,) = build_all(fewer)
    assert narrowed.modules == target.modules[1:]
