"""Forward hooks capture the intended module's output and hold nothing across steps."""

import weakref

import torch
import torch.nn.functional as F
from torch import nn

from regrun.training.capture import ActivationCapture, forward_hooks, output_shapes
from regrun.components.models import build_model
from regrun.components.tasks import CLASSIFICATION
from regrun.training.targets import resolve_targets
from regrun.training.trainer import train_step

MLP = {"name": "mlp", "hidden": [16, 8]}


def make_mlp() -> nn.Sequential:
    torch.manual_seed(0)
    return build_model(MLP, (1, 28, 28), 10)


def test_captures_exactly_the_named_modules_output() -> None:
    model = make_mlp()
    x = torch.randn(4, 1, 28, 28)
    expected = F.relu(model.fc1(model.flatten(x)))
    with ActivationCapture(model, ["act1"]) as capture:
        model(x)
        taken = capture.take()
    assert list(taken) == ["act1"] and len(taken["act1"]) == 1
    assert torch.equal(taken["act1"][0], expected)
    assert taken["act1"][0].requires_grad  # the penalty can backpropagate through it


def test_hooks_are_removed_after_the_block() -> None:
    model = make_mlp()
    with ActivationCapture(model, ["act1", "act2"]):
        assert model.act1._forward_hooks and model.act2._forward_hooks
    assert not any(m._forward_hooks for m in model.modules())
    with forward_hooks(model, ["fc1"], lambda name, out: None):
        assert model.fc1._forward_hooks
    assert not model.fc1._forward_hooks


def test_nothing_is_kept_under_no_grad() -> None:
    """An evaluation pass must neither leak tensors nor feed the next step's penalty."""
    model = make_mlp()
    with ActivationCapture(model, ["act1"]) as capture, torch.no_grad():
        model(torch.randn(2, 1, 28, 28))
        assert capture.held() == 0


def test_memory_does_not_grow_with_steps() -> None:
    """Every captured tensor (and so its graph) is freed once the next step has run."""
    model = make_mlp()
    targets = resolve_targets(model, {"a": {"layers": ["act*"], "site": "activations", "penalty": "l1", "lambda": 1e-3}})
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    params = dict(model.named_parameters())
    seen: list[weakref.ref] = []
    spy = lambda name, out: seen.append(weakref.ref(out))  # noqa: E731
    with ActivationCapture(model, ["act1", "act2"]) as capture, forward_hooks(model, ["act1", "act2"], spy):
        for step in range(20):
            x, y = torch.randn(8, 1, 28, 28), torch.randint(0, 10, (8,))
            train_step(model, CLASSIFICATION, x, y, targets, params, capture, optimizer)
            assert capture.held() == 0
            alive = [ref for ref in seen if ref() is not None]
            assert not alive, f"step {step}: {len(alive)} captured tensors still alive"
    assert len(seen) == 40


def test_output_shapes_are_per_sample_and_leave_mode_alone() -> None:
    model = build_model({"name": "cnn", "channels": [3], "hidden": [5]}, (1, 28, 28), 10)
    model.train()
    shapes = output_shapes(model, torch.zeros(1, 1, 28, 28), ["act1", "pool1", "fc2"])
    assert shapes == {"act1": (3, 28, 28), "pool1": (3, 14, 14), "fc2": (5,)}
    assert model.training
