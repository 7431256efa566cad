"""Each thread's preset computes what its thread computes: the architecture, the penalty
formula written as the thread writes it, the reduction, the optimizer and the input scaling,
checked on one batch of the tiny generated data against the thread's own expressions."""

from collections.abc import Callable, Mapping
from pathlib import Path

import pytest
import torch
import yaml
from torch import Tensor, nn

from regrun.components.datasets import load_data, open_dataset
from regrun.components.models import build_model
from regrun.components.tasks import resolve_task
from regrun.config import conf_dir
from regrun.measure.capture import ActivationCapture
from regrun.training.param_groups import build_grouped_optimizer
from regrun.training.targets import resolve_targets


def penalties(cfg: dict) -> tuple[nn.Module, Tensor, dict[str, float], torch.optim.Optimizer]:
    """The preset's model, a training batch, each target's raw penalty on it, and its optimizer."""
    torch.manual_seed(0)
    data = load_data(cfg["dataset"], torch.device("cpu"))
    spec = open_dataset(cfg["dataset"]).spec
    _, task = resolve_task(cfg.get("task"), spec)
    model = build_model(cfg["model"], spec.input_shape, task.num_outputs(spec))
    targets = resolve_targets(model, cfg["reg"]["targets"])
    x = data.train.x[: cfg["trainer"]["batch_size"]]
    watched = [m for t in targets if t.on_activations for m in t.modules]
    with ActivationCapture(model, watched) as capture:
        model(x)
        outputs = capture.take()
    params = dict(model.named_parameters())
    raw = {t.name: t.raw(params, outputs).item() for t in targets}
    optimizer, _ = build_grouped_optimizer(model, cfg["optimizer"])
    return model, x, raw, optimizer


def same_options(ours: torch.optim.Optimizer, theirs: torch.optim.Optimizer) -> None:
    """Every option torch's optimizer of the thread has, ours has with the same value."""
    implementation = {"params", "fused", "foreach", "differentiable", "capturable"}
    mine = ours.param_groups[0]
    assert type(ours) is type(theirs)
    assert {k: mine[k] for k in theirs.param_groups[0] if k not in implementation} == \
        {k: v for k, v in theirs.param_groups[0].items() if k not in implementation}


def preset(name: str) -> dict:
    """The preset file itself (make_cfg cuts the epochs and the batch size for speed)."""
    return yaml.safe_load((conf_dir() / "experiment" / f"{name}.yaml").read_text())


def shapes(model: nn.Module) -> Mapping[str, tuple[int, ...]]:
    return {name: tuple(p.shape) for name, p in model.named_parameters()}


def test_thread_000_one_norm_over_each_layers_weight_and_bias(make_cfg: Callable[..., dict]) -> None:
    """λ1·torch.norm(torch.cat(linear1 params), 1) + λ2·torch.norm(torch.cat(linear2 params), 2),
    the thread's own expressions, on a 128-32-16-2 net trained by plain SGD lr 1e-4, batch 4."""
    cfg = make_cfg("experiment=l1_and_l2_norm_two_layers", "trainer.batch_size=4")
    assert preset("l1_and_l2_norm_two_layers")["trainer"] == {"epochs": 5, "batch_size": 4}
    model, _, raw, optimizer = penalties(cfg)
    assert shapes(model) == {"fc1.weight": (32, 128), "fc1.bias": (32,), "fc2.weight": (16, 32), "fc2.bias": (16,),
                             "head.weight": (2, 16), "head.bias": (2,)}
    linear1 = torch.cat([p.detach().view(-1) for p in model.fc1.parameters()])
    linear2 = torch.cat([p.detach().view(-1) for p in model.fc2.parameters()])
    assert raw["l1_linear1"] == pytest.approx(float(torch.norm(linear1, 1)), rel=1e-6)
    assert raw["l2_norm_linear2"] == pytest.approx(float(torch.norm(linear2, 2)), rel=1e-6)
    per_tensor = sum(float(torch.norm(p.detach(), 2)) for p in model.fc2.parameters())
    assert abs(raw["l2_norm_linear2"] - per_tensor) > 1e-3  # the thread's one norm, not ‖W‖ + ‖b‖
    targets = cfg["reg"]["targets"]
    assert (targets["l1_linear1"]["lambda"], targets["l2_norm_linear2"]["lambda"]) == (0.5, 0.01)
    same_options(optimizer, torch.optim.SGD(model.parameters(), lr=1e-4))


