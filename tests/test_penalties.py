"""Penalties against closed-form values, and the L1 sign convention at zero."""

import math

import pytest
import torch

from regrun.penalties import PENALTIES, elastic_net, hoyer, hoyer_square, l1, l2

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
