"""Every registered model builds, runs forward and trains through the real run path; the
autoencoder's shapes and names; activations with parameters; the norm choice; the user's
own model from a file; plugins through entry points."""

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from conftest import write_plugin
from torch import nn

from regrun.components.models import MODELS, build_model
from regrun.components.registry import Choice, Registry, build, read_choice
from regrun.config import conf_dir
from regrun.errors import RegrunError
from regrun.jobs.run import run
from regrun.measure.capture import output_shapes

MNIST = (1, 28, 28)
# The command-line arguments that make each registered model trainable on the tiny MNIST.
MODEL_ARGS = {
    "custom": ["model=custom", "model.factory=my_models:make_net"],
    "autoencoder": ["model=autoencoder", "task=reconstruction"],
}
HAS_TASKS = (conf_dir() / "task").is_dir()


def model_args(name: str) -> list[str]:
    return MODEL_ARGS.get(name, [f"model={name}"])


def test_every_registered_model_has_a_config_file() -> None:
    assert sorted(MODELS) == sorted(p.stem for p in (conf_dir() / "model").glob("*.yaml"))


@pytest.mark.parametrize("name", sorted(MODELS))
def test_every_model_builds_and_runs_forward(name: str, make_cfg: Callable[..., dict], user_models: Path) -> None:
    cfg = make_cfg(*[a for a in model_args(name) if not a.startswith("task=")])
    model = build_model(cfg["model"], MNIST, 10)
    out = model(torch.zeros(2, *MNIST))
    assert out.shape == ((2, *MNIST) if name == "autoencoder" else (2, 10))


@pytest.mark.parametrize("name", [
    pytest.param(n, marks=pytest.mark.xfail(not HAS_TASKS, strict=True, reason="needs task=reconstruction"))
    if n == "autoencoder" else n for n in sorted(MODELS)])
def test_every_model_trains_through_the_run_path(name: str, make_cfg: Callable[..., dict], user_models: Path,
                                                 tmp_path: Path) -> None:
    summary = run(make_cfg(*model_args(name), "trainer.batch_size=64"), tmp_path / "run")
    assert summary["status"] == "completed"
    assert summary["sparsity"]["activations"] and (tmp_path / "run" / "model.pt").exists()


AUTOENCODER_NAMES = ["enc1", "enc_norm1", "enc_act1", "enc2", "enc_norm2", "enc_act2", "flatten", "code_fc", "code",
                     "dec_fc", "dec_fc_act", "unflatten", "dec2", "dec_norm2", "dec_act2", "dec1"]


def test_autoencoder_names_its_modules_as_documented(make_cfg: Callable[..., dict]) -> None:
    model = build_model(make_cfg("model=autoencoder")["model"], MNIST, 10)
    assert [name for name, _ in model.named_children()] == AUTOENCODER_NAMES
    assert isinstance(model.code, nn.ReLU) and model.enc_act1.negative_slope == 0.2  # thread 002's slope
    assert (isinstance(model.enc1, nn.Conv2d) and model.enc1.stride == (2, 2)
            and isinstance(model.dec1, nn.ConvTranspose2d))
    shapes = output_shapes(model, torch.zeros(1, *MNIST), ["enc1", "enc2", "code", "dec2", "dec1"])
    assert shapes == {"enc1": (16, 14, 14), "enc2": (32, 7, 7), "code": (64,), "dec2": (16, 14, 14), "dec1": MNIST}


@pytest.mark.parametrize("norm", ["batch", "instance", "layer", "none"])
@pytest.mark.parametrize("shape", [MNIST, (3, 32, 32), (3, 9, 7), (2, 5, 6)])
def test_autoencoder_output_has_the_input_shape(shape: tuple[int, ...], norm: str) -> None:
    model = build_model({"name": "autoencoder", "norm": norm, "kernel_size": 3}, shape, 10)
    x = torch.randn(4, *shape)
    assert model(x).shape == x.shape


