"""Forward hooks capture the intended module's output and hold nothing across steps, on
models that are not nn.Sequential too: a module called twice, a ModuleList, tuple outputs."""

import weakref

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from regrun.components.datasets import Split
from regrun.components.models import build_model
from regrun.components.tasks import CLASSIFICATION
from regrun.errors import RegrunError
from regrun.measure.capture import ActivationCapture, forward_hooks, output_shapes
from regrun.measure.evaluation import evaluate
from regrun.training.step import train_step
from regrun.training.targets import describe_targets, resolve_targets

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


class Scale(nn.Module):
    """x ↦ factor·x, without parameters: outputs known in closed form."""

    def __init__(self, factor: float):
        super().__init__()
        self.factor = factor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.factor * x


class CalledTwice(nn.Module):
    """`scale` runs twice per forward; `blocks.0` sits in a ModuleList; `unused` never runs."""

    def __init__(self):
        super().__init__()
        self.scale = Scale(2.0)
        self.blocks = nn.ModuleList([Scale(3.0)])
        self.unused = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks[0](self.scale(self.scale(x)))


def raw_penalty(model: nn.Module, spec: dict, x: torch.Tensor) -> float:
    (target,) = resolve_targets(model, {"t": {"site": "activations", "penalty": "l1", "lambda": 1.0, **spec}})
    with ActivationCapture(model, target.modules) as capture:
        model(x)
        return target.raw({}, capture.take()).item()


def test_a_module_called_twice_is_penalized_at_both_calls() -> None:
    """x = 1 in 3 features: scale gives 2 then 4, Σ|a| per sample 6 + 12 = 18; blocks.0 gives 12·3 = 36."""
    model, x = CalledTwice(), torch.ones(2, 3)
    assert raw_penalty(model, {"layers": ["scale"]}, x) == pytest.approx(18.0)
    assert raw_penalty(model, {"layers": ["scale"], "reduction": "sum"}, x) == pytest.approx(36.0)
    assert raw_penalty(model, {"layers": ["blocks.*"]}, x) == pytest.approx(36.0)


def test_statistics_pool_the_calls_of_a_module_called_twice() -> None:
    model = CalledTwice()
    split = Split(torch.ones(4, 3), torch.zeros(4, dtype=torch.long))
    acts = evaluate(model, CLASSIFICATION, split, 4, [1e-3]).activations
    assert acts["scale"]["samples"] == 8 and acts["scale"]["l1_per_sample"] == pytest.approx(9.0)  # (6 + 12) / 2
    assert acts["blocks.0"]["samples"] == 4 and "unused" not in acts  # a module that never ran has no row


@pytest.mark.parametrize("layers, idle", [(["unused"], "unused (ReLU)"), (["blocks"], "blocks (ModuleList)")])
def test_a_target_on_a_module_that_never_runs_is_refused(layers: list[str], idle: str) -> None:
    model = CalledTwice()
    targets = resolve_targets(model, {"t": {"layers": layers, "site": "activations", "penalty": "l1", "lambda": 1.0}})
    with pytest.raises(RegrunError) as info:
        describe_targets(targets, model, torch.zeros(1, 3))
    assert str(info.value) == (f"reg.targets.t: {idle} never run in the model's forward, so they have no output "
                               "to penalize; narrow `layers` or add them to `exclude`")


class Recurrent(nn.Module):
    """An LSTM returns (output, (h, c)): hooks take `output`, the sequence."""

    def __init__(self):
        super().__init__()
        self.lstm = nn.LSTM(4, 5, batch_first=True)
        self.head = nn.Linear(5, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.lstm(x)
        return self.head(out[:, -1])


def test_a_tuple_output_is_captured_and_measured_by_its_first_tensor() -> None:
    torch.manual_seed(0)
    model, x = Recurrent(), torch.randn(2, 6, 4)
    sequence, _ = model.lstm(x)
    assert raw_penalty(model, {"layers": ["lstm"]}, x) == pytest.approx(sequence.abs().sum().item() / 2, rel=1e-6)
    acts = evaluate(model, CLASSIFICATION, Split(x, torch.zeros(2, dtype=torch.long)), 2, [1e-3]).activations
    assert acts["lstm"]["shape"] == [6, 5]
    assert acts["lstm"]["l1_per_sample"] == pytest.approx(sequence.abs().sum().item() / 2, rel=1e-5)


class DictOutput(nn.Module):
    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"y": x}


class UsesDict(nn.Module):
    def __init__(self):
        super().__init__()
        self.inner = DictOutput()
        self.fc = nn.Linear(3, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.inner(x)["y"])


def test_an_output_without_a_tensor_is_refused_as_a_target_and_left_out_of_statistics() -> None:
    model = UsesDict()
    targets = resolve_targets(model, {"t": {"layers": ["inner"], "site": "activations", "penalty": "l1", "lambda": 1.0}})
    with pytest.raises(RegrunError, match=r"^module 'inner' \(DictOutput\) returns dict, not a tensor nor a tuple "
                                          r"starting with one; its activations cannot be captured$"):
        describe_targets(targets, model, torch.zeros(1, 3))
    acts = evaluate(model, CLASSIFICATION, Split(torch.ones(2, 3), torch.zeros(2, dtype=torch.long)), 2, [1e-3]).activations
    assert list(acts) == ["fc"]
