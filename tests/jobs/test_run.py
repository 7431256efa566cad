"""A whole run in-process: the loss breakdown adds up, seeds reproduce, bad input stops early."""

import csv
import json
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from regrun.errors import RegrunError
from regrun.jobs.run import run
from regrun.training.targets import RegSettings


def metrics(out: Path) -> list[dict]:
    with open(out / "metrics.csv") as f:
        return list(csv.DictReader(f))


def test_total_is_task_plus_weighted_penalties(make_cfg: Callable[..., dict], tmp_path: Path) -> None:
    cfg = make_cfg("reg=[l1_activations,l2_weights]", "trainer.epochs=2",
                   "reg.targets.l1_activations.lambda=1e-3", "reg.targets.l2_weights.lambda=1e-3")
    summary = run(cfg, tmp_path)
    losses = summary["loss_breakdown"]
    weighted = [p["weighted"] for p in losses["penalties"].values()]
    assert losses["total"] == pytest.approx(losses["task"] + sum(weighted), rel=1e-12)
    for term in losses["penalties"].values():
        assert term["weighted"] == pytest.approx(term["lambda"] * term["raw"], rel=1e-6)  # λ·raw in float32 steps
        assert term["raw"] > 0
    rows = metrics(tmp_path)
    assert [r["epoch"] for r in rows] == ["1", "2"]
    for row in rows:
        parts = float(row["train_task_loss"]) + float(row["penalty.l1_activations.weighted"]) + float(row["penalty.l2_weights.weighted"])
        assert float(row["train_total_loss"]) == pytest.approx(parts, rel=1e-12)


def test_summary_holds_tables_targets_and_environment(make_cfg: Callable[..., dict], tmp_path: Path) -> None:
    summary = run(make_cfg("reg=l1_activations"), tmp_path)
    on_disk = json.loads((tmp_path / "summary.json").read_text())
    assert on_disk["status"] == "completed" and on_disk["final"]["epoch"] == 1
    acts = on_disk["sparsity"]["activations"]
    assert list(acts) == ["fc1", "act1", "fc2", "act2", "head"]
    assert acts["act1"]["targeted_by"] == ["l1_activations"] and acts["fc1"]["targeted_by"] == []
    assert acts["act1"]["samples"] == 160
    assert {w["name"] for w in on_disk["sparsity"]["weights"]} >= {"fc1.weight", "head.bias"}
    assert [t["tensor"] for t in on_disk["targets"]] == ["act1", "act2"]
    assert on_disk["environment"]["device"] == "cpu" and on_disk["environment"]["seed"] == 0
    assert on_disk["environment"]["optimizer_implementation"] == "fused"  # torch 2.4+ fuses on CPU
    assert json.loads((tmp_path / "targets.json").read_text()) == on_disk["targets"]
    assert summary["final"]["sparsity.act1.zero_frac"] == acts["act1"]["zero_frac"]


def test_same_seed_same_figures_other_seed_other_figures(make_cfg: Callable[..., dict], tmp_path: Path) -> None:
    def figures(seed: int, name: str) -> list[dict]:
        run(make_cfg("reg=l1_activations", "trainer.epochs=2", "model.dropout=0.1", f"seed={seed}"), tmp_path / name)
        return [{k: v for k, v in row.items() if k != "epoch_time_s"} for row in metrics(tmp_path / name)]

    first = figures(3, "a")
    assert first == figures(3, "b")
    assert first != figures(4, "c")


def test_model_state_dict_is_saved(make_cfg: Callable[..., dict], tmp_path: Path) -> None:
    run(make_cfg(), tmp_path)
    state = torch.load(tmp_path / "model.pt", weights_only=True)
    assert state["fc1.weight"].shape == (256, 784)


