"""Tasks: the figures against closed forms on hand-made tensors, the loss, the output
widths and shapes a task accepts, and the one-line mismatch errors."""

import math

import pytest
import torch
import torch.nn.functional as F

from regrun.components.datasets import DataSpec
from regrun.components.tasks import TASKS, Task, check_output, register_task, resolve_task, task_summary
from regrun.errors import RegrunError

LABELS = DataSpec("mnist", (1, 28, 28), "classification", "labels", num_classes=10)
VALUES = DataSpec("toy_regression", (1,), "regression", "values", target_shape=(2,))


def figures(name: str, *chunks: tuple[torch.Tensor, torch.Tensor]) -> dict[str, float]:
    running = TASKS[name].running()
    for output, reference in chunks:
        running.update(output, reference)
    return running.result()


def test_classification_loss_and_accuracy() -> None:
    logits = torch.tensor([[2.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 3.0], [1.0, 0.0, 0.0]])
    labels = torch.tensor([0, 2, 2, 1])
    result = figures("classification", (logits[:3], labels[:3]), (logits[3:], labels[3:]))
    assert result["acc"] == 0.5  # rows 0 and 2 hit
    assert result["loss"] == pytest.approx(F.cross_entropy(logits, labels).item())
    assert TASKS["classification"].loss(logits, labels).item() == pytest.approx(result["loss"])


def test_regression_r2_mse_mae_in_closed_form() -> None:
    y = torch.tensor([[1.0], [2.0], [3.0], [4.0]])
    out = torch.tensor([[1.5], [2.0], [2.0], [4.0]])
    # SSE = 0.25 + 0 + 1 + 0 = 1.25; mean 2.5, SST = 2.25 + 0.25 + 0.25 + 2.25 = 5
    result = figures("regression", (out[:1], y[:1]), (out[1:], y[1:]))
    assert result["loss"] == pytest.approx(1.25 / 4)
    assert result["r2"] == pytest.approx(1 - 1.25 / 5)
    assert result["mae"] == pytest.approx(1.5 / 4)


def test_r2_pools_every_target_entry_and_keeps_precision_far_from_zero() -> None:
    y = torch.tensor([[0.0, 10.0], [2.0, 12.0]]) + 1e6  # a large mean: naive float sums would lose the SST
    out = y + torch.tensor([[1.0, 0.0], [0.0, -1.0]])
    # entries 1e6 + (0, 10, 2, 12): mean 6, SST = 36 + 16 + 16 + 36 = 104; SSE = 2
    result = figures("regression", (out, y))
    assert result["r2"] == pytest.approx(1 - 2 / 104, abs=1e-9)


def test_r2_of_the_mean_is_zero_and_of_constant_targets_undefined() -> None:
    y = torch.tensor([[1.0], [3.0]])
    assert figures("regression", (torch.full((2, 1), 2.0), y))["r2"] == pytest.approx(0.0)
    assert math.isnan(figures("regression", (torch.zeros(2, 1), torch.ones(2, 1)))["r2"])


def test_reconstruction_psnr_uses_the_range_of_the_inputs() -> None:
    x = torch.tensor([[[0.0, 2.0]], [[1.0, -2.0]]])  # peak = 2 − (−2) = 4
    out = (x + torch.tensor([[[0.5, -0.5]], [[0.5, 0.5]]])).flatten(1)  # (B, prod) is accepted
    result = figures("reconstruction", (out[:1], x[:1]), (out[1:], x[1:]))
    assert result["loss"] == pytest.approx(0.25)
    assert result["psnr"] == pytest.approx(10 * math.log10(16 / 0.25))
    assert TASKS["reconstruction"].reference(x, torch.tensor([7, 8])) is x  # compared with the input


def test_fvu_is_the_unexplained_share_of_the_inputs_variance_over_every_chunk() -> None:
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(7, 5, generator=generator, dtype=torch.float64) * 3 + 10  # far from 0: precision matters
    out = x + 0.5 * torch.randn(7, 5, generator=generator, dtype=torch.float64)
    fvu = ((x - out).square().sum() / (x - x.mean(0)).square().sum()).item()
    assert figures("reconstruction", (out[:3], x[:3]), (out[3:], x[3:]))["fvu"] == pytest.approx(fvu, rel=1e-9)
    assert figures("reconstruction", (x.mean(0).expand(7, 5), x))["fvu"] == pytest.approx(1.0)  # x̄ explains nothing
    assert figures("reconstruction", (x, x))["fvu"] == 0.0
    assert math.isnan(figures("reconstruction", (x, torch.ones(7, 5, dtype=torch.float64)))["fvu"])  # no variance


def test_psnr_is_unchanged_by_an_affine_normalisation() -> None:
    x = torch.rand(8, 1, 4, 4)
    out = x + 0.05 * torch.randn_like(x)
    raw = figures("reconstruction", (out, x))["psnr"]
    assert figures("reconstruction", ((out - 0.13) / 0.31, (x - 0.13) / 0.31))["psnr"] == pytest.approx(raw, rel=1e-5)


def test_regression_loss_is_the_mean_over_batch_and_entries() -> None:
    out, y = torch.tensor([[1.0, 2.0], [0.0, 0.0]]), torch.tensor([[0.0, 0.0], [0.0, 2.0]])
    assert TASKS["regression"].loss(out, y).item() == pytest.approx((1 + 4 + 0 + 4) / 4)
    assert TASKS["regression"].loss(out.view(2, 2, 1), y).item() == pytest.approx(9 / 4)  # (B, *shape) too


