"""The training step backpropagates exactly task + Σ λ·penalty, and reports its parts."""

import copy

import pytest
import torch
import torch.nn.functional as F

from regrun.components.models import build_model
from regrun.components.penalties import group_soft_threshold, soft_threshold
from regrun.components.tasks import CLASSIFICATION
from regrun.measure.capture import ActivationCapture
from regrun.training.step import loss_terms, train_step, with_totals
from regrun.training.targets import resolve_targets

SPECS = {
    "act": {"layers": ["act*"], "site": "activations", "penalty": "l1", "lambda": 0.01},
    "w1": {"layers": ["fc1"], "site": "weights", "penalty": "l2", "lambda": 0.001},
}


def test_step_matches_a_hand_written_step() -> None:
    torch.manual_seed(0)
    model = build_model({"name": "mlp", "hidden": [16, 8]}, (1, 28, 28), 10)
    twin = copy.deepcopy(model)
    x, y = torch.randn(6, 1, 28, 28), torch.randint(0, 10, (6,))

    targets = resolve_targets(model, SPECS)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    with ActivationCapture(model, ["act1", "act2"]) as capture:
        terms = train_step(model, CLASSIFICATION, x, y, targets, dict(model.named_parameters()), capture, optimizer)

    # The same step by hand: no hooks, the penalties written out.
    a1 = F.relu(twin.fc1(x.flatten(1)))
    a2 = F.relu(twin.fc2(a1))
    task = F.cross_entropy(twin.head(a2), y)
    act_raw = (a1.abs().sum() + a2.abs().sum()) / len(y)
    w_raw = twin.fc1.weight.square().sum()
    (task + 0.01 * act_raw + 0.001 * w_raw).backward()
    torch.optim.SGD(twin.parameters(), lr=0.1).step()

    for (name, p), q in zip(model.named_parameters(), twin.parameters()):
        torch.testing.assert_close(p, q, msg=name)
    expected = [task, act_raw, w_raw, 0.01 * act_raw, 0.001 * w_raw]
    assert loss_terms(targets) == ["train_task_loss", "penalty.act.raw", "penalty.w1.raw",
                                   "penalty.act.weighted", "penalty.w1.weighted"]
    torch.testing.assert_close(terms, torch.stack(expected).detach())


def test_totals_are_the_sum_of_the_parts() -> None:
    torch.manual_seed(0)
    targets = resolve_targets(build_model({"name": "mlp", "hidden": [4]}, (1, 28, 28), 10), SPECS)
    means = {"train_task_loss": 0.5, "penalty.act.raw": 10.0, "penalty.w1.raw": 30.0,
             "penalty.act.weighted": 0.1, "penalty.w1.weighted": 0.03}
    totals = with_totals(means, targets)
    assert totals["train_penalty_total"] == pytest.approx(0.13)
    assert totals["train_total_loss"] == pytest.approx(0.63)


def test_proximal_l1_step_is_a_gradient_step_then_soft_thresholding() -> None:
    """Proximal L1 on fc1: SGD on the task loss alone, then w ← sign(w)·max(|w| − lr·λ, 0)."""
    torch.manual_seed(0)
    model = build_model({"name": "mlp", "hidden": [16]}, (1, 28, 28), 10)
    twin = copy.deepcopy(model)
    x, y = torch.randn(6, 1, 28, 28), torch.randint(0, 10, (6,))
    lr, lam = 0.1, 0.2
    targets = resolve_targets(model, {"l1": {"layers": ["fc1"], "site": "weights", "penalty": "l1",
                                             "lambda": lam, "proximal": True}})
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    with ActivationCapture(model, []) as capture:
        terms = train_step(model, CLASSIFICATION, x, y, targets, dict(model.named_parameters()), capture, optimizer)

    raw_before = twin.fc1.weight.abs().sum().item()
    F.cross_entropy(twin(x), y).backward()  # the penalty is not in the gradient
    torch.optim.SGD(twin.parameters(), lr=lr).step()
    with torch.no_grad():
        within = (twin.fc1.weight.abs() <= lr * lam).float().mean().item()
        twin.fc1.weight.copy_(soft_threshold(twin.fc1.weight, lr * lam))

    for (name, p), q in zip(model.named_parameters(), twin.parameters()):
        torch.testing.assert_close(p, q, msg=name)
    zeros = (model.fc1.weight == 0).float().mean().item()
    assert zeros == within > 0.3  # every entry within lr·λ of 0 is now exactly 0
    assert terms[1].item() == pytest.approx(raw_before)  # reported: Σ|w| before the step
    assert terms[2].item() == pytest.approx(lam * raw_before)


def test_proximal_group_lasso_step_zeroes_whole_rows_within_the_threshold() -> None:
    """Proximal group lasso on fc1: SGD on the task loss alone, then each row
    w_g ← w_g·max(1 − lr·λ/‖w_g‖₂, 0): rows of norm ≤ lr·λ become exactly 0, the others shrink."""
    torch.manual_seed(0)
    model = build_model({"name": "mlp", "hidden": [16]}, (1, 28, 28), 10)
    with torch.no_grad():
        model.fc1.weight[:8] *= 0.01  # half the rows small
    twin = copy.deepcopy(model)
    x, y = torch.randn(6, 1, 28, 28), torch.randint(0, 10, (6,))
    lr, lam = 0.1, 2.0  # a threshold of 0.2: above the small rows' norms, below the others' (near 0.6)
    targets = resolve_targets(model, {"g": {"layers": ["fc1"], "site": "weights", "penalty": "group_lasso",
                                            "lambda": lam, "proximal": True}})
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    with ActivationCapture(model, []) as capture:
        train_step(model, CLASSIFICATION, x, y, targets, dict(model.named_parameters()), capture, optimizer)

    F.cross_entropy(twin(x), y).backward()
    torch.optim.SGD(twin.parameters(), lr=lr).step()
    with torch.no_grad():
        norms = twin.fc1.weight.norm(dim=1)
        expected = twin.fc1.weight * (1 - lr * lam / norms).clamp_min(0).unsqueeze(1)
    torch.testing.assert_close(model.fc1.weight, expected)
    zero_rows = (model.fc1.weight == 0).all(1)
    assert zero_rows.tolist() == (norms <= lr * lam).tolist() and 0 < zero_rows.sum() < 16
    kept = ~zero_rows
    torch.testing.assert_close(model.fc1.weight[kept].norm(dim=1), norms[kept] - lr * lam)  # shrunk by lr·λ


def test_group_soft_threshold_of_stacked_copies_is_each_copys_own() -> None:
    x = torch.randn(3, 4, 5)
    thresholds = torch.tensor([0.1, 2.0, 5.0]).reshape(3, 1, 1)
    stacked = group_soft_threshold(x, thresholds, stacked=True)
    for m in range(3):
        torch.testing.assert_close(stacked[m], group_soft_threshold(x[m], float(thresholds[m])))