@pytest.mark.parametrize("override, message", [
    ("trainer.epochs=0", "trainer.epochs must be a positive integer, got 0"),
    ("trainer.batch_size=-4", "trainer.batch_size must be a positive integer, got -4"),
    ("trainer.device=tpu", "trainer.device: unknown device 'tpu'; allowed: auto, cpu, cuda, cuda:N"),
    ("+trainer.epoch=3", "trainer.epoch: unknown key; allowed: epochs, batch_size"),
    ("seed=abc", "seed must be an integer in [0, 4294967295], got 'abc'"),
    ("sparsity.thresholds=[0.1,-1]", "sparsity.thresholds must be a list of finite numbers > 0, got [0.1, -1]"),
    ("model.activation=swish", "unknown activation 'swish'; allowed: relu, leaky_relu"),
    ("+model.width=3", "model.width: unknown key; allowed: name, hidden, activation, norm, dropout"),
    ("optimizer.lr=-1", "optimizer 'adamw': Invalid learning rate: -1"),
    ("optimizer.name=lion", "optimizer.name: unknown optimizer 'lion'; allowed: sgd, adam, adamw"),
    ("reg.targets.l1_activations.layers=[act9]", "reg.targets.l1_activations.layers: 'act9' matches no module"),
    ("trainer.device=0", "trainer.device: unknown device '0'"),
    ("+reg.target={}", "reg.target: unknown key; allowed: targets"),
    ("+dataset.rot=x", "dataset.rot: unknown key; allowed: name, train_limit, test_limit, val_size, val_seed, root, download"),
    ("+dataset.path=x.npz", "dataset.path: unknown key; allowed: name, train_limit, test_limit, val_size, val_seed, root, download"),
    ("dataset.train_limit=0", "dataset.train_limit must be a positive integer or null, got 0"),
    ("dataset.name=svhn", "dataset.name: unknown dataset 'svhn'; allowed: mnist, fashion_mnist, kmnist, cifar10, tensors, toy_regression, teacher"),
    ("dataset.val_size=1.5", "dataset.val_size must be a sample count ≥ 1, a fraction in (0, 1), or null; got 1.5"),
    ("dataset.val_seed=-1", "dataset.val_seed must be an integer ≥ 0, got -1"),
    ("task=regression", "task regression needs float targets, but dataset mnist has integer class labels; allowed: task=classification, task=reconstruction"),
    ("objective.metric=val_acc", "objective.metric='val_acc': not a figure of this run; allowed: test_loss, test_acc, train_task_loss"),
    ("objective.constraint=test_r2", "objective.constraint='test_r2': not a figure of this run"),
])
def test_bad_config_fails_before_any_training(make_cfg: Callable[..., dict], tmp_path: Path, override: str, message: str) -> None:
    cfg = make_cfg("reg=l1_activations", override)
    cfg["dataset"]["root"] = str(tmp_path / "nowhere")  # data is loaded after validation, so never reached
    with pytest.raises(RegrunError) as info:
        run(cfg, tmp_path / "out")
    assert message in str(info.value)
    assert not (tmp_path / "out" / "metrics.csv").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU message")
def test_cuda_without_gpu_is_refused(make_cfg: Callable[..., dict], tmp_path: Path) -> None:
    with pytest.raises(RegrunError, match="trainer.device=cuda: no CUDA GPU is visible"):
        run(make_cfg("trainer.device=cuda"), tmp_path)


def test_targets_given_as_a_list_are_refused() -> None:
    """A preset file can say `targets: [...]`; Hydra composes it, regrun refuses it."""
    with pytest.raises(RegrunError, match=r"reg.targets must be a mapping of target name to spec, got \[1\]"):
        RegSettings.from_node("reg", {"targets": [1]})


def test_eval_every_leaves_test_columns_blank_between_evaluations(make_cfg: Callable[..., dict], tmp_path: Path) -> None:
    run(make_cfg("trainer.epochs=3", "trainer.eval_every=2"), tmp_path)
    rows = metrics(tmp_path)
    assert [r["test_acc"] != "" for r in rows] == [False, True, True]  # epoch 2, and the last
    assert all(r["train_task_loss"] != "" for r in rows)


def test_eval_every_leaves_val_columns_blank_too(make_cfg: Callable[..., dict], tmp_path: Path) -> None:
    summary = run(make_cfg("trainer.epochs=2", "trainer.eval_every=2", "dataset.val_size=64"), tmp_path)
    rows = metrics(tmp_path)
    assert [(r["val_acc"] != "", r["test_acc"] != "") for r in rows] == [(False, False), (True, True)]
    assert summary["objective"]["metric"] == "val_acc"  # λ is never chosen on the test set
    assert summary["task"]["headline"] == "test_acc"


# Each dataset with its natural task, and each task on a dataset it fits: one step of training
# on the tiny files through the real conf/, the figures the task names in metrics.csv.
NATURAL = {"mnist": "classification", "fashion_mnist": "classification", "kmnist": "classification",
           "cifar10": "classification", "tensors": "classification", "toy_regression": "regression",
           "teacher": "classification"}
FITS = {"classification": "mnist", "regression": "toy_regression", "reconstruction": "mnist"}


