"""Trackers: TensorBoard event files and an MLflow local store, read back after a run."""

import csv
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import api_pb2, plugin_data_pb2

from regrun.config import conf_dir
from regrun.errors import RegrunError
from regrun.jobs.run import run
from regrun.rundir.trackers import check_loggers, tag

LAMBDA = 1e-3


def events(folder: Path) -> EventAccumulator:
    accumulator = EventAccumulator(str(folder), size_guidance={"scalars": 0, "histograms": 0})
    accumulator.Reload()
    return accumulator


def session_status(accumulator: EventAccumulator) -> int:
    """The status the run's HParams session ended with."""
    content = accumulator.PluginTagToContent("hparams")["_hparams_/session_end_info"]
    return plugin_data_pb2.HParamsPluginData.FromString(content).session_end_info.status


def hparams(accumulator: EventAccumulator) -> dict:
    """The hyperparameters of the run's HParams session, as TensorBoard's HParams tab reads them."""
    content = accumulator.PluginTagToContent("hparams")["_hparams_/session_start_info"]
    info = plugin_data_pb2.HParamsPluginData.FromString(content).session_start_info
    return {k: v.WhichOneof("kind") and getattr(v, v.WhichOneof("kind")) for k, v in info.hparams.items()}


@pytest.mark.parametrize("choice, trackers", [
    ("csv", []), ("tensorboard", ["tensorboard"]), ("mlflow", ["mlflow"]), ("[tensorboard,mlflow]", ["tensorboard", "mlflow"]),
])
def test_logger_presets_compose_and_merge(make_cfg: Callable[..., dict], choice: str, trackers: list[str]) -> None:
    assert sorted(p.stem for p in (conf_dir() / "logger").glob("*.yaml")) == ["csv", "mlflow", "tensorboard"]
    assert list(check_loggers(make_cfg(f"logger={choice}"))) == trackers


def test_tag_groups_figures_by_kind() -> None:
    assert [tag(k) for k in ("penalty.l1.raw", "lambda.l1", "test_acc", "val_loss", "sparsity.act1.zero_frac")] == \
        ["penalty/l1.raw", "lambda/l1", "test/acc", "val/loss", "sparsity/act1.zero_frac"]


def test_tensorboard_and_mlflow_hold_every_epoch_and_the_final_figures(
        make_cfg: Callable[..., dict], tmp_path: Path) -> None:
    out = tmp_path / "runs" / "one"
    cfg = make_cfg("logger=[tensorboard,mlflow]", "reg=l1_activations", "trainer.epochs=2",
                   f"reg.targets.l1_activations.lambda={LAMBDA}", "prune.at_end=true")
    summary = run(cfg, out)
    with open(out / "metrics.csv") as f:
        rows = list(csv.DictReader(f))

    tb = events(out / "tb")
    for key, name in (("penalty.l1_activations.raw", "penalty/l1_activations.raw"),
                      ("penalty.l1_activations.weighted", "penalty/l1_activations.weighted"),
                      ("train_task_loss", "train/task_loss"), ("test_acc", "test/acc"),
                      ("sparsity.act1.zero_frac", "sparsity/act1.zero_frac"),
                      ("sparsity.fc1.weight.zero_rows", "sparsity/fc1.weight.zero_rows")):
        points = tb.Scalars(name)
        assert [p.step for p in points] == [int(r["step"]) for r in rows]
        assert [p.value for p in points] == pytest.approx([float(r[key]) for r in rows], rel=1e-6)
    assert [p.value for p in tb.Scalars("lambda/l1_activations")] == pytest.approx([LAMBDA, LAMBDA])
    assert "weights/fc1.weight" in tb.Tags()["histograms"]
    # The final figures are the charts' last points (the HParams metrics), not charts of their own.
    assert tb.Scalars("test/acc")[-1].value == pytest.approx(summary["final"]["test_acc"])
    assert not [t for t in tb.Tags()["scalars"] if t.startswith("final/")]
    params = hparams(tb)
    assert params["reg.targets.l1_activations.lambda"] == LAMBDA and params["reg.targets.l1_activations.layers"] == "act*"
    assert "prune.layers" not in params  # null: left out, never "None"
    assert session_status(tb) == api_pb2.STATUS_SUCCESS
    assert {"config/text_summary", "overrides/text_summary"} <= set(tb.Tags()["tensors"])

    client = MlflowClient((tmp_path / "runs" / "mlruns").as_uri())
    [found] = client.search_runs([client.get_experiment_by_name("regrun").experiment_id])
    assert found.info.status == "FINISHED" and found.data.tags["regrun.run_dir"] == str(out.resolve())
    assert found.data.params["reg.targets.l1_activations.lambda"] == str(LAMBDA)
    assert found.data.params["reg.targets.l1_activations.layers"] == "act*" and found.data.params["model.hidden"] == "256,128"
    assert "None" not in found.data.params.values() and "prune.layers" not in found.data.params
    assert found.data.tags["mlflow.source.name"] == "regrun" and found.data.tags["mlflow.source.type"] == "LOCAL"
    assert "mlflow.parentRunId" not in found.data.tags  # a run of its own
    history = client.get_metric_history(found.info.run_id, "test_acc")
    assert [(m.step, m.value) for m in history] == [(int(r["step"]), pytest.approx(float(r["test_acc"]))) for r in rows]
    assert found.data.metrics["lambda.l1_activations"] == LAMBDA
    artifacts = {a.path for a in client.list_artifacts(found.info.run_id)}
    assert {"metrics.csv", "summary.json", "config.json", "prune.json"} <= artifacts


