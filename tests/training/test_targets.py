"""Target resolution (patterns, types, exclusions), its errors, and raw penalty values."""

import pytest
import torch
from torch import nn

from regrun.components.models import build_model
from regrun.errors import RegrunError
from regrun.training.targets import describe_targets, resolve_target, resolve_targets

MLP = {"name": "mlp", "hidden": [8, 4], "activation": "relu", "norm": "none", "dropout": 0.0}
CNN = {"name": "cnn", "channels": [4, 6], "kernel_size": 3, "activation": "leaky_relu",
       "norm": "batch", "pool": "max", "hidden": [5], "dropout": 0.0}


@pytest.fixture
def mlp() -> nn.Module:
    torch.manual_seed(0)
    return build_model(MLP, (1, 28, 28), 10)


@pytest.fixture
def cnn() -> nn.Module:
    torch.manual_seed(0)
    return build_model(CNN, (1, 28, 28), 10)


def spec(**kw: object) -> dict:
    return {"site": "weights", "penalty": "l1", "lambda": 0.1} | kw


def test_layer_pattern_selects_modules_and_their_weights(mlp: nn.Module) -> None:
    t = resolve_target(mlp, "w", spec(layers=["fc*"]))
    assert t.modules == ("fc1", "fc2")
    assert t.params == ("fc1.weight", "fc2.weight")


def test_types_select_by_class_name_across_models(mlp: nn.Module, cnn: nn.Module) -> None:
    assert resolve_target(mlp, "w", spec(types=["Linear"])).params == ("fc1.weight", "fc2.weight", "head.weight")
    t = resolve_target(cnn, "w", spec(types=["Linear", "Conv2d"]))
    assert t.params == ("conv1.weight", "conv2.weight", "fc3.weight", "head.weight")  # convs: no bias with BN


def test_layers_and_types_intersect_and_exclude_removes(cnn: nn.Module) -> None:
    assert resolve_target(cnn, "w", spec(layers=["*1"], types=["Conv2d"])).modules == ("conv1",)
    assert resolve_target(cnn, "w", spec(types=["Linear"], exclude=["head"])).modules == ("fc3",)


def test_sites_biases_and_params(mlp: nn.Module) -> None:
    assert resolve_target(mlp, "b", spec(layers="fc1", site="biases")).params == ("fc1.bias",)
    assert resolve_target(mlp, "p", spec(layers="fc1", site="params")).params == ("fc1.weight", "fc1.bias")


def test_activation_site_with_pattern(cnn: nn.Module) -> None:
    t = resolve_target(cnn, "a", spec(layers=["act*"], site="activations"))
    assert t.modules == ("act1", "act2", "act3") and t.params == ()
    assert t.reduction == "batch_mean"


def test_describe_targets_reports_shapes_and_counts(cnn: nn.Module) -> None:
    targets = resolve_targets(cnn, {"a": spec(layers=["act1"], site="activations"), "w": spec(layers=["fc3"])})
    rows = describe_targets(targets, cnn, torch.zeros(1, 1, 28, 28))
    assert [(r["tensor"], r["shape"], r["numel"]) for r in rows] == [
        ("act1", [4, 28, 28], 4 * 28 * 28), ("fc3.weight", [5, 6 * 7 * 7], 5 * 294)]


def test_raw_weight_penalty_matches_closed_form(mlp: nn.Module) -> None:
    with torch.no_grad():
        for p in mlp.parameters():
            p.fill_(-1.0)
    params = dict(mlp.named_parameters())
    l1 = resolve_target(mlp, "l1", spec(types=["Linear"]))
    l2 = resolve_target(mlp, "l2", spec(types=["Linear"], penalty="l2"))
    en = resolve_target(mlp, "en", spec(types=["Linear"], penalty="elastic_net", l1_ratio=0.25))
    weights = 784 * 8 + 8 * 4 + 4 * 10
    assert l1.raw(params, {}).item() == weights
    assert l2.raw(params, {}).item() == weights
    assert en.raw(params, {}).item() == pytest.approx(weights)  # 0.25·n + 0.75·n


@pytest.mark.parametrize("reduction, expected", [
    ("batch_mean", (6 + 15) / 2 + 4 / 2),  # per-sample sums, averaged over the batch of 2
    ("sum", 21 + 4),
    ("mean", 21 / 6 + 4 / 4),
])
def test_raw_activation_penalty_reductions(mlp: nn.Module, reduction: str, expected: float) -> None:
    t = resolve_target(mlp, "a", spec(layers=["act1", "act2"], site="activations", reduction=reduction))
    acts = {"act1": [torch.tensor([[1.0, -2.0, 3.0], [4.0, 5.0, -6.0]])], "act2": [torch.tensor([[1.0, 1.0], [-1.0, 1.0]])]}
    assert t.raw(dict(mlp.named_parameters()), acts).item() == pytest.approx(expected)


def test_activation_penalty_sums_repeated_calls_of_a_module(mlp: nn.Module) -> None:
    """A module run twice in one forward contributes both outputs."""
    t = resolve_target(mlp, "a", spec(layers="act1", site="activations"))
    out = torch.ones(2, 3)
    assert t.raw(dict(mlp.named_parameters()), {"act1": [out, 2 * out]}).item() == 3 + 6


