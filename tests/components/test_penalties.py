"""Penalties against closed-form values, gradients at zero, and the registry's records."""

import dataclasses
import math
from importlib import metadata

import pytest
import torch

from regrun.components import registry
from regrun.components.penalties import (
    PENALTIES,
    Penalty,
    as_penalty,
    elastic_net,
    group_lasso,
    hoyer,
    hoyer_square,
    l1,
    l2,
    l2_norm,
    register_penalty,
    soft_threshold,
)

X = torch.tensor([[3.0, -4.0, 0.0], [1.0, 0.0, -2.0]])


def test_l1_is_sum_of_absolute_values() -> None:
    assert l1(X).item() == 10.0
    assert l1(X, dims=(1,)).tolist() == [7.0, 3.0]


def test_l2_is_sum_of_squares_without_half() -> None:
    assert l2(X).item() == 9 + 16 + 1 + 4
    assert l2(X, dims=(1,)).tolist() == [25.0, 5.0]


def test_l2_norm_is_the_unsquared_euclidean_norm() -> None:
    """Thread 000's torch.norm(p, 2): sqrt(Σx²), not Σx²."""
    assert l2_norm(X).item() == pytest.approx(math.sqrt(30))
    assert l2_norm(X, dims=(1,)).tolist() == pytest.approx([5.0, math.sqrt(5)])
    assert l2_norm(X).item() == pytest.approx(torch.norm(X, 2).item())


def test_l2_norm_gradient_is_x_over_its_norm_and_zero_at_zero() -> None:
    x = torch.tensor([3.0, -4.0], requires_grad=True)
    l2_norm(x).backward()
    assert x.grad.tolist() == pytest.approx([0.6, -0.8])
    zero = torch.zeros(2, 3, requires_grad=True)
    l2_norm(zero).backward()
    assert zero.grad.tolist() == [[0.0] * 3] * 2  # not NaN, as x.square().sum().sqrt() would give
    per_sample = torch.tensor([[0.0, 0.0], [3.0, 4.0]], requires_grad=True)
    l2_norm(per_sample, dims=(1,)).sum().backward()
    assert per_sample.grad.flatten().tolist() == pytest.approx([0.0, 0.0, 0.6, 0.8])


@pytest.mark.parametrize("ratio", [0.0, 0.3, 1.0])
def test_elastic_net_mixes_l1_and_l2(ratio: float) -> None:
    assert elastic_net(X, l1_ratio=ratio).item() == pytest.approx(ratio * 10 + (1 - ratio) * 30)


def test_hoyer_and_hoyer_square() -> None:
    assert hoyer(X).item() == pytest.approx(10 / math.sqrt(30))
    assert hoyer_square(X).item() == pytest.approx(100 / 30)
    assert hoyer(X, dims=(1,)).tolist() == pytest.approx([7 / 5, 3 / math.sqrt(5)])
    assert hoyer(torch.zeros(4)).item() == 0.0  # no 0/0


def test_group_lasso_sums_the_norms_of_output_slices() -> None:
    w = torch.tensor([[3.0, 4.0], [0.0, 0.0], [1.0, 0.0]])  # rows: output units
    assert group_lasso(w).item() == pytest.approx(5 + 0 + 1)
    kernels = torch.ones(2, 3, 2, 2)  # two filters of 12 ones each
    assert group_lasso(kernels).item() == pytest.approx(2 * math.sqrt(12))
    assert group_lasso(torch.tensor([-2.0, 0.5])).item() == pytest.approx(2.5)  # a bias: one entry a group


def test_group_lasso_gradient_of_a_zero_group_is_zero() -> None:
    w = torch.tensor([[3.0, 4.0], [0.0, 0.0]], requires_grad=True)
    group_lasso(w).backward()
    assert w.grad[0].tolist() == pytest.approx([0.6, 0.8])
    assert w.grad[1].tolist() == [0.0, 0.0]  # exactly: no push on a zero group


