"""Sparsity statistics against closed-form values."""

import math
import platform
import sys

import pytest
import torch
from torch import nn

from regrun.measure import sparsity
from regrun.measure.sparsity import ActivationStats, normalized_hoyer, stat_modules, weight_stats
from regrun.training.memory import reuse_freed_memory


def test_normalized_hoyer_closed_forms() -> None:
    rows = torch.tensor([
        [0.0, 0.0, 5.0, 0.0],   # one non-zero: 1
        [2.0, -2.0, 2.0, 2.0],  # all equal in size: 0
        [0.0, 0.0, 0.0, 0.0],   # all zero: 1 by convention
        [3.0, 4.0, 0.0, 0.0],   # (2 − 7/5) / (2 − 1) = 0.6
    ])
    assert normalized_hoyer(rows).tolist() == pytest.approx([1.0, 0.0, 1.0, 0.6])
    assert normalized_hoyer(torch.tensor([[7.0]])).tolist() == [1.0]


def test_weight_stats_closed_form() -> None:
    layer = nn.Linear(2, 2)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[0.0, 5e-4], [-0.02, 3.0]]))
        layer.bias.copy_(torch.tensor([0.0, 0.0]))
    rows = {r["name"]: r for r in weight_stats(nn.Sequential(layer), [1e-3, 1e-1])}
    w = rows["0.weight"]
    assert w["shape"] == [2, 2] and w["numel"] == 4
    assert w["zero_frac"] == 0.25
    assert w["below_0.001"] == 0.5 and w["below_0.1"] == 0.75
    assert w["l1_norm"] == pytest.approx(3.0205)
    assert w["l2_norm"] == pytest.approx(math.sqrt(5e-4**2 + 0.02**2 + 9))
    l1, l2 = 3.0205, math.sqrt(5e-4**2 + 0.02**2 + 9)
    assert w["hoyer"] == pytest.approx((2 - l1 / l2) / (2 - 1), rel=1e-5)
    assert rows["0.bias"]["zero_frac"] == 1.0 and rows["0.bias"]["hoyer"] == 1.0


def test_activation_stats_dense_over_batches() -> None:
    stats = ActivationStats()
    stats.update(torch.tensor([[0.0, 1.0, 0.0], [0.0, 2.0, 0.0]]))
    stats.update(torch.tensor([[0.0, 0.0, 3.0]]))
    r = stats.result()
    assert r["samples"] == 3 and r["shape"] == [3]
    assert r["zero_frac"] == pytest.approx(6 / 9)
    assert (r["units"], r["dead_units"], r["dead_frac"]) == (3, 1, pytest.approx(1 / 3))
    assert r["l1_per_sample"] == pytest.approx(6 / 3)
    assert r["hoyer"] == pytest.approx(1.0)  # every sample has one non-zero entry
    assert r["l0"] == pytest.approx(1.0)  # one non-zero entry per sample: (1 − 6/9) × 3
    assert r["density"] == pytest.approx([0.0, 2 / 3, 1 / 3])  # unit 1 fires on 2 of 3 samples


def test_activation_stats_conv_units_are_channels() -> None:
    out = torch.zeros(2, 3, 2, 2)
    out[0, 0, 1, 1] = 4.0   # channel 0 fires once, at one position, for one sample
    out[1, 2] = 1.0         # channel 2 fires everywhere for sample 1
    r = ActivationStats()
    r.update(out)
    res = r.result()
    assert (res["units"], res["dead_units"]) == (3, 1)  # channel 1 never fires
    assert res["zero_frac"] == pytest.approx(1 - 5 / 24)
    assert res["l1_per_sample"] == pytest.approx(8 / 2)
    h1 = (math.sqrt(12) - 4 / 2) / (math.sqrt(12) - 1)  # sample 1: four equal entries of 12
    assert res["hoyer"] == pytest.approx((1.0 + h1) / 2)
    assert res["l0"] == pytest.approx(5 / 2)  # 1 + 4 non-zero entries over 2 samples
    assert res["density"] == pytest.approx([1 / 8, 0.0, 4 / 8])  # of 2 samples × 4 positions


def test_stat_modules_skip_flatten_dropout_and_containers() -> None:
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3), nn.ReLU(), nn.Dropout(0.1), nn.Sequential(nn.Linear(3, 2)))
    assert stat_modules(model) == ["1", "2", "4.0"]


def reference_stats(batches: list[torch.Tensor]) -> dict:
    """The definitions, spelled out the slow way: every figure from the whole concatenated output."""
    out = torch.cat(batches).double()
    flat = out.flatten(1)
    n = flat.shape[1]
    l1, l2 = flat.abs().sum(1), flat.square().sum(1).sqrt()
    hoyer = [1.0 if b == 0 else min(max((math.sqrt(n) - a / b) / (math.sqrt(n) - 1), 0.0), 1.0)
             for a, b in zip(l1.tolist(), l2.tolist())]
    alive = out.transpose(0, 1).flatten(1).ne(0).any(1)
    return {"zero_frac": (flat == 0).double().mean().item(), "dead_units": int((~alive).sum()),
            "l1_per_sample": l1.mean().item(), "hoyer": sum(hoyer) / len(hoyer)}