@pytest.mark.parametrize("bad, message", [
    (spec(layers=["fc9"]), "reg.targets.t.layers: 'fc9' matches no module; the model has: flatten, fc1, act1, fc2, act2, head"),
    (spec(types=["Linaer"]), "reg.targets.t.types: unknown module type 'Linaer'; this model has: Flatten, Linear, ReLU"),
    (spec(types=["Conv2d"]), "reg.targets.t: layers [] ∩ types ['Conv2d'] minus exclude [] selects no module"),
    (spec(layers=["act*"], types=["Linear"]), "selects no module"),
    (spec(layers=["act1"]), "site 'weights' finds no parameters in the selected modules act1"),
    (spec(layers=["fc1"], site="outputs"), "reg.targets.t.site: unknown site 'outputs'; allowed: weights, biases, params, activations"),
    (spec(layers=["fc1"], penalty="l3"), "reg.targets.t.penalty: unknown penalty 'l3'; allowed: l1, l2, l2_norm, elastic_net, hoyer, hoyer_square, group_lasso"),
    (spec(layers=["act1"], site="activations", penalty="group_lasso"), "reg.targets.t.penalty: group_lasso groups a parameter's output units; use it with site weights, biases or params"),
    (spec(layers=["fc1"], **{"lambda": -1e-3}), "reg.targets.t.lambda must be a finite number ≥ 0, got -0.001"),
    (spec(layers=["fc1"], **{"lambda": "big"}), "reg.targets.t.lambda must be a finite number ≥ 0, got 'big'"),
    (spec(layers=["fc1"], **{"lambda": float("nan")}), "reg.targets.t.lambda must be a finite number ≥ 0, got nan"),
    (spec(layers=["fc1"], **{"lambda": float("inf")}), "reg.targets.t.lambda must be a finite number ≥ 0, got inf"),
    (spec(layers=["fc1"], **{"lambda": True}), "reg.targets.t.lambda must be a finite number ≥ 0, got True"),
    (spec(layers=["fc1"], strength=1), "reg.targets.t.strength: unknown key; allowed:"),
    ({"layers": ["fc1"], "site": "weights", "penalty": "l1"}, "reg.targets.t: missing 'lambda'"),
    (spec(), "give `layers` (name patterns) and/or `types`"),
    (spec(layers=["fc1"], l1_ratio=0.5), "reg.targets.t.l1_ratio: only for penalty elastic_net, not 'l1'"),
    (spec(layers=["fc1"], penalty="elastic_net", l1_ratio=1.5), "reg.targets.t.l1_ratio must be a number in [0, 1], got 1.5"),
    (spec(layers=["fc1"], reduction="sum"), "reg.targets.t.reduction applies to site 'activations' only, not 'weights'"),
    (spec(layers=["act1"], site="activations", reduction="max"), "reg.targets.t.reduction: unknown reduction 'max'; allowed: batch_mean, sum, mean"),
    (spec(layers=[1]), "reg.targets.t.layers must be a string or a list of strings or null, got [1]"),
    ("l1", "reg.targets.t must be a mapping"),
    (spec(layers=["fc1"], penalty="l2", proximal=True), "reg.targets.t.proximal applies to penalty l1, group_lasso on weights, biases or params, not 'l2' on 'weights'"),
    (spec(layers=["fc1"], penalty="group_lasso", proximal="adaptive"), "reg.targets.t.proximal=adaptive scales each entry's threshold by Adam's step for it; 'group_lasso' thresholds groups of entries: use proximal=true"),
    (spec(layers=["act1"], site="activations", proximal=True), "not 'l1' on 'activations'"),
    (spec(layers=["fc1"], proximal="yes"), "reg.targets.t.proximal must be one of true, false, adaptive, got 'yes'"),
])
def test_bad_specs_fail_in_one_line_naming_the_value(mlp: nn.Module, bad: object, message: str) -> None:
    with pytest.raises(RegrunError) as info:
        resolve_target(mlp, "t", bad)
    text = str(info.value)
    assert message in text
    assert "\n" not in text


def test_batch_mean_of_a_non_additive_penalty_is_per_sample(mlp: nn.Module) -> None:
    """Hoyer is not a sum over elements: batch_mean averages each sample's own value."""
    t = resolve_target(mlp, "h", spec(layers="act1", site="activations", penalty="hoyer"))
    out = torch.tensor([[3.0, 4.0, 0.0], [1.0, 0.0, 0.0]])
    assert t.raw(dict(mlp.named_parameters()), {"act1": [out]}).item() == pytest.approx((7 / 5 + 1) / 2)


def test_adaptive_proximal_l1_thresholds_each_coordinate_by_adams_step() -> None:
    """After one Adam step with gradient g, v̂ = g², so the threshold is lr·λ/(|g| + ε)."""
    import torch

    model = build_model({"name": "mlp", "hidden": [4]}, (1, 2, 2), 3)
    (target,) = resolve_targets(model, {"t": spec(layers=["fc1"], site="weights", proximal="adaptive")})
    assert target.proximal and target.adaptive
    weight = model.fc1.weight
    optimizer = torch.optim.Adam([weight], lr=0.1, eps=1e-8)
    grad = torch.linspace(-2.0, 2.0, weight.numel()).reshape(weight.shape)
    weight.grad = grad.clone()
    optimizer.step()
    before = weight.detach().clone()
    target.shrink_({"fc1.weight": weight}, {"fc1.weight": 0.1}, lam=0.5, optimizer=optimizer)
    threshold = 0.1 * 0.5 / (grad.abs() + 1e-8)
    expected = before.sign() * (before.abs() - threshold).clamp_min(0)
    torch.testing.assert_close(weight.detach(), expected)
