"""Magnitude pruning rows against counts worked out by hand, and the model left as it was."""

import pytest
import torch

from regrun.measure.pruning import magnitude_order, prune_rows, ranks_within


def test_ranks_order_entries_by_magnitude_over_all_tensors_or_one_ties_by_position() -> None:
    a, b = torch.tensor([[0.5, -0.1], [0.0, 2.0]]), torch.tensor([-0.1, 0.3, 0.1])
    order = magnitude_order([a, b])
    # |entries| in order: 0.5, 0.1, 0.0, 2.0 | 0.1, 0.3, 0.1 → 0.0 first, then the three 0.1 by position
    assert ranks_within(order, 0, 7).tolist() == [5, 1, 0, 6, 2, 4, 3]
    assert ranks_within(order, 0, 4).tolist() == [2, 1, 0, 3]
    assert ranks_within(order, 4, 3).tolist() == [0, 2, 1]


def test_each_level_zeroes_its_count_of_smallest_entries_globally_and_per_layer() -> None:
    a = torch.tensor([1.0, -2.0, 3.0, -4.0])  # |a| 1..4
    b = torch.tensor([0.5, 5.0, -6.0, 7.0, 8.0, -9.0])
    seen: list[tuple[list[float], list[float]]] = []

    def figures() -> dict[str, float]:
        seen.append((a.tolist(), b.tolist()))
        return {"zeros": float((a == 0).sum() + (b == 0).sum())}

    rows = prune_rows({"fc1.weight": a, "fc2.weight": b}, figures, [0.3, 0.5])
    assert [(r["scope"], r["level"]) for r in rows] == [
        ("global", 0.0), ("global", 0.3), ("global", 0.5), ("fc1", 0.0), ("fc1", 0.3), ("fc1", 0.5),
        ("fc2", 0.0), ("fc2", 0.3), ("fc2", 0.5)]
    assert len(seen) == 1 + 2 * 3  # the model as it is once, then one evaluation per scope and level
    # global 0.3 of 10 entries: the 3 smallest, 0.5, 1 and 2
    assert seen[1] == ([0.0, 0.0, 3.0, -4.0], [0.0, 5.0, -6.0, 7.0, 8.0, -9.0])
    # global 0.5: also 3 and 4, every entry of fc1
    assert seen[2] == ([0.0, 0.0, 0.0, 0.0], [0.0, 5.0, -6.0, 7.0, 8.0, -9.0])
    # fc1 alone at 0.3 of 4: round(1.2) = 1 entry; fc2 untouched
    assert seen[3] == ([0.0, -2.0, 3.0, -4.0], [0.5, 5.0, -6.0, 7.0, 8.0, -9.0])
    # fc2 alone at 0.5 of 6: 3 entries; fc1 as it was
    assert seen[6] == ([1.0, -2.0, 3.0, -4.0], [0.0, 0.0, 0.0, 7.0, 8.0, -9.0])
    by = {(r["scope"], r["level"]): r for r in rows}
    assert by["global", 0.3]["sparsity"] == pytest.approx(0.3) and by["fc2", 0.5]["sparsity"] == pytest.approx(0.5)
    assert by["fc1", 0.3]["sparsity"] == pytest.approx(0.25)  # what it reached, not what was asked
    assert by["fc1", 0.0]["test_zeros"] == 0 and by["global", 0.5]["test_zeros"] == 5
    assert a.tolist() == [1.0, -2.0, 3.0, -4.0] and b.tolist() == [0.5, 5.0, -6.0, 7.0, 8.0, -9.0]


def test_an_already_sparse_tensor_reaches_more_than_the_level() -> None:
    a = torch.tensor([0.0, 0.0, 0.0, 1.0])
    rows = prune_rows({"w": a}, lambda: {}, [0.5], per_layer=False)
    assert [(r["level"], r["sparsity"]) for r in rows] == [(0.0, 0.75), (0.5, 0.75)]


def test_the_tensors_are_put_back_when_an_evaluation_raises() -> None:
    a = torch.tensor([1.0, 2.0, 3.0])
    calls = []

    def figures() -> dict[str, float]:
        calls.append(a.clone())
        if len(calls) == 2:
            raise RuntimeError("out of memory")
        return {}

    with pytest.raises(RuntimeError):
        prune_rows({"w": a}, figures, [0.5])
    assert calls[1].tolist() == [0.0, 0.0, 3.0] and a.tolist() == [1.0, 2.0, 3.0]
