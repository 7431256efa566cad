"""A real 3-λ sweep with both trackers, read back as their own tools read it: TensorBoard's
HParams plugin (its backend, as the HParams tab queries it), MLflow's client, and
`regrun compare` beside MLflow's store in the sweep root."""

import csv
import json
import os
from pathlib import Path
from typing import Any

import pytest
from conftest import regrun
from mlflow.tracking import MlflowClient
from tensorboard.backend.event_processing import data_provider, plugin_event_multiplexer
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins import base_plugin
from tensorboard.plugins.hparams import hparams_plugin
from werkzeug.test import Client
from werkzeug.wrappers import Response

LAM = "reg.targets.l1_activations.lambda"
LAMBDAS = (0.0, 1e-3, 1e-2)
JOBS = ["0_l1_activations.lambda=0", "1_l1_activations.lambda=0.001", "2_l1_activations.lambda=0.01"]


@pytest.fixture(scope="module")
def sweep(tiny_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One sweep of three λ with logger=[tensorboard,mlflow] and the default places: each job's
    events in <sweep>/tb/<job>, MLflow's file store in <sweep>/mlruns."""
    root = tmp_path_factory.mktemp("tracked")
    proc = regrun("-m", "reg=l1_activations", f"{LAM}={','.join(f'{lam:g}' for lam in LAMBDAS)}", "trainer.epochs=1",
                  "trainer.device=cpu", "trainer.batch_size=32", f"dataset.root={tiny_root}", "dataset.download=false",
                  "logger=[tensorboard,mlflow]", "logger.tensorboard.histograms=false",
                  f"hydra.sweep.dir={root / 'sweep'}", cwd=root)
    assert proc.returncode == 0, proc.stderr
    return root / "sweep"


def hparams_tab(logdir: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The experiment and the session groups, as TensorBoard's HParams tab gets them from its backend."""
    mux = plugin_event_multiplexer.EventMultiplexer()
    mux.AddRunsFromDirectory(str(logdir))
    mux.Reload()
    context = base_plugin.TBContext(logdir=str(logdir), multiplexer=mux,
                                    data_provider=data_provider.MultiplexerDataProvider(mux, str(logdir)))
    apps = hparams_plugin.HParamsPlugin(context).get_plugin_apps()

    def ask(route: str, request: dict) -> dict:
        answer = Client(apps[route], Response).post("/", data=json.dumps(request), content_type="application/json")
        assert answer.status_code == 200, answer.get_data(as_text=True)
        return json.loads(answer.get_data())

    experiment = ask("/experiment", {"experimentName": "", "hparamsLimit": 1000, "includeMetrics": True})
    columns = [{"hparam": h["name"], "includeInResult": True} for h in experiment["hparamInfos"]] + \
              [{"metric": m["name"], "includeInResult": True} for m in experiment["metricInfos"]]
    groups = ask("/session_groups", {"experimentName": "", "colParams": columns, "startIndex": 0, "sliceSize": 100,
                                     "allowedStatuses": ["STATUS_UNKNOWN", "STATUS_SUCCESS", "STATUS_FAILURE",
                                                         "STATUS_RUNNING"], "includeMetrics": True})
    return experiment, groups["sessionGroups"]


def summary(path: Path) -> dict:
    return json.loads((path / "summary.json").read_text())


def test_tensorboards_hparams_tab_leads_with_lambda_and_the_headline_figures(sweep: Path) -> None:
    experiment, groups = hparams_tab(sweep / "tb")
    # Only λ differs between the jobs: the one hyperparameter the experiment declares, marked as differing.
    assert [(h["name"], h.get("differs")) for h in experiment["hparamInfos"]] == [(LAM, True)]
    metrics = [m["name"]["tag"] for m in experiment["metricInfos"]]
    assert metrics[:2] == ["test/acc", "sparsity/l1_activations.zero_frac"]  # the headline, the trade-off's x
    assert {"test/loss", "penalty/l1_activations.raw", "train/task_loss"} <= set(metrics)
    assert not any(m.startswith(("lambda/", "final/")) for m in metrics)
    # One session per job, named by its job (TensorBoard's run: the folder), with its λ and final figures.
    assert sorted(g["name"] for g in groups) == JOBS
    for group in groups:
        num = int(group["name"].split("_")[0])
        final = summary(sweep / str(num))["final"]
        values = {m["name"]["tag"]: m["value"] for m in group["metricValues"]}
        assert group["hparams"][LAM] == LAMBDAS[num]
        assert values["test/acc"] == pytest.approx(final["test_acc"])
        assert values["sparsity/l1_activations.zero_frac"] == pytest.approx(final["sparsity.l1_activations.zero_frac"])
        assert [s["status"] for s in group["sessions"]] == ["STATUS_SUCCESS"]


def test_the_sweeps_own_events_hold_its_plots_and_table_and_each_job_its_config(sweep: Path) -> None:
    own = EventAccumulator(str(sweep / "tb"), size_guidance={"images": 0, "tensors": 0})
    own.Reload()
    assert {"sweep/tradeoff", "sweep/tradeoff_density"} <= set(own.Tags()["images"])
    table = own.Tensors("sweep/summary/text_summary")[0].tensor_proto.string_val[0].decode()
    assert table.splitlines()[0] == "| job | status | l1_activations.lambda | test_acc | sparsity.l1_activations.zero_frac |"
    assert len(table.splitlines()) == 2 + len(LAMBDAS)
    job = EventAccumulator(str(sweep / "tb" / JOBS[1]), size_guidance={"tensors": 0})
    job.Reload()
    command = job.Tensors("overrides/text_summary")[0].tensor_proto.string_val[0].decode()
    assert command.strip().startswith("regrun ") and f"{LAM}=0.001" in command
    assert "l1_activations:" in job.Tensors("config/text_summary")[0].tensor_proto.string_val[0].decode()
    assert not any((sweep / str(num) / "tb").exists() for num in range(len(LAMBDAS)))


def test_mlflow_holds_one_parent_run_with_the_three_jobs_and_compare_counts_three(sweep: Path) -> None:
    proc = regrun("compare", str(sweep), "--format", "json", cwd=sweep)
    assert proc.returncode == 0, proc.stderr
    assert [r["run"] for r in json.loads(proc.stdout)] == ["0", "1", "2"]  # not MLflow's artifact copies as well
    with open(sweep / "summary.csv", newline="") as f:
        assert [row["job"] for row in csv.DictReader(f)] == ["0", "1", "2"]

    os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    client = MlflowClient((sweep / "mlruns").as_uri())
    runs = client.search_runs([client.get_experiment_by_name("regrun").experiment_id])
    [parent] = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert len(runs) == 4 and sorted(r.info.run_name for r in children) == JOBS
    assert parent.info.status == "FINISHED" and parent.data.tags["regrun.jobs.completed"] == "3"
    assert {"summary.csv", "tradeoff.png"} <= {a.path for a in client.list_artifacts(parent.info.run_id)}
    for child in children:
        num = int(child.data.tags["regrun.job"])
        assert child.info.status == "FINISHED" and float(child.data.params[LAM]) == LAMBDAS[num]
        assert child.data.metrics["test_acc"] == pytest.approx(summary(sweep / str(num))["final"]["test_acc"])
        assert child.data.tags["mlflow.source.name"] == "regrun" and child.data.tags["mlflow.user"]
        assert "None" not in child.data.params.values()


def test_a_sweep_with_an_unreachable_tracking_server_is_refused_before_its_first_job(
        tiny_root: Path, tmp_path: Path, closed_port: int) -> None:
    uri = f"http://127.0.0.1:{closed_port}"
    proc = regrun("-m", "reg=l1_activations", f"{LAM}=0,1e-3", "trainer.device=cpu", f"dataset.root={tiny_root}",
                  "dataset.download=false", "logger=mlflow", f"logger.mlflow.tracking_uri={uri}",
                  f"hydra.sweep.dir={tmp_path / 'sweep'}", cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"regrun: error: logger.mlflow.tracking_uri={uri}: cannot reach the tracking server: connection refused; "
        "start the tracking server or choose another URI (null: a file store beside the runs)"]
    assert not (tmp_path / "sweep").exists()


@pytest.fixture
def closed_port() -> int:
    """A local TCP port nothing listens on (bound, then released)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]