@pytest.mark.parametrize("shape", [(5, 7), (5, 3, 6), (5, 4, 3, 3), (4, 8, 28, 28)])
def test_activation_stats_match_the_definitions_on_random_outputs(shape: tuple[int, ...]) -> None:
    generator = torch.Generator().manual_seed(0)
    batches = [torch.randn(shape, generator=generator).relu() for _ in range(3)]
    batches[1][:, 1] = 0.0  # unit 1 dead in one batch only: still alive
    for b in batches:
        b[:, 2] = 0.0  # unit 2 dead throughout
    batches[2][0] = 0.0  # an all-zero sample: Hoyer 1 by convention
    stats = ActivationStats()
    for b in batches:
        stats.update(b)
    got, want = stats.result(), reference_stats(batches)
    assert got["dead_units"] == want["dead_units"] == 1
    for key in ("zero_frac", "l1_per_sample", "hoyer"):
        assert got[key] == pytest.approx(want[key], rel=1e-6), key  # float32 outputs, float64 sums


def test_activation_stats_of_a_channels_last_output_equal_the_contiguous_ones() -> None:
    out = torch.randn(4, 3, 5, 5, generator=torch.Generator().manual_seed(1)).relu()
    plain, strided = ActivationStats(), ActivationStats()
    plain.update(out)
    strided.update(out.to(memory_format=torch.channels_last))
    got, want = strided.result(), plain.result()
    assert (got["shape"], got["dead_units"]) == (want["shape"], want["dead_units"])
    for key in ("zero_frac", "l1_per_sample", "hoyer"):
        assert got[key] == pytest.approx(want[key], rel=1e-6), key


def test_activation_stats_split_into_parts_equal_the_whole(monkeypatch: pytest.MonkeyPatch) -> None:
    batches = [torch.randn(6, 4, 5, 5, generator=torch.Generator().manual_seed(2)).relu()]
    whole = ActivationStats()
    whole.update(batches[0])
    monkeypatch.setattr(sparsity, "PART_ELEMENTS", 2 * 4 * 5 * 5)  # parts of 2 samples: 3 of them
    parts = ActivationStats()
    parts.update(batches[0])
    got, want = parts.result(), reference_stats(batches)
    assert got["dead_units"] == whole.result()["dead_units"] == want["dead_units"]
    for key in ("zero_frac", "l1_per_sample", "hoyer"):
        assert got[key] == pytest.approx(want[key], rel=1e-6), key


def test_activation_stats_of_an_output_holding_nan_are_nan_not_zeros() -> None:
    stats = ActivationStats()
    stats.update(torch.tensor([[float("nan"), 0.0, 1.0], [0.0, 0.0, 2.0]]))
    r = stats.result()
    assert math.isnan(r["zero_frac"]) and math.isnan(r["l1_per_sample"]) and math.isnan(r["hoyer"])
    assert r["dead_units"] == 1  # unit 1; unit 0 held a NaN, which is not a zero


def test_activation_stats_of_a_bfloat16_output_equal_the_float32_ones() -> None:
    out = torch.randn(4, 3, 20, 20, generator=torch.Generator().manual_seed(3)).relu().bfloat16()
    low, high = ActivationStats(), ActivationStats()
    low.update(out)
    high.update(out.float())
    got, want = low.result(), high.result()
    assert got["dead_units"] == want["dead_units"] and got["zero_frac"] == want["zero_frac"]
    for key in ("l1_per_sample", "hoyer"):
        assert got[key] == pytest.approx(want[key], rel=1e-6), key


@pytest.mark.skipif(not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc", reason="glibc only")
def test_freed_memory_is_kept_for_reuse_on_glibc() -> None:
    assert reuse_freed_memory()


def test_structure_of_a_crafted_matrix_rows_columns_and_could_become() -> None:
    linear = nn.Linear(5, 4)  # weight (4 outputs, 5 inputs)
    with torch.no_grad():
        linear.weight.copy_(torch.arange(1.0, 21.0).reshape(4, 5))
        linear.weight[1] = 0.0  # output 1: a zero row
        linear.weight[3] = 0.0  # output 3 too
        linear.weight[:, 2] = 0.0  # input 2: a zero column
        linear.weight[0, 4] = 0.0  # one more zero: column 4 is not all zero (row 2 holds one)
    row = {r["name"]: r for r in weight_stats(linear, [])}["weight"]
    assert row["zero_rows"] == 2 / 4 and row["zero_cols"] == 1 / 5
    assert row["could_become"] == [2, 4]
    assert "zero_filters" not in row and "zero_rows" not in {r["name"]: r for r in weight_stats(linear, [])}["bias"]


def test_structure_of_a_crafted_kernel_filters_channels_kernels() -> None:
    conv = nn.Conv2d(3, 4, kernel_size=(2, 3))  # weight (4 filters, 3 channels, 2, 3)
    with torch.no_grad():
        conv.weight.fill_(0.5)
        conv.weight[2] = 0.0  # filter 2: zero
        conv.weight[:, 1] = 0.0  # input channel 1: zero in every filter
        conv.weight[0, 0] = 0.0  # one more whole kernel (filter 0, channel 0)
        conv.weight[3, 2, 1, 2] = 0.0  # an entry alone makes no kernel zero
    row = {r["name"]: r for r in weight_stats(conv, [])}["weight"]
    # kernels: filter 2's 3, channel 1's in the other 3 filters, and (0, 0): 7 of 12
    assert (row["zero_filters"], row["zero_channels"], row["zero_kernels"]) == (1 / 4, 1 / 3, 7 / 12)
    assert row["could_become"] == [3, 2, 2, 3]
    assert "zero_rows" not in row


def test_a_nan_entry_keeps_its_row_and_column() -> None:
    weight = torch.zeros(2, 2)
    weight[0, 1] = math.nan
    structure = sparsity.structure(weight)
    assert (structure["zero_rows"], structure["zero_cols"], structure["could_become"]) == (0.5, 0.5, [1, 1])