def test_soft_threshold_is_the_prox_of_l1() -> None:
    x = torch.tensor([-3.0, -0.5, 0.0, 0.2, 1.0, 2.0])
    assert soft_threshold(x, 1.0).tolist() == [-2.0, 0.0, 0.0, 0.0, 0.0, 1.0]
    assert soft_threshold(x, 0.0).tolist() == x.tolist()


def test_allennlp_anchor_all_weights_minus_one() -> None:
    """AllenNLP's regularizer test: weights all −1, L1 = element count, L2 likewise."""
    weights = [-torch.ones(5, 10), -torch.ones(10), -torch.ones(10, 10)]
    assert sum(l1(w) for w in weights).item() == 160
    assert sum(l2(w) for w in weights).item() == 160


def test_l1_gradient_at_zero_is_zero() -> None:
    """sign(0) = 0: L1 does not push an entry that is already exactly zero."""
    x = torch.tensor([-1.5, 0.0, 2.0], requires_grad=True)
    l1(x).backward()
    assert x.grad.tolist() == [-1.0, 0.0, 1.0]


@pytest.mark.parametrize("name", sorted(PENALTIES))
def test_penalties_are_differentiable_and_nonnegative(name: str) -> None:
    x = torch.randn(4, 6, requires_grad=True)
    value = PENALTIES[name].fn(x)
    value.backward()
    assert value.item() >= 0
    assert torch.isfinite(x.grad).all()


@pytest.mark.parametrize("name", sorted(PENALTIES))
def test_penalties_of_zeros_are_zero_with_zero_gradient(name: str) -> None:
    """An all-zero tensor (a pruned layer, a dead ReLU's output) gives 0 and no NaN in training."""
    x = torch.zeros(4, 6, requires_grad=True)
    value = PENALTIES[name].fn(x)
    value.backward()
    assert value.item() == 0.0
    assert x.grad.abs().sum().item() == 0.0


@pytest.mark.parametrize("name", sorted(n for n in PENALTIES if not PENALTIES[n].parameter_only))
def test_additive_flag_is_true_exactly_for_sums_over_elements(name: str) -> None:
    """The targets rely on `additive`: the batch's penalty is then the sum of the samples'."""
    x = torch.randn(5, 3, 2)
    whole, per_sample = PENALTIES[name].fn(x), PENALTIES[name].fn(x, dims=(1, 2))
    assert per_sample.shape == (5,)
    assert math.isclose(whole.item(), per_sample.sum().item(), rel_tol=1e-5) == PENALTIES[name].additive


def test_a_record_names_only_options_its_function_takes() -> None:
    with pytest.raises(ValueError, match="'ratio' is not a keyword parameter of elastic_net"):
        Penalty(elastic_net, "ρ·Σ|x|", options={"ratio": (0.0, 1.0)})
    with pytest.raises(ValueError, match="range \\[1.0, 0.0\\] is empty"):
        Penalty(elastic_net, "ρ·Σ|x|", options={"l1_ratio": (1.0, 0.0)})


def test_records_are_frozen() -> None:
    """A record is the same wherever it is used: no one flips a flag for everyone."""
    with pytest.raises(dataclasses.FrozenInstanceError):
        PENALTIES["l1"].additive = False
    with pytest.raises(TypeError):
        PENALTIES["elastic_net"].options["l1_ratio"] = (0.0, 2.0)


def test_register_penalty_refuses_a_taken_name() -> None:
    with pytest.raises(ValueError, match="penalty 'l1' is registered already"):
        register_penalty("l1", l2, "Σx²")


def test_an_entry_point_function_becomes_a_plain_penalty(monkeypatch: pytest.MonkeyPatch) -> None:
    """An installed package's `regrun.penalties` entry point naming a function."""
    point = metadata.EntryPoint("sum_abs", "regrun.components.penalties:l1", "regrun.penalties")
    monkeypatch.setattr(registry.metadata, "entry_points", lambda group: [point] if group == "regrun.penalties" else [])
    penalties = registry.Registry("penalty", "regrun.penalties", wrap=as_penalty)
    record = penalties.entry("sum_abs")
    assert record == Penalty(l1, "Σ|x|.")  # not additive, no options: the safe defaults
    assert record.fn(X).item() == 10.0
