"""Stop signals wherever the process is: at a step boundary in the loop, between evaluation
batches, and at once in start-up (importing, building, loading), each ending the run
`interrupted` and resumable to the figures of a run that was never stopped."""

import csv
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from conftest import REGRUN, SLOW_MODELS

from regrun.jobs import run as run_module
from regrun.jobs.fused_group import prepare_member, train_group
from regrun.jobs.signals import StopNow, StopRequest
from regrun.rundir.resume import prepare as prepare_resume

TIMING = "epoch_time_s"


def metrics(out: Path) -> list[dict]:
    with open(out / "metrics.csv") as f:
        return [{k: v for k, v in row.items() if k != TIMING} for row in csv.DictReader(f)]


def summary(out: Path) -> dict:
    return json.loads((out / "summary.json").read_text())


def test_in_start_up_a_signal_unwinds_at_once(request_: StopRequest) -> None:
    with pytest.raises(StopNow), request_.immediate():
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(60)  # what start-up may take (a tracker's connection): the signal does not wait for it
    assert request_() and request_.exit_code == 143


def test_where_the_loop_polls_a_signal_only_sets_the_request(request_: StopRequest) -> None:
    with request_.immediate(), request_.polled():
        os.kill(os.getpid(), signal.SIGINT)
        for _ in range(1000):  # the handler runs between two bytecodes of this loop
            if request_():
                break
            time.sleep(0.001)
        assert request_() and request_.name == "SIGINT"
    with pytest.raises(StopNow), request_.immediate():  # a request that came before: raised on entry
        pass


class StopInEvaluation:
    """Stands in for the process's stop request: true from the n-th poll made by an
    evaluation on (the loop's own polls between steps count for nothing)."""

    name = "SIGINT"

    def __init__(self, n: int) -> None:
        self.polls, self.n = 0, n

    def __call__(self) -> bool:
        if sys._getframe(1).f_code.co_name == "task_figures":
            self.polls += 1
        return self.polls >= self.n


# 2 epochs; the test set's 160 samples in evaluation batches of 64: 3 polls an evaluation,
# so the 5th poll is in the middle of the final evaluation.
RUN = ("reg=l1_activations", "trainer.epochs=2", "trainer.eval_batch_size=64")