def test_every_registered_dataset_and_task_is_covered() -> None:
    from regrun.components.datasets import DATASETS
    from regrun.components.tasks import TASKS

    assert sorted(NATURAL) == sorted(DATASETS) and sorted(FITS) == sorted(TASKS)


def train_one_step(make_cfg: Callable[..., dict], out: Path, *overrides: str) -> dict:
    cfg = make_cfg("dataset.train_limit=32", "dataset.test_limit=16", "model.hidden=[8]", "reg=l1_activations",
                   "dataset.val_size=8", *overrides)
    cfg["trainer"]["batch_size"] = 24  # 24 of the 32 training samples; 8 are held out
    return run(cfg, out)


@pytest.mark.parametrize("dataset", sorted(NATURAL))
def test_every_dataset_trains_a_step_with_its_natural_task(make_cfg: Callable[..., dict], tmp_path: Path,
                                                           dataset: str) -> None:
    summary = train_one_step(make_cfg, tmp_path, f"dataset={dataset}")
    task = NATURAL[dataset]
    assert summary["status"] == "completed" and summary["task"]["name"] == task
    assert summary["final"]["step"] == 1
    columns = {f"{split}_{figure}" for split in ("val", "test") for figure in summary["task"]["figures"]}
    assert columns <= set(summary["final"]) and summary["task"]["headline"] in columns


@pytest.mark.parametrize("task", sorted(FITS))
def test_every_task_trains_a_step(make_cfg: Callable[..., dict], tmp_path: Path, task: str) -> None:
    summary = train_one_step(make_cfg, tmp_path, f"dataset={FITS[task]}", f"task={task}")
    assert summary["status"] == "completed" and summary["task"]["name"] == task
    rows = metrics(tmp_path)
    headline = {"classification": "test_acc", "regression": "test_r2", "reconstruction": "test_psnr"}[task]
    assert summary["task"]["headline"] == headline and rows[-1][headline] != ""
    assert "test_acc" not in rows[-1] or task == "classification"  # nothing assumes accuracy


def test_reconstruction_compares_the_output_with_the_input(make_cfg: Callable[..., dict], tmp_path: Path) -> None:
    summary = train_one_step(make_cfg, tmp_path, "task=reconstruction")
    state = torch.load(tmp_path / "model.pt", weights_only=True)
    assert state["head.weight"].shape == (784, 8)  # num_outputs = 1×28×28
    assert summary["final"]["test_psnr"] > 0


def test_tensors_file_with_float_targets_is_a_regression(make_cfg: Callable[..., dict], tmp_path: Path) -> None:
    from conftest import write_tensors

    path = write_tensors(tmp_path / "values.pt", "values")
    summary = train_one_step(make_cfg, tmp_path / "out", "dataset=tensors", f"dataset.path={path}")
    assert summary["task"]["name"] == "regression" and "test_r2" in summary["final"]
    with pytest.raises(RegrunError, match=r"task classification needs integer class labels, but dataset "
                                          rf"tensors \({path}\) has float targets"):
        train_one_step(make_cfg, tmp_path / "out2", "dataset=tensors", f"dataset.path={path}", "task=classification")


def test_model_that_cannot_take_the_samples_is_one_line(make_cfg: Callable[..., dict], tmp_path: Path) -> None:
    cfg = make_cfg("dataset=cifar10", "model=mlp")
    cfg["model"]["hidden"] = [8]
    from regrun.components.models import MODELS

    with pytest.MonkeyPatch.context() as patch:  # a model whose input width ignores the data's
        patch.setitem(MODELS._records, "narrow", lambda input_shape, num_outputs: torch.nn.Linear(5, num_outputs))
        patch.setitem(MODELS._records, "short", lambda input_shape, num_outputs: torch.nn.Flatten())
        cfg["model"] = {"name": "narrow"}
        with pytest.raises(RegrunError, match=r"^model 'narrow' cannot take samples of shape \(3, 32, 32\) "
                                              r"from dataset cifar10: mat1 and mat2 shapes cannot be multiplied"):
            run(cfg, tmp_path / "a")
        cfg["model"] = {"name": "short"}
        with pytest.raises(RegrunError) as info:
            run(cfg, tmp_path / "b")
    assert str(info.value) == ("model 'short': output shape (2, 3072) does not fit task classification with "
                               "10 classes (dataset cifar10); expected (2, 10)")
    assert not (tmp_path / "b" / "metrics.csv").exists()