@pytest.mark.parametrize("cfg, message", [
    ({"channels": [4] * 6}, "model.channels: 6 stride-2 layers with kernel_size 4 shrink the 28×28 input to nothing; at most 4 fit"),
    ({"channels": []}, "model.channels: the autoencoder needs at least one conv layer, got []"),
    ({"channels": [4, 8, 8, 8], "norm": "instance"}, "model.norm: instance norm needs more than one position per channel, and enc4 outputs 1×1"),
    ({"code_size": 0}, "model.code_size must be a positive integer, got 0"),
    ({"code_activation": "softplus"}, "model.code_activation: unknown activation 'softplus'"),
])
def test_autoencoder_refuses_sizes_it_cannot_take(cfg: dict, message: str) -> None:
    with pytest.raises(RegrunError) as info:
        build_model({"name": "autoencoder", **cfg}, MNIST, 10)
    assert message in str(info.value)


def test_an_activation_takes_its_parameter_from_the_config(make_cfg: Callable[..., dict]) -> None:
    cfg = make_cfg("model=cnn", "model.activation={name:leaky_relu,negative_slope:0.2}")
    model = build_model(cfg["model"], MNIST, 10)
    assert [m.negative_slope for m in model.modules() if isinstance(m, nn.LeakyReLU)] == [0.2, 0.2, 0.2]
    assert model.act1(torch.tensor([-1.0, 2.0])).tolist() == pytest.approx([-0.2, 2.0])
    elu = build_model(make_cfg("model.activation={name:elu,alpha:0.5}")["model"], MNIST, 10).act1
    assert elu.alpha == 0.5
    plain = build_model(make_cfg("model.activation=leaky_relu")["model"], MNIST, 10).act1
    assert plain.negative_slope == 0.01  # a name alone: torch's default
    autoencoder = make_cfg("model=autoencoder", "model.activation.negative_slope=0.1")["model"]
    assert build_model(autoencoder, MNIST, 10).dec_fc_act.negative_slope == 0.1


@pytest.mark.parametrize("activation, message", [
    ({"name": "leaky_relu", "slope": 0.2}, "model.activation.slope: not a parameter of leaky_relu; allowed: negative_slope"),
    ({"name": "relu", "alpha": 1}, "model.activation.alpha: not a parameter of relu; allowed: (none)"),
    ({"name": "elu", "alpha": "big"}, "model.activation.alpha must be a finite number, got 'big'"),
    ({"negative_slope": 0.2}, "model.activation: unknown activation None; allowed: relu, leaky_relu"),
    ("swish", "model.activation: unknown activation 'swish'; allowed: relu, leaky_relu"),
])
def test_a_bad_activation_is_one_line(activation: object, message: str) -> None:
    with pytest.raises(RegrunError) as info:
        build_model({"name": "mlp", "activation": activation}, MNIST, 10)
    assert message in str(info.value)


@pytest.mark.parametrize("norm, kind, conv_bias", [
    ("batch", nn.BatchNorm2d, False), ("instance", nn.InstanceNorm2d, False), ("layer", nn.GroupNorm, True),
    ("none", None, True),
])
def test_cnn_norm_choice(make_cfg: Callable[..., dict], norm: str, kind: type | None, conv_bias: bool) -> None:
    model = build_model(make_cfg("model=cnn", f"model.norm={norm}")["model"], MNIST, 10)
    norms = [m for name, m in model.named_children() if name.startswith("norm")]
    assert [type(m) for m in norms] == ([kind, kind] if kind else [])
    assert (model.conv1.bias is not None) == conv_bias
    assert model(torch.randn(2, *MNIST)).shape == (2, 10)


@pytest.mark.parametrize("norm, kind", [("batch", nn.BatchNorm1d), ("layer", nn.LayerNorm), ("none", None)])
def test_mlp_norm_choice(make_cfg: Callable[..., dict], norm: str, kind: type | None) -> None:
    model = build_model(make_cfg(f"model.norm={norm}")["model"], MNIST, 10)
    assert [type(m) for n, m in model.named_children() if n.startswith("norm")] == ([kind, kind] if kind else [])


def test_defaults_keep_their_norms(make_cfg: Callable[..., dict]) -> None:
    """mlp: no norm (was batch_norm: false); cnn: BatchNorm2d and bias-free convs (was batch_norm: true)."""
    mlp = build_model(make_cfg()["model"], MNIST, 10)
    cnn = build_model(make_cfg("model=cnn")["model"], MNIST, 10)
    assert [n for n, _ in mlp.named_children()] == ["flatten", "fc1", "act1", "fc2", "act2", "head"]
    assert isinstance(cnn.norm1, nn.BatchNorm2d) and cnn.conv1.bias is None


