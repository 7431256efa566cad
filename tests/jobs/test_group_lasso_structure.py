"""Group lasso on the rows of fc1: whole rows become zero, as the structured sparsity
figures (metrics, summary, compare) and the shape fc1 could become say."""

from collections.abc import Callable
from pathlib import Path

import torch

from regrun.analysis.compare import compare_runs, display_rows
from regrun.analysis.runs import find_runs
from regrun.jobs.run import run

ROWS = ("optimizer=sgd", "optimizer.momentum=0.9", "reg=group_lasso", "reg.targets.group_lasso.layers=[fc1]",
        "reg.targets.group_lasso.lambda=0.6", "trainer.epochs=3")


def test_proximal_group_lasso_zeroes_whole_rows_of_fc1_seen_in_the_structure_figures(
        make_cfg: Callable[..., dict], tmp_path: Path) -> None:
    summary = run(make_cfg(*ROWS, "reg.targets.group_lasso.proximal=true"), tmp_path / "proximal")
    weight = torch.load(tmp_path / "proximal" / "model.pt", weights_only=True)["fc1.weight"]
    rows, cols = int((weight == 0).all(1).sum()), int((weight == 0).all(0).sum())
    assert 0.2 < rows / 256 < 1  # some rows removed, not all
    final = summary["final"]
    assert final["sparsity.fc1.weight.zero_rows"] == rows / 256 and final["sparsity.fc1.weight.zero_cols"] == cols / 784
    assert final["sparsity.fc2.weight.zero_rows"] == 0  # fc2 is not targeted
    fc1 = {row["name"]: row for row in summary["sparsity"]["weights"]}["fc1.weight"]
    assert fc1["could_become"] == [256 - rows, 784 - cols]
    comparison = compare_runs(find_runs([tmp_path]))
    headers, cells = display_rows(comparison)
    column = comparison.columns.index("sparsity.fc1.weight.zero_rows")
    assert headers[column] == "fc1.weight zero rows" and cells[0][column] == f"{rows / 256:.4f}"


def test_group_lasso_by_its_gradient_shrinks_rows_but_zeroes_none_exactly(
        make_cfg: Callable[..., dict], tmp_path: Path) -> None:
    summary = run(make_cfg(*ROWS), tmp_path)
    weight = torch.load(tmp_path / "model.pt", weights_only=True)["fc1.weight"]
    assert summary["final"]["sparsity.fc1.weight.zero_rows"] == 0 == int((weight == 0).all(1).sum())
    fc1 = {row["name"]: row for row in summary["sparsity"]["weights"]}["fc1.weight"]
    assert fc1["could_become"] == [256, 784]