def test_a_stop_in_the_final_evaluation_ends_interrupted_and_resumes_exactly(
        make_cfg: Callable[..., dict], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = make_cfg(*RUN)
    run_module.run(cfg, tmp_path / "unbroken")
    monkeypatch.setattr(run_module, "STOP", StopInEvaluation(5))
    stopped = run_module.run(cfg, tmp_path / "cut")
    assert stopped["status"] == "interrupted"
    assert stopped["error"] == "stopped during the evaluation of epoch 2 (after step 20); checkpoint saved"
    checkpoint = torch.load(tmp_path / "cut" / "checkpoint.pt", weights_only=True)
    assert checkpoint["epoch"] == 1 and checkpoint["partial"]["batches"] == 10  # every step of epoch 2 done
    assert len(metrics(tmp_path / "cut")) == 1 and not (tmp_path / "cut" / "model.pt").exists()
    monkeypatch.setattr(run_module, "STOP", lambda: False)
    resume_cfg, checkpoint = prepare_resume(tmp_path / "cut", [])
    assert run_module.run(resume_cfg, tmp_path / "cut", checkpoint, resume=True)["status"] == "completed"
    assert metrics(tmp_path / "cut") == metrics(tmp_path / "unbroken")


def test_a_stop_in_a_fused_groups_evaluation_stops_every_member_and_the_group_continues(
        make_cfg: Callable[..., dict], tmp_path: Path) -> None:
    cfgs = [make_cfg(*RUN, f"seed={seed}", f"reg.targets.l1_activations.lambda={lam}")
            for seed, lam in ((0, 0.0), (1, 1e-3))]
    whole, cut = [tmp_path / f"whole{i}" for i in range(2)], [tmp_path / f"cut{i}" for i in range(2)]
    train_group([prepare_member(cfg, out, {}) for cfg, out in zip(cfgs, whole)])
    # Each member's evaluation polls 3 times: the 8th poll is in the first member's evaluation of epoch 2.
    train_group([prepare_member(cfg, out, {}) for cfg, out in zip(cfgs, cut)], StopInEvaluation(8))
    for out in cut:
        assert summary(out)["status"] == "interrupted"
        assert summary(out)["error"].startswith("stopped during the evaluation of epoch 2")
    train_group([prepare_member(cfg, out, {}) for cfg, out in zip(cfgs, cut)])  # continues as a group
    for mine, reference in zip(cut, whole):
        assert summary(mine)["status"] == "completed"
        assert metrics(mine) == metrics(reference)


# ---- whole processes: a signal at start-up and in the final evaluation ---------------------


@pytest.fixture
def slow_models(tmp_path: Path) -> Path:
    (tmp_path / "slow_models.py").write_text(SLOW_MODELS)
    return tmp_path


def argv(root: Path, out: Path) -> list[str]:
    return ["model=custom", "model.factory=slow_models:net", f"dataset.root={root}", "dataset.download=false",
            "trainer.device=cpu", "trainer.epochs=1", "trainer.batch_size=32", "trainer.eval_batch_size=7",
            f"hydra.run.dir={out}"]


def command(args: list[str], cwd: Path) -> subprocess.Popen:
    return subprocess.Popen([REGRUN, *args], cwd=cwd, env=os.environ | {"COLUMNS": "160"}, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def stop_when(marker: Path, proc: subprocess.Popen, signum: int) -> int:
    """Send `signum` once `marker` exists; the exit code (the test fails if it takes a minute)."""
    deadline = time.monotonic() + 120
    while not marker.exists():
        assert proc.poll() is None, proc.communicate()[0]
        assert time.monotonic() < deadline, "the marker never appeared"
        time.sleep(0.01)
    proc.send_signal(signum)
    proc.communicate(timeout=60)  # well under the 120 s the factory would sleep
    return proc.returncode


@pytest.mark.heavy
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_at_start_up_ends_the_run_interrupted_and_resume_starts_it_afresh(
        signum: int, slow_models: Path, tiny_root: Path) -> None:
    unbroken, out = slow_models / "unbroken", slow_models / "run"
    assert command(argv(tiny_root, unbroken), slow_models).wait(timeout=300) == 0
    (slow_models / "slow_start").touch()
    assert stop_when(slow_models / "starting", command(argv(tiny_root, out), slow_models), signum) == 128 + signum
    stopped = summary(out)
    assert stopped["status"] == "interrupted"
    assert stopped["error"] == f"not started: {signal.Signals(signum).name} stopped it before training started"
    assert not (out / "checkpoint.pt").exists() and not (out / "metrics.csv").exists()
    (slow_models / "slow_start").unlink()
    resumed = subprocess.run([REGRUN, "resume", str(out)], cwd=slow_models, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert summary(out)["status"] == "completed" and metrics(out) == metrics(unbroken)


@pytest.mark.heavy
def test_ctrl_c_in_the_final_evaluation_ends_the_run_interrupted_and_resume_completes_it(
        slow_models: Path, tiny_root: Path) -> None:
    unbroken, out = slow_models / "unbroken", slow_models / "run"
    assert command(argv(tiny_root, unbroken), slow_models).wait(timeout=300) == 0
    (slow_models / "slow_eval").touch()  # 23 batches of 0.2 s: the evaluation outlasts the signal
    assert stop_when(slow_models / "evaluating", command(argv(tiny_root, out), slow_models), signal.SIGINT) == 130
    stopped = summary(out)
    assert stopped["status"] == "interrupted"
    assert stopped["error"] == "stopped during the evaluation of epoch 1 (after step 10); checkpoint saved"
    (slow_models / "slow_eval").unlink()
    resumed = subprocess.run([REGRUN, "resume", str(out)], cwd=slow_models, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert summary(out)["status"] == "completed" and metrics(out) == metrics(unbroken)