@pytest.mark.parametrize("cfg, message", [
    ({"name": "mlp", "norm": "instance"}, "model.norm: 'instance' normalises a channel over its positions and does not apply to dense layers; allowed: batch, layer, none"),
    ({"name": "cnn", "norm": "group"}, "model.norm: unknown norm 'group'; allowed: batch, instance, layer, none"),
    ({"name": "mlp", "hidden": [64, 0]}, "model.hidden must be a list of integers ≥ 1, got [64, 0]"),
    ({"name": "mlp", "hidden": 64}, "model.hidden must be a list of integers ≥ 1, got 64"),
    ({"name": "cnn", "pool": "min"}, "model.pool: unknown pool 'min'; allowed: max, avg, none"),
    ({"name": "mlp", "activation": [1]}, "model.activation must be a string or a mapping, got [1]"),
    ({"name": "cnn", "channels": [4] * 5}, "model.channels: 5 blocks with pool=max shrink the 28×28 input to nothing"),
    ({"name": "cnn", "kernel_size": 0}, "model.kernel_size must be a positive integer, got 0"),
    ({"name": "mlp", "batch_norm": True}, "model.batch_norm: unknown key; allowed: name, hidden, activation, norm, dropout"),
])
def test_a_bad_model_option_is_one_line(cfg: dict, message: str) -> None:
    with pytest.raises(RegrunError) as info:
        build_model(cfg, MNIST, 10)
    assert message in str(info.value)


def test_image_models_refuse_flat_samples() -> None:
    with pytest.raises(RegrunError, match=r"model.name: autoencoder takes images \(C, H, W\); this dataset's "
                                          r"samples have shape \(13,\); use model=mlp or model=custom"):
        build_model({"name": "autoencoder"}, (13,), 1)


def test_custom_factory_gets_shape_outputs_and_options(user_models: Path, make_cfg: Callable[..., dict]) -> None:
    """The factory's own parameter names are free: it is called positionally."""
    cfg = make_cfg("model=custom", "model.factory=my_models:make_net", "+model.width=8", "+model.depth=3")
    model = build_model(cfg["model"], MNIST, 7)
    assert type(model).__name__ == "ResNet" and len(model.blocks) == 3
    assert model.stem.weight.shape == (8, 784) and model.head.weight.shape == (7, 8)


def test_a_model_of_ones_own_trains_with_a_target_by_pattern(user_models: Path, make_cfg: Callable[..., dict],
                                                             tmp_path: Path) -> None:
    """Residual, not Sequential, a ModuleList, and `act` called twice: targets and the per-layer table."""
    spec = "{layers:['blocks.*.act',act],site:activations,penalty:l1,lambda:1e-3}"
    cfg = make_cfg("model=custom", "model.factory=my_models:make_net", f"+reg.targets.acts={spec}")
    summary = run(cfg, tmp_path / "run")
    assert [row["tensor"] for row in summary["targets"]] == ["act", "blocks.0.act", "blocks.1.act"]
    acts = summary["sparsity"]["activations"]
    assert {"stem", "act", "blocks.0.fc1", "blocks.0.act", "blocks.1.fc2", "head"} <= set(acts)
    assert acts["act"]["samples"] == 2 * acts["head"]["samples"]  # two calls per forward, pooled
    final = json.loads((tmp_path / "run" / "summary.json").read_text())["final"]
    assert final["penalty.acts.raw"] > 0 and "sparsity.blocks.0.act.zero_frac" in final


def test_plugins_register_models_through_entry_points(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    site = write_plugin(tmp_path)
    monkeypatch.syspath_prepend(str(site))
    registry = Registry("model", "regrun.models")
    model = build(registry, read_choice("model", {"name": "tiny", "width": 3}, registry, Choice, positional=2), (MNIST, 10))
    assert isinstance(model, nn.Linear) and model.weight.shape == (10, 3 * 784)
