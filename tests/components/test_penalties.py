"""Penalties against closed-form values, and the L1 sign convention at zero."""

import math

import pytest
import torch

from regrun.components.penalties import PENALTIES, elastic_net, group_lasso, hoyer, hoyer_square, l1, l2, soft_threshold

X = torch.tensor([[3.0, -4.0, 0.0], [1.0, 0.0, -2.0]])


def test_l1_is_sum_of_absolute_values() -> None:
    assert l1(X).item() == 10.0
    assert l1(X, dims=(1,)).tolist() == [7.0, 3.0]


def test_l2_is_sum_of_squares_without_half() -> None:
    assert l2(X).item() == 9 + 16 + 1 + 4
    assert l2(X, dims=(1,)).tolist() == [25.0, 5.0]


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
    value = PENALTIES[name](x)
    value.backward()
    assert value.item() >= 0
    assert torch.isfinite(x.grad).all()