def test_a_sweep_root_shows_each_job_with_its_hyperparameters(make_cfg: Callable[..., dict], tmp_path: Path) -> None:
    for job, lam in enumerate((0.0, LAMBDA)):
        run(make_cfg("logger=tensorboard", "logger.tensorboard.histograms=false", "reg=l1_activations",
                     f"reg.targets.l1_activations.lambda={lam}"), tmp_path / str(job))
    seen = {job: hparams(events(tmp_path / job / "tb"))["reg.targets.l1_activations.lambda"] for job in ("0", "1")}
    assert seen == {"0": 0.0, "1": LAMBDA}


def test_histograms_are_options(make_cfg: Callable[..., dict], tmp_path: Path) -> None:
    """Weights (histograms) and the targeted units' firing densities (densities), each off on its own."""
    seen = {}
    for name, flags in (("weights", "histograms=true densities=false"), ("densities", "histograms=false densities=true")):
        weights, densities = (f"logger.tensorboard.{flag}" for flag in flags.split())
        run(make_cfg("logger=tensorboard", "reg=l1_activations", weights, densities), tmp_path / name)
        seen[name] = {t.split("/")[0] for t in events(tmp_path / name / "tb").Tags()["histograms"]}
    assert seen == {"weights": {"weights"}, "densities": {"density"}}


@pytest.mark.parametrize("override, message", [
    ("+logger.wandb={}", "logger.wandb: unknown logger; allowed: tensorboard, mlflow (metrics.csv and summary.json are always written)"),
    ("+logger.tensorboard.logdir=x", "logger.tensorboard.logdir: unknown key; allowed: dir, histograms, densities"),
])
def test_bad_logger_config_is_one_line_before_training(make_cfg: Callable[..., dict], tmp_path: Path,
                                                     override: str, message: str) -> None:
    extra = ["logger=tensorboard"] if "tensorboard" in override else []
    with pytest.raises(RegrunError) as err:
        run(make_cfg(*extra, override), tmp_path)
    assert str(err.value) == message
    assert not (tmp_path / "metrics.csv").exists()


def test_a_tracker_not_installed_names_the_extra(make_cfg: Callable[..., dict], tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "mlflow", None)  # import mlflow now raises ImportError
    with pytest.raises(RegrunError) as err:
        run(make_cfg("logger=mlflow"), tmp_path)
    assert str(err.value) == ("logger=mlflow needs the mlflow package, which is not installed; "
                              "install it with: pip install 'regrun[mlflow]'")


def test_the_trackers_get_each_logged_step_and_the_targeted_units_firing_densities(
        make_cfg: Callable[..., dict], tmp_path: Path) -> None:
    out = tmp_path / "runs" / "steps"
    cfg = make_cfg("logger=[tensorboard,mlflow]", "logger.tensorboard.histograms=false", "reg=l1_activations",
                   "reg.targets.l1_activations.layers=[act1]", "reg.targets.l1_activations.warmup_steps=8",
                   "trainer.epochs=2", "trainer.log_steps=3")
    summary = run(cfg, out)
    with open(out / "steps.csv") as f:
        steps = list(csv.DictReader(f))
    with open(out / "metrics.csv") as f:
        epochs = [int(row["step"]) for row in csv.DictReader(f)]
    tb = events(out / "tb")
    for column in ("train_task_loss", "penalty.l1_activations.raw", "lambda.l1_activations"):
        points = tb.Scalars(f"steps/{tag(column)}")
        assert [p.step for p in points] == [int(r["step"]) for r in steps]
        assert [p.value for p in points] == pytest.approx([float(r[column]) for r in steps], rel=1e-6)
    assert tb.Scalars("steps/lambda/l1_activations")[0].value < LAMBDA  # the warm-up, step by step
    # One histogram of act1's units' firing densities per evaluated epoch; the last one is summary.json's.
    histograms = tb.Histograms("density/act1")
    assert [h.step for h in histograms] == epochs
    density = summary["sparsity"]["activations"]["act1"]["density"]
    last = histograms[-1].histogram_value
    assert last.num == len(density) and last.sum == pytest.approx(sum(density))
    assert (last.min, last.max) == (pytest.approx(min(density)), pytest.approx(max(density)))
    assert not any(tag.startswith("density/act2") for tag in tb.Tags()["histograms"])  # act2 is not targeted

    client = MlflowClient((tmp_path / "runs" / "mlruns").as_uri())
    [found] = client.search_runs([client.get_experiment_by_name("regrun").experiment_id])
    history = client.get_metric_history(found.info.run_id, "steps.train_task_loss")
    assert [(m.step, m.value) for m in history] == [(int(r["step"]), pytest.approx(float(r["train_task_loss"])))
                                                    for r in steps]


def test_a_resumed_run_continues_its_mlflow_run(make_cfg: Callable[..., dict], tmp_path: Path) -> None:
    from regrun.rundir import resume

    out = tmp_path / "runs" / "one"
    run(make_cfg("logger=mlflow", "reg=l1_activations", "trainer.epochs=1"), out)
    cfg, checkpoint = resume.prepare(out, ["trainer.epochs=2"])
    run(cfg, out, checkpoint, resume=True)
    with open(out / "metrics.csv") as f:
        rows = list(csv.DictReader(f))

    client = MlflowClient((tmp_path / "runs" / "mlruns").as_uri())
    [found] = client.search_runs([client.get_experiment_by_name("regrun").experiment_id])  # one run, not two
    assert found.info.status == "FINISHED"
    history = client.get_metric_history(found.info.run_id, "test_acc")
    assert [(m.step, m.value) for m in history] == [(int(r["step"]), pytest.approx(float(r["test_acc"]))) for r in rows]
    assert len(rows) == 2
    assert found.data.params["trainer.epochs"] == "1" and found.data.tags["regrun.resumed"] == "trainer.epochs=2"