def test_thread_001_squared_l1_of_every_parameter_is_one_override(make_cfg: Callable[..., dict],
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """Σ_p torch.norm(p, 1)**2 over model.parameters(), from examples/penalties.py by MODULE:FUNCTION."""
    monkeypatch.chdir(Path(__file__).parents[2])  # the project root: examples.penalties importable
    cfg = make_cfg("experiment=l1_relu_outputs_hook", "trainer.batch_size=4",
                   "+reg.targets.squared_l1={layers: ['*'], site: params, penalty: 'examples.penalties:squared_l1', "
                   "lambda: 0.5}")
    model, _, raw, _ = penalties(cfg)
    thread = sum(torch.norm(p.detach().double(), 1) ** 2 for p in model.parameters())
    assert raw["squared_l1"] == pytest.approx(float(thread), rel=1e-5)  # a float32 sum of 5k entries, squared


def test_thread_001_hooked_relu_outputs(make_cfg: Callable[..., dict]) -> None:
    """λ·Σ torch.norm(output, 1) over the outputs the hooked ReLU returned, batch 4, SGD lr 1e-4."""
    cfg = make_cfg("experiment=l1_relu_outputs_hook", "trainer.batch_size=4")
    assert preset("l1_relu_outputs_hook")["trainer"] == {"epochs": 5, "batch_size": 4}
    model, x, raw, optimizer = penalties(cfg)
    assert shapes(model)["fc1.weight"] == (32, 128) and shapes(model)["head.weight"] == (2, 16)
    hooked: list[Tensor] = []
    hooks = [getattr(model, name).register_forward_hook(lambda m, i, out: hooked.append(out)) for name in ("act1", "act2")]
    model(x)
    for hook in hooks:
        hook.remove()
    thread = sum(torch.norm(out.detach(), 1) for out in hooked)
    assert x.shape[0] == 4 and raw["l1_relu"] == pytest.approx(float(thread), rel=1e-6)
    assert cfg["reg"]["targets"]["l1_relu"]["lambda"] == 0.01
    same_options(optimizer, torch.optim.SGD(model.parameters(), lr=1e-4))


def test_thread_003_hidden_layer_l1_and_l2_in_the_loss(make_cfg: Callable[..., dict]) -> None:
    """l1_weight·Σ p.abs().sum() and l2_weight·Σ (p**2).sum() over net.hidden.parameters(); SGD lr 0.2."""
    cfg = make_cfg("experiment=per_layer_decay_regression")
    model, _, raw, optimizer = penalties(cfg)
    assert shapes(model) == {"fc1.weight": (10, 1), "fc1.bias": (10,), "head.weight": (1, 10), "head.bias": (1,)}
    hidden = list(model.fc1.parameters())
    assert raw["l1_hidden"] == pytest.approx(float(sum(p.detach().abs().sum() for p in hidden)), rel=1e-6)
    assert raw["l2_hidden"] == pytest.approx(float(sum((p.detach() ** 2).sum() for p in hidden)), rel=1e-6)
    assert resolve_task(cfg.get("task"), open_dataset(cfg["dataset"]).spec)[0] == "regression"
    same_options(optimizer, torch.optim.SGD(model.parameters(), lr=0.2))


def test_thread_004_l1_of_every_parameter_on_totensor_inputs(make_cfg: Callable[..., dict]) -> None:
    """compute_l1_loss(torch.cat([p.view(-1) for p in mlp.parameters()])) with λ 1, AdamW lr 1e-4,
    pixels in [0, 1] as ToTensor() gives them, batch 64, seed 42."""
    cfg = make_cfg("experiment=l1_all_params_collapse")
    model, x, raw, optimizer = penalties(cfg)
    assert shapes(model)["fc1.weight"] == (64, 784) and shapes(model)["fc2.weight"] == (32, 64)
    assert shapes(model)["head.weight"] == (10, 32)
    thread = torch.abs(torch.cat([p.detach().view(-1) for p in model.parameters()])).sum()
    assert raw["l1_all"] == pytest.approx(float(thread), rel=1e-6)
    assert x.min() >= 0 and x.max() <= 1 and x.max() > 0.9  # ToTensor(): [0, 1], not standardised
    assert cfg["seed"] == 42 and preset("l1_all_params_collapse")["trainer"] == {"epochs": 5, "batch_size": 64}
    same_options(optimizer, torch.optim.AdamW(model.parameters(), lr=1e-4))


def test_thread_002_l1_on_the_first_convs_output(make_cfg: Callable[..., dict]) -> None:
    """λ·Σ|a| of enc1's output (the conv after which the thread asks for L1), per sample, averaged."""
    cfg = make_cfg("experiment=sparse_conv_autoencoder")
    model, x, raw, _ = penalties(cfg)
    out = model.enc1(x).detach()
    assert raw["l1_conv1"] == pytest.approx(float(out.abs().sum() / len(x)), rel=1e-5)


@pytest.mark.parametrize("scaling, low, high", [("standardize", -0.5, 3.0), ("unit", 0.0, 1.0)])
def test_mnist_scaling_switch(make_cfg: Callable[..., dict], scaling: str, low: float, high: float) -> None:
    data = load_data(make_cfg(f"dataset.scaling={scaling}")["dataset"], torch.device("cpu"))
    assert low <= data.train.x.min() < data.train.x.max() <= high
    if scaling == "standardize":
        assert data.train.x.min() < 0
