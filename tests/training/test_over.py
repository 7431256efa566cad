"""`over`: a penalty per tensor, per module's tensors together, or of all a target selects as
one vector, checked against the closed forms written with torch.cat."""

import pytest
import torch
from torch import Tensor, nn

from regrun.components.models import build_model
from regrun.errors import RegrunError
from regrun.schema import read_node
from regrun.training.targets import TargetSpec, resolve_target

MLP = {"name": "mlp", "hidden": [8, 4], "activation": "relu", "norm": "none", "dropout": 0.0}


@pytest.fixture
def mlp() -> nn.Module:
    torch.manual_seed(0)
    return build_model(MLP, (1, 6, 6), 3)


def raw(model: nn.Module, over: str, penalty: str, layers: list[str], site: str = "params") -> float:
    spec = {"layers": layers, "site": site, "penalty": penalty, "lambda": 1.0, "over": over}
    return resolve_target(model, "t", spec).raw(dict(model.named_parameters()), {}).item()


def flat(*tensors: Tensor) -> Tensor:
    return torch.cat([t.detach().reshape(-1) for t in tensors])


def test_l2_norm_over_a_target_is_one_norm_of_weight_and_bias(mlp: nn.Module) -> None:
    w, b = mlp.fc1.weight.detach(), mlp.fc1.bias.detach()
    assert raw(mlp, "target", "l2_norm", ["fc1"]) == pytest.approx(float(torch.norm(flat(w, b), 2)), rel=1e-6)
    assert raw(mlp, "tensor", "l2_norm", ["fc1"]) == pytest.approx(float(w.norm() + b.norm()), rel=1e-6)


def test_over_module_is_a_norm_per_layer_and_over_target_one_for_all(mlp: nn.Module) -> None:
    layers = [list(mlp.fc1.parameters()), list(mlp.fc2.parameters())]
    per_layer = sum(float(torch.norm(flat(*ps), 2)) for ps in layers)
    assert raw(mlp, "module", "l2_norm", ["fc1", "fc2"]) == pytest.approx(per_layer, rel=1e-6)
    whole = float(torch.norm(flat(*layers[0], *layers[1]), 2))
    assert raw(mlp, "target", "l2_norm", ["fc1", "fc2"]) == pytest.approx(whole, rel=1e-6)


def test_hoyer_over_a_target_is_the_ratio_of_the_concatenation(mlp: nn.Module) -> None:
    v = flat(*mlp.fc1.parameters(), *mlp.fc2.parameters())
    expected = float(v.abs().sum() / v.norm())
    assert raw(mlp, "target", "hoyer", ["fc1", "fc2"]) == pytest.approx(expected, rel=1e-6)
    tensors = [p.detach() for p in [*mlp.fc1.parameters(), *mlp.fc2.parameters()]]
    per_tensor = sum(float(p.abs().sum() / p.norm()) for p in tensors)
    assert raw(mlp, "tensor", "hoyer", ["fc1", "fc2"]) == pytest.approx(per_tensor, rel=1e-6)


def test_group_lasso_over_a_module_takes_the_layer_as_its_group(mlp: nn.Module) -> None:
    w1, w2 = mlp.fc1.weight.detach(), mlp.fc2.weight.detach()
    rows = float(w1.norm(dim=1).sum() + w2.norm(dim=1).sum())
    assert raw(mlp, "tensor", "group_lasso", ["fc1", "fc2"], "weights") == pytest.approx(rows, rel=1e-6)
    layers = float(w1.norm() + w2.norm())
    assert raw(mlp, "module", "group_lasso", ["fc1", "fc2"], "weights") == pytest.approx(layers, rel=1e-6)
    assert raw(mlp, "target", "group_lasso", ["fc1", "fc2"], "weights") == pytest.approx(
        float(torch.norm(flat(w1, w2))), rel=1e-6)


def test_an_additive_penalty_is_the_same_over_anything(mlp: nn.Module) -> None:
    total = float(flat(*mlp.parameters()).abs().sum())
    for over in ("tensor", "module", "target"):
        assert raw(mlp, over, "l1", ["*"]) == pytest.approx(total, rel=1e-6)


def test_activations_over_a_target_concatenate_each_samples_outputs() -> None:
    """Hoyer per sample of [fc1's output, fc2's output], averaged over the batch (batch_mean)."""
    torch.manual_seed(0)
    model = build_model(MLP, (1, 6, 6), 3)
    a, b = torch.randn(5, 8), torch.randn(5, 4)
    spec = {"layers": ["fc1", "fc2"], "site": "activations", "penalty": "hoyer", "lambda": 1.0, "over": "target"}
    value = resolve_target(model, "t", spec).raw(dict(model.named_parameters()), {"fc1": [a], "fc2": [b]}).item()
    both = torch.cat([a, b], dim=1)
    assert value == pytest.approx(float((both.abs().sum(1) / both.norm(dim=1)).mean()), rel=1e-6)


def test_a_proximal_step_over_more_than_a_tensor_is_refused() -> None:
    node = {"layers": ["fc1"], "site": "weights", "penalty": "l1", "lambda": 1.0, "over": "target", "proximal": True}
    with pytest.raises(RegrunError, match=r"^reg.targets.t.proximal shrinks each tensor on its own; it takes "
                                          r"over=tensor, not 'target'$"):
        read_node("reg.targets.t", node, TargetSpec)


def test_an_unknown_over_names_what_is_allowed() -> None:
    node = {"layers": ["fc1"], "site": "weights", "penalty": "l1", "lambda": 1.0, "over": "layer"}
    with pytest.raises(RegrunError, match=r"reg.targets.t.over.*'layer'.*tensor.*module.*target"):
        read_node("reg.targets.t", node, TargetSpec)