@pytest.mark.parametrize("name, spec, width", [
    ("classification", LABELS, 10), ("regression", VALUES, 2), ("reconstruction", LABELS, 784),
])
def test_num_outputs(name: str, spec: DataSpec, width: int) -> None:
    assert TASKS[name].num_outputs(spec) == width


@pytest.mark.parametrize("name, spec, shape", [
    ("classification", LABELS, (4, 10)), ("regression", VALUES, (4, 2)),
    ("reconstruction", LABELS, (4, 784)), ("reconstruction", LABELS, (4, 1, 28, 28)),
])
def test_outputs_that_fit(name: str, spec: DataSpec, shape: tuple[int, ...]) -> None:
    check_output(name, TASKS[name], spec, "mine", shape)


@pytest.mark.parametrize("name, spec, shape, message", [
    ("classification", LABELS, (4, 3), "model 'mine': output shape (4, 3) does not fit task classification with "
                                       "10 classes (dataset mnist); expected (4, 10)"),
    ("reconstruction", LABELS, (4, 10), "model 'mine': output shape (4, 10) does not fit task reconstruction with "
                                        "784 outputs (dataset mnist); expected (4, 784) or (4, 1, 28, 28)"),
    ("regression", VALUES, (4,), "model 'mine': output shape (4,) does not fit task regression with 2 outputs "
                                 "(dataset toy_regression); expected (4, 2)"),
])
def test_outputs_that_do_not_fit_are_one_line(name: str, spec: DataSpec, shape: tuple[int, ...], message: str) -> None:
    with pytest.raises(RegrunError) as info:
        check_output(name, TASKS[name], spec, "mine", shape)
    assert str(info.value) == message


def test_natural_task_and_override() -> None:
    assert resolve_task(None, LABELS)[0] == "classification"
    assert resolve_task({"name": "reconstruction"}, LABELS)[0] == "reconstruction"
    assert resolve_task(None, VALUES)[0] == "regression"


@pytest.mark.parametrize("cfg, spec, message", [
    ({"name": "classification"}, VALUES, "task classification needs integer class labels, but dataset "
                                         "toy_regression has float targets; allowed: task=regression, task=reconstruction"),
    ({"name": "regression"}, LABELS, "task regression needs float targets, but dataset mnist has integer class "
                                     "labels; allowed: task=classification, task=reconstruction"),
    ({"name": "ranking"}, LABELS, "task.name: unknown task 'ranking'; allowed: classification, regression, reconstruction"),
    ({"name": "regression", "loss": "l1"}, VALUES, "task.loss: unknown key; allowed: name"),
])
def test_task_mismatch_is_one_line(cfg: dict, spec: DataSpec, message: str) -> None:
    with pytest.raises(RegrunError) as info:
        resolve_task(cfg, spec)
    assert str(info.value) == message


def test_summary_names_the_headline_column_for_torch_free_readers() -> None:
    assert task_summary("regression", TASKS["regression"]) == {
        "name": "regression", "figures": {"loss": "loss (MSE)", "r2": "R²", "mae": "mean absolute error"},
        "headline": "test_r2", "higher_is_better": True}


def test_a_plugin_task_registers_by_name(monkeypatch: pytest.MonkeyPatch) -> None:
    l1 = Task(lambda out, ref: (out - ref).abs().mean(), "targets", TASKS["regression"].output_shapes, "values",
              TASKS["regression"].running, {"loss": "loss", "r2": "R²", "mae": "MAE"}, "mae", False)
    monkeypatch.setattr(TASKS, "_records", dict(TASKS._records))
    register_task("l1_regression", l1)
    assert resolve_task({"name": "l1_regression"}, VALUES) == ("l1_regression", l1)
    with pytest.raises(ValueError, match="task 'l1_regression' is registered already"):
        register_task("l1_regression", l1)


def test_the_trivial_predictors_score_the_chance_levels_in_closed_form() -> None:
    """Label frequencies: the top class's share and the labels' entropy; the mean target: R² = 0; the mean pixel: peak²/variance."""
    from regrun.components.tasks import CLASSIFICATION, RECONSTRUCTION, REGRESSION, trivial_figures

    labels = torch.tensor([0, 2, 2, 1, 2])
    constant = trivial_figures(CLASSIFICATION, torch.zeros(5, 3), labels)
    assert constant["acc"] == pytest.approx(3 / 5)
    assert constant["loss"] == pytest.approx(-(0.2 * math.log(0.2) * 2 + 0.6 * math.log(0.6)))  # the entropy
    values = torch.tensor([[1.0], [2.0], [4.0], [5.0]])
    assert trivial_figures(REGRESSION, torch.zeros(4, 1), values)["r2"] == pytest.approx(0.0, abs=1e-12)
    x = torch.tensor([[0.0, 1.0], [1.0, 1.0]])
    variance = x.var(unbiased=False).item()  # 0.1875: the MSE of the mean, 0.75, everywhere
    assert trivial_figures(RECONSTRUCTION, x, torch.zeros(2))["psnr"] == pytest.approx(10 * math.log10(1.0 / variance))
